#include "bulwark/retry/backoff.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

namespace bulwark::retry {
namespace {

std::string ns_text(Duration d) { return std::to_string(d.count()) + "ns"; }

[[noreturn]] void invalid(const std::string& what) {
  throw std::invalid_argument("retry backoff: " + what);
}

// base * factor, rounded to whole nanoseconds and capped at `cap`, for factor >= 1 given as a
// double. Comparing in floating point first keeps the conversion back to int64 defined even for
// astronomically large (or infinite) factors.
Duration scaled_capped(Duration base, double factor, Duration cap) noexcept {
  const double v = static_cast<double>(base.count()) * factor;
  if (!(v < static_cast<double>(cap.count()))) return cap;  // also catches inf and NaN
  const auto r = static_cast<int64_t>(std::llround(v));
  return r >= cap.count() ? cap : Duration(r);
}

}  // namespace

std::string_view to_string(BackoffKind kind) noexcept {
  switch (kind) {
    case BackoffKind::constant:
      return "constant";
    case BackoffKind::linear:
      return "linear";
    case BackoffKind::exponential:
      return "exponential";
    case BackoffKind::fibonacci:
      return "fibonacci";
    case BackoffKind::decorrelated:
      return "decorrelated";
  }
  return "unknown";
}

std::string_view to_string(Jitter jitter) noexcept {
  switch (jitter) {
    case Jitter::none:
      return "none";
    case Jitter::full:
      return "full";
    case Jitter::equal:
      return "equal";
    case Jitter::proportional:
      return "proportional";
  }
  return "unknown";
}

Backoff::Backoff(BackoffOptions options) : options_(options) {
  const auto& o = options_;
  if (o.base <= Duration::zero()) invalid("base must be positive (got " + ns_text(o.base) + ")");
  if (o.max < o.base) {
    invalid("max (" + ns_text(o.max) + ") must not be below base (" + ns_text(o.base) + ")");
  }
  if (!(o.multiplier >= 1.0)) {
    invalid("multiplier must be >= 1 (got " + std::to_string(o.multiplier) + ")");
  }
  if (!(o.jitter_fraction >= 0.0 && o.jitter_fraction <= 1.0)) {
    invalid("jitter_fraction must be in [0, 1] (got " + std::to_string(o.jitter_fraction) + ")");
  }
  switch (o.kind) {
    case BackoffKind::constant:
    case BackoffKind::linear:
    case BackoffKind::exponential:
    case BackoffKind::fibonacci:
    case BackoffKind::decorrelated:
      break;
    default:
      invalid("unknown kind " + std::to_string(static_cast<int>(o.kind)));
  }
  switch (o.jitter) {
    case Jitter::none:
    case Jitter::full:
    case Jitter::equal:
    case Jitter::proportional:
      break;
    default:
      invalid("unknown jitter " + std::to_string(static_cast<int>(o.jitter)));
  }

  for (uint32_t n = 1; n < kTableSize; ++n) table_[n] = compute_raw(n);
  table_[0] = table_[1];
  // Every curve is non-decreasing in n and bounded by the cap, so once the last table entry is
  // the cap, or the curve does not grow at all, the tail is that entry for ever.
  const Duration last = table_[kTableSize - 1];
  flat_tail_ = last == o.max || o.kind == BackoffKind::constant ||
               o.kind == BackoffKind::decorrelated ||
               (o.kind == BackoffKind::exponential && o.multiplier == 1.0);
}

Duration Backoff::compute_raw(uint32_t retry) const noexcept {
  const auto& o = options_;
  const uint32_t n = retry == 0 ? 1 : retry;
  switch (o.kind) {
    case BackoffKind::constant:
      return o.base;
    case BackoffKind::linear:
      // base * n, saturating at the cap without forming a product that could overflow.
      if (o.base.count() > o.max.count() / static_cast<int64_t>(n)) return o.max;
      return std::min(o.max, o.base * static_cast<int64_t>(n));
    case BackoffKind::exponential:
      return scaled_capped(o.base, std::pow(o.multiplier, static_cast<double>(n - 1)), o.max);
    case BackoffKind::fibonacci: {
      // F(n) grows past any int64 nanosecond count within ~92 steps, so the loop is short. `a`
      // is checked before it is used; `b` is at most ~1.6 * a, so it cannot wrap, and a wrapped
      // `next` would only become `a` after a check that has already returned.
      uint64_t a = 1, b = 1;  // F(1), F(2)
      for (uint32_t i = 1; i < n; ++i) {
        if (a > static_cast<uint64_t>(o.max.count() / o.base.count())) return o.max;
        const uint64_t next = a + b;
        a = b;
        b = next;
      }
      if (a > static_cast<uint64_t>(o.max.count() / o.base.count())) return o.max;
      return std::min(o.max, o.base * static_cast<int64_t>(a));
    }
    case BackoffKind::decorrelated:
      // Upper bound of the first draw; the real delay depends on `previous`.
      return o.base.count() > o.max.count() / 3 ? o.max : std::min(o.max, o.base * 3);
  }
  return o.max;
}

Duration Backoff::capped_raw(uint32_t retry) const noexcept {
  if (retry < kTableSize) return table_[retry];
  return flat_tail_ ? table_[kTableSize - 1] : compute_raw(retry);
}

// `inline` so that it is inlined into delay() even in position-independent builds, where an
// out-of-line member could be interposed and is therefore not inlined.
inline Duration Backoff::apply_jitter(Duration d, Random& rng) const noexcept {
  // Every branch draws within [0, d] or [.., min(max, ..)], so the result never exceeds the cap
  // and capped delays stay spread out.
  switch (options_.jitter) {
    case Jitter::none:
      return d;
    case Jitter::full:
      return rng.uniform(Duration::zero(), d);
    case Jitter::equal: {
      const Duration half = d / 2;
      return half + rng.uniform(Duration::zero(), d - half);
    }
    case Jitter::proportional: {
      const double f = options_.jitter_fraction;
      // f < 1 keeps the product strictly below 2^63 even after rounding d to double.
      const Duration spread =
          f >= 1.0 ? d : Duration(static_cast<int64_t>(static_cast<double>(d.count()) * f));
      const Duration lo = d - spread;
      const Duration hi = d > options_.max - spread ? options_.max : d + spread;
      return rng.uniform(lo, hi);
    }
  }
  return d;
}

Duration Backoff::delay(uint32_t retry, Duration previous, Random& rng) const noexcept {
  const auto& o = options_;
  if (o.kind == BackoffKind::decorrelated) {
    const Duration prev = std::clamp(previous, o.base, o.max);
    const Duration hi = prev > o.max / 3 ? o.max : std::min(o.max, prev * 3);
    return rng.uniform(o.base, hi);
  }
  const Duration d = retry < kTableSize ? table_[retry]
                     : flat_tail_       ? table_[kTableSize - 1]
                                        : compute_raw(retry);
  return apply_jitter(d, rng);
}

}  // namespace bulwark::retry
