#include "bulwark/retry/retry_budget.h"

#include <cmath>
#include <stdexcept>
#include <string>

namespace bulwark::retry {
namespace {

constexpr uint64_t kCountMask = 0xffff'ffffULL;

constexpr uint64_t pack(uint32_t epoch, uint64_t count) noexcept {
  return (static_cast<uint64_t>(epoch) << 32) | count;
}
constexpr uint32_t epoch_of(uint64_t word) noexcept { return static_cast<uint32_t>(word >> 32); }
constexpr uint64_t count_of(uint64_t word) noexcept { return word & kCountMask; }

// Floating-point slack when comparing a whole number of retries with `allowed`: 0.29 * 100 is
// 28.999999999999996 in binary floating point and must still allow 29 retries.
constexpr double kSlack = 1e-9;

// Count of `word` if its epoch is within the window ending at `epoch`, else 0.
uint64_t count_in_window(uint64_t word, uint32_t epoch) noexcept {
  // Age in buckets, modulo 2^32: 0 = current bucket, kBuckets - 1 = oldest in the window. A word
  // from a later epoch (a thread slightly ahead in time) has a huge age and is not counted yet.
  const uint32_t age = epoch - epoch_of(word);
  return age < RetryBudget::kBuckets ? count_of(word) : 0;
}

// Adds one to `word` for `epoch`, resetting it first if it belongs to another epoch.
void increment(std::atomic<uint64_t>& word, uint32_t epoch) noexcept {
  uint64_t old = word.load(std::memory_order_relaxed);
  // Fast path: the bucket is current and far from saturation, so an unconditional add cannot
  // carry into the epoch bits (it would take 2^31 concurrent adders). If the bucket is reset by
  // a thread a whole window ahead between the load and the add, the event is counted in that
  // newer bucket: a harmless over-count.
  if (epoch_of(old) == epoch && count_of(old) < (kCountMask >> 1)) {
    word.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  for (;;) {
    uint64_t next;
    if (epoch_of(old) != epoch) {
      next = pack(epoch, 1);  // left over from an older window: this event starts the bucket
    } else if (count_of(old) == kCountMask) {
      return;  // saturated: never carry into the epoch bits
    } else {
      next = old + 1;
    }
    if (word.compare_exchange_weak(old, next, std::memory_order_relaxed)) return;
  }
}

}  // namespace

RetryBudget::RetryBudget(RetryBudgetOptions options) : options_(options) {
  if (!(std::isfinite(options_.ratio) && options_.ratio >= 0)) {
    throw std::invalid_argument("retry budget: ratio must be finite and >= 0 (got " +
                                std::to_string(options_.ratio) + ")");
  }
  if (!(std::isfinite(options_.min_per_second) && options_.min_per_second >= 0)) {
    throw std::invalid_argument("retry budget: min_per_second must be finite and >= 0 (got " +
                                std::to_string(options_.min_per_second) + ")");
  }
  // 10 ms keeps a bucket >= 1 ms, so the 32-bit epoch in each word wraps only after 49 days.
  if (options_.window < std::chrono::milliseconds(10)) {
    throw std::invalid_argument("retry budget: window must be at least 10ms (got " +
                                std::to_string(options_.window.count()) + "ns)");
  }
  width_ns_ = options_.window.count() / kBuckets;
  floor_ = options_.min_per_second * std::chrono::duration<double>(options_.window).count();
}

// Defined inline (used only in this file) so that it is inlined even in position-independent
// builds, where an out-of-line member could be interposed and is therefore not inlined.
inline RetryBudget::Position RetryBudget::position(TimePoint now) const noexcept {
  // A steady clock does not go below zero; clamping keeps the unsigned arithmetic simple for
  // test clocks that might.
  const int64_t signed_t = now.time_since_epoch().count();
  const uint64_t t = signed_t <= 0 ? 0 : static_cast<uint64_t>(signed_t);
  const auto width = static_cast<uint64_t>(width_ns_);
  uint64_t epoch = epoch_hint_.load(std::memory_order_relaxed);
  // epoch * width cannot overflow: the hint was once t / width for some t <= INT64_MAX. If t is
  // before the hinted bucket, the unsigned difference wraps and fails the test too.
  if (t - epoch * width >= width) {
    epoch = t / width;
    epoch_hint_.store(epoch, std::memory_order_relaxed);
  }
  return {epoch, static_cast<uint32_t>(epoch % kBuckets)};
}

void RetryBudget::record_request(TimePoint now) noexcept {
  const Position p = position(now);
  increment(buckets_[p.slot].requests, static_cast<uint32_t>(p.epoch));
}

bool RetryBudget::try_withdraw(TimePoint now) noexcept {
  const Position p = position(now);
  const auto epoch = static_cast<uint32_t>(p.epoch);
  uint64_t requests = 0;
  uint64_t retries = 0;
  uint64_t old = 0;  // the current bucket's retry word, as summed
  for (uint32_t i = 0; i < kBuckets; ++i) {
    requests += count_in_window(buckets_[i].requests.load(std::memory_order_relaxed), epoch);
    const uint64_t word = buckets_[i].retries.load(std::memory_order_relaxed);
    retries += count_in_window(word, epoch);
    if (i == p.slot) old = word;
  }
  // A word in the current slot counts only if it is of the current epoch (age 0).
  const uint64_t other_retries = retries - count_in_window(old, epoch);
  // Requests recorded concurrently only raise `allowed`, so a slightly old sum is conservative.
  const double allowed =
      options_.ratio * static_cast<double>(static_cast<int64_t>(requests)) + floor_ + kSlack;
  const uint64_t limit = allowed >= 0x1p63 ? UINT64_MAX : static_cast<uint64_t>(allowed);

  // Exactness: every grant at this instant goes through a CAS on this one word, from the value
  // the decision was based on. If another thread granted (or reset the bucket) in between, the
  // CAS fails and the decision is taken again with the fresh count.
  std::atomic<uint64_t>& word = buckets_[p.slot].retries;
  for (;;) {
    const bool current = epoch_of(old) == epoch;
    const uint64_t mine = current ? count_of(old) : 0;
    if (other_retries + mine >= limit || mine == kCountMask) {
      exhausted_.add();
      return false;
    }
    const uint64_t next = current ? old + 1 : pack(epoch, 1);
    if (word.compare_exchange_weak(old, next, std::memory_order_relaxed)) return true;
  }
}

RetryBudget::Snapshot RetryBudget::snapshot(TimePoint now) const noexcept {
  const auto epoch = static_cast<uint32_t>(position(now).epoch);
  Snapshot s{0, 0, floor_};
  for (const Bucket& b : buckets_) {
    s.requests += count_in_window(b.requests.load(std::memory_order_relaxed), epoch);
    s.retries += count_in_window(b.retries.load(std::memory_order_relaxed), epoch);
  }
  s.allowed = options_.ratio * static_cast<double>(s.requests) + floor_;
  return s;
}

}  // namespace bulwark::retry
