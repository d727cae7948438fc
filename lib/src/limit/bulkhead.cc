#include "bulwark/limit/bulkhead.h"

#include <condition_variable>

namespace bulwark::limit {

namespace detail {

// The shared state behind a Ticket. The bulkhead resolves it under its mutex; the owner reads
// it lock-free once `state` has left `waiting` (the fields below are written before `state`
// is stored with release order).
struct TicketNode {
  Bulkhead* owner = nullptr;
  BulkheadCore::TicketId id = 0;
  int priority = 0;
  Deadline deadline;
  std::atomic<Ticket::State> state{Ticket::State::waiting};
  errc reason{};
  TimePoint start_at{};
  uint32_t in_flight = 0;
  std::function<void()> on_resolved;  // guarded by owner->mu_
};

}  // namespace detail

namespace {

using State = Ticket::State;

constexpr uint64_t kInFlightMask = 0xffff'ffffULL;
constexpr int kLimitShift = 32;
constexpr uint64_t kLimitMask = 0x7fff'ffffULL;
constexpr uint64_t kSlowBit = 1ULL << 63;

constexpr uint32_t in_flight_of(uint64_t w) noexcept {
  return static_cast<uint32_t>(w & kInFlightMask);
}
constexpr uint32_t limit_of(uint64_t w) noexcept {
  return static_cast<uint32_t>((w >> kLimitShift) & kLimitMask);
}
constexpr uint64_t pack(uint32_t in_flight, uint32_t limit, bool slow) noexcept {
  return static_cast<uint64_t>(in_flight) | (static_cast<uint64_t>(limit) << kLimitShift) |
         (slow ? kSlowBit : 0);
}

}  // namespace

struct Bulkhead::Wake {
  std::shared_ptr<detail::TicketNode> node;
  std::function<void()> fn;
};

// ---------------------------------------------------------------------------------------------
// Permit

void Permit::release(TimePoint now) noexcept {
  Bulkhead* owner = std::exchange(owner_, nullptr);
  if (owner != nullptr) {
    owner->release_permit(now, now > start_ ? now - start_ : Duration::zero(), true);
  }
}

// ---------------------------------------------------------------------------------------------
// Ticket

Ticket::State Ticket::state() const noexcept {
  return node_ ? node_->state.load(std::memory_order_acquire) : State::withdrawn;
}

errc Ticket::reason() const noexcept {
  return node_ && state() == State::refused ? node_->reason : errc{};
}

int Ticket::priority() const noexcept { return node_ ? node_->priority : 0; }

Deadline Ticket::deadline() const noexcept { return node_ ? node_->deadline : Deadline(); }

TimePoint Ticket::start_at() const noexcept {
  if (!node_) return {};
  const State s = state();
  return s == State::granted || s == State::taken || s == State::released ? node_->start_at
                                                                          : TimePoint{};
}

void Ticket::on_resolved(std::function<void()> fn) const {
  if (!node_) return;
  // Only a waiting ticket needs its bulkhead (which may be gone once it refused every waiter
  // in its destructor).
  if (node_->state.load(std::memory_order_acquire) == State::waiting) {
    std::lock_guard lock(node_->owner->mu_);
    if (node_->state.load(std::memory_order_relaxed) == State::waiting) {
      node_->on_resolved = std::move(fn);
      return;
    }
  }
  const State s = state();
  if (s != State::withdrawn && fn) fn();
}

Result<Permit> Ticket::take() const {
  if (!node_) return make_error_code(errc::cancelled);
  State s = node_->state.load(std::memory_order_acquire);
  if (s == State::waiting) {
    if (node_->owner->withdraw(*node_)) return make_error_code(errc::wait_timeout);
    s = node_->state.load(std::memory_order_acquire);  // resolved meanwhile
  }
  switch (s) {
    case State::granted:
      if (node_->state.compare_exchange_strong(s, State::taken, std::memory_order_acq_rel)) {
        return Permit(node_->owner, node_->start_at, node_->in_flight);
      }
      return make_error_code(errc::cancelled);  // a concurrent cancel() released it
    case State::refused:
      return make_error_code(node_->reason);
    case State::withdrawn:
      return make_error_code(errc::wait_timeout);
    default:
      return make_error_code(errc::cancelled);
  }
}

bool Ticket::withdraw() const {
  return node_ && node_->state.load(std::memory_order_acquire) == State::waiting &&
         node_->owner->withdraw(*node_);
}

bool Ticket::cancel() const {
  if (!node_) return false;
  State s = node_->state.load(std::memory_order_acquire);
  if (s == State::waiting) {
    if (node_->owner->withdraw(*node_)) return true;
    s = node_->state.load(std::memory_order_acquire);
  }
  if (s == State::granted &&
      node_->state.compare_exchange_strong(s, State::released, std::memory_order_acq_rel)) {
    Bulkhead* owner = node_->owner;
    // The holder never started: no hold-time sample.
    owner->release_permit(owner->clock().now(), Duration::zero(), false);
    return true;
  }
  return false;
}

// ---------------------------------------------------------------------------------------------
// Bulkhead

Bulkhead::Bulkhead(std::string name, BulkheadOptions options, Clock& clock)
    : name_(std::move(name)),
      clock_(clock),
      lock_free_(options.starts_per_second <= 0),
      word_(pack(0, options.max_concurrent, options.starts_per_second > 0)),
      core_(options) {}

Bulkhead::~Bulkhead() {
  // Wake every waiter with a refusal so that no thread or coroutine waits forever on a bulkhead
  // that is gone. (Permits and tickets must not be used after this; see the header.)
  std::vector<Wake> wakes;
  {
    std::lock_guard lock(mu_);
    for (auto& [id, node] : waiting_) {
      node->reason = errc::rejected;
      node->state.store(State::refused, std::memory_order_release);
      std::function<void()> fn = std::move(node->on_resolved);
      wakes.push_back({node, std::move(fn)});
    }
    waiting_.clear();
  }
  run(wakes);
}

Bulkhead::Acquisition Bulkhead::try_acquire(TimePoint now, int priority, Deadline deadline) {
  if (lock_free_) {
    uint64_t w = word_.load(std::memory_order_relaxed);
    while ((w & kSlowBit) == 0) {
      const uint32_t in_flight = in_flight_of(w);
      const uint32_t limit = limit_of(w);
      if (in_flight < limit) {
        if (word_.compare_exchange_weak(w, w + 1, std::memory_order_acq_rel,
                                        std::memory_order_relaxed)) {
          granted_.add();
          Acquisition a;
          a.status = Status::granted;
          a.permit = Permit(this, now, in_flight + 1);
          return a;
        }
        continue;
      }
      // Full and nobody waits. Refusals that need no queue are decided here, without the lock.
      if (limit == 0 || core_.options().max_queue == 0) {
        Acquisition a;
        if (limit == 0) {
          rejected_closed_.add();
          a.reason = errc::rejected;
        } else {
          rejected_queue_full_.add();
          a.reason = errc::queue_full;
          // Position 1 needs in_flight - limit + 1 releases (see BulkheadCore's estimate).
          a.retry_after = core_.hold_estimate() * (in_flight - limit + 1) / limit;
        }
        return a;
      }
      break;  // must queue: the slow path
    }
  }
  return acquire_slow(now, priority, deadline, true);
}

Result<Permit> Bulkhead::try_acquire_now(TimePoint now, int priority) {
  if (lock_free_) {
    uint64_t w = word_.load(std::memory_order_relaxed);
    while ((w & kSlowBit) == 0) {
      const uint32_t in_flight = in_flight_of(w);
      const uint32_t limit = limit_of(w);
      if (in_flight >= limit) {
        if (limit == 0) {
          rejected_closed_.add();
          return make_error_code(errc::rejected);
        }
        rejected_queue_full_.add();
        return make_error_code(errc::queue_full);
      }
      if (word_.compare_exchange_weak(w, w + 1, std::memory_order_acq_rel,
                                      std::memory_order_relaxed)) {
        granted_.add();
        return Permit(this, now, in_flight + 1);
      }
    }
  }
  Acquisition a = acquire_slow(now, priority, Deadline::never(), false);
  if (a.status == Status::granted) return std::move(a.permit);
  return make_error_code(a.reason);
}

Bulkhead::Acquisition Bulkhead::acquire_slow(TimePoint now, int priority, Deadline deadline,
                                             bool may_queue) {
  Acquisition a;
  std::vector<Wake> wakes;
  {
    std::lock_guard lock(mu_);
    enter_slow_locked();
    BulkheadCore::Decision d = core_.try_acquire(now, priority, deadline, may_queue);
    apply_locked(d.changes, wakes);
    switch (d.kind) {
      case BulkheadCore::Kind::granted:
        granted_.add();
        a.status = Status::granted;
        a.permit = Permit(this, d.start_at, d.in_flight);
        break;
      case BulkheadCore::Kind::queued: {
        auto node = std::make_shared<detail::TicketNode>();
        node->owner = this;
        node->id = d.ticket;
        node->priority = priority;
        node->deadline = d.deadline;
        waiting_.emplace(d.ticket, node);
        ++queued_;
        a.status = Status::queued;
        a.ticket = Ticket(std::move(node));
        a.estimated_wait = d.estimated_wait;
        break;
      }
      case BulkheadCore::Kind::rejected:
        a.reason = d.reason;
        a.retry_after = d.retry_after;
        switch (d.reason) {
          case errc::queue_full:
            rejected_queue_full_.add();
            break;
          case errc::throttled:
            ++rejected_throttled_;
            break;
          case errc::wait_timeout:
            ++rejected_no_time_;
            break;
          default:
            rejected_closed_.add();
            break;
        }
        break;
    }
    leave_slow_locked();
  }
  run(wakes);
  return a;
}

void Bulkhead::release_permit(TimePoint now, Duration held, bool sample) noexcept {
  if (sample) core_.observe_hold(held);
  if (lock_free_) {
    uint64_t w = word_.load(std::memory_order_relaxed);
    while ((w & kSlowBit) == 0) {
      if (in_flight_of(w) == 0) return;  // unbalanced release: never underflow into the limit
      if (word_.compare_exchange_weak(w, w - 1, std::memory_order_acq_rel,
                                      std::memory_order_relaxed)) {
        return;
      }
    }
  }
  std::vector<Wake> wakes;
  {
    std::lock_guard lock(mu_);
    enter_slow_locked();
    BulkheadCore::Changes changes = core_.release(now);
    apply_locked(changes, wakes);
    leave_slow_locked();
  }
  run(wakes);
}

bool Bulkhead::withdraw(detail::TicketNode& node) {
  std::lock_guard lock(mu_);
  if (node.state.load(std::memory_order_relaxed) != State::waiting) return false;
  core_.cancel(node.id);
  node.on_resolved = nullptr;
  node.state.store(State::withdrawn, std::memory_order_release);
  waiting_.erase(node.id);  // may drop the last reference but one: `node` is the caller's
  ++withdrawn_;
  leave_slow_locked();
  return true;
}

std::size_t Bulkhead::expire(TimePoint now) {
  std::vector<Wake> wakes;
  std::size_t expired = 0;
  {
    std::lock_guard lock(mu_);
    if ((word_.load(std::memory_order_relaxed) & kSlowBit) == 0) return 0;  // nobody waits
    BulkheadCore::Changes changes = core_.expire(now);
    expired = changes.refused.size();
    apply_locked(changes, wakes);
    leave_slow_locked();
  }
  run(wakes);
  return expired;
}

void Bulkhead::set_limit(uint32_t limit, TimePoint now) {
  limit = std::min(limit, kMaxBulkheadLimit);
  std::vector<Wake> wakes;
  {
    std::lock_guard lock(mu_);
    BulkheadCore::Changes changes = core_.set_limit(now, limit);
    apply_locked(changes, wakes);
    // Publish the limit in the word. In lock-free mode fast acquires and releases race with
    // this CAS; in slow mode nobody else writes the word (they all hold mu_).
    uint64_t w = word_.load(std::memory_order_relaxed);
    while (!word_.compare_exchange_weak(
        w, (w & ~(kLimitMask << kLimitShift)) | (static_cast<uint64_t>(limit) << kLimitShift),
        std::memory_order_acq_rel, std::memory_order_relaxed)) {
    }
    leave_slow_locked();
  }
  run(wakes);
}

void Bulkhead::enter_slow_locked() noexcept {
  uint64_t w = word_.load(std::memory_order_relaxed);
  while ((w & kSlowBit) == 0) {
    if (word_.compare_exchange_weak(w, w | kSlowBit, std::memory_order_acq_rel,
                                    std::memory_order_relaxed)) {
      // From now on the core is the truth; take over the permits counted lock-free.
      core_.set_in_flight(in_flight_of(w));
      return;
    }
  }
}

void Bulkhead::leave_slow_locked() noexcept {
  // Back to lock-free operation once nobody waits (never with a throttle: every start must be
  // spaced by the core).
  if (!lock_free_ || core_.queued() != 0) return;
  if ((word_.load(std::memory_order_relaxed) & kSlowBit) == 0) return;
  word_.store(pack(core_.in_flight(), core_.limit(), false), std::memory_order_release);
}

void Bulkhead::apply_locked(BulkheadCore::Changes& changes, std::vector<Wake>& wakes) {
  for (const auto& g : changes.granted) {
    auto it = waiting_.find(g.ticket);
    if (it == waiting_.end()) continue;
    auto& node = it->second;
    node->start_at = g.start_at;
    node->in_flight = g.in_flight;
    node->state.store(State::granted, std::memory_order_release);
    ++granted_after_wait_;
    std::function<void()> fn = std::move(node->on_resolved);
    wakes.push_back({std::move(node), std::move(fn)});
    waiting_.erase(it);
  }
  for (const auto& r : changes.refused) {
    auto it = waiting_.find(r.ticket);
    if (it == waiting_.end()) continue;
    auto& node = it->second;
    node->reason = r.reason;
    node->state.store(State::refused, std::memory_order_release);
    if (r.reason == errc::queue_full) {
      ++displaced_;
    } else {
      ++timed_out_;
    }
    std::function<void()> fn = std::move(node->on_resolved);
    wakes.push_back({std::move(node), std::move(fn)});
    waiting_.erase(it);
  }
}

void Bulkhead::run(std::vector<Wake>& wakes) noexcept {
  for (auto& wake : wakes) {
    if (wake.fn) {
      try {
        wake.fn();
      } catch (...) {
        // A waiter's wake-up must not break the releasing caller; nothing useful to do here.
      }
    }
  }
}

Result<Permit> Bulkhead::acquire(int priority, Deadline deadline, std::stop_token stop) {
  if (stop.stop_requested()) return make_error_code(errc::cancelled);
  const TimePoint now = clock_.now();
  Acquisition a = try_acquire(now, priority, deadline);
  Permit permit;
  if (a.status == Status::rejected) return make_error_code(a.reason);
  if (a.status == Status::granted) {
    permit = std::move(a.permit);
  } else {
    struct Shared {
      std::mutex mu;
      std::condition_variable_any cv;
      bool done = false;
    };
    auto shared = std::make_shared<Shared>();  // outlives us if the wake-up comes late
    a.ticket.on_resolved([shared] {
      std::lock_guard lock(shared->mu);
      shared->done = true;
      shared->cv.notify_all();
    });
    {
      std::unique_lock lock(shared->mu);
      const auto done = [&] { return shared->done; };
      const Deadline until = a.ticket.deadline();
      if (until.is_never()) {
        shared->cv.wait(lock, stop, done);
      } else {
        shared->cv.wait_until(
            lock, stop, std::chrono::steady_clock::now() + until.remaining(clock_.now()), done);
      }
    }
    if (stop.stop_requested()) {
      a.ticket.cancel();
      // A grant that won the race was released by cancel(); a refusal needs nothing.
      return make_error_code(errc::cancelled);
    }
    // Woken with a decision, or our deadline passed: take() withdraws a still-waiting ticket
    // (wait_timeout) unless a grant wins that race.
    Result<Permit> r = a.ticket.take();
    if (!r) return r;
    permit = std::move(*r);
  }
  const TimePoint later = clock_.now();
  if (permit.start_at() > later) clock_.sleep_for(permit.start_at() - later);
  return permit;
}

uint32_t Bulkhead::limit() const noexcept {
  return limit_of(word_.load(std::memory_order_acquire));
}

uint32_t Bulkhead::in_flight() const {
  const uint64_t w = word_.load(std::memory_order_acquire);
  if ((w & kSlowBit) == 0) return in_flight_of(w);
  std::lock_guard lock(mu_);
  const uint64_t again = word_.load(std::memory_order_acquire);
  return (again & kSlowBit) == 0 ? in_flight_of(again) : core_.in_flight();
}

std::size_t Bulkhead::queued() const {
  std::lock_guard lock(mu_);
  return core_.queued();
}

Duration Bulkhead::estimated_wait(TimePoint now, int priority) const {
  std::lock_guard lock(mu_);
  const uint64_t w = word_.load(std::memory_order_acquire);
  if ((w & kSlowBit) != 0) return core_.estimated_wait(now, priority);
  // Lock-free mode: nobody waits; a newcomer waits only if every permit is taken.
  const uint32_t in_flight = in_flight_of(w);
  const uint32_t limit = limit_of(w);
  if (limit == 0) return Duration::max();
  if (in_flight < limit) return Duration::zero();
  return core_.hold_estimate() * (in_flight - limit + 1) / limit;
}

Bulkhead::Stats Bulkhead::stats() const {
  std::lock_guard lock(mu_);
  return Stats{granted_.value(),
               queued_,
               granted_after_wait_,
               timed_out_,
               withdrawn_,
               displaced_,
               rejected_queue_full_.value(),
               rejected_throttled_,
               rejected_no_time_,
               rejected_closed_.value()};
}

}  // namespace bulwark::limit
