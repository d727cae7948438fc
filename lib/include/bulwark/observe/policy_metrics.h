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
//   bulwark_bulkhead_in_flight{bulkhead}                 gauge    permits held now
//   bulwark_bulkhead_limit{bulkhead}                     gauge    permits allowed at once now
//   bulwark_bulkhead_queued{bulkhead}                    gauge    calls waiting in the queue now
//   bulwark_bulkhead_granted_total{bulkhead, wait}       counter  permits granted, wait = none
//       (at once) | queued (after waiting in the queue)
//   bulwark_bulkhead_rejected_total{bulkhead, reason}    counter  calls refused, reason =
//       queue_full | throttled | no_time_left | closed (on arrival; errc queue_full, throttled,
//       wait_timeout, rejected) | timed_out (after queueing, errc::wait_timeout) | displaced
//       (pushed out of the queue by a higher priority, errc::queue_full)
//   bulwark_bulkhead_queued_total{bulkhead}              counter  calls that entered the queue
//   bulwark_bulkhead_withdrawn_total{bulkhead}           counter  queued calls their owner
//                                                                 withdrew (cancelled, gave up)
//   bulwark_bulkhead_hold_seconds{bulkhead}              gauge    estimated permit hold time
//                                                                 (EWMA of releases)
//   bulwark_bulkhead_estimated_wait_seconds{bulkhead}    gauge    estimated wait of a call
//       arriving now at priority 0 (Bulkhead::estimated_wait; no histogram of actual waits is
//       kept)
//
//   bulwark_limiter_decisions_total{limiter, result}     counter  calls through a rate limit
//       stage by decision, result = admitted | rejected (errc::rate_limited) |
//       refused_no_key (keyed stage, MissingKey::refuse)
//   bulwark_limiter_keyless_calls_total{limiter}         counter  keyed stage: calls without a
//                                                                 key
//   bulwark_limiter_remaining{limiter}                   gauge    permits a request could take
//                                                                 now (shared limiters)
//   bulwark_limiter_capacity{limiter}                    gauge    the most permits at one
//                                                                 instant (burst or window)
//
//   bulwark_keyed_limiter_keys{limiter}                  gauge    keys with a state now
//   bulwark_keyed_limiter_decisions_total{limiter, result}  counter  result = admitted | rejected
//   bulwark_keyed_limiter_evictions_total{limiter, reason}  counter  reason = idle (fully
//       recovered: invisible to clients) | forced (evicted early to make room)
//   bulwark_keyed_limiter_limited_evictions_total{limiter}  counter  of the forced evictions,
//       keys that were being limited when evicted
//   bulwark_keyed_limiter_memory_bytes{limiter}          gauge    bytes allocated now
//   bulwark_keyed_limiter_max_bytes{limiter}             gauge    the memory bound
//   bulwark_keyed_limiter_max_keys{limiter}              gauge    keys the limiter holds at its
//                                                                 bound
//
//   bulwark_hedge_calls_total{hedge}                     counter  hedged calls started
//   bulwark_hedge_hedges_total{hedge}                    counter  attempts started after the
//                                                                 first
//   bulwark_hedge_wins_total{hedge}                      counter  calls answered by an attempt
//                                                                 other than the first
//   bulwark_hedge_budget_refused_total{hedge}            counter  hedges the retry budget
//                                                                 refused
//
//   bulwark_cache_lookups_total{cache, result}           counter  result = hit | miss
//   bulwark_cache_expirations_total{cache}               counter  misses that found the entry
//                                                                 expired (part of miss)
//   bulwark_cache_stale_served_total{cache}              counter  expired values served
//                                                                 (stale-if-error)
//   bulwark_cache_fills_total{cache}                     counter  fills started
//   bulwark_cache_fill_failures_total{cache}             counter  fills that ended in an error
//   bulwark_cache_fill_waits_total{cache}                counter  callers that waited for
//                                                                 another caller's fill
//   bulwark_cache_evictions_total{cache}                 counter  entries removed to make room
//   bulwark_cache_invalidations_total{cache}             counter  entries removed by
//                                                                 invalidate/clear/rejected put
//   bulwark_cache_rejected_total{cache}                  counter  values not stored (too large)
//   bulwark_cache_entries{cache}                         gauge    entries now
//   bulwark_cache_bytes{cache}                           gauge    charged bytes now
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
// Label values: `breaker` is CircuitBreaker::name() and `bulkhead` Bulkhead::name(); `target`,
// `retry`, `timeout`, `limiter`, `hedge` and `cache` are the names the caller passes (the
// gateway uses the cluster or route name). The gateway's own per-route rate-limit series
// (bulwark_rate_limit_*) are separate families; these names do not collide with them.
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
namespace limit {
class Bulkhead;
class RateLimiter;
class RateLimitStage;
class KeyedLimiter;
class KeyedRateLimitStage;
}  // namespace limit
namespace fallback {
class HedgePolicy;
}
namespace cache {
struct CacheStats;
template <class K, class V, class Hash, class KeyEqual>
class Cache;
}  // namespace cache
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
inline constexpr std::string_view kBulkheadInFlight = "bulwark_bulkhead_in_flight";
inline constexpr std::string_view kBulkheadLimit = "bulwark_bulkhead_limit";
inline constexpr std::string_view kBulkheadQueued = "bulwark_bulkhead_queued";
inline constexpr std::string_view kBulkheadGranted = "bulwark_bulkhead_granted_total";
inline constexpr std::string_view kBulkheadRejected = "bulwark_bulkhead_rejected_total";
inline constexpr std::string_view kBulkheadQueuedTotal = "bulwark_bulkhead_queued_total";
inline constexpr std::string_view kBulkheadWithdrawn = "bulwark_bulkhead_withdrawn_total";
inline constexpr std::string_view kBulkheadHold = "bulwark_bulkhead_hold_seconds";
inline constexpr std::string_view kBulkheadEstimatedWait =
    "bulwark_bulkhead_estimated_wait_seconds";
