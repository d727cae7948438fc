// Bulkhead: a concurrency limiter with a bounded, prioritised request queue.
//
// A Bulkhead hands out at most `limit` permits at a time (max concurrent calls). A call that
// finds every permit taken may wait in a bounded queue for one to be released; the queue is
// ordered by priority (higher first) and, within one priority, first come first served. A wait
// ends with a permit, or with errc::wait_timeout when its deadline passes: the earlier of
// `now + max_wait` and the caller's own deadline, exactly at that instant. An optional throttle
// spaces the starts of calls (N starts per second). Every refusal carries a reason:
//
//   errc::rejected      the limit is 0 (the bulkhead admits nothing; see set_limit)
//   errc::queue_full    every permit is taken and the queue has no room (max_queue == 0 means
//                       there is no queue: "full" at once), or a higher-priority arrival
//                       displaced this waiter (displace_lower_priority)
//   errc::wait_timeout  the wait reached its deadline (or no time was left to wait at all)
//   errc::throttled     the throttle could not start the call within the time it may wait
//
// Throttle. With starts_per_second = r, starts are spaced by T = 1/r (GCRA: a theoretical
// arrival time `tat`; a start is allowed at max(now, tat - (burst - 1) * T), and each start moves
// tat to max(tat, now) + T). A permit granted while the throttle is ahead is a reservation: it
// counts as in flight at once and carries start_at() > now, and the caller must not begin the
// work before start_at() (acquire(), async_acquire() and BulkheadStage wait for it). A call is
// refused with errc::throttled instead when start_at would be at or after its wait deadline
// (the earlier of now + max_wait and its own deadline). Queued waiters are started through the
// throttle too; a waiter whose throttled start would fall at or after its deadline times out
// instead of waiting on.
//
// Estimated wait (estimated_wait(), Acquisition::estimated_wait, the retry_after of a
// queue_full refusal). For a call at queue position p (1 = next), with L the limit, n in flight
// and H an EWMA of permit hold times (weight hold_time_alpha per release, kept per releasing
// thread's stripe and averaged over the stripes; initial_hold_time until the first release),
// the estimate is
//     concurrency part  max(0, n + p - L) * H / L      (L permits free up about every H / L)
//     throttle part     max(0, next throttled start - now) + (p - 1) * T
// and the estimate is the larger part. It assumes steady, staggered hold times: a guide for
// callers (Retry-After, shedding), not a promise. The concurrency part is zero until a hold
// time is known.
//
// Decide apart from acting: BulkheadCore below is the whole decision logic as a plain state
// machine with explicit time and no threads (tests drive it on a ManualClock). Bulkhead wraps
// it for concurrent use and adds the acting parts: permits that release themselves, tickets
// that notify their owner, and a blocking acquire(). Asio callers use
// bulwark::asio::async_acquire (bulwark/asio/bulkhead.h); pipelines use BulkheadStage
// (bulwark/limit/bulkhead_stage.h).
//
// Thread-safety: BulkheadCore is not thread-safe (except observe_hold()/hold_estimate()).
// Bulkhead, Permit and Ticket members are safe to call from any thread (one Permit or Ticket
// object must not be used by two threads at once; copies of a Ticket may). While nobody waits
// and no throttle is configured, Bulkhead's acquire and release are one CAS each on one atomic
// word (no lock). Once a call has to queue, or whenever a throttle is configured, acquisitions
// and releases go through an internal mutex until the queue is empty again.
//
// Lifetime: a Bulkhead must outlive its permits and tickets (like a breaker outlives its
// permits). Destroying it refuses every waiter with errc::rejected.
//
// Example:
//   bulwark::limit::Bulkhead bulkhead("db", {.max_concurrent = 8, .max_queue = 32,
//                                            .max_wait = 200ms});
//   bulwark::Result<bulwark::limit::Permit> permit = bulkhead.acquire(/*priority=*/0, deadline);
//   if (!permit) return permit.error();        // queue_full, wait_timeout, ...
//   run_query();                               // the permit is released when it goes away
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <stop_token>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "bulwark/core/clock.h"
#include "bulwark/core/deadline.h"
#include "bulwark/core/error.h"
#include "bulwark/core/striped_counter.h"

