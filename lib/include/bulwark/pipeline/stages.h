// Built-in pipeline stages: timeout, retry and circuit breaker.
//
// Each wraps a policy object (the decision-maker) in the stage protocol of stage.h. The
// policy objects they refer to (RetryBudget, CircuitBreaker) are shared state owned by the
// caller and must outlive every pipeline that uses them.
//
// Semantics, in pipeline order:
//  - TimeoutStage(d): the inner run must finish within d (and the outer deadline). Placed
//    outside a retry stage it bounds the whole call; placed inside, it bounds each try.
//  - RetryStage(policy, budget): runs the inner stages up to max_attempts times; waits the
//    policy's backoff (or the server's Retry-After, capped) between tries; gives each try
//    min(per_try_timeout, time left); stops early on the deadline or an empty budget.
//  - BreakerStage(breaker): asks the breaker for a permit; a rejection finishes the call with
//    errc::circuit_open (final: retrying an open breaker at once is pointless) and the
//    breaker's retry_after; the call's outcome is recorded against the permit; a cancelled
//    inner run releases the permit.
//
// Per-stage judgement. The classifier judges each result once, for every stage (Outcome).
// RetryStage and BreakerStage each take an optional predicate that re-judges a result for that
// stage only (Polly's per-strategy ShouldHandle; Resilience4j's retryOnResult and
// ignoreExceptions): RetryStageOptions::judge decides what the retry policy sees, and
// BreakerStageOptions::judge decides whether the breaker records a success, a failure, or
// nothing at all (BreakerVerdict::ignore: the permit is given back with
// CircuitBreaker::ignore). The result passed on outward is unchanged. The usual case, a 429
// that is retried but must not open the breaker:
//
//   auto is_429 = [](const AttemptResult& r) { return r.status == 429; };
//   auto pipeline = Pipeline::Builder(clock)
//       .retry({.max_attempts = 3})                      // the classifier made 429 retryable
//       .circuit_breaker(breaker, {.judge = [&](const AttemptResult& r) {
//           return is_429(r) ? BreakerVerdict::ignore : default_breaker_verdict(r);
//         }})
//       .build();
//   pipeline.execute_classified(call, [](const Result<Response>& r) {
//     return Classification{classify_http(r), retry_after_of(r), status_of(r)};
//   });
//
// Predicates are called on the thread running the stage, once per attempt; they must be
// thread-safe and must not throw.
//
// Thread-safety: stages are immutable after construction except for their statistics, which
// use striped counters; share one stage among any number of concurrent calls.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "bulwark/circuit/circuit_breaker.h"
#include "bulwark/core/striped_counter.h"
#include "bulwark/pipeline/events.h"
#include "bulwark/pipeline/stage.h"
#include "bulwark/retry/retry_budget.h"
#include "bulwark/retry/retry_policy.h"

namespace bulwark {

class TimeoutStage final : public Stage {
 public:
  explicit TimeoutStage(Duration timeout);  // std::invalid_argument if timeout <= 0
  std::unique_ptr<StageRun> start() const override;
  std::size_t run_size() const noexcept override;
  std::size_t run_align() const noexcept override;
  StageRun* start_in(void* storage) const override;
  std::string_view kind() const noexcept override { return "timeout"; }
  Duration timeout() const noexcept { return timeout_; }

  struct Stats {
    uint64_t calls;
    uint64_t timeouts;
  };
  Stats stats() const noexcept { return {calls_.value(), timeouts_.value()}; }

