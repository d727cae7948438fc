// The config binding of retry (see retry.h).
#include "filters/retry/retry.h"

namespace bulwark::gateway::filters {

std::unique_ptr<filter::CallPolicy> bind_retry(const config::Route& route,
                                               std::shared_ptr<retry::RetryBudget> budget,
                                               observe::RouteMetrics& metrics) {
  if (!route.retry || route.retry->attempts <= 1) return nullptr;
  return std::make_unique<Retry>(*route.retry, route.timeouts.request, std::move(budget), metrics);
}

}  // namespace bulwark::gateway::filters
