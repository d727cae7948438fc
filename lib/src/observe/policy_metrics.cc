#include "bulwark/observe/policy_metrics.h"

#include <array>

#include "bulwark/circuit/circuit_breaker.h"
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
  const std::array<std::pair<std::string_view, uint64_t>, 5> outcomes = {{
      {"success", st.successes},
      {"failure", st.failures},
      {"rejected", st.rejected},
      {"dropped_stale", st.dropped_stale},
      {"released", st.released},
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

}  // namespace bulwark::observe