namespace bulwark::limit {

// Largest accepted limit (permits) and queue length (waiters).
inline constexpr uint32_t kMaxBulkheadLimit = (1u << 31) - 1;
inline constexpr uint32_t kMaxBulkheadQueue = 1u << 24;

struct BulkheadOptions {
  // Permits available at once. 0 admits nothing (errc::rejected). <= kMaxBulkheadLimit.
  // set_limit() (e.g. from an adaptive limit) changes it later.
  uint32_t max_concurrent = 64;
  // Callers that may wait for a permit. 0: no queue, a full bulkhead refuses at once.
  uint32_t max_queue = 0;
  // Longest time a call waits, in the queue and for a throttled start. >= 0.
  // Duration::max(): bounded only by the caller's deadline.
  Duration max_wait = std::chrono::seconds(1);
  // Throttle: starts per second (may be fractional, e.g. 0.5). 0 disables the throttle.
  double starts_per_second = 0;
  // Throttle burst: starts allowed back to back before the spacing applies. >= 1.
  uint32_t throttle_burst = 1;
  // When the queue is full, an arrival with a higher priority than the lowest queued one
  // displaces the newest waiter of the lowest priority (refused with errc::queue_full).
  bool displace_lower_priority = false;
  // Weight of each new sample in the hold-time EWMA. (0, 1].
  double hold_time_alpha = 0.2;
  // Hold time assumed before the first permit is released. >= 0 (0: estimates are 0 until
  // the first release).
  Duration initial_hold_time = Duration::zero();
};

// Throws std::invalid_argument naming the field ("BulkheadOptions.max_queue: ...").
void validate(const BulkheadOptions& options);

// ---------------------------------------------------------------------------------------------
// The decision core: every rule of the bulkhead, as a deterministic state machine.
//
// It tracks the limit, the permits in flight, the queue and the throttle, and answers:
//   try_acquire(now, priority, deadline) -> granted | queued(ticket) | rejected(reason)
//   release(now)                         -> the queued tickets that now get a permit
//   expire(now)                          -> the queued tickets whose deadline has come
//   cancel(ticket)                       -> the ticket leaves the queue (its slot is free)
//   set_limit(now, n)                    -> the queued tickets a higher limit lets in
// Every call that can change another ticket's fate returns those changes (Changes); acting
// on them (waking a thread, completing a coroutine) is the caller's job. Expired waiters are
// also removed lazily, at the start of try_acquire() and release().
//
// Invariant: the queue is empty unless in_flight() >= limit().
class BulkheadCore {
 public:
  using TicketId = uint64_t;
  enum class Kind : uint8_t { granted, queued, rejected };

  struct Grant {
    TicketId ticket;
    TimePoint start_at;  // not before this instant (throttle); usually the grant's `now`
    uint32_t in_flight;  // permits in flight right after this grant
  };
  struct Refusal {
    TicketId ticket;
    errc reason;  // wait_timeout, or queue_full when displaced
  };
  struct Changes {
    std::vector<Grant> granted;
    std::vector<Refusal> refused;
    bool empty() const noexcept { return granted.empty() && refused.empty(); }
  };
  struct Decision {
    Kind kind = Kind::rejected;
    TicketId ticket = 0;        // queued: the new ticket
    TimePoint start_at{};       // granted: not before this instant
    uint32_t in_flight = 0;     // granted: permits in flight including this one
    Deadline deadline;          // queued: the wait ends with wait_timeout at this instant
    errc reason{};              // rejected
    Duration retry_after{};     // rejected: estimated time until a call could be admitted
    Duration estimated_wait{};  // queued: see the file comment
    Changes changes;            // what this call did to other tickets (expired, displaced)
  };

  // Validates `options` (std::invalid_argument).
  explicit BulkheadCore(const BulkheadOptions& options);
  BulkheadCore(const BulkheadCore&) = delete;
  BulkheadCore& operator=(const BulkheadCore&) = delete;

  // A call asks for a permit. `deadline` is the caller's own; the wait also ends at
  // now + max_wait. With may_queue == false the call never waits (no queue, no throttle delay).
  Decision try_acquire(TimePoint now, int priority = 0, Deadline deadline = Deadline::never(),
                       bool may_queue = true);
  // One permit comes back; hands it to the best queued ticket, if any.
  Changes release(TimePoint now);
  // Times out every queued ticket whose deadline is at or before `now`.
  Changes expire(TimePoint now);
  // Removes a queued ticket. False if it is not queued (granted, refused or unknown).
  bool cancel(TicketId ticket);
  // Changes the limit. Raising it grants queued tickets; lowering it never revokes permits:
  // new ones are granted once in_flight() drops below the new limit.
  Changes set_limit(TimePoint now, uint32_t limit);