 private:
  class Run;
  Duration timeout_;
  mutable StripedCounter calls_;
  mutable StripedCounter timeouts_;
};

struct RetryStageOptions {
  // Retries withdraw from it when not null; shared by every caller of one target.
  retry::RetryBudget* budget = nullptr;
  // With a seed, each call's jitter comes from a Random seeded deterministically from
  // (seed, call number); without, from a per-thread entropy source. Tests only.
  std::optional<uint64_t> seed;
  // The outcome the retry policy acts on for each attempt, in place of result.outcome
  // (retryable_failure: retried if attempts, budget and deadline allow; anything else: the
  // call ends with this result). Empty: result.outcome.
  std::function<Outcome(const AttemptResult&)> judge;
  // Told of every retry (EventListener::on_retry) when not null; RetryEvent::name is `name`.
  EventListener* listener = nullptr;
  std::string name;
};

class RetryStage final : public Stage {
 public:
  // `budget` may be null (no budget). With `seed`, each call's jitter comes from a Random seeded
  // deterministically from (seed, call number); without, from a per-thread entropy source.
  RetryStage(retry::RetryPolicy policy, retry::RetryBudget* budget = nullptr,
             std::optional<uint64_t> seed = std::nullopt);
  RetryStage(retry::RetryPolicy policy, RetryStageOptions options);
  std::unique_ptr<StageRun> start() const override;
  std::size_t run_size() const noexcept override;
  std::size_t run_align() const noexcept override;
  StageRun* start_in(void* storage) const override;
  std::string_view kind() const noexcept override { return "retry"; }
  const retry::RetryPolicy& policy() const noexcept { return policy_; }

  // Fixed series for metrics: calls entering the stage, retries performed, and calls that
  // ended because retries were exhausted, the budget was empty, or the deadline was near.
  struct Stats {
    uint64_t calls;
    uint64_t retries;
    uint64_t exhausted;
    uint64_t budget_exhausted;
    uint64_t deadline_exceeded;
  };
  Stats stats() const noexcept;

 private:
  class Run;
  retry::RetryPolicy policy_;
  retry::RetryBudget* budget_;
  std::optional<uint64_t> seed_;
  std::function<Outcome(const AttemptResult&)> judge_;
  EventListener* listener_ = nullptr;
  std::string name_;
  mutable std::atomic<uint64_t> call_counter_{0};
  mutable StripedCounter calls_, retries_, exhausted_, budget_exhausted_, deadline_exceeded_;
};

// What a breaker stage does with an attempt's result.
enum class BreakerVerdict : uint8_t {
  success,  // record a success
  failure,  // record a failure
  ignore,   // record nothing and give the permit back (CircuitBreaker::ignore)
};

// The default judgement: failure when is_breaker_failure(result.outcome), success otherwise
// (so a caller_error is a success).
constexpr BreakerVerdict default_breaker_verdict(const AttemptResult& result) noexcept {
  return is_breaker_failure(result.outcome) ? BreakerVerdict::failure : BreakerVerdict::success;
}

struct BreakerStageOptions {
  // Judges each result for the breaker. Empty: default_breaker_verdict. Not consulted for an
  // inner run that ended by cancellation (errc::cancelled from a policy): its permit is always
  // released.
  std::function<BreakerVerdict(const AttemptResult&)> judge;
  // Told of every rejection (EventListener::on_rejected, name = the breaker's) when not null.
  // Transitions come from the breaker itself: forward_transitions(breaker, listener).
  EventListener* listener = nullptr;
};

class BreakerStage final : public Stage {
 public:
  explicit BreakerStage(circuit::CircuitBreaker& breaker, BreakerStageOptions options = {})
      : breaker_(breaker), judge_(std::move(options.judge)), listener_(options.listener) {}
  std::unique_ptr<StageRun> start() const override;
  std::size_t run_size() const noexcept override;
  std::size_t run_align() const noexcept override;
  StageRun* start_in(void* storage) const override;
  std::string_view kind() const noexcept override { return "circuit_breaker"; }
  circuit::CircuitBreaker& breaker() const noexcept { return breaker_; }

 private:
  class Run;
  circuit::CircuitBreaker& breaker_;
  std::function<BreakerVerdict(const AttemptResult&)> judge_;
  EventListener* listener_;
};

}  // namespace bulwark
