// Circuit breaker: a call policy that asks the cluster's libbulwark CircuitBreaker before every
// attempt and tells it how the attempt went. The breaker's rules are the library's, all of them
// (failure rate over a count or time window with min_calls, slow-call rate, consecutive
// failures, open time growing with open_multiplier up to max_open_duration, half-open probes
// with a success threshold and max_wait); the gateway only says what counts as a failure.
//
//   - breaker open (or its half-open probes all taken): the call ends at once with
//     503 circuit_open and Retry-After = the time until the breaker may admit again, in whole
//     seconds rounded up (at least 1), without touching the upstream;
//   - after an attempt: a failure (counts_as_failure: by default connect failures, resets,
//     timeouts, answers that are not HTTP, and 5xx answers; `failure_on` replaces the set) is
//     on_failure, anything else on_success — a 4xx is the caller's error, not the cluster's.
//     The library times the call from its permit, so slow calls count without more work here;
//   - a stale pooled connection replaced before any answer byte gives its permit back
//     (release): it says nothing about the cluster.
// The filter is the last call policy of a chain: the only one that can refuse an attempt, so a
// refusal never strands another policy's per-attempt state. A route's filter holds the breaker
// of its cluster and of each fallback cluster (AttemptStart::cluster says which one an attempt
// goes to); a cluster without circuit_breaker admits everything.
//
// Config (binding: bind_circuit_breaker):
//   clusters[].circuit_breaker.{window_type, window_size, min_calls, failure_rate,
//     slow_call_duration, slow_call_rate, consecutive_failures, open_duration,
//     open_multiplier, max_open_duration, half_open_probes, success_threshold,
//     half_open_max_wait}                        the library's BreakerOptions
//   clusters[].circuit_breaker.failure_on        connect-failure, reset, timeout,
//                                                bad-response, 5xx, gateway-error, 400..599
//
// Metrics: the library's bulwark_breaker_*{breaker=<cluster>} series (state, transitions,
// calls by result, rejections; route/policy_store.h reports them) and
// bulwark_gateway_responses_total{code="503",reason="circuit_open"}.
//
// Thread-safety: immutable; the breaker is thread-safe; the permit lives in FilterState.
#pragma once

#include <memory>
#include <utility>
#include <vector>

#include "bulwark/circuit/circuit_breaker.h"
#include "config/config.h"
#include "filter/filter.h"
#include "route/policy_store.h"

namespace bulwark::gateway::filters {

// Whether an attempt's outcome is a failure for the breaker. Pure.
bool counts_as_failure(const config::FailureSet& failures,
                       const filter::AttemptOutcome& outcome) noexcept;

// Retry-After for a breaker refusal: whole seconds rounded up, at least 1.
uint32_t breaker_retry_after_seconds(Duration until_admitted) noexcept;

class CircuitBreakerPolicy final : public filter::CallPolicy {
 public:
  // One breaker and failure set per cluster of the route (index = filter::ClusterIndex); a null
  // state or one without a breaker admits everything.
  struct Guarded {
    std::shared_ptr<route::ClusterState> state;  // keeps the breaker alive
    config::FailureSet failures;
  };
  explicit CircuitBreakerPolicy(std::vector<Guarded> clusters) noexcept
      : clusters_(std::move(clusters)) {}
  CircuitBreakerPolicy(std::shared_ptr<route::ClusterState> cluster, config::FailureSet failures)
      : CircuitBreakerPolicy(std::vector<Guarded>{{std::move(cluster), failures}}) {}

  std::string_view name() const noexcept override { return "circuit_breaker"; }
  // Each hedged attempt holds its own permit.
  bool per_attempt_state() const noexcept override { return true; }
  filter::LocalReply before_attempt(const filter::AttemptStart& start,
                                    filter::FilterState& state) const override;
  void after_attempt(const filter::AttemptOutcome& outcome,
                     filter::FilterState& state) const override;

 private:
  struct Held {
    circuit::Permit permit;
    filter::ClusterIndex cluster;
    bool held;
  };
  circuit::CircuitBreaker* breaker_of(filter::ClusterIndex cluster) const noexcept;

  std::vector<Guarded> clusters_;
};

// The config binding over a route's clusters (its own first, then its fallbacks, each with its
// config and state): null when none of them has a circuit_breaker.
std::unique_ptr<filter::CallPolicy> bind_circuit_breaker(
    const std::vector<std::pair<const config::Cluster*, std::shared_ptr<route::ClusterState>>>&
        clusters);

}  // namespace bulwark::gateway::filters
