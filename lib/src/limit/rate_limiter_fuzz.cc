// libFuzzer target: a TokenBucket and a KeyedLimiter driven by an arbitrary trace, checked
// against independent reference models after every step.
//
// Input: options (8 bytes), then actions of three bytes (operation, two argument bytes):
// advance time (ns, us or ms scale), acquire n permits from the bucket, peek the bucket,
// acquire from one of 24 tracked keys, acquire for a never-seen key (a flood), peek a key,
// erase a key, sweep.
//
// Invariants (violations abort via __builtin_trap):
//   token bucket
//   - every decision equals the model's (a credit counter: min(burst * interval, credit +
//     elapsed)); retry_after is the earliest instant the model admits (found by search);
//   - never more than burst permits granted at one instant;
//   - for any interval between two grants, permits granted <= burst + elapsed / interval;
//   keyed limiter
//   - memory_bytes and peak_memory_bytes never exceed max_bytes; keys <= max_keys;
//   - every decision for a tracked key equals its own model's (token bucket, GCRA or sliding
//     window, per the options);
//   - a tracked key disappears without a forced eviction only when its model is idle (idle
//     evictions are invisible);
//   - when a step forces evictions, no tracked key that was evicted owed more (debt bucket)
//     than a tracked key of the same shard that was kept;
//   - stats add up: admitted + rejected = decisions made.
#include <fuzzer/FuzzedDataProvider.h>

#include <algorithm>
#include <bit>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "bulwark/limit/keyed_limiter.h"
#include "bulwark/limit/token_bucket.h"

