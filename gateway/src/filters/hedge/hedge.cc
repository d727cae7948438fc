#include "filters/hedge/hedge.h"

namespace bulwark::gateway::filters {

namespace {

fallback::HedgeOptions options_of(const config::HedgeSpec& spec, bool records_requests) {
  fallback::HedgeOptions o;
  o.delay = spec.delay;
  o.max_attempts = spec.max_attempts;
  // A failure leaves the race to the attempts still running; retrying it is retry's job.
  o.hedge_on_failure = false;
  o.record_requests = records_requests;
  return o;
}

}  // namespace

Hedge::Hedge(const config::HedgeSpec& spec, std::shared_ptr<retry::RetryBudget> budget,
             bool records_requests, Clock& clock, observe::RouteMetrics& metrics)
    : budget_(std::move(budget)),
      policy_(options_of(spec, records_requests), budget_.get(), clock),
      metrics_(metrics) {}

void Hedge::count_hedge() const noexcept {
  if (metrics_.hedges != nullptr) metrics_.hedges->inc();
}

void Hedge::count_win() const noexcept {
  if (metrics_.hedge_wins != nullptr) metrics_.hedge_wins->inc();
}

}  // namespace bulwark::gateway::filters
