#include "bulwark/observe/policy_metrics.h"

#include <array>

#include "bulwark/circuit/circuit_breaker.h"
#include "bulwark/lifecycle/shutdown.h"
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