namespace {

using bulwark::Duration;
using bulwark::TimePoint;
using namespace bulwark::limit;

#define CHECK(cond)                                                               \
  do {                                                                            \
    if (!(cond)) {                                                                \
      std::fprintf(stderr, "rate_limiter_fuzz: %s (line %d)\n", #cond, __LINE__); \
      __builtin_trap();                                                           \
    }                                                                             \
  } while (0)

__extension__ using Int128 = __int128;

int64_t floor_div(int64_t a, int64_t b) { return a / b - ((a % b != 0 && a < 0) ? 1 : 0); }

// ---------------------------------------------------------------------------------------------
// Reference models: straightforward state, a pure "would n permits be allowed at t" predicate,
// and retry_after found by binary search over that predicate.

struct Model {
  virtual ~Model() = default;
  virtual bool allowed_at(int64_t t, uint64_t n) const = 0;
  virtual void take(int64_t t, uint64_t n) = 0;
  virtual uint64_t remaining(int64_t t) const = 0;
  virtual int64_t reset(int64_t t) const = 0;
  virtual bool idle(int64_t t) const = 0;
  virtual int64_t debt(int64_t t) const = 0;
  virtual uint64_t limit() const = 0;
  virtual void clear() = 0;

  // Earliest t' >= t with allowed_at(t', n); the predicate is monotone in time.
  int64_t earliest(int64_t t, uint64_t n, int64_t horizon) const {
    int64_t lo = t, hi = t + horizon;
    CHECK(allowed_at(hi, n));
    while (lo < hi) {
      const int64_t mid = lo + (hi - lo) / 2;
      if (allowed_at(mid, n)) {
        hi = mid;
      } else {
        lo = mid + 1;
      }
    }
    return lo;
  }
};

// Token bucket as credit: nanoseconds of refill banked, at most burst * interval.
struct BucketModel final : Model {
  int64_t interval, cap;
  uint64_t burst;
  bool fresh = true;
  int64_t credit = 0, last = 0;
  BucketModel(int64_t i, uint64_t b) : interval(i), cap(i * static_cast<int64_t>(b)), burst(b) {}
  int64_t credit_at(int64_t t) const {
    if (fresh) return cap;
    return std::min<int64_t>(cap, credit + std::max<int64_t>(0, t - last));
  }
  bool allowed_at(int64_t t, uint64_t n) const override {
    return n <= burst && credit_at(t) >= static_cast<int64_t>(n) * interval;
  }
  void take(int64_t t, uint64_t n) override {
    credit = credit_at(t) - static_cast<int64_t>(n) * interval;
    last = t;
    fresh = false;
  }
  uint64_t remaining(int64_t t) const override {
    return static_cast<uint64_t>(credit_at(t) / interval);
  }
  int64_t reset(int64_t t) const override { return cap - credit_at(t); }
  bool idle(int64_t t) const override { return credit_at(t) == cap; }
  int64_t debt(int64_t t) const override { return cap - credit_at(t); }
  uint64_t limit() const override { return burst; }
  void clear() override { fresh = true; }
};

// GCRA in the textbook form: TAT in microseconds, tolerance tau = (burst - 1) * T.
struct GcraModel final : Model {
  int64_t t_us;
  uint64_t burst;
  int64_t tau;
  bool fresh = true;
  int64_t tat = 0;
  GcraModel(int64_t t, uint64_t b) : t_us(t), burst(b), tau(t * static_cast<int64_t>(b - 1)) {}
  static int64_t us(int64_t t) { return floor_div(t, 1000); }
  int64_t tat_at(int64_t t) const { return fresh ? us(t) : std::max(tat, us(t)); }
  bool allowed_at(int64_t t, uint64_t n) const override {
    if (n > burst) return false;
    // The n-th permit's arrival conforms: TAT + (n - 1) T - tau <= now.
    return tat_at(t) + static_cast<int64_t>(n - 1) * t_us - tau <= us(t) || n == 0;
  }
  void take(int64_t t, uint64_t n) override {
    tat = tat_at(t) + static_cast<int64_t>(n) * t_us;
    fresh = false;
  }
  uint64_t remaining(int64_t t) const override {
    uint64_t m = 0;
    while (m < burst && allowed_at(t, m + 1)) ++m;
    return m;
  }
  int64_t reset(int64_t t) const override { return std::max<int64_t>(0, tat_at(t) * 1000 - t); }
  bool idle(int64_t t) const override { return fresh || tat <= us(t); }
  int64_t debt(int64_t t) const override { return reset(t); }
  uint64_t limit() const override { return burst; }
  void clear() override { fresh = true; }
};

// Sliding window with full window indices.
struct WindowModel final : Model {
  int64_t w;
  uint64_t lim;
  int64_t index = INT64_MIN;
  uint64_t prev = 0, cur = 0;
  WindowModel(int64_t window, uint64_t l) : w(window), lim(l) {}
  void view(int64_t t, uint64_t& p, uint64_t& c, int64_t& e) const {
    const int64_t k = floor_div(t, w);
    e = t - k * w;
    if (index == k) {
      p = prev;
      c = cur;
    } else if (index != INT64_MIN && index + 1 == k) {
      p = cur;
      c = 0;
    } else {
      p = c = 0;
    }
  }
  bool allowed_at(int64_t t, uint64_t n) const override {
    uint64_t p, c;
    int64_t e;
    view(t, p, c, e);
    return static_cast<Int128>(p) * (w - e) + static_cast<Int128>(c + n) * w <=
           static_cast<Int128>(lim) * w;
  }
  void take(int64_t t, uint64_t n) override {
    uint64_t p, c;
    int64_t e;
    view(t, p, c, e);
    index = floor_div(t, w);
    prev = p;
    cur = c + n;
  }
  uint64_t remaining(int64_t t) const override {
    uint64_t m = 0;
    while (m < lim && allowed_at(t, m + 1)) ++m;
    return m;
  }
  int64_t reset(int64_t t) const override {
    uint64_t p, c;
    int64_t e;
    view(t, p, c, e);
    if (c > 0) return (w - e) + w;
    if (p > 0) return w - e;
    return 0;
  }
  bool idle(int64_t t) const override { return reset(t) == 0; }
  int64_t debt(int64_t t) const override {
    uint64_t p, c;
    int64_t e;
    view(t, p, c, e);
    return static_cast<int64_t>((static_cast<Int128>(p) * (w - e) + static_cast<Int128>(c) * w) /
                                static_cast<Int128>(lim));
  }
  uint64_t limit() const override { return lim; }
  void clear() override { index = INT64_MIN; }
};

// Checks a decision for n permits at t against the model, then applies it.
void check_decision(const RateDecision& d, Model& m, int64_t t, uint64_t n, int64_t horizon) {
  CHECK(d.limit == m.limit());
  const bool allowed = n == 0 || m.allowed_at(t, n);
  CHECK(d.allowed == allowed);
  if (allowed) {
    if (n > 0) m.take(t, n);
    CHECK(d.retry_after == Duration::zero());
  } else if (n > m.limit()) {
    CHECK(d.retry_after == Duration::max());
  } else {
    CHECK(d.retry_after.count() == m.earliest(t, n, horizon) - t);
  }
  CHECK(d.remaining == m.remaining(t));
  CHECK(d.reset.count() == m.reset(t));
}

int bucket_of(int64_t debt) { return std::bit_width(static_cast<uint64_t>(debt)); }

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider in(data, size);

  // Token bucket: interval 1 ns .. ~1 s (log scale), burst 1..64.
  const int64_t tb_interval =
      std::max<int64_t>(1, int64_t{1} << in.ConsumeIntegralInRange<int>(0, 30)) +
      in.ConsumeIntegralInRange<int64_t>(0, 999);
  const uint64_t tb_burst = in.ConsumeIntegralInRange<uint64_t>(1, 64);
  TokenBucket bucket({.rate = {1.0, Duration(tb_interval)}, .burst = tb_burst});
  CHECK(bucket.interval().count() == tb_interval);
  BucketModel bucket_model(tb_interval, tb_burst);

  // Keyed limiter: algorithm, interval 1 us .. ~0.5 s, burst/limit 1..16, 1 or 2 shards and a
  // memory bound from the minimum to the minimum + 16 KiB.
  const auto algorithm = static_cast<RateAlgorithm>(in.ConsumeIntegralInRange<int>(0, 2));
  const int64_t interval_us = in.ConsumeIntegralInRange<int64_t>(1, 500'000);
  const uint64_t burst = in.ConsumeIntegralInRange<uint64_t>(1, 16);
  const uint32_t shards = in.ConsumeBool() ? 2 : 1;
  const std::size_t max_bytes =
      KeyedLimiter::min_bytes(shards) + in.ConsumeIntegralInRange<std::size_t>(0, 16 * 1024);
  KeyedLimiterOptions options;
  options.algorithm = algorithm;
  options.burst = burst;
  options.max_bytes = max_bytes;
  options.shards = shards;
  options.hash_seed = 0x5eed;
  if (algorithm == RateAlgorithm::sliding_window) {
    options.rate = {static_cast<double>(burst), Duration(interval_us * 1000)};  // limit per window
  } else {
    options.rate = {1.0, Duration(interval_us * 1000)};
  }
  KeyedLimiter keyed(options);
  auto make_model = [&]() -> std::unique_ptr<Model> {
    switch (algorithm) {
      case RateAlgorithm::token_bucket:
        return std::make_unique<BucketModel>(interval_us * 1000, burst);
      case RateAlgorithm::gcra:
        return std::make_unique<GcraModel>(interval_us, burst);
      case RateAlgorithm::sliding_window:
        break;
    }
    return std::make_unique<WindowModel>(interval_us * 1000, burst);
  };
  constexpr int kTracked = 24;
  std::vector<std::string> names;
  std::vector<std::unique_ptr<Model>> models;
  for (int i = 0; i < kTracked; ++i) {
    names.push_back("key-" + std::to_string(i));
    models.push_back(make_model());
  }
  // Long enough for any single request to fit again (two windows or the whole burst).
  const int64_t keyed_horizon = 3 * interval_us * 1000 * static_cast<int64_t>(burst) + 4000;
  const int64_t tb_horizon = 2 * tb_interval * static_cast<int64_t>(tb_burst) + 2;

  const int64_t start = int64_t{24} * 3600 * 1'000'000'000;
  int64_t now = start;
  uint64_t granted_this_instant = 0;
  std::vector<std::pair<int64_t, uint64_t>> grants;  // (time, permits) of the token bucket
  uint64_t decisions = 0;
  uint64_t flood = 0;
  KeyedLimiter::Stats last = keyed.stats();

  // After any keyed step: memory bound, and tracked keys that disappeared.
  // `inserted`: a tracked key that got its state in this step (after any eviction it caused).
  auto after_keyed_step = [&](bool may_evict, int inserted) {
    const KeyedLimiter::Stats st = keyed.stats();
    CHECK(st.memory_bytes <= max_bytes);
    CHECK(st.peak_memory_bytes <= max_bytes);
    CHECK(st.keys <= st.max_keys);
    CHECK(st.admitted + st.rejected == decisions);
    const bool forced = st.evictions_forced > last.evictions_forced;
    CHECK(may_evict || (!forced && st.evictions_idle == last.evictions_idle));
    // Per shard: the largest debt bucket among evicted tracked keys, the smallest among kept.
    int evicted_max[2] = {-1, -1};
    int kept_min[2] = {99, 99};
    std::vector<int> gone;
    for (int i = 0; i < kTracked; ++i) {
      Model& m = *models[i];
      const int shard = static_cast<int>(keyed.hash(names[i]) & (shards - 1));
      const bool has = keyed.contains(names[i]);
      if (m.idle(now)) {
        if (!has) m.clear();
        continue;
      }
      if (has) {
        if (i != inserted) kept_min[shard] = std::min(kept_min[shard], bucket_of(m.debt(now)));
      } else {
        CHECK(forced);  // a key that still owes permits left only by a forced eviction
        evicted_max[shard] = std::max(evicted_max[shard], bucket_of(m.debt(now)));
        gone.push_back(i);
      }
    }
    for (int s = 0; s < 2; ++s) CHECK(evicted_max[s] <= kept_min[s]);
    for (int i : gone) models[i]->clear();
    last = st;
  };

  while (in.remaining_bytes() >= 3) {
    const uint8_t op = in.ConsumeIntegral<uint8_t>() % 9;
    const uint16_t arg = in.ConsumeIntegral<uint16_t>();
    switch (op) {
      case 0: {  // advance: ns, us or ms scale
        static constexpr int64_t kScale[] = {1, 1000, 1'000'000, 1'000'000};
        int64_t d = static_cast<int64_t>(arg >> 2) * kScale[arg & 3];
        // The sliding window keeps window indices modulo 2^28 (documented): stay well within.
        if (algorithm == RateAlgorithm::sliding_window &&
            (now + d - start) / (interval_us * 1000) >= (int64_t{1} << 27)) {
          d = 0;
        }
        if (d > 0) granted_this_instant = 0;
        now += d;
        break;
      }
      case 1:
      case 2: {                                                    // token bucket
        const uint64_t n = arg % 5 == 4 ? tb_burst + 1 : arg % 5;  // 0..3, or too many
        const RateDecision d = bucket.try_acquire(TimePoint(Duration(now)), n);
        check_decision(d, bucket_model, now, n, tb_horizon);
        if (d.allowed && n > 0) {
          granted_this_instant += n;
          CHECK(granted_this_instant <= tb_burst);
          grants.emplace_back(now, n);
          uint64_t sum = 0;
          for (auto it = grants.rbegin(); it != grants.rend(); ++it) {
            sum += it->second;
            CHECK(sum <= tb_burst + static_cast<uint64_t>((now - it->first) / tb_interval));
          }
          if (grants.size() > 512) grants.erase(grants.begin(), grants.begin() + 256);
        }
        break;
      }
      case 3: {  // token bucket peek
        const RateDecision p = bucket.peek(TimePoint(Duration(now)));
        CHECK(p.remaining == bucket_model.remaining(now));
        CHECK(p.allowed == bucket_model.allowed_at(now, 1));
        break;
      }
      case 4:
      case 5: {  // a tracked key
        const int i = arg % kTracked;
        const uint64_t n = (arg >> 8) % 5 == 4 ? burst + 1 : (arg >> 8) % 5;
        const bool was_there = keyed.contains(names[i]);
        const RateDecision d = keyed.try_acquire(names[i], TimePoint(Duration(now)), n);
        ++decisions;
        // Evictions happen only when a new key is inserted, which starts fresh either way;
        // so the model can be checked first.
        check_decision(d, *models[i], now, n, keyed_horizon);
        after_keyed_step(true, was_there ? -1 : i);
        break;
      }
      case 6: {  // a never-seen key
        const RateDecision d =
            keyed.try_acquire("flood-" + std::to_string(flood++), TimePoint(Duration(now)), 1);
        ++decisions;
        CHECK(d.allowed);
        after_keyed_step(true, -1);
        break;
      }
      case 7: {  // peek or erase a tracked key
        const int i = arg % kTracked;
        if (arg & 0x8000) {
          // A key that still owes permits is present (reconciled after every step).
          const bool had = keyed.erase(names[i]);
          CHECK(had || models[i]->idle(now));
          models[i]->clear();
        } else {
          const RateDecision p = keyed.peek(names[i], TimePoint(Duration(now)));
          CHECK(p.remaining == models[i]->remaining(now));
          CHECK(p.allowed == models[i]->allowed_at(now, 1));
        }
        after_keyed_step(false, -1);
        break;
      }
      case 8: {  // sweep: only idle keys go
        keyed.sweep(TimePoint(Duration(now)));
        after_keyed_step(true, -1);
        CHECK(keyed.stats().evictions_forced == last.evictions_forced);
        break;
      }
    }
  }
  return 0;
}
