// The config binding of fault injection (see fault.h).
#include "filters/fault/fault.h"

namespace bulwark::gateway::filters {

std::unique_ptr<filter::RequestFilter> bind_fault(const config::Route& route,
                                                  observe::RouteMetrics& metrics) {
  if (!route.filters.fault) return nullptr;
  return std::make_unique<FaultFilter>(*route.filters.fault, metrics.faults[0], metrics.faults[1]);
}

}  // namespace bulwark::gateway::filters
