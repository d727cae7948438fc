// The arithmetic of the three rate-limiting algorithms, as pure functions of one 64-bit state
// word and `now`. The single limiters (TokenBucket, Gcra, SlidingWindow) keep the word in an
// atomic and compare-and-swap it; KeyedLimiter keeps one word per key in its table, under the
// shard lock. Keeping the arithmetic in one place is what makes a keyed limiter decide exactly
// like a single one.
//
// Every kernel provides:
//   kFresh                   the word of a limiter that has never granted anything
//   decide(word, now, n, next)  the decision for n permits; when it is allowed, `next` is the
//                            new word (n == 0 is a query: allowed, `next` unchanged)
//   admits(word, now, n, next)  for n >= 1: decide(...).allowed and, when true, `next`; cheap
//   recovery(word, now)      time until the state is indistinguishable from kFresh (0: idle)
//   debt(word, now)          how far the state is from idle, in time at the limiter's average
//                            rate: what evicting the key would hand back. Ranks keys for
//                            forced eviction (least debt first).
//
// Internal header: not installed.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <limits>

#include "bulwark/limit/rate_limit.h"

namespace bulwark::limit::detail {

__extension__ using Int128 = __int128;
__extension__ using UInt128 = unsigned __int128;

inline constexpr int64_t kInt64Min = std::numeric_limits<int64_t>::min();

// floor(a / b) for b > 0 (C++ division truncates toward zero).
constexpr int64_t floor_div(int64_t a, int64_t b) noexcept {
  const int64_t q = a / b;
  return (a % b != 0 && a < 0) ? q - 1 : q;
}

constexpr int64_t ns(TimePoint t) noexcept { return t.time_since_epoch().count(); }

// max(0, a) / b as a count of whole permits (a is negative only for a `now` older than what
// was already recorded).
constexpr uint64_t whole(int64_t a, int64_t b) noexcept {
  return a > 0 ? static_cast<uint64_t>(a / b) : 0;
}

// ---------------------------------------------------------------------------------------------
// Token bucket. The word is the instant (ns) at which the bucket would have been empty: it
// holds min(burst, (now - word) / interval) tokens at `now`. Taking n tokens moves the word
// forward by n * interval; refilling is the passage of time, so no refill step is stored.
struct TokenBucketKernel {
  int64_t interval;  // ns per token, >= 1
  uint64_t burst;    // >= 1
  int64_t capacity;  // burst * interval, ns

  static constexpr uint64_t kFresh = static_cast<uint64_t>(kInt64Min);

  // Whether n >= 1 permits are granted, and the word after granting them (no division).
  bool admits(uint64_t word, int64_t now, uint64_t n, uint64_t& next) const noexcept {
    const int64_t empty_at = std::max(static_cast<int64_t>(word), now - capacity);
    next = static_cast<uint64_t>(empty_at + static_cast<int64_t>(n) * interval);
    return n <= burst && static_cast<int64_t>(next) <= now;
  }

  RateDecision decide(uint64_t word, int64_t now, uint64_t n, uint64_t& next) const noexcept {
    const int64_t empty_at = std::max(static_cast<int64_t>(word), now - capacity);
    RateDecision d;
    d.limit = burst;
    next = word;
    if (n > burst) {
      d.remaining = whole(now - empty_at, interval);
      d.reset = Duration(empty_at + capacity - now);
      d.retry_after = Duration::max();
      return d;
    }
    const int64_t after = empty_at + static_cast<int64_t>(n) * interval;
    if (after <= now) {
      d.allowed = true;
      if (n != 0) next = static_cast<uint64_t>(after);
      d.remaining = whole(now - after, interval);
      d.reset = Duration(after + capacity - now);
    } else {
      d.remaining = whole(now - empty_at, interval);
      d.reset = Duration(empty_at + capacity - now);
      d.retry_after = Duration(after - now);
    }
    return d;
  }

