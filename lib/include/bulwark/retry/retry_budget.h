// RetryBudget: bounds the retries sent to one target to a share of its recent traffic.
//
// Retries multiply load exactly when a target is struggling. A budget shared by all callers of
// one target caps them: over a sliding window,
//
//   allowed = ratio * requests_in_window + min_per_second * window_seconds
//
// retries may be withdrawn, where requests_in_window counts original requests (record_request)
// and retries are the successful withdrawals (try_withdraw). With the defaults (ratio 0.2,
// 10/s, 10 s window) a target gets at most 20 % extra load from retries, plus a floor of 100
// retries per 10 s so that a target with little traffic can still be retried at all. The floor
// is per window, not a rate: all 100 may be spent in one second.
//
// Window and bucket boundaries: the window is kBuckets buckets of window / kBuckets each
// (1 s for the default 10 s), aligned to multiples of the bucket width on the steady clock.
// The window at `now` is the bucket containing `now` plus the kBuckets - 1 before it, so an
// event stays counted for between window - width and window after it happened, and the whole
// oldest bucket leaves the window at once when `now` crosses into a new bucket. Both requests
// and granted retries age out this way; a budget that was exhausted refills one bucket at a time
// as the window slides.
//
// Concurrency: lock-free. Each bucket holds two 64-bit atomic words (requests, retries); each
// word packs the bucket's epoch (upper 32 bits) with its count (lower 32 bits), so a word left
// over from an older epoch reads as zero and is reset by the same compare-and-swap that counts
// the new event; there is no separate "reset" step to race with. try_withdraw sums the window,
// then compare-and-swaps the current bucket's retry word from the value it summed, retrying if
// another thread changed it, so concurrent withdrawals at one instant never grant more than
// `allowed` in total (exact, not approximate). Counts saturate at 2^32 - 1 per bucket.
//
// Preconditions: `now` comes from one steady clock. Threads may pass slightly different `now`
// values (each read its own clock), but a `now` older than one whole window relative to what
// other threads already recorded resets that bucket (its newer counts are lost). Epochs are
// stored modulo 2^32 bucket widths (>= 49 days for the smallest window), so a bucket idle for
// exactly a multiple of that is the only case where stale counts could be misread as current.
//
// Cost: record_request is one atomic add on the current bucket; try_withdraw reads 2 * kBuckets
// words and does one CAS. No allocation, no lock, no system call.
//
// Thread-safety: every member function may be called from any thread concurrently.
//
// Example:
//   bulwark::retry::RetryBudget budget({.ratio = 0.2, .min_per_second = 10});  // one per target
//   budget.record_request(clock.now());            // each original request
//   if (!budget.try_withdraw(clock.now())) {       // before each retry
//     return bulwark::errc::budget_exhausted;
//   }
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>

#include "bulwark/core/clock.h"
#include "bulwark/core/striped_counter.h"

namespace bulwark::retry {

struct RetryBudgetOptions {
  // Retries allowed per original request in the window. >= 0 and finite.
  double ratio = 0.2;
  // Retries allowed per second of window regardless of traffic. >= 0 and finite.
  double min_per_second = 10;
  // Length of the sliding window; split into kBuckets buckets. >= 10 ms.
  Duration window = std::chrono::seconds(10);
};

class RetryBudget {
 public:
  static constexpr uint32_t kBuckets = 10;

  // Throws std::invalid_argument, naming the option, on a negative or non-finite ratio or
  // min_per_second, or a window shorter than 10 ms.
  explicit RetryBudget(RetryBudgetOptions options = {});

  RetryBudget(const RetryBudget&) = delete;
  RetryBudget& operator=(const RetryBudget&) = delete;

  // Counts one original request (not a retry) at `now`.
  void record_request(TimePoint now) noexcept;

  // Reserves one retry at `now`. Returns false (and counts the denial) if the window has no
  // room: granted retries + 1 > allowed.
  bool try_withdraw(TimePoint now) noexcept;

  struct Snapshot {
    uint64_t requests;  // original requests in the window at `now`
    uint64_t retries;   // retries granted in the window at `now`
    double allowed;     // ratio * requests + min_per_second * window_seconds
  };
  Snapshot snapshot(TimePoint now) const noexcept;

  // Denied withdrawals since construction (for the budget-exhausted metric).
  uint64_t exhausted_total() const noexcept { return exhausted_.value(); }

  const RetryBudgetOptions& options() const noexcept { return options_; }
  // Width of one bucket: options().window / kBuckets.
  Duration bucket_width() const noexcept { return Duration(width_ns_); }

 private:
  struct alignas(16) Bucket {
    std::atomic<uint64_t> requests{0};
    std::atomic<uint64_t> retries{0};
  };
  struct Position {
    uint64_t epoch;  // bucket number since the clock's epoch
    uint32_t slot;   // epoch % kBuckets
  };

  Position position(TimePoint now) const noexcept;

  RetryBudgetOptions options_;
  int64_t width_ns_;
  double floor_;  // min_per_second * window_seconds
  // Epoch of the most recent `now` seen: a hint that spares the 64-bit division on the hot path
  // while `now` stays in one bucket. Always verified against `now` before use, so a stale or
  // racing value costs a division, never a wrong answer.
  mutable std::atomic<uint64_t> epoch_hint_{0};
  std::array<Bucket, kBuckets> buckets_{};
  StripedCounter exhausted_;
};

}  // namespace bulwark::retry
