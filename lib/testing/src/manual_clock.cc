#include "bulwark/testing/manual_clock.h"

namespace bulwark::testing {

void ManualClock::advance(Duration d) {
  if (d.count() <= 0) return;
  advance_to(saturating_add(now(), d));
}

void ManualClock::advance_to(TimePoint target) {
  for (;;) {
    std::function<void()> fn;
    {
      std::lock_guard lock(mu_);
      if (timers_.empty() || timers_.begin()->first.first > target) break;
      auto it = timers_.begin();
      const TimePoint due = it->first.first;
      fn = std::move(it->second);
      timers_.erase(it);
      // Time never goes backwards: a timer scheduled in the past fires "now".
      if (due > now()) now_.store(due.time_since_epoch().count(), std::memory_order_release);
    }
    fn();  // no lock held: the callback may schedule, cancel or read the clock
  }
  if (target > now()) now_.store(target.time_since_epoch().count(), std::memory_order_release);
}

ManualClock::TimerId ManualClock::schedule_at(TimePoint when, std::function<void()> fn) {
  std::lock_guard lock(mu_);
  const TimerId id = next_id_++;
  timers_.emplace(std::make_pair(when, id), std::move(fn));
  return id;
}

bool ManualClock::cancel(TimerId id) {
  std::lock_guard lock(mu_);
  for (auto it = timers_.begin(); it != timers_.end(); ++it) {
    if (it->first.second == id) {
      timers_.erase(it);
      return true;
    }
  }
  return false;
}

std::size_t ManualClock::pending_timers() const {
  std::lock_guard lock(mu_);
  return timers_.size();
}

std::optional<TimePoint> ManualClock::next_due() const {
  std::lock_guard lock(mu_);
  if (timers_.empty()) return std::nullopt;
  return timers_.begin()->first.first;
}

}  // namespace bulwark::testing