  Duration recovery(uint64_t word, int64_t now) const noexcept {
    const int64_t full_at =
        static_cast<int64_t>(word) == kInt64Min ? kInt64Min : static_cast<int64_t>(word) + capacity;
    return Duration(full_at > now ? full_at - now : 0);
  }
  Duration debt(uint64_t word, int64_t now) const noexcept { return recovery(word, now); }
};

// ---------------------------------------------------------------------------------------------
// GCRA. The word is the theoretical arrival time (TAT) in whole microseconds: the instant at
// which the limiter is fully recovered. With T = interval (us) and tau = (burst - 1) * T, a
// request for n permits at now_us = floor(now / 1 us) is allowed iff
//     new_tat = max(tat, now_us) + n * T   and   new_tat - now_us <= tau + T = burst * T,
// and then TAT becomes new_tat. Exactly what the Redis script stores and computes.
struct GcraKernel {
  int64_t interval_us;  // T, >= 1
  uint64_t burst;       // >= 1
  int64_t capacity_us;  // burst * T = tau + T

  static constexpr uint64_t kFresh = static_cast<uint64_t>(kInt64Min);
  static constexpr int64_t kNsPerUs = 1000;

  bool admits(uint64_t word, int64_t now, uint64_t n, uint64_t& next) const noexcept {
    const int64_t now_us = floor_div(now, kNsPerUs);
    const int64_t new_tat =
        std::max(static_cast<int64_t>(word), now_us) + static_cast<int64_t>(n) * interval_us;
    next = static_cast<uint64_t>(new_tat);
    return n <= burst && new_tat - now_us <= capacity_us;
  }

  RateDecision decide(uint64_t word, int64_t now, uint64_t n, uint64_t& next) const noexcept {
    const int64_t now_us = floor_div(now, kNsPerUs);
    const int64_t tat = std::max(static_cast<int64_t>(word), now_us);
    RateDecision d;
    d.limit = burst;
    next = word;
    // Reset is measured to the exact nanosecond at which TAT is reached.
    const auto until = [now](int64_t at_us) {
      const int64_t t = at_us * kNsPerUs - now;
      return Duration(t > 0 ? t : 0);
    };
    if (n > burst) {
      d.remaining = whole(now_us + capacity_us - tat, interval_us);
      d.reset = until(tat);
      d.retry_after = Duration::max();
      return d;
    }
    const int64_t new_tat = tat + static_cast<int64_t>(n) * interval_us;
    if (new_tat - now_us <= capacity_us) {
      d.allowed = true;
      if (n != 0) next = static_cast<uint64_t>(new_tat);
      d.remaining = whole(now_us + capacity_us - new_tat, interval_us);
      d.reset = until(new_tat);
    } else {
      d.remaining = whole(now_us + capacity_us - tat, interval_us);
      d.reset = until(tat);
      // Allowed from the first microsecond at which new_tat - now_us <= capacity.
      d.retry_after = until(new_tat - capacity_us);
    }
    return d;
  }

  Duration recovery(uint64_t word, int64_t now) const noexcept {
    const int64_t tat = static_cast<int64_t>(word);
    if (tat == kInt64Min) return Duration::zero();
    const int64_t t = tat * kNsPerUs - now;
    return Duration(t > 0 ? t : 0);
  }
  Duration debt(uint64_t word, int64_t now) const noexcept { return recovery(word, now); }
};

// ---------------------------------------------------------------------------------------------
// Sliding-window counter. Windows are [k*W, (k+1)*W) on the steady clock. The word packs the
// index of the window it describes (low 24 bits of k), the count of the window before it and
// the count of that window:   [ index:28 | previous:18 | current:18 ].
// At elapsed time e into window k, the estimate of permits granted in the last W is
//     previous * (W - e) / W + current
// and n permits are allowed iff previous * (W - e) + (current + n) * W <= limit * W, evaluated
// exactly in 128-bit integers (no rounding, no floating point).
struct SlidingWindowKernel {
  int64_t window;  // W, ns, >= 1
  uint64_t limit;  // <= kMaxLimit

