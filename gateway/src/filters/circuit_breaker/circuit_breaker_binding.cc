// The config binding of the circuit breaker (see circuit_breaker.h).
#include "filters/circuit_breaker/circuit_breaker.h"

namespace bulwark::gateway::filters {

std::unique_ptr<filter::CallPolicy> bind_circuit_breaker(
    const std::vector<std::pair<const config::Cluster*, std::shared_ptr<route::ClusterState>>>&
        clusters) {
  std::vector<CircuitBreakerPolicy::Guarded> guarded;
  bool any = false;
  for (const auto& [config, state] : clusters) {
    any = any || (state && state->breaker);
    guarded.push_back({state, config->breaker_failures});
  }
  if (!any) return nullptr;
  return std::make_unique<CircuitBreakerPolicy>(std::move(guarded));
}

}  // namespace bulwark::gateway::filters
