// The config binding of the circuit breaker (see circuit_breaker.h).
#include "filters/circuit_breaker/circuit_breaker.h"

namespace bulwark::gateway::filters {

std::unique_ptr<filter::CallPolicy> bind_circuit_breaker(
    const config::Cluster& cluster, std::shared_ptr<route::ClusterState> state) {
  if (!cluster.circuit_breaker || !state || !state->breaker) return nullptr;
  return std::make_unique<CircuitBreakerPolicy>(std::move(state), cluster.breaker_failures);
}

}  // namespace bulwark::gateway::filters
