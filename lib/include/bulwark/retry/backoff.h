// Backoff: how long to wait before each retry.
//
// A Backoff turns a retry number into a delay. Five growth curves are offered, each bounded by
// a cap (`max`), and four ways of randomising ("jittering") the result so that many clients
// that failed together do not retry together:
//
//   kind          raw delay before retry n (n = 1 for the first retry)
//   constant      base
//   linear        base * n
//   exponential   base * multiplier^(n-1)
//   fibonacci     base * F(n), F = 1, 1, 2, 3, 5, 8, ...
//   decorrelated  random(base, min(max, 3 * previous)), previous = base for the first retry
//                 (the "decorrelated jitter" of the AWS architecture blog; it carries its own
//                 randomness, so `jitter` is ignored for this kind)
//
//   jitter        delay for a capped raw delay d = min(max, raw)
//   none          d
//   full          random(0, d)
//   equal         d/2 + random(0, d/2)
//   proportional  random(d * (1 - f), min(max, d * (1 + f))), f = jitter_fraction
//
// All random draws are uniform with inclusive bounds.
//
// The cap applies inside the random draw, never after it: the raw delay is capped first and
// the draw's upper bound never exceeds `max`. Capping after the draw would turn every delay
// that reaches the cap into exactly `max`, so clients at the cap would retry in lockstep.
//
// Cost: delay() is a table lookup plus one random draw (a few ns). The capped raw delays of the
// first kTableSize retries are computed once in the constructor; later retries are the cap (or,
// for curves that have not reached the cap by then, computed with saturating arithmetic).
// Nothing overflows, whatever the retry number or multiplier.
//
// Thread-safety: a Backoff is immutable after construction; delay() may be called from any
// number of threads at once, each with its own Random.
//
// Example:
//   bulwark::retry::Backoff backoff({.kind = BackoffKind::exponential,
//                                    .base = 25ms, .max = 250ms, .jitter = Jitter::full});
//   bulwark::Duration previous = bulwark::Duration::zero();
//   for (uint32_t retry = 1; retry <= 3; ++retry) {
//     previous = backoff.delay(retry, previous, rng);   // 0..25ms, 0..50ms, 0..100ms
//     clock.sleep_for(previous);
//     ...
//   }
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <string_view>

#include "bulwark/core/clock.h"
#include "bulwark/core/random.h"

namespace bulwark::retry {

enum class BackoffKind { constant, linear, exponential, fibonacci, decorrelated };
enum class Jitter { none, full, equal, proportional };

// Stable lower-case names ("exponential", "full"), as used in configuration files.
std::string_view to_string(BackoffKind kind) noexcept;
std::string_view to_string(Jitter jitter) noexcept;

struct BackoffOptions {
  BackoffKind kind = BackoffKind::exponential;
  // Delay of the first retry before jitter (and the lower bound of decorrelated). > 0.
  Duration base = std::chrono::milliseconds(25);
  // The cap: no delay ever exceeds it. >= base.
  Duration max = std::chrono::milliseconds(250);
  // Growth factor of exponential (ignored by the other kinds). >= 1.
  double multiplier = 2.0;
  Jitter jitter = Jitter::full;
  // proportional only: the delay is drawn from d * (1 ± jitter_fraction). In [0, 1].
  double jitter_fraction = 0.2;
};

class Backoff {
 public:
  // Number of retries whose capped raw delay is precomputed.
  static constexpr uint32_t kTableSize = 64;

  // Throws std::invalid_argument, naming the option, if base <= 0, max < base,
  // multiplier < 1 (or NaN), jitter_fraction outside [0, 1] (or NaN), or an enum is out of range.
  explicit Backoff(BackoffOptions options = {});

  // Delay before retry number `retry` (1 = first retry; 0 is treated as 1). `previous` is the
  // delay this function returned for retry - 1 (Duration::zero() for the first); only
  // decorrelated uses it, and clamps it into [base, max]. Always in [0, max].
  Duration delay(uint32_t retry, Duration previous, Random& rng) const noexcept;

  // The capped delay before jitter: min(max, raw(retry)). For decorrelated, the upper bound of
  // the first draw (min(max, 3 * base)). Deterministic; useful to explain a configuration.
  Duration capped_raw(uint32_t retry) const noexcept;

  const BackoffOptions& options() const noexcept { return options_; }

 private:
  Duration compute_raw(uint32_t retry) const noexcept;
  Duration apply_jitter(Duration d, Random& rng) const noexcept;

  BackoffOptions options_;
  // True when every retry from kTableSize on has the delay table_[kTableSize - 1] (the curve
  // reached the cap, or does not grow), so the slow path is never taken.
  bool flat_tail_ = true;
  // table_[n] = min(max, raw(n)) for 1 <= n < kTableSize; table_[0] = table_[1].
  std::array<Duration, kTableSize> table_{};
};

}  // namespace bulwark::retry
