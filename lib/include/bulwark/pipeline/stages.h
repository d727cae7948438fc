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
// Thread-safety: stages are immutable after construction except for their statistics, which
// use striped counters; share one stage among any number of concurrent calls.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>

#include "bulwark/circuit/circuit_breaker.h"
#include "bulwark/core/striped_counter.h"
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

class RetryStage final : public Stage {
 public:
  // `budget` may be null (no budget). With `seed`, each call's jitter comes from a Random seeded
  // deterministically from (seed, call number); without, from a per-thread entropy source.
  RetryStage(retry::RetryPolicy policy, retry::RetryBudget* budget = nullptr,
             std::optional<uint64_t> seed = std::nullopt);
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
  mutable std::atomic<uint64_t> call_counter_{0};
  mutable StripedCounter calls_, retries_, exhausted_, budget_exhausted_, deadline_exceeded_;
};

class BreakerStage final : public Stage {
 public:
  explicit BreakerStage(circuit::CircuitBreaker& breaker) : breaker_(breaker) {}
  std::unique_ptr<StageRun> start() const override;
  std::size_t run_size() const noexcept override;
  std::size_t run_align() const noexcept override;
  StageRun* start_in(void* storage) const override;
  std::string_view kind() const noexcept override { return "circuit_breaker"; }
  circuit::CircuitBreaker& breaker() const noexcept { return breaker_; }

 private:
  class Run;
  circuit::CircuitBreaker& breaker_;
};

}  // namespace bulwark