  // Feeds one permit's hold time into the EWMA of the calling thread's stripe. Thread-safe
  // (lock-free; two threads sharing a stripe may lose a sample, which an average tolerates).
  void observe_hold(Duration held) noexcept;
  // The hold-time estimate: the mean of the stripes' EWMAs (initial_hold_time before any
  // sample). Thread-safe.
  Duration hold_estimate() const noexcept;

  // Estimated wait for a call arriving now with `priority`.
  Duration estimated_wait(TimePoint now, int priority = 0) const;
  // Estimated wait of a queued ticket (zero if it is not queued).
  Duration estimated_wait_of(TimePoint now, TicketId ticket) const;

  uint32_t limit() const noexcept { return limit_; }
  uint32_t in_flight() const noexcept { return in_flight_; }
  std::size_t queued() const noexcept { return entries_.size(); }
  bool is_queued(TicketId ticket) const { return entries_.count(ticket) != 0; }
  // The earliest deadline among queued tickets (when the next expiry is due).
  std::optional<TimePoint> next_deadline() const;
  bool throttled() const noexcept { return interval_ > Duration::zero(); }
  const BulkheadOptions& options() const noexcept { return options_; }

  // For Bulkhead's lock-free mode: the permits counted outside the core while it was idle.
  void set_in_flight(uint32_t n) noexcept { in_flight_ = n; }

 private:
  struct Entry {
    int priority;
    Deadline deadline;
  };
  // Highest priority first; within one priority, the oldest (lowest id) first.
  struct ByPriority {
    bool operator()(const std::pair<int, TicketId>& a,
                    const std::pair<int, TicketId>& b) const noexcept {
      return a.first != b.first ? a.first > b.first : a.second < b.second;
    }
  };

  void remove(TicketId ticket, const Entry& entry);
  void grant_waiters(TimePoint now, Changes& changes);
  TimePoint throttle_start(TimePoint now) const noexcept;
  void throttle_commit(TimePoint now) noexcept;
  Duration estimate_for_position(TimePoint now, uint64_t position) const;
  uint64_t position_for(int priority) const;  // waiters at >= priority, plus one

  const BulkheadOptions options_;
  uint32_t limit_;
  uint32_t in_flight_ = 0;
  TicketId next_ticket_ = 1;

  std::unordered_map<TicketId, Entry> entries_;
  std::set<std::pair<int, TicketId>, ByPriority> order_;
  std::set<std::pair<TimePoint, TicketId>> by_deadline_;  // tickets with a finite deadline
  std::map<int, uint32_t, std::greater<int>> per_priority_;

  // Throttle (GCRA): interval_ == 0 disables it.
  Duration interval_{};
  Duration tolerance_{};
  TimePoint tat_{};

  // Hold-time EWMA, one per StripedCounter stripe: every release writes one, so releasing
  // threads do not fight over a cache line; the estimate averages the stripes that have seen a
  // release. < 0: no sample yet.
  struct alignas(64) HoldCell {
    std::atomic<int64_t> ewma_ns{-1};
  };
  std::array<HoldCell, StripedCounter::kStripes> hold_;
};

class Bulkhead;
class Ticket;

namespace detail {
struct TicketNode;
}

// ---------------------------------------------------------------------------------------------
// Permit: one unit of the bulkhead's concurrency, held for the duration of a call.
//
// Move-only; releases itself when destroyed. release() is idempotent: the first call returns
// the permit, later calls (and the destructor) do nothing. A default-constructed or moved-from
// Permit holds nothing. The hold time (release time - start_at()) feeds the wait estimator.
// The destructor and release() without arguments read the bulkhead's clock; pass `now` when
// you have it (hot paths).
class Permit {
 public:
  Permit() noexcept = default;
  Permit(Permit&& other) noexcept
      : owner_(std::exchange(other.owner_, nullptr)),
        start_(other.start_),
        in_flight_(other.in_flight_) {}
  Permit& operator=(Permit&& other) noexcept {
    if (this != &other) {
      release();
      owner_ = std::exchange(other.owner_, nullptr);
      start_ = other.start_;
      in_flight_ = other.in_flight_;
    }
    return *this;
  }
  Permit(const Permit&) = delete;
  Permit& operator=(const Permit&) = delete;
  ~Permit() { release(); }

  void release() noexcept;
  void release(TimePoint now) noexcept;