  static constexpr int kCountBits = 18;
  static constexpr int kIndexBits = 28;
  static constexpr uint64_t kMaxLimit = (uint64_t{1} << kCountBits) - 1;
  static constexpr uint64_t kCountMask = kMaxLimit;
  static constexpr uint64_t kIndexMask = (uint64_t{1} << kIndexBits) - 1;
  static constexpr uint64_t kFresh = 0;

  static constexpr uint64_t pack(uint64_t index, uint64_t prev, uint64_t cur) noexcept {
    return ((index & kIndexMask) << (2 * kCountBits)) | (prev << kCountBits) | cur;
  }

  // The counts that apply at `now`: the window `now` falls in, unless the word describes a
  // later window (a `now` older than what was already recorded), in which case the decision is
  // taken at the start of that later window, the most conservative instant that is consistent
  // with what was recorded. `at` is the instant the decision is taken at.
  struct View {
    int64_t start;  // start of the window the counts describe, ns
    int64_t at;     // >= now
    uint64_t prev;
    uint64_t cur;
  };

  View view(uint64_t word, int64_t now) const noexcept {
    const int64_t k = floor_div(now, window);
    const uint64_t index = static_cast<uint64_t>(k) & kIndexMask;
    const uint64_t stored = word >> (2 * kCountBits);
    const uint64_t prev = (word >> kCountBits) & kCountMask;
    const uint64_t cur = word & kCountMask;
    const uint64_t ahead = (index - stored) & kIndexMask;  // windows from stored to now's
    const int64_t start = k * window;
    if (prev == 0 && cur == 0) return {start, now, 0, 0};
    if (ahead == 0) return {start, now, prev, cur};
    if (ahead == 1) return {start, now, cur, 0};
    if (ahead >= (uint64_t{1} << (kIndexBits - 1))) {
      // The word is (kIndexMask + 1 - ahead) windows in the future.
      const int64_t later = start + static_cast<int64_t>((kIndexMask + 1) - ahead) * window;
      return {later, later, prev, cur};
    }
    return {start, now, 0, 0};
  }

  // Largest m with prev * (W - e) + (cur + m) * W <= limit * W (0 if none).
  uint64_t room(const View& v) const noexcept {
    const int64_t e = v.at - v.start;
    const Int128 budget = static_cast<Int128>(limit) * window -
                          static_cast<Int128>(v.prev) * (window - e);  // >= 0: prev <= limit
    const uint64_t whole = static_cast<uint64_t>(budget / window);
    return whole > v.cur ? whole - v.cur : 0;
  }

  // Time from v.at until n permits fit, given n <= limit and that they do not fit now.
  Duration wait_for(const View& v, uint64_t n) const noexcept {
    const int64_t e = v.at - v.start;
    if (v.cur + n <= limit) {
      // Within this window, once prev * (W - e') <= (limit - cur - n) * W.
      const Int128 spare = static_cast<Int128>(limit - v.cur - n) * window;
      const int64_t e_min = window - static_cast<int64_t>(spare / v.prev);
      return Duration(e_min - e);
    }
    // In the next window, where prev' = cur and cur' = 0: cur * (W - e') <= (limit - n) * W.
    const Int128 spare = static_cast<Int128>(limit - n) * window;
    const int64_t e_min = window - static_cast<int64_t>(spare / v.cur);
    return Duration((window - e) + e_min);
  }

  Duration full_in(const View& v) const noexcept {
    const int64_t e = v.at - v.start;
    if (v.cur > 0) return Duration((window - e) + window);
    if (v.prev > 0) return Duration(window - e);
    return Duration::zero();
  }

  bool admits(uint64_t word, int64_t now, uint64_t n, uint64_t& next) const noexcept {
    const View v = view(word, now);
    const int64_t e = v.at - v.start;
    if (n > limit ||
        static_cast<Int128>(v.prev) * (window - e) + static_cast<Int128>(v.cur + n) * window >
            static_cast<Int128>(limit) * window) {
      return false;
    }
    next = pack(static_cast<uint64_t>(floor_div(v.start, window)), v.prev, v.cur + n);
    return true;
  }

