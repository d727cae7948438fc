// RetryPolicy: decides, attempt by attempt, whether a failed call is tried again and when.
//
// The policy is the decision half of retrying; it never sleeps, calls or reads a clock. The
// caller (a pipeline adapter, the gateway, or a plain loop) runs an attempt, reports its
// Outcome to the per-call state machine RetryPolicy::Attempts, and acts on the decision:
//
//   done   the outcome was success, caller_error or final_failure: return it as is
//   retry  wait `delay`, then run the next attempt (attempt() has been incremented)
//   stop   a retryable failure that will not be retried; `reason` says why:
//            retries_exhausted  the last of max_attempts failed
//            deadline_exceeded  after waiting `delay` there would be less than min_per_try
//                               left before the deadline, so the policy gives up now instead
//                               of sleeping uselessly
//            budget_exhausted   the RetryBudget had no room for another retry
//
// Rules, checked in this order for a retryable failure:
//   1. max_attempts counts the first call: attempt() == max_attempts -> retries_exhausted.
//   2. The delay is the Backoff delay for retry number attempt(), or, if honour_retry_after and
//      the server sent a Retry-After hint, that hint capped at max_retry_after (negative = 0).
//   3. If the deadline is not never() and remaining(now) - delay < min_per_try ->
//      deadline_exceeded.
//   4. If a budget was given and try_withdraw(now) fails -> budget_exhausted. (Checked last so a
//      retry that would not happen anyway does not spend budget.)
// Before each attempt the caller should check may_start(now) (remaining >= min_per_try) and
// give the attempt per_try_timeout(now) = min(per_try_timeout, remaining deadline).
//
// Thread-safety: RetryPolicy is immutable and may be shared by any number of threads; it must
// outlive the Attempts it starts. Attempts is per call and not thread-safe. A RetryBudget
// passed to start() must outlive the Attempts too.
//
// Example (synchronous):
//   bulwark::retry::RetryPolicy policy({.max_attempts = 3});
//   auto attempts = policy.start(clock.now(), Deadline::after(clock.now(), 2s), &budget);
//   for (;;) {
//     if (!attempts.may_start(clock.now())) return errc::deadline_exceeded;
//     auto [outcome, retry_after] = call(attempts.per_try_timeout(clock.now()));
//     auto decision = attempts.on_outcome(outcome, clock.now(), rng, retry_after);
//     if (decision.action == RetryAction::done) return result;
//     if (decision.action == RetryAction::stop) return decision.reason;
//     clock.sleep_for(decision.delay);
//   }
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string_view>

#include "bulwark/core/clock.h"
#include "bulwark/core/deadline.h"
#include "bulwark/core/error.h"
#include "bulwark/core/random.h"
#include "bulwark/retry/backoff.h"
#include "bulwark/retry/retry_budget.h"

namespace bulwark::retry {

struct RetryOptions {
  // Attempts in total, counting the first call; 1 = no retries. >= 1.
  uint32_t max_attempts = 3;
  BackoffOptions backoff;
  // Timeout of one attempt, clamped by the remaining deadline. > 0; Duration::max() = none.
  Duration per_try_timeout = Duration::max();
  // No attempt starts with less time than this left before the deadline. >= 0.
  Duration min_per_try = std::chrono::milliseconds(1);
  // Use a server's Retry-After hint instead of the backoff delay.
  bool honour_retry_after = true;
  // Cap on a Retry-After hint. >= 0.
  Duration max_retry_after = std::chrono::seconds(30);
};

enum class RetryAction { done, retry, stop };
std::string_view to_string(RetryAction a) noexcept;

struct RetryDecision {
  RetryAction action;
  Duration delay{};  // action == retry: wait this long before the next attempt
  errc reason{};     // action == stop: retries_exhausted | budget_exhausted | deadline_exceeded
};

class RetryPolicy {
 public:
  // Throws std::invalid_argument, naming the option, if max_attempts == 0,
  // per_try_timeout <= 0, min_per_try < 0, max_retry_after < 0, or the backoff options are
  // invalid (see Backoff).
  explicit RetryPolicy(RetryOptions options = {});

  class Attempts;

  // Starts a call at `now`. If budget != nullptr it records one request in it now, and retries
  // withdraw from it.
  Attempts start(TimePoint now, Deadline deadline = Deadline::never(),
                 RetryBudget* budget = nullptr) const;

  const RetryOptions& options() const noexcept { return options_; }
  const Backoff& backoff() const noexcept { return backoff_; }

 private:
  RetryOptions options_;
  Backoff backoff_;
};

class RetryPolicy::Attempts {
 public:
  // 1-based number of the attempt about to run (or running).
  uint32_t attempt() const noexcept { return attempt_; }

  // Whether an attempt may start at `now`: remaining deadline >= min_per_try.
  bool may_start(TimePoint now) const noexcept;

  // min(per_try_timeout, remaining deadline) at `now`.
  Duration per_try_timeout(TimePoint now) const noexcept;

  Deadline deadline() const noexcept { return deadline_; }

  // Judges the attempt that just finished (see the rules above). success, caller_error and
  // final_failure -> done; retryable_failure -> retry (with delay) or stop (with reason). After
  // `retry`, attempt() is incremented. Once a call is done or stopped, further calls return the
  // same decision without touching the budget.
  RetryDecision on_outcome(Outcome outcome, TimePoint now, Random& rng,
                           std::optional<Duration> retry_after = std::nullopt);

  // True once on_outcome returned done or stop.
  bool finished() const noexcept { return finished_.has_value(); }

 private:
  friend class RetryPolicy;
  Attempts(const RetryPolicy& policy, Deadline deadline, RetryBudget* budget) noexcept
      : policy_(&policy), budget_(budget), deadline_(deadline) {}

  const RetryPolicy* policy_;
  RetryBudget* budget_;
  Deadline deadline_;
  uint32_t attempt_ = 1;
  Duration previous_backoff_ = Duration::zero();
  std::optional<RetryDecision> finished_;
};

}  // namespace bulwark::retry
