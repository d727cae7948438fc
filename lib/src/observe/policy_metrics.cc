#include "bulwark/observe/policy_metrics.h"

#include <array>
#include <span>

#include "bulwark/cache/cache.h"
#include "bulwark/circuit/circuit_breaker.h"
#include "bulwark/fallback/hedge.h"
#include "bulwark/lifecycle/shutdown.h"
#include "bulwark/limit/bulkhead.h"
#include "bulwark/limit/keyed_limiter.h"
#include "bulwark/limit/keyed_rate_limit_stage.h"
#include "bulwark/limit/rate_limit_stage.h"
#include "bulwark/observe/alerts.h"
#include "bulwark/observe/health.h"
#include "bulwark/observe/resource_monitor.h"
#include "bulwark/pipeline/stages.h"
#include "bulwark/retry/retry_budget.h"

namespace bulwark::observe {

namespace {

constexpr std::array<circuit::State, 6> kStates = {
    circuit::State::closed,   circuit::State::open,        circuit::State::half_open,
    circuit::State::disabled, circuit::State::forced_open, circuit::State::metrics_only};

double d(uint64_t v) noexcept { return static_cast<double>(v); }

// A one-label set that may be named and reused across calls (Labels only views a list, and a
// braced list lives only until the end of its statement).
struct OneLabel {
  Label label;
  operator Labels() const noexcept { return Labels(std::span<const Label>(&label, 1)); }
};

}  // namespace

void report(const circuit::CircuitBreaker& breaker, MetricsSink& sink) {
  const circuit::BreakerStats st = breaker.stats();
  const std::string_view name = breaker.name();
  constexpr std::string_view kCallsHelp =
      "Calls through the circuit breaker by how they ended (outcomes partition the attempts).";
  const std::array<std::pair<std::string_view, uint64_t>, 6> outcomes = {{
      {"success", st.successes},
      {"failure", st.failures},
      {"rejected", st.rejected},
      {"dropped_stale", st.dropped_stale},
      {"released", st.released},
      {"ignored", st.ignored},
  }};
  for (const auto& [outcome, value] : outcomes) {
    sink.counter(kBreakerCalls, kCallsHelp, {{"breaker", name}, {"outcome", outcome}}, d(value));
  }
  sink.counter(kBreakerSlowCalls,
               "Calls through the circuit breaker slower than its slow-call duration.",
               {{"breaker", name}}, d(st.slow_calls));
  for (circuit::State s : kStates) {
    sink.gauge(kBreakerState, "Circuit breaker state: 1 for the current state, 0 otherwise.",
               {{"breaker", name}, {"state", circuit::to_string(s)}}, s == st.state ? 1.0 : 0.0);
  }
  sink.counter(kBreakerTransitions, "Circuit breaker state transitions.", {{"breaker", name}},
               d(st.transitions));
}

void report(const retry::RetryBudget& budget, std::string_view target, TimePoint now,
            MetricsSink& sink) {
  const retry::RetryBudget::Snapshot snap = budget.snapshot(now);
  sink.gauge(kRetryBudgetRequests, "Original requests in the retry budget's sliding window.",
             {{"target", target}}, d(snap.requests));
  sink.gauge(kRetryBudgetRetries, "Retries granted in the retry budget's sliding window.",
             {{"target", target}}, d(snap.retries));
  sink.gauge(kRetryBudgetAllowed, "Retries the retry budget's sliding window allows.",
             {{"target", target}}, snap.allowed);
  sink.counter(kRetryBudgetExhausted, "Retries denied because the retry budget was exhausted.",
               {{"target", target}}, d(budget.exhausted_total()));
}

void report(const RetryStage& stage, std::string_view name, MetricsSink& sink) {
  const RetryStage::Stats st = stage.stats();
  sink.counter(kRetryCalls, "Calls entering the retry stage.", {{"retry", name}}, d(st.calls));
  sink.counter(kRetryRetries, "Retries performed by the retry stage.", {{"retry", name}},
               d(st.retries));
  constexpr std::string_view kStopsHelp =
      "Calls that stopped retrying early, by reason (attempts exhausted, retry budget "
      "exhausted, deadline too near).";
  sink.counter(kRetryStops, kStopsHelp, {{"retry", name}, {"reason", "exhausted"}},
               d(st.exhausted));
  sink.counter(kRetryStops, kStopsHelp, {{"retry", name}, {"reason", "budget_exhausted"}},
               d(st.budget_exhausted));
  sink.counter(kRetryStops, kStopsHelp, {{"retry", name}, {"reason", "deadline_exceeded"}},
               d(st.deadline_exceeded));
}

void report(const TimeoutStage& stage, std::string_view name, MetricsSink& sink) {
  const TimeoutStage::Stats st = stage.stats();
  sink.counter(kTimeoutCalls, "Calls entering the timeout stage.", {{"timeout", name}},
               d(st.calls));
  sink.counter(kTimeoutTimeouts, "Calls that the timeout stage ended with a timeout.",
               {{"timeout", name}}, d(st.timeouts));
}

void report(const limit::Bulkhead& bulkhead, MetricsSink& sink) {
  const limit::Bulkhead::Stats st = bulkhead.stats();
  const std::string_view name = bulkhead.name();
  const OneLabel labels{{"bulkhead", name}};
  sink.gauge(kBulkheadInFlight, "Bulkhead permits held now.", labels, d(bulkhead.in_flight()));
  sink.gauge(kBulkheadLimit, "Bulkhead permits allowed at once now.", labels, d(bulkhead.limit()));
  sink.gauge(kBulkheadQueued, "Calls waiting in the bulkhead's queue now.", labels,
             d(bulkhead.queued()));
  constexpr std::string_view kGrantedHelp =
      "Bulkhead permits granted, at once (wait=none) or after queueing (wait=queued).";
  sink.counter(kBulkheadGranted, kGrantedHelp, {{"bulkhead", name}, {"wait", "none"}},
               d(st.granted));
  sink.counter(kBulkheadGranted, kGrantedHelp, {{"bulkhead", name}, {"wait", "queued"}},
               d(st.granted_after_wait));
  constexpr std::string_view kRejectedHelp =
      "Calls the bulkhead refused, by reason (on arrival: queue_full, throttled, no_time_left, "
      "closed; after queueing: timed_out, displaced).";
  const std::array<std::pair<std::string_view, uint64_t>, 6> reasons = {{
      {"queue_full", st.rejected_queue_full},
      {"throttled", st.rejected_throttled},
      {"no_time_left", st.rejected_no_time},
      {"closed", st.rejected_closed},
      {"timed_out", st.timed_out},
      {"displaced", st.displaced},
  }};
  for (const auto& [reason, value] : reasons) {
    sink.counter(kBulkheadRejected, kRejectedHelp, {{"bulkhead", name}, {"reason", reason}},
                 d(value));
  }
  sink.counter(kBulkheadQueuedTotal, "Calls that entered the bulkhead's queue.", labels,
               d(st.queued));
  sink.counter(kBulkheadWithdrawn, "Queued calls withdrawn by their owner before an answer.",
               labels, d(st.withdrawn));
  sink.gauge(kBulkheadHold, "Estimated bulkhead permit hold time (EWMA of releases).", labels,
             std::chrono::duration<double>(bulkhead.hold_estimate()).count());
  sink.gauge(
      kBulkheadEstimatedWait,
      "Estimated wait in the bulkhead for a call arriving now at priority 0.", labels,
      std::chrono::duration<double>(bulkhead.estimated_wait(bulkhead.clock().now())).count());
}

void report(const limit::RateLimiter& limiter, std::string_view name, TimePoint now,
            MetricsSink& sink) {
  sink.gauge(kLimiterRemaining, "Permits the rate limiter could grant now.", {{"limiter", name}},
             d(limiter.peek(now).remaining));
  sink.gauge(kLimiterCapacity, "The most permits the rate limiter grants at one instant.",
             {{"limiter", name}}, d(limiter.limit()));
}

namespace {
constexpr std::string_view kLimiterDecisionsHelp =
    "Calls through a rate limit stage, by decision (admitted, rejected: rate_limited, "
    "refused_no_key: a keyless call refused).";
}  // namespace

void report(const limit::RateLimitStage& stage, std::string_view name, TimePoint now,
            MetricsSink& sink) {
  const limit::RateLimitStage::Stats st = stage.stats();
  sink.counter(kLimiterDecisions, kLimiterDecisionsHelp,
               {{"limiter", name}, {"result", "admitted"}}, d(st.admitted));
  sink.counter(kLimiterDecisions, kLimiterDecisionsHelp,
               {{"limiter", name}, {"result", "rejected"}}, d(st.rejected));
  report(stage.limiter(), name, now, sink);
}

void report(const limit::KeyedRateLimitStage& stage, std::string_view name, MetricsSink& sink) {
  const limit::KeyedRateLimitStage::Stats st = stage.stats();
  sink.counter(kLimiterDecisions, kLimiterDecisionsHelp,
               {{"limiter", name}, {"result", "admitted"}}, d(st.admitted));
  sink.counter(kLimiterDecisions, kLimiterDecisionsHelp,
               {{"limiter", name}, {"result", "rejected"}}, d(st.rejected));
  sink.counter(kLimiterDecisions, kLimiterDecisionsHelp,
               {{"limiter", name}, {"result", "refused_no_key"}}, d(st.refused_no_key));
  sink.counter(kLimiterKeyless, "Calls through a keyed rate limit stage without a key.",
               {{"limiter", name}}, d(st.missing_key));
}

void report(const limit::KeyedLimiter& limiter, std::string_view name, MetricsSink& sink) {
  const limit::KeyedLimiter::Stats st = limiter.stats();
  const OneLabel labels{{"limiter", name}};
  sink.gauge(kKeyedLimiterKeys, "Keys with a state in the keyed rate limiter.", labels, d(st.keys));
  constexpr std::string_view kDecisionsHelp = "Keyed rate limiter decisions, by result.";
  sink.counter(kKeyedLimiterDecisions, kDecisionsHelp, {{"limiter", name}, {"result", "admitted"}},
               d(st.admitted));
  sink.counter(kKeyedLimiterDecisions, kDecisionsHelp, {{"limiter", name}, {"result", "rejected"}},
               d(st.rejected));
  constexpr std::string_view kEvictionsHelp =
      "Keys evicted from the keyed rate limiter: idle (fully recovered) or forced (to make room).";
  sink.counter(kKeyedLimiterEvictions, kEvictionsHelp, {{"limiter", name}, {"reason", "idle"}},
               d(st.evictions_idle));
  sink.counter(kKeyedLimiterEvictions, kEvictionsHelp, {{"limiter", name}, {"reason", "forced"}},
               d(st.evictions_forced));
  sink.counter(kKeyedLimiterLimitedEvictions,
               "Forced evictions of keys that were being limited when evicted.", labels,
               d(st.evictions_limited));
  sink.gauge(kKeyedLimiterMemory, "Bytes the keyed rate limiter has allocated.", labels,
             d(st.memory_bytes));
  sink.gauge(kKeyedLimiterMaxBytes, "The keyed rate limiter's memory bound in bytes.", labels,
             d(st.max_bytes));
  sink.gauge(kKeyedLimiterMaxKeys, "Keys the keyed rate limiter can hold at its memory bound.",
             labels, d(st.max_keys));
}

void report(const fallback::HedgePolicy& policy, std::string_view name, MetricsSink& sink) {
  const fallback::HedgePolicy::Stats st = policy.stats();
  const OneLabel labels{{"hedge", name}};
  sink.counter(kHedgeCalls, "Hedged calls started.", labels, d(st.calls));
  sink.counter(kHedgeHedges, "Hedge attempts started after the first.", labels, d(st.hedges));
  sink.counter(kHedgeWins, "Hedged calls answered by an attempt other than the first.", labels,
               d(st.hedge_wins));
  sink.counter(kHedgeBudgetRefused, "Hedges not started because the retry budget refused.", labels,
               d(st.budget_refused));
}

void report(const cache::CacheStats& st, std::string_view name, MetricsSink& sink) {
  const OneLabel labels{{"cache", name}};
  constexpr std::string_view kLookupsHelp = "Cache lookups, by result (hit: a fresh entry).";
  sink.counter(kCacheLookups, kLookupsHelp, {{"cache", name}, {"result", "hit"}}, d(st.hits));
  sink.counter(kCacheLookups, kLookupsHelp, {{"cache", name}, {"result", "miss"}}, d(st.misses));
  sink.counter(kCacheExpirations, "Cache misses that found the entry expired.", labels,
               d(st.expirations));
  sink.counter(kCacheStaleServed, "Expired cache values served (stale-if-error).", labels,
               d(st.stale_served));
  sink.counter(kCacheFills, "Cache fills started.", labels, d(st.fills));
  sink.counter(kCacheFillFailures, "Cache fills that ended in an error.", labels,
               d(st.fill_failures));
  sink.counter(kCacheFillWaits, "Cache callers that waited for another caller's fill.", labels,
               d(st.fill_waits));
  sink.counter(kCacheEvictions, "Cache entries removed to make room.", labels, d(st.evictions));
  sink.counter(kCacheInvalidations, "Cache entries removed by invalidate, clear or a rejected put.",
               labels, d(st.invalidations));
  sink.counter(kCacheRejected, "Values the cache did not store (too large, or ttl <= 0).", labels,
               d(st.rejected));
  sink.gauge(kCacheEntries, "Cache entries now.", labels, d(st.entries));
  sink.gauge(kCacheBytes, "Charged bytes of the cache's entries now.", labels, d(st.bytes));
}

namespace {

// One gauge per possible value of an enum, 1 for `current`: the usual Prometheus encoding of a
// state, so that `max by (x) (series == 1)` and alerting on a state both work.
template <class Enum, std::size_t N>
void one_hot(MetricsSink& sink, std::string_view name, std::string_view help,
             std::initializer_list<Label> fixed, std::string_view key,
             const std::array<Enum, N>& all, Enum current) {
  for (Enum e : all) {
    std::vector<Label> labels(fixed);
    labels.push_back({key, to_string(e)});
    sink.gauge(name, help, Labels(labels), e == current ? 1.0 : 0.0);
  }
}

constexpr std::array<HealthStatus, 3> kHealthStatuses = {
    HealthStatus::healthy, HealthStatus::degraded, HealthStatus::unhealthy};
constexpr std::array<CheckStatus, 3> kCheckStatuses = {CheckStatus::unknown, CheckStatus::passing,
                                                       CheckStatus::failing};
constexpr std::array<ResourceLevel, 4> kLevels = {ResourceLevel::normal, ResourceLevel::warning,
                                                  ResourceLevel::critical,
                                                  ResourceLevel::exhausted};
constexpr std::array<AlertState, 5> kAlertStates = {AlertState::inactive, AlertState::pending,
                                                    AlertState::firing, AlertState::resolved,
                                                    AlertState::silenced};
constexpr std::array<lifecycle::ShutdownState, 5> kShutdownStates = {
    lifecycle::ShutdownState::running, lifecycle::ShutdownState::draining,
    lifecycle::ShutdownState::stopping, lifecycle::ShutdownState::forced,
    lifecycle::ShutdownState::stopped};

double seconds(Duration d) noexcept { return std::chrono::duration<double>(d).count(); }

}  // namespace

void report(const HealthRegistry& registry, MetricsSink& sink) {
  const HealthSnapshot snap = registry.snapshot();
  one_hot(sink, kHealthStatus, "Overall health: 1 for the current status, 0 otherwise.", {},
          "status", kHealthStatuses, snap.overall);
  for (const CheckSnapshot& c : snap.checks) {
    one_hot(sink, kHealthCheckStatus, "Health check status: 1 for the current status, 0 otherwise.",
            {{"check", c.name}, {"critical", c.critical ? "true" : "false"}}, "status",
            kCheckStatuses, c.status);
    sink.counter(kHealthCheckRuns, "Finished runs of the health check.", {{"check", c.name}},
                 d(c.runs));
    sink.counter(kHealthCheckFailures, "Failed runs of the health check (timeouts included).",
                 {{"check", c.name}}, d(c.failures));
    sink.gauge(kHealthCheckDuration, "Duration of the health check's last finished run.",
               {{"check", c.name}}, seconds(c.last_duration));
  }
}

void report(const ResourceMonitor& monitor, MetricsSink& sink) {
  const ResourceSnapshot snap = monitor.snapshot();
  constexpr std::string_view kLevelHelp =
      "Resource pressure level: 1 for the current level, 0 otherwise.";
  const std::pair<std::string_view, const ResourceUsage*> resources[] = {{"fds", &snap.fds},
                                                                         {"memory", &snap.memory}};
  for (const auto& [name, usage] : resources) {
    one_hot(sink, kResourceLevel, kLevelHelp, {{"resource", name}}, "level", kLevels, usage->level);
    if (!usage->monitored) continue;
    sink.gauge(kResourceUsed, "Resource in use: open file descriptors, or resident bytes.",
               {{"resource", name}}, d(usage->used));
    sink.gauge(kResourceLimit, "Resource limit: RLIMIT_NOFILE, or the memory limit in bytes.",
               {{"resource", name}}, d(usage->limit));
    sink.gauge(kResourceUsageRatio, "Resource in use as a fraction of its limit.",
               {{"resource", name}}, usage->usage);
  }
  one_hot(sink, kResourceLevel, kLevelHelp, {{"resource", "overall"}}, "level", kLevels,
          snap.overall);
  sink.counter(kResourceReadErrors, "Resource readings that failed or missed a value.", {},
               d(snap.read_errors));
}

void report(const AlertEngine& engine, MetricsSink& sink) {
  for (const AlertStatus& a : engine.snapshot()) {
    one_hot(sink, kAlertState, "Alert state: 1 for the current state, 0 otherwise.",
            {{"alert", a.name}, {"severity", to_string(a.severity)}}, "state", kAlertStates,
            a.state);
    if (a.value) {
      sink.gauge(kAlertValue, "Last evaluated value (or per-second rate) of the alert's metric.",
                 {{"alert", a.name}}, *a.value);
    }
  }
}

void report(const lifecycle::ShutdownCoordinator& shutdown, MetricsSink& sink) {
  one_hot(sink, kShutdownState, "Shutdown state: 1 for the current state, 0 otherwise.", {},
          "state", kShutdownStates, shutdown.state());
}

}  // namespace bulwark::observe