  RateDecision decide(uint64_t word, int64_t now, uint64_t n, uint64_t& next) const noexcept {
    const View v = view(word, now);
    const Duration lag(v.at - now);  // > 0 only for a `now` older than the recorded window
    const uint64_t before = room(v);
    RateDecision d;
    d.limit = limit;
    next = word;
    if (n > limit) {
      d.remaining = before;
      d.reset = lag + full_in(v);
      d.retry_after = Duration::max();
      return d;
    }
    if (n <= before) {
      d.allowed = true;
      View after = v;
      after.cur += n;
      if (n != 0) {
        next = pack(static_cast<uint64_t>(floor_div(v.start, window)), after.prev, after.cur);
      }
      d.remaining = before - n;
      d.reset = lag + full_in(after);
      return d;
    }
    d.remaining = before;
    d.reset = lag + full_in(v);
    d.retry_after = lag + wait_for(v, n);
    return d;
  }

  Duration recovery(uint64_t word, int64_t now) const noexcept {
    const View v = view(word, now);
    return Duration(v.at - now) + full_in(v);
  }
  // The estimate in units of the time it takes to grant that many at limit / W: unlike
  // recovery() (always one or two window ends away), it grows with the permits taken.
  Duration debt(uint64_t word, int64_t now) const noexcept {
    const View v = view(word, now);
    const int64_t e = v.at - v.start;
    const Int128 weighted =
        static_cast<Int128>(v.prev) * (window - e) + static_cast<Int128>(v.cur) * window;
    return Duration(static_cast<int64_t>(weighted / static_cast<Int128>(limit)));
  }
};

}  // namespace bulwark::limit::detail

namespace bulwark::limit::detail {

// Validation shared by the constructors; each throws std::invalid_argument whose message
// starts with `what` (e.g. "TokenBucketOptions.rate").
// Returns rate.interval() in ns after checking count > 0 and finite, period > 0 and an
// interval of at least `min_interval_ns` after rounding.
int64_t checked_interval_ns(const Rate& rate, const char* what, int64_t min_interval_ns = 1);
// Checks 1 <= burst and burst * interval <= max_product.
void check_burst(uint64_t burst, int64_t interval, int64_t max_product, const char* what);

}  // namespace bulwark::limit::detail

namespace bulwark::limit::detail {

// What a request for one permit would get, without taking it: `remaining` and `reset` describe
// the state as it is (nothing deducted); `allowed` and `retry_after` are those of one permit.
template <class Kernel>
RateDecision peek_one(const Kernel& k, uint64_t word, int64_t now) noexcept {
  uint64_t next;
  RateDecision d = k.decide(word, now, 0, next);
  if (d.remaining == 0) {
    const RateDecision one = k.decide(word, now, 1, next);
    d.allowed = one.allowed;
    d.retry_after = one.retry_after;
  }
  return d;
}

// The compare-and-swap loop shared by the single (unkeyed) limiters. A refusal writes nothing.
template <class Kernel>
RateDecision acquire_atomic(const Kernel& k, std::atomic<uint64_t>& state, int64_t now,
                            uint64_t n) noexcept {
  uint64_t word = state.load(std::memory_order_acquire);
  uint64_t next;
  if (n == 0) return k.decide(word, now, 0, next);
  // Only the cheap admission test runs before the compare-and-swap; the decision's fields
  // (which divide) are computed from the word the swap succeeded on, after it.
  while (k.admits(word, now, n, next)) {
    // On failure `word` is reloaded and admission is tested again on the fresh state.
    if (state.compare_exchange_weak(word, next, std::memory_order_acq_rel,
                                    std::memory_order_acquire)) {
      break;
    }
  }
  return k.decide(word, now, n, next);
}

}  // namespace bulwark::limit::detail
