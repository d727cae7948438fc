// The config binding of hedging (see hedge.h).
#include "filters/hedge/hedge.h"

namespace bulwark::gateway::filters {

std::unique_ptr<Hedge> bind_hedge(const config::Route& route,
                                  std::shared_ptr<retry::RetryBudget> budget, Clock& clock,
                                  observe::RouteMetrics& metrics) {
  if (!route.hedge) return nullptr;
  // A route with retry records its requests in the budget through its retry policy.
  const bool records_requests = !route.retry.has_value();
  return std::make_unique<Hedge>(*route.hedge, std::move(budget), records_requests, clock,
                                 metrics);
}

}  // namespace bulwark::gateway::filters
