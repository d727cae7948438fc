// Hedging and racing: the decisions, with no I/O. The Asio adapter (bulwark/asio/fallback.h)
// acts on them with timers and per-operation cancellation.
//
// Hedged request: start attempt 0; if no attempt has answered `delay` after the latest start,
// start the next one, up to `max_attempts` in total; the first answer wins and every other
// attempt still running is cancelled. Hedging trades a little extra load for a shorter tail:
// a request stuck behind a slow replica or a lost packet is overtaken by its hedge.
//
// The rules HedgeRun applies (tests pin each one):
//  - An answer is an outcome that is not a failure (fallback::is_failure): success or
//    caller_error. The first answer ends the run; results that arrive later are ignored.
//  - The next attempt starts exactly at `latest start + delay` (not a nanosecond earlier),
//    provided no attempt has answered, fewer than max_attempts have started, the deadline has
//    not passed and the budget grants it. Each start re-arms the timer from that start.
//  - A retryable_failure of an attempt starts the next attempt at once when hedge_on_failure
//    is set (the default, as gRPC does for non-fatal status codes), instead of waiting for the
//    rest of the delay. Without it, a failure only leaves the race to the attempts still
//    running; when none is running the run ends with that failure (hedging is for slow
//    answers; retrying failures is the retry policy's job).
//  - A final_failure starts nothing more (retrying it cannot help), but unlike gRPC it does not
//    cancel attempts already running: a hedge rejected by an open circuit breaker (a final
//    failure) must not kill the first attempt that is still on its way to an answer.
//  - Budget: every attempt after the first is withdrawn from the retry::RetryBudget (when one
//    is given) at the moment it would start; the run records one request in on_start()
//    (unless record_requests is off). When the budget refuses, that hedge does not start and
//    the run starts no further attempts (policy_reason() = budget_exhausted); attempts
//    already running continue. Share one budget between a target's retries and its hedges so
//    that together they stay within the budget's share of traffic.
//  - Deadline: no attempt after the first starts once the deadline has passed
//    (policy_reason() = deadline_exceeded).
//  - When every started attempt has failed and no further attempt may start, the run ends
//    with the failure chosen by FailureChoice (default: the last to fail).
//
// A parallel race (all alternatives at once, first answer wins) is the same machine with
// delay 0, max_attempts = number of alternatives and no budget: HedgeRun::parallel(n).
//
// Protocol for adapters:
//   HedgeRun run = policy.start(deadline);
//   RaceAction a = run.on_start(now);                   // start(0)
//   loop:
//     while (a.kind == start) { launch(a.index); a = run.on_timer(now); }   // delay 0: next
//     if (a.kind == finish) break;                       // a.index: whose result to return
//     wait for an attempt's result or run.next_hedge_at(), whichever is first, then
//       a = run.on_result(i, outcome, now)   or   a = run.on_timer(now)
//   cancel every attempt still running (run.running_mask()), wait for them, return.
//
// Limits: max_attempts is 1..64 (the run keeps its attempts in 64-bit masks; gRPC caps
// hedging at 5 attempts, which is plenty).
//
// Thread-safety: HedgePolicy is immutable apart from its statistics (striped counters) and may
// be shared by any number of concurrent runs. A HedgeRun belongs to one call and is not
// thread-safe.
//
// Example (decisions only, on a ManualClock):
//   bulwark::retry::RetryBudget budget;
//   bulwark::fallback::HedgePolicy policy({.delay = 50ms, .max_attempts = 3}, &budget);
//   auto run = policy.start();
//   run.on_start(clock.now());            // start attempt 0
//   clock.advance(50ms);
//   run.on_timer(clock.now());            // start attempt 1 (budget permitting)
//   run.on_result(1, bulwark::Outcome::success, clock.now());   // finish(1); cancel attempt 0
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

#include "bulwark/core/clock.h"
#include "bulwark/core/deadline.h"
#include "bulwark/core/error.h"
#include "bulwark/core/striped_counter.h"
#include "bulwark/fallback/fallback.h"
#include "bulwark/pipeline/events.h"
#include "bulwark/retry/retry_budget.h"

namespace bulwark::fallback {

struct HedgeOptions {
  // How long after the latest start the next attempt starts if nothing has answered. >= 0.
  // 0 starts all attempts at once; Duration::max() never starts one on time (only on failure,
  // with hedge_on_failure).
  Duration delay = std::chrono::milliseconds(50);
  // Attempts in total, the first one included. 1..64; 1 disables hedging.
  uint32_t max_attempts = 2;
  // A retryable failure starts the next attempt at once instead of after the rest of the delay.
  bool hedge_on_failure = true;
  // Count each run as one request in the budget (on_start). Turn off when every attempt runs
  // a pipeline whose retry stage already records requests in the same budget, so that a call
  // is not counted twice.
  bool record_requests = true;
};

// What an adapter must do after telling the run about an event.
struct RaceAction {
  enum class Kind : uint8_t {
    none,    // nothing now: keep waiting (or the event was ignored)
    start,   // start attempt `index`
    finish,  // the run is over: return attempt `index`'s result, cancel the rest
  };
  Kind kind = Kind::none;
  uint32_t index = 0;

