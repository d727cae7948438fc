// ManualClock: a Clock that only moves when a test moves it, with timers that fire as it does.
//
// Every libbulwark unit test runs on a ManualClock: no sleeps, fully deterministic. Advancing
// the clock fires the timers that fall due, in order of due time and, for equal due times, in
// the order they were scheduled; while a timer's callback runs, now() reads exactly its due
// time. Callbacks may schedule or cancel timers; a timer scheduled for a time already passed
// during an advance fires within the same advance.
//
// sleep_for(d) advances the clock by d, so synchronous retry loops that "sleep" between
// attempts complete instantly and the test can assert on exactly how long they slept.
//
// Thread-safety: now() is lock-free and safe from any thread. schedule/cancel/advance are
// thread-safe; callbacks run on the thread that advances, with no lock held.
//
// Example:
//   bulwark::testing::ManualClock clock;
//   bool fired = false;
//   clock.schedule_after(100ms, [&] { fired = true; });
//   clock.advance(99ms);   // fired == false
//   clock.advance(1ms);    // fired == true, clock.now() == start + 100ms
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <utility>

#include "bulwark/core/clock.h"
#include "bulwark/core/random.h"

namespace bulwark::testing {

class ManualClock final : public Clock {
 public:
  using TimerId = uint64_t;

  // Starts at an arbitrary non-zero instant so that `now - duration` never underflows.
  explicit ManualClock(TimePoint start = TimePoint(std::chrono::hours(24))) noexcept
      : now_(start.time_since_epoch().count()) {}

  TimePoint now() const noexcept override {
    return TimePoint(Duration(now_.load(std::memory_order_acquire)));
  }
  void sleep_for(Duration d) override { advance(d); }

  // Moves time forward by d (negative d is ignored), firing due timers in order.
  void advance(Duration d);
  // Moves time forward to t (no-op if t is not after now()).
  void advance_to(TimePoint t);

  TimerId schedule_at(TimePoint when, std::function<void()> fn);
  TimerId schedule_after(Duration d, std::function<void()> fn) {
    return schedule_at(saturating_add(now(), d), std::move(fn));
  }
  // Returns true if the timer was pending and is now cancelled.
  bool cancel(TimerId id);

  std::size_t pending_timers() const;
  std::optional<TimePoint> next_due() const;

 private:
  std::atomic<int64_t> now_;
  mutable std::mutex mu_;
  TimerId next_id_ = 1;
  // Keyed by (due, id): ids increase, so equal due times fire in scheduling order.
  std::map<std::pair<TimePoint, TimerId>, std::function<void()>> timers_;
};

// A deterministic Random for tests; the seed appears in failure messages via the test name.
inline Random seeded_random(uint64_t seed = 0x5eed) { return Random(seed); }

}  // namespace bulwark::testing
