// Time source for every libbulwark policy.
//
// Nothing in libbulwark reads std::chrono::steady_clock directly except SystemClock. Policies
// hold a `Clock&` (or take `now` as an argument on their hot path), so tests drive time with
// bulwark::testing::ManualClock and never sleep.
//
// Units: TimePoint and Duration are nanoseconds on the steady (monotonic) clock. Wall-clock time
// is never used for windows, timeouts or backoff.
//
// Thread-safety: implementations must make now() safe to call from any thread.
//
// Example:
//   bulwark::Clock& clock = bulwark::SystemClock::instance();
//   bulwark::TimePoint start = clock.now();
//   ... work ...
//   bulwark::Duration took = clock.now() - start;
#pragma once

#include <chrono>
#include <cstdint>

namespace bulwark {

using Duration = std::chrono::nanoseconds;
using TimePoint = std::chrono::time_point<std::chrono::steady_clock, Duration>;

// Largest representable instant; used as "no deadline".
inline constexpr TimePoint kTimePointMax = TimePoint::max();

class Clock {
 public:
  virtual ~Clock() = default;

  // Current instant on a monotonic clock. Never goes backwards.
  virtual TimePoint now() const noexcept = 0;

  // Blocks the calling thread for `d` as measured by this clock. Used only by the synchronous
  // adapters (retry backoff in Pipeline::execute). ManualClock advances itself instead of
  // blocking, which is what makes synchronous retry loops testable without sleeping.
  virtual void sleep_for(Duration d) = 0;
};

// The real monotonic clock. Stateless; one process-wide instance.
class SystemClock final : public Clock {
 public:
  static SystemClock& instance() noexcept;

  TimePoint now() const noexcept override {
    return std::chrono::time_point_cast<Duration>(std::chrono::steady_clock::now());
  }
  void sleep_for(Duration d) override;
};

// Helpers to write durations readably: 250ms, 5s are std::chrono literals already; these
// convert to the library's Duration without surprises.
template <class Rep, class Period>
constexpr Duration to_duration(std::chrono::duration<Rep, Period> d) noexcept {
  return std::chrono::duration_cast<Duration>(d);
}

// Saturating addition: t + d that clamps at kTimePointMax instead of overflowing (an
// "infinite" timeout plus now must stay infinite).
constexpr TimePoint saturating_add(TimePoint t, Duration d) noexcept {
  if (d.count() > 0 && t > kTimePointMax - d) return kTimePointMax;
  return t + d;
}

}  // namespace bulwark