  static constexpr RaceAction none() noexcept { return {}; }
  static constexpr RaceAction start(uint32_t i) noexcept { return {Kind::start, i}; }
  static constexpr RaceAction finish(uint32_t i) noexcept { return {Kind::finish, i}; }
  friend constexpr bool operator==(RaceAction, RaceAction) noexcept = default;
};

class HedgeRun;

class HedgePolicy {
 public:
  // `budget` may be null (hedges bounded by max_attempts only); it must outlive the policy.
  // `clock` is what the Asio adapter reads `now` from. `listener`, when not null, is told of
  // every hedge the Asio adapter starts (EventListener::on_hedge, HedgeEvent::name = `name`);
  // it must outlive the policy. Throws std::invalid_argument, naming the option, for a
  // negative delay or max_attempts outside 1..64.
  explicit HedgePolicy(HedgeOptions options = {}, retry::RetryBudget* budget = nullptr,
                       Clock& clock = SystemClock::instance(), EventListener* listener = nullptr,
                       std::string name = {});

  // A run for one call. Call on_start() on it to begin.
  HedgeRun start(Deadline deadline = Deadline::never(),
                 FailureChoice report = FailureChoice::last_to_fail) const;

  const HedgeOptions& options() const noexcept { return options_; }
  retry::RetryBudget* budget() const noexcept { return budget_; }
  Clock& clock() const noexcept { return clock_; }
  EventListener* listener() const noexcept { return listener_; }
  const std::string& name() const noexcept { return name_; }

  // Fixed series for metrics.
  struct Stats {
    uint64_t calls;           // runs started (on_start)
    uint64_t hedges;          // attempts started after the first
    uint64_t hedge_wins;      // runs answered by an attempt other than the first
    uint64_t budget_refused;  // hedges not started because the budget refused
  };
  Stats stats() const noexcept;

 private:
  friend class HedgeRun;
  HedgeOptions options_;
  retry::RetryBudget* budget_;
  Clock& clock_;
  EventListener* listener_;
  std::string name_;
  mutable StripedCounter calls_, hedges_, hedge_wins_, budget_refused_;
};

class HedgeRun {
 public:
  static constexpr uint32_t kMaxAttempts = 64;

  // A run not tied to a policy (no statistics). Throws std::invalid_argument like HedgePolicy.
  explicit HedgeRun(const HedgeOptions& options, retry::RetryBudget* budget = nullptr,
                    Deadline deadline = Deadline::never(),
                    FailureChoice report = FailureChoice::last_to_fail);

  // All `branches` at once, first answer wins, no budget: the parallel race. 1..64 branches.
  static HedgeRun parallel(uint32_t branches, FailureChoice report = FailureChoice::last_to_fail);

  // Begins the run: records one request in the budget and returns start(0).
  RaceAction on_start(TimePoint now);

  // When on_timer() should next be called; empty when no further attempt will start on time.
  std::optional<TimePoint> next_hedge_at() const noexcept { return next_at_; }

  // Time has reached `now`: returns start(k) if the next attempt is due and allowed, else none.
  RaceAction on_timer(TimePoint now);

  // Attempt `index` ended with `outcome`. Returns finish(index) for an answer; start(k) when a
  // failure starts the next attempt at once; finish(chosen failure) when every started attempt
  // failed and nothing more may start; none otherwise. A result for an attempt that is not
  // running, or after the run finished, is ignored (none).
  RaceAction on_result(uint32_t index, Outcome outcome, TimePoint now);

  // Ends the run without an answer (the caller's deadline passed, or the caller cancelled):
  // nothing more starts and later results are ignored.
  void abort() noexcept;

  bool done() const noexcept { return done_; }
  // The attempt whose result the call returns, once done (empty after abort()).
  std::optional<uint32_t> answer() const noexcept { return answer_; }
  // Whether the answer is a success / caller_error (true) or the chosen failure (false).
  bool answered() const noexcept { return answered_; }
  uint32_t started() const noexcept { return started_; }
  uint32_t max_attempts() const noexcept { return options_.max_attempts; }
  // Bit i set: attempt i started and has not reported a result.
  uint64_t running_mask() const noexcept { return running_; }
  bool is_running(uint32_t index) const noexcept {
    return index < kMaxAttempts && (running_ >> index) & 1u;
  }
  // budget_exhausted or deadline_exceeded when hedging stopped early for that reason.
  boost::system::error_code policy_reason() const noexcept { return policy_reason_; }
  // The policy the run came from (null for a standalone run): its listener and name.
  const HedgePolicy* policy() const noexcept { return policy_; }

 private:
  friend class HedgePolicy;
  HedgeRun(const HedgePolicy& policy, Deadline deadline, FailureChoice report);

  RaceAction try_start_next(TimePoint now);
  void arm(TimePoint from) noexcept;
  void stop_hedging() noexcept {
    hedging_ = false;
    next_at_.reset();
  }
  RaceAction finish(uint32_t index, bool answered) noexcept;
  uint32_t chosen_failure() const noexcept;

  HedgeOptions options_;
  retry::RetryBudget* budget_;
  const HedgePolicy* policy_ = nullptr;  // for statistics; null for a standalone run
  Deadline deadline_;
  FailureChoice report_;
  std::optional<TimePoint> next_at_;
  uint64_t running_ = 0;
  uint32_t started_ = 0;
  uint32_t first_failed_ = 0;
  uint32_t last_failed_ = 0;
  uint32_t lowest_failed_ = kMaxAttempts;
  bool any_failed_ = false;
  bool hedging_ = true;
  bool done_ = false;
  bool answered_ = false;
  std::optional<uint32_t> answer_;
  boost::system::error_code policy_reason_;
};

}  // namespace bulwark::fallback
