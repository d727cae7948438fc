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
//                                                         rejected | dropped_stale | released |
//                                                         ignored
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
//   bulwark_health_status{status}                        gauge    1 for the overall status, 0
//       for the others (status = healthy | degraded | unhealthy)
//   bulwark_health_check_status{check, critical, status} gauge    1 for the check's status, 0
//       for the others (status = unknown | passing | failing; critical = true | false)
//   bulwark_health_check_runs_total{check}               counter  finished runs
//   bulwark_health_check_failures_total{check}           counter  failed runs (incl. timeouts)
//   bulwark_health_check_duration_seconds{check}         gauge    how long the last run took
//
//   bulwark_resource_level{resource, level}              gauge    1 for the current level, 0
//       for the others (resource = fds | memory | overall; level = normal | warning | critical |
//       exhausted)
//   bulwark_resource_used{resource}                      gauge    open fds, or RSS bytes
//   bulwark_resource_limit{resource}                     gauge    RLIMIT_NOFILE, or memory limit
//       bytes (absent while a resource is not monitored)
//   bulwark_resource_usage_ratio{resource}               gauge    used / limit
//   bulwark_resource_read_errors_total                   counter  failed or partial readings
//
//   bulwark_alert_state{alert, severity, state}          gauge    1 for the alert's reported
//       state, 0 for the others (state = inactive | pending | firing | resolved | silenced)
//   bulwark_alert_value{alert}                           gauge    last evaluated value or rate
//       (absent before the first evaluation that produced a value)
//
//   bulwark_shutdown_state{state}                        gauge    1 for the coordinator's state,
//       0 for the others (state = running | draining | stopping | forced | stopped)
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
namespace lifecycle {
class ShutdownCoordinator;
}
}  // namespace bulwark

namespace bulwark::observe {

class HealthRegistry;
class ResourceMonitor;
class AlertEngine;

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
inline constexpr std::string_view kHealthStatus = "bulwark_health_status";
inline constexpr std::string_view kHealthCheckStatus = "bulwark_health_check_status";
inline constexpr std::string_view kHealthCheckRuns = "bulwark_health_check_runs_total";
inline constexpr std::string_view kHealthCheckFailures = "bulwark_health_check_failures_total";
inline constexpr std::string_view kHealthCheckDuration = "bulwark_health_check_duration_seconds";
inline constexpr std::string_view kResourceLevel = "bulwark_resource_level";
inline constexpr std::string_view kResourceUsed = "bulwark_resource_used";
inline constexpr std::string_view kResourceLimit = "bulwark_resource_limit";
inline constexpr std::string_view kResourceUsageRatio = "bulwark_resource_usage_ratio";
inline constexpr std::string_view kResourceReadErrors = "bulwark_resource_read_errors_total";
inline constexpr std::string_view kAlertState = "bulwark_alert_state";
inline constexpr std::string_view kAlertValue = "bulwark_alert_value";
inline constexpr std::string_view kShutdownState = "bulwark_shutdown_state";

// Uses breaker.stats() and breaker.name().
void report(const circuit::CircuitBreaker& breaker, MetricsSink& sink);
// Uses budget.snapshot(now) and budget.exhausted_total(); `now` from the budget's clock.
void report(const retry::RetryBudget& budget, std::string_view target, TimePoint now,
            MetricsSink& sink);
// Uses stage.stats().
void report(const RetryStage& stage, std::string_view name, MetricsSink& sink);
void report(const TimeoutStage& stage, std::string_view name, MetricsSink& sink);
// Cached results only (never runs a check): registry.snapshot().
void report(const HealthRegistry& registry, MetricsSink& sink);
// The last poll's readings: monitor.snapshot().
void report(const ResourceMonitor& monitor, MetricsSink& sink);
// The last evaluation: engine.snapshot().
void report(const AlertEngine& engine, MetricsSink& sink);
void report(const lifecycle::ShutdownCoordinator& shutdown, MetricsSink& sink);

}  // namespace bulwark::observe