  explicit operator bool() const noexcept { return owner_ != nullptr; }
  // The call may start at this instant, not before (later than the grant only when throttled).
  TimePoint start_at() const noexcept { return start_; }
  // Permits in flight (including this one) when it was granted; what adaptive limits want.
  uint32_t in_flight_at_start() const noexcept { return in_flight_; }
  Bulkhead* bulkhead() const noexcept { return owner_; }

 private:
  friend class Bulkhead;
  friend class Ticket;
  Permit(Bulkhead* owner, TimePoint start, uint32_t in_flight) noexcept
      : owner_(owner), start_(start), in_flight_(in_flight) {}

  Bulkhead* owner_ = nullptr;
  TimePoint start_{};
  uint32_t in_flight_ = 0;
};

// ---------------------------------------------------------------------------------------------
// Ticket: a call's place in the queue. A copyable handle; copies share one place.
//
// States: waiting -> granted -> taken (take() returned the permit)
//                            -> released (cancel() gave the granted permit back)
//         waiting -> refused (wait_timeout, or queue_full when displaced)
//         waiting -> withdrawn (withdraw() or cancel() while waiting: the queue slot is free)
// A grant and a withdrawal/cancellation racing on two threads resolve to exactly one of them.
class Ticket {
 public:
  enum class State : uint8_t { waiting, granted, refused, withdrawn, taken, released };

  Ticket() noexcept = default;
  explicit operator bool() const noexcept { return node_ != nullptr; }

  State state() const noexcept;
  // Why the ticket was refused (meaningful in state refused).
  errc reason() const noexcept;
  int priority() const noexcept;
  // When the wait ends with wait_timeout.
  Deadline deadline() const noexcept;
  // Granted: the throttled start instant (see Permit::start_at()).
  TimePoint start_at() const noexcept;

  // Calls `fn` once, when the bulkhead grants or refuses the ticket: on the thread that
  // releases a permit, expires the ticket or changes the limit (inside the bulkhead's
  // release(), expire() ...), or at once on this thread if that already happened. `fn` runs
  // with no bulkhead lock held; it should be short (wake a thread, post a completion). It is
  // never called for a withdrawn ticket. A later call replaces an earlier, not yet called `fn`.
  void on_resolved(std::function<void()> fn) const;

  // Ends the wait now, whatever the state:
  //   granted  -> the permit (once; state taken)
  //   refused  -> the refusal reason
  //   waiting  -> withdraws it and returns errc::wait_timeout, unless a grant or refusal won
  //               the race, in which case that is returned
  //   withdrawn-> errc::wait_timeout (the owner withdrew it because it stopped waiting)
  //   taken / released -> errc::cancelled
  Result<Permit> take() const;
  // Waiting -> withdrawn. True if it was withdrawn (the slot is free and on_resolved's
  // function will never run); false if it was no longer waiting.
  bool withdraw() const;
  // Gives up whatever the ticket holds: withdraws a waiting ticket, or releases a granted
  // permit that nobody took (the next waiter gets it). Returns true if it withdrew or released
  // something, false if there was nothing to give back (refused, already taken or given up).
  bool cancel() const;

 private:
  friend class Bulkhead;
  explicit Ticket(std::shared_ptr<detail::TicketNode> node) noexcept : node_(std::move(node)) {}
  std::shared_ptr<detail::TicketNode> node_;
};

// ---------------------------------------------------------------------------------------------
// Bulkhead: BulkheadCore made safe for concurrent callers. See the file comment.
class Bulkhead {
 public:
  enum class Status : uint8_t { granted, queued, rejected };

  struct Acquisition {
    Status status = Status::rejected;
    Permit permit;              // granted
    Ticket ticket;              // queued: wait on it (on_resolved), then take()
    errc reason{};              // rejected
    Duration retry_after{};     // rejected: estimated time until a call could be admitted
    Duration estimated_wait{};  // queued
  };

  // Counters since construction. Every try_acquire()/acquire() counts exactly once in one of
  // granted, queued or the rejected_* counters; every queued call ends in exactly one of
  // granted_after_wait, timed_out, withdrawn or displaced (or is still queued).
  struct Stats {
    uint64_t granted;              // permits granted without queueing
    uint64_t queued;               // calls that entered the queue
    uint64_t granted_after_wait;   // queued calls that got a permit
    uint64_t timed_out;            // queued calls refused with wait_timeout
    uint64_t withdrawn;            // queued calls withdrawn by their owner
    uint64_t displaced;            // queued calls pushed out by a higher priority
    uint64_t rejected_queue_full;  // errc::queue_full on arrival
    uint64_t rejected_throttled;   // errc::throttled
    uint64_t rejected_no_time;     // errc::wait_timeout on arrival (no time left to wait)
    uint64_t rejected_closed;      // errc::rejected (limit 0)
    uint64_t rejected() const noexcept {
      return rejected_queue_full + rejected_throttled + rejected_no_time + rejected_closed;
    }
  };

