#include "filters/circuit_breaker/circuit_breaker.h"

#include "filter/reasons.h"

namespace bulwark::gateway::filters {

bool counts_as_failure(const config::FailureSet& failures,
                       const filter::AttemptOutcome& outcome) noexcept {
  using Kind = filter::AttemptOutcome::Kind;
  switch (outcome.kind) {
    case Kind::response:
      return failures.counts_status(outcome.status);
    case Kind::connect_failure:
      return failures.connect_failure;
    case Kind::reset:
      return failures.reset;
    case Kind::timeout:
      return failures.timeout;
    case Kind::bad_response:
      return failures.bad_response;
  }
  return true;
}

uint32_t breaker_retry_after_seconds(Duration until_admitted) noexcept {
  if (until_admitted <= Duration::zero()) return 1;
  const auto seconds = std::chrono::ceil<std::chrono::seconds>(until_admitted).count();
  if (seconds > UINT32_MAX) return UINT32_MAX;
  return seconds < 1 ? 1 : static_cast<uint32_t>(seconds);
}

circuit::CircuitBreaker* CircuitBreakerPolicy::breaker_of(
    filter::ClusterIndex cluster) const noexcept {
  if (cluster >= clusters_.size() || !clusters_[cluster].state) return nullptr;
  return clusters_[cluster].state->breaker.get();
}

filter::LocalReply CircuitBreakerPolicy::before_attempt(const filter::AttemptStart& start,
                                                        filter::FilterState& state) const {
  Held& held = state.state<Held>();
  held.held = false;
  circuit::CircuitBreaker* breaker = breaker_of(start.cluster);
  if (breaker == nullptr) return {};
  const circuit::Admission admission = breaker->try_acquire(start.now);
  if (!admission.allowed) {
    filter::LocalReply reply = filter::refuse(503, reason::kCircuitOpen);
    reply.retry_after_seconds = breaker_retry_after_seconds(admission.retry_after);
    return reply;
  }
  held = {admission.permit, start.cluster, true};
  return {};
}

void CircuitBreakerPolicy::after_attempt(const filter::AttemptOutcome& outcome,
                                         filter::FilterState& state) const {
  Held& held = state.state<Held>();
  if (!held.held) return;
  held.held = false;
  circuit::CircuitBreaker& breaker = *breaker_of(held.cluster);
  if (outcome.discarded) {
    breaker.release(held.permit);
  } else if (counts_as_failure(clusters_[held.cluster].failures, outcome)) {
    breaker.on_failure(held.permit, outcome.now);
  } else {
    breaker.on_success(held.permit, outcome.now);
  }
}

}  // namespace bulwark::gateway::filters