inline constexpr std::string_view kLimiterDecisions = "bulwark_limiter_decisions_total";
inline constexpr std::string_view kLimiterKeyless = "bulwark_limiter_keyless_calls_total";
inline constexpr std::string_view kLimiterRemaining = "bulwark_limiter_remaining";
inline constexpr std::string_view kLimiterCapacity = "bulwark_limiter_capacity";
inline constexpr std::string_view kKeyedLimiterKeys = "bulwark_keyed_limiter_keys";
inline constexpr std::string_view kKeyedLimiterDecisions = "bulwark_keyed_limiter_decisions_total";
inline constexpr std::string_view kKeyedLimiterEvictions = "bulwark_keyed_limiter_evictions_total";
inline constexpr std::string_view kKeyedLimiterLimitedEvictions =
    "bulwark_keyed_limiter_limited_evictions_total";
inline constexpr std::string_view kKeyedLimiterMemory = "bulwark_keyed_limiter_memory_bytes";
inline constexpr std::string_view kKeyedLimiterMaxBytes = "bulwark_keyed_limiter_max_bytes";
inline constexpr std::string_view kKeyedLimiterMaxKeys = "bulwark_keyed_limiter_max_keys";
inline constexpr std::string_view kHedgeCalls = "bulwark_hedge_calls_total";
inline constexpr std::string_view kHedgeHedges = "bulwark_hedge_hedges_total";
inline constexpr std::string_view kHedgeWins = "bulwark_hedge_wins_total";
inline constexpr std::string_view kHedgeBudgetRefused = "bulwark_hedge_budget_refused_total";
inline constexpr std::string_view kCacheLookups = "bulwark_cache_lookups_total";
inline constexpr std::string_view kCacheExpirations = "bulwark_cache_expirations_total";
inline constexpr std::string_view kCacheStaleServed = "bulwark_cache_stale_served_total";
inline constexpr std::string_view kCacheFills = "bulwark_cache_fills_total";
inline constexpr std::string_view kCacheFillFailures = "bulwark_cache_fill_failures_total";
inline constexpr std::string_view kCacheFillWaits = "bulwark_cache_fill_waits_total";
inline constexpr std::string_view kCacheEvictions = "bulwark_cache_evictions_total";
inline constexpr std::string_view kCacheInvalidations = "bulwark_cache_invalidations_total";
inline constexpr std::string_view kCacheRejected = "bulwark_cache_rejected_total";
inline constexpr std::string_view kCacheEntries = "bulwark_cache_entries";
inline constexpr std::string_view kCacheBytes = "bulwark_cache_bytes";
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
// Uses bulkhead.stats(), in_flight(), limit(), queued(), hold_estimate() and
// estimated_wait(bulkhead.clock().now()); the label is bulkhead.name(). Takes the bulkhead's
// lock briefly (in_flight, queued, estimated_wait).
void report(const limit::Bulkhead& bulkhead, MetricsSink& sink);
// A shared limiter: bulwark_limiter_remaining (limiter.peek(now)) and bulwark_limiter_capacity.
void report(const limit::RateLimiter& limiter, std::string_view name, TimePoint now,
            MetricsSink& sink);
// The stage's decisions (stage.stats()) and its limiter as above.
void report(const limit::RateLimitStage& stage, std::string_view name, TimePoint now,
            MetricsSink& sink);
// The keyed stage's decisions and keyless calls (stage.stats()). Report the KeyedLimiter
// itself for keys, evictions and memory.
void report(const limit::KeyedRateLimitStage& stage, std::string_view name, MetricsSink& sink);
// limiter.stats(): locks each shard in turn (a sum of per-shard snapshots).
void report(const limit::KeyedLimiter& limiter, std::string_view name, MetricsSink& sink);
// policy.stats().
void report(const fallback::HedgePolicy& policy, std::string_view name, MetricsSink& sink);
// A cache's statistics (Cache::stats()); the overload below reads them from the cache.
void report(const cache::CacheStats& stats, std::string_view name, MetricsSink& sink);
template <class K, class V, class Hash, class KeyEqual>
void report(const cache::Cache<K, V, Hash, KeyEqual>& cache, std::string_view name,
            MetricsSink& sink) {
  report(cache.stats(), name, sink);
}
// Cached results only (never runs a check): registry.snapshot().
void report(const HealthRegistry& registry, MetricsSink& sink);
// The last poll's readings: monitor.snapshot().
void report(const ResourceMonitor& monitor, MetricsSink& sink);
// The last evaluation: engine.snapshot().
void report(const AlertEngine& engine, MetricsSink& sink);
void report(const lifecycle::ShutdownCoordinator& shutdown, MetricsSink& sink);

}  // namespace bulwark::observe