  // Validates `options` (std::invalid_argument). `clock` must outlive the bulkhead.
  explicit Bulkhead(std::string name, BulkheadOptions options = {},
                    Clock& clock = SystemClock::instance());
  ~Bulkhead();
  Bulkhead(const Bulkhead&) = delete;
  Bulkhead& operator=(const Bulkhead&) = delete;

  // Non-blocking: a permit now, a ticket to wait on, or a refusal with its reason.
  Acquisition try_acquire(TimePoint now, int priority = 0, Deadline deadline = Deadline::never());
  // Never queues or waits for the throttle: a permit now or a refusal.
  Result<Permit> try_acquire_now(TimePoint now, int priority = 0);

  // Blocking: waits (in real time, on a condition variable) until a permit is granted, the wait
  // times out, or `stop` is requested (errc::cancelled). A throttled start is waited for with
  // clock.sleep_for. With a ManualClock this blocks in real time for as long as the ManualClock
  // says is left; tests drive try_acquire()/tickets instead.
  Result<Permit> acquire(int priority = 0, Deadline deadline = Deadline::never(),
                         std::stop_token stop = {});

  // Times out queued calls whose deadline is at or before `now`; returns how many. Optional:
  // try_acquire() and releases do it too; waiters with their own timers call it at their
  // deadline.
  std::size_t expire(TimePoint now);

  // Changes the concurrency limit (0..kMaxBulkheadLimit; larger values are clamped). Raising
  // it grants queued calls at once; lowering it revokes nothing. Acquisitions racing with the
  // change may still see the old limit.
  void set_limit(uint32_t limit, TimePoint now);
  void set_limit(uint32_t limit) { set_limit(limit, clock_.now()); }

  uint32_t limit() const noexcept;
  uint32_t in_flight() const;
  std::size_t queued() const;
  Duration estimated_wait(TimePoint now, int priority = 0) const;
  Duration hold_estimate() const noexcept { return core_.hold_estimate(); }
  Stats stats() const;

  const std::string& name() const noexcept { return name_; }
  const BulkheadOptions& options() const noexcept { return core_.options(); }
  Clock& clock() const noexcept { return clock_; }

 private:
  friend class Permit;
  friend class Ticket;
  struct Wake;  // a resolved ticket whose on_resolved function must run after unlocking

  Acquisition acquire_slow(TimePoint now, int priority, Deadline deadline, bool may_queue);
  void release_permit(TimePoint now, Duration held, bool sample) noexcept;
  bool withdraw(detail::TicketNode& node);
  // Require mu_.
  void enter_slow_locked() noexcept;
  void leave_slow_locked() noexcept;
  void apply_locked(BulkheadCore::Changes& changes, std::vector<Wake>& wakes);
  static void run(std::vector<Wake>& wakes) noexcept;

  const std::string name_;
  Clock& clock_;
  const bool lock_free_;  // no throttle: the idle bulkhead may run on word_ alone

  // in_flight (bits 0-31) | limit (bits 32-62) | slow (bit 63). While `slow` is clear the word
  // is the whole state (the queue is empty) and acquire/release are CASes on it; once set, the
  // core under mu_ is authoritative and only the limit bits are kept current.
  alignas(64) std::atomic<uint64_t> word_;
  StripedCounter granted_;
  StripedCounter rejected_queue_full_;
  StripedCounter rejected_closed_;

  alignas(64) mutable std::mutex mu_;
  BulkheadCore core_;  // guarded by mu_ (except its hold-time EWMA)
  std::unordered_map<BulkheadCore::TicketId, std::shared_ptr<detail::TicketNode>> waiting_;
  // Guarded by mu_.
  uint64_t queued_ = 0, granted_after_wait_ = 0, timed_out_ = 0, withdrawn_ = 0, displaced_ = 0;
  uint64_t rejected_throttled_ = 0, rejected_no_time_ = 0;
};

// Inline so that destroying an empty (moved-from) Permit costs a branch, not a call.
inline void Permit::release() noexcept {
  if (owner_ != nullptr) release(owner_->clock().now());
}

}  // namespace bulwark::limit
