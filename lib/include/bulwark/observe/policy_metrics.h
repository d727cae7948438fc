// Reporters: the fixed set of series each library policy exports, read from the policy's own
// statistics at collection time.
//
// The policies count on their hot paths with striped counters (no lock, no metric lookups);
// these functions read those counters and describe them to a MetricsSink. They cost nothing
// between scrapes. Register them on a Registry as collectors:
//
//   registry.add_collector([&](bulwark::observe::MetricsSink& s) {
//     bulwark::observe::report(breaker, s);
//     bulwark::observe::report(budget, "users", clock.now(), s);
//     bulwark::observe::report(retry_stage, "users", s);
//   });
//
// The series (names, types and labels are stable; docs/observability.md has the table):
//
//   bulwark_breaker_calls_total{breaker, outcome}        counter  outcome = success | failure |
//                                                         rejected | dropped_stale | released
//       Calls by how they ended. The outcomes partition the calls attempted: once every permit
//       has been returned, their sum is the number of try_acquire calls.
//   bulwark_breaker_slow_calls_total{breaker}            counter  successes and failures slower
//                                                                 than slow_call_duration
//   bulwark_breaker_state{breaker, state}                gauge    1 for the current state, 0
//       for the five others (state = closed | open | half_open | disabled | forced_open |
//       metrics_only)
//   bulwark_breaker_transitions_total{breaker}           counter  state transitions
//
//   bulwark_retry_budget_requests{target}                gauge    original requests in window
//   bulwark_retry_budget_retries{target}                 gauge    retries granted in window
//   bulwark_retry_budget_allowed{target}                 gauge    retries the window allows
//   bulwark_retry_budget_exhausted_total{target}         counter  retries denied by the budget
//
//   bulwark_retry_calls_total{retry}                     counter  calls entering the stage
//   bulwark_retry_retries_total{retry}                   counter  retries performed
//   bulwark_retry_stops_total{retry, reason}             counter  calls that stopped retrying
//       early, reason = exhausted (max_attempts reached) | budget_exhausted |
//       deadline_exceeded
//
//   bulwark_timeout_calls_total{timeout}                 counter  calls entering the stage
//   bulwark_timeout_timeouts_total{timeout}              counter  calls that timed out
//
// Label values: `breaker` is CircuitBreaker::name(); `target`, `retry` and `timeout` are the
// names the caller passes (the gateway uses the cluster or route name).
//
// Thread-safety: safe from any thread, concurrently with traffic on the policies; each value
// is read atomically, but the series of one policy are not one consistent snapshot.
#pragma once

#include <string_view>

#include "bulwark/core/clock.h"
#include "bulwark/observe/sink.h"

namespace bulwark {
class RetryStage;
class TimeoutStage;
namespace circuit {
class CircuitBreaker;
}
namespace retry {
class RetryBudget;
}
}  // namespace bulwark

namespace bulwark::observe {

inline constexpr std::string_view kBreakerCalls = "bulwark_breaker_calls_total";
inline constexpr std::string_view kBreakerSlowCalls = "bulwark_breaker_slow_calls_total";
inline constexpr std::string_view kBreakerState = "bulwark_breaker_state";
inline constexpr std::string_view kBreakerTransitions = "bulwark_breaker_transitions_total";
inline constexpr std::string_view kRetryBudgetRequests = "bulwark_retry_budget_requests";
inline constexpr std::string_view kRetryBudgetRetries = "bulwark_retry_budget_retries";
inline constexpr std::string_view kRetryBudgetAllowed = "bulwark_retry_budget_allowed";
inline constexpr std::string_view kRetryBudgetExhausted = "bulwark_retry_budget_exhausted_total";
inline constexpr std::string_view kRetryCalls = "bulwark_retry_calls_total";
inline constexpr std::string_view kRetryRetries = "bulwark_retry_retries_total";
inline constexpr std::string_view kRetryStops = "bulwark_retry_stops_total";
inline constexpr std::string_view kTimeoutCalls = "bulwark_timeout_calls_total";
inline constexpr std::string_view kTimeoutTimeouts = "bulwark_timeout_timeouts_total";

// Uses breaker.stats() and breaker.name().
void report(const circuit::CircuitBreaker& breaker, MetricsSink& sink);
// Uses budget.snapshot(now) and budget.exhausted_total(); `now` from the budget's clock.
void report(const retry::RetryBudget& budget, std::string_view target, TimePoint now,
            MetricsSink& sink);
// Uses stage.stats().
void report(const RetryStage& stage, std::string_view name, MetricsSink& sink);
void report(const TimeoutStage& stage, std::string_view name, MetricsSink& sink);

}  // namespace bulwark::observe
