#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

#include "bulwark/limit/bulkhead.h"

namespace bulwark::limit {

namespace {

[[noreturn]] void invalid(const char* field, const char* what) {
  throw std::invalid_argument(std::string("BulkheadOptions.") + field + ": " + what);
}

// The throttle interval 1/r in nanoseconds, at least 1 ns.
Duration interval_for(double starts_per_second) {
  const double ns = 1e9 / starts_per_second;
  return Duration(std::max<int64_t>(1, static_cast<int64_t>(std::llround(ns))));
}

}  // namespace

void validate(const BulkheadOptions& o) {
  if (o.max_concurrent > kMaxBulkheadLimit) invalid("max_concurrent", "must be <= 2^31 - 1");
  if (o.max_queue > kMaxBulkheadQueue) invalid("max_queue", "must be <= 2^24");
  if (o.max_wait < Duration::zero()) invalid("max_wait", "must be >= 0");
  if (!(o.starts_per_second >= 0) || !std::isfinite(o.starts_per_second)) {
    invalid("starts_per_second", "must be a finite number >= 0");
  }
  if (o.starts_per_second > 0 && o.starts_per_second > 1e9) {
    invalid("starts_per_second", "must be <= 1e9 (one start per nanosecond)");
  }
  if (o.throttle_burst < 1) invalid("throttle_burst", "must be >= 1");
  if (!(o.hold_time_alpha > 0 && o.hold_time_alpha <= 1)) {
    invalid("hold_time_alpha", "must be in (0, 1]");
  }
  if (o.initial_hold_time < Duration::zero()) invalid("initial_hold_time", "must be >= 0");
}

BulkheadCore::BulkheadCore(const BulkheadOptions& options)
    : options_((validate(options), options)), limit_(options.max_concurrent) {
  if (options.starts_per_second > 0) {
    interval_ = interval_for(options.starts_per_second);
    tolerance_ = interval_ * static_cast<int64_t>(options.throttle_burst - 1);
  }
}

// ---------------------------------------------------------------------------------------------
// Throttle (GCRA)

TimePoint BulkheadCore::throttle_start(TimePoint now) const noexcept {
  if (!throttled()) return now;
  return std::max(now, tat_ - tolerance_);
}

void BulkheadCore::throttle_commit(TimePoint now) noexcept {
  if (throttled()) tat_ = std::max(tat_, now) + interval_;
}

// ---------------------------------------------------------------------------------------------
// Decisions

BulkheadCore::Decision BulkheadCore::try_acquire(TimePoint now, int priority, Deadline deadline,
                                                 bool may_queue) {
  Decision d;
  d.changes = expire(now);

  if (limit_ == 0) {
    d.reason = errc::rejected;
    return d;
  }

  // The longest this call may wait, for a queue slot or for a throttled start.
  const Deadline wait_deadline =
      may_queue ? earliest(deadline, options_.max_wait == Duration::max()
                                         ? Deadline::never()
                                         : Deadline::after(now, options_.max_wait))
                : Deadline::at(now);

  if (in_flight_ < limit_) {
    // By the invariant the queue is empty: nobody is passed over.
    const TimePoint start = throttle_start(now);
    // Like a queued wait, a throttled wait must end strictly before its deadline.
    if (start > now && start >= wait_deadline.time()) {
      d.reason = errc::throttled;
      d.retry_after = start - now;
      return d;
    }
    throttle_commit(now);
    ++in_flight_;
    d.kind = Kind::granted;
    d.start_at = start;
    d.in_flight = in_flight_;
    return d;
  }

  const uint64_t position = position_for(priority);
  if (!may_queue || options_.max_queue == 0) {
    d.reason = errc::queue_full;
    d.retry_after = estimate_for_position(now, 1);
    return d;
  }
  if (wait_deadline.expired(now)) {
    d.reason = errc::wait_timeout;
    d.retry_after = estimate_for_position(now, 1);
    return d;
  }
  if (entries_.size() >= options_.max_queue) {
    // The victim is the newest waiter of the lowest priority: the last one in queue order.
    const auto victim = std::prev(order_.end());
    if (!options_.displace_lower_priority || victim->first >= priority) {
      d.reason = errc::queue_full;
      d.retry_after = estimate_for_position(now, position);
      return d;
    }
    const TicketId id = victim->second;
    remove(id, entries_.at(id));
    d.changes.refused.push_back({id, errc::queue_full});
  }

  const TicketId id = next_ticket_++;
  entries_.emplace(id, Entry{priority, wait_deadline});
  order_.emplace(priority, id);
  if (!wait_deadline.is_never()) by_deadline_.emplace(wait_deadline.time(), id);
  ++per_priority_[priority];

  d.kind = Kind::queued;
  d.ticket = id;
  d.deadline = wait_deadline;
  d.estimated_wait = estimate_for_position(now, position);
  return d;
}

BulkheadCore::Changes BulkheadCore::release(TimePoint now) {
  if (in_flight_ > 0) --in_flight_;
  Changes changes = expire(now);
  grant_waiters(now, changes);
  return changes;
}

BulkheadCore::Changes BulkheadCore::expire(TimePoint now) {
  Changes changes;
  while (!by_deadline_.empty() && by_deadline_.begin()->first <= now) {
    const TicketId id = by_deadline_.begin()->second;
    remove(id, entries_.at(id));
    changes.refused.push_back({id, errc::wait_timeout});
  }
  return changes;
}

bool BulkheadCore::cancel(TicketId ticket) {
  const auto it = entries_.find(ticket);
  if (it == entries_.end()) return false;
  remove(ticket, it->second);
  return true;
}

BulkheadCore::Changes BulkheadCore::set_limit(TimePoint now, uint32_t limit) {
  limit_ = std::min(limit, kMaxBulkheadLimit);
  Changes changes = expire(now);
  grant_waiters(now, changes);
  return changes;
}

void BulkheadCore::grant_waiters(TimePoint now, Changes& changes) {
  while (in_flight_ < limit_ && !order_.empty()) {
    const TicketId id = order_.begin()->second;
    const Entry entry = entries_.at(id);
    remove(id, entry);
    const TimePoint start = throttle_start(now);
    if (start > now && !entry.deadline.is_never() && start >= entry.deadline.time()) {
      // Its throttled start would come at or after its deadline: waiting on is pointless.
      changes.refused.push_back({id, errc::wait_timeout});
      continue;
    }
    throttle_commit(now);
    ++in_flight_;
    changes.granted.push_back({id, start, in_flight_});
  }
}

void BulkheadCore::remove(TicketId ticket, const Entry& entry) {
  order_.erase({entry.priority, ticket});
  if (!entry.deadline.is_never()) by_deadline_.erase({entry.deadline.time(), ticket});
  const auto count = per_priority_.find(entry.priority);
  if (count != per_priority_.end() && --count->second == 0) per_priority_.erase(count);
  entries_.erase(ticket);  // last: `entry` may refer into entries_
}

std::optional<TimePoint> BulkheadCore::next_deadline() const {
  if (by_deadline_.empty()) return std::nullopt;
  return by_deadline_.begin()->first;
}

// ---------------------------------------------------------------------------------------------
// Estimates

void BulkheadCore::observe_hold(Duration held) noexcept {
  std::atomic<int64_t>& cell = hold_[bulwark::detail::this_thread_stripe() % hold_.size()].ewma_ns;
  const int64_t sample = std::max<int64_t>(0, held.count());
  int64_t old = cell.load(std::memory_order_relaxed);
  if (old < 0)
    old =
        options_.initial_hold_time > Duration::zero() ? options_.initial_hold_time.count() : sample;
  const int64_t next =
      old + static_cast<int64_t>(options_.hold_time_alpha * static_cast<double>(sample - old));
  // Skipping a store that changes nothing keeps the line shared when the estimate is steady.
  if (next != cell.load(std::memory_order_relaxed)) cell.store(next, std::memory_order_relaxed);
}

Duration BulkheadCore::hold_estimate() const noexcept {
  double sum = 0;  // double: no overflow whatever the hold times
  int cells = 0;
  for (const HoldCell& c : hold_) {
    const int64_t v = c.ewma_ns.load(std::memory_order_relaxed);
    if (v >= 0) {
      sum += static_cast<double>(v);
      ++cells;
    }
  }
  if (cells == 0) return options_.initial_hold_time;
  return Duration(static_cast<int64_t>(sum / cells));
}

uint64_t BulkheadCore::position_for(int priority) const {
  uint64_t ahead = 0;
  for (const auto& [p, count] : per_priority_) {
    if (p < priority) break;  // sorted highest first
    ahead += count;
  }
  return ahead + 1;
}

Duration BulkheadCore::estimate_for_position(TimePoint now, uint64_t position) const {
  if (limit_ == 0) return Duration::max();
  Duration concurrency{};
  const uint64_t need = static_cast<uint64_t>(in_flight_) + position;
  if (need > limit_) {
    const double releases = static_cast<double>(need - limit_);
    const double ns =
        releases * static_cast<double>(hold_estimate().count()) / static_cast<double>(limit_);
    concurrency = ns >= 9e18 ? Duration::max() : Duration(static_cast<int64_t>(ns));
  }
  Duration throttle{};
  if (throttled()) {
    const double ns = static_cast<double>((throttle_start(now) - now).count()) +
                      static_cast<double>(position - 1) * static_cast<double>(interval_.count());
    throttle = ns >= 9e18 ? Duration::max() : Duration(static_cast<int64_t>(ns));
  }
  return std::max(concurrency, throttle);
}

Duration BulkheadCore::estimated_wait(TimePoint now, int priority) const {
  if (in_flight_ < limit_) return estimate_for_position(now, 1);  // throttle part only
  return estimate_for_position(now, position_for(priority));
}

Duration BulkheadCore::estimated_wait_of(TimePoint now, TicketId ticket) const {
  const auto it = entries_.find(ticket);
  if (it == entries_.end()) return Duration::zero();
  // Position: everyone of a higher priority, plus the older ones of the same priority.
  uint64_t position = 1;
  for (const auto& [p, id] : order_) {
    if (id == ticket) break;
    ++position;
  }
  return estimate_for_position(now, position);
}

}  // namespace bulwark::limit
