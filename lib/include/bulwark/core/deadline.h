// Deadline: an absolute instant by which a call must finish, as a value type.
//
// Deadlines propagate inward: a retry loop under a 2 s deadline gives each try
// min(per_try_timeout, remaining()), and nothing starts once remaining() is too small to be
// useful. Deadline::never() is the absence of a deadline; all arithmetic saturates, so
// never() stays never() whatever is added to it.
//
// Thread-safety: a value type; copies are independent.
//
// Example:
//   auto dl = bulwark::Deadline::after(clock.now(), 2s);
//   Duration per_try = dl.clamp(clock.now(), 500ms);   // <= 500ms, <= time left
//   if (dl.expired(clock.now())) return errc::deadline_exceeded;
#pragma once

#include <algorithm>

#include "bulwark/core/clock.h"

namespace bulwark {

class Deadline {
 public:
  // No deadline.
  constexpr Deadline() noexcept = default;
  static constexpr Deadline never() noexcept { return Deadline(); }
  static constexpr Deadline at(TimePoint t) noexcept { return Deadline(t); }
  // `now + timeout`, saturating. A negative timeout is treated as zero (already expired).
  static constexpr Deadline after(TimePoint now, Duration timeout) noexcept {
    return Deadline(saturating_add(now, std::max(timeout, Duration::zero())));
  }

  constexpr bool is_never() const noexcept { return at_ == kTimePointMax; }
  constexpr TimePoint time() const noexcept { return at_; }

  // Time left at `now`; zero once expired; Duration::max() for never().
  constexpr Duration remaining(TimePoint now) const noexcept {
    if (is_never()) return Duration::max();
    return at_ > now ? at_ - now : Duration::zero();
  }
  constexpr bool expired(TimePoint now) const noexcept { return !is_never() && now >= at_; }

  // min(timeout, remaining(now)): the timeout to give one step under this deadline.
  constexpr Duration clamp(TimePoint now, Duration timeout) const noexcept {
    return std::min(timeout, remaining(now));
  }

  // The earlier of two deadlines.
  friend constexpr Deadline earliest(Deadline a, Deadline b) noexcept {
    return a.at_ <= b.at_ ? a : b;
  }
  friend constexpr bool operator==(Deadline a, Deadline b) noexcept = default;

 private:
  constexpr explicit Deadline(TimePoint t) noexcept : at_(t) {}
  TimePoint at_ = kTimePointMax;
};

}  // namespace bulwark
