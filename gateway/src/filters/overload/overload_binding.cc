// The config binding of overload shedding (see overload.h).
#include "filters/overload/overload.h"

namespace bulwark::gateway::filters {

std::unique_ptr<filter::RequestFilter> bind_overload(const config::Route& route,
                                                     const OverloadManager& manager) {
  return std::make_unique<OverloadFilter>(manager, route.priority);
}

}  // namespace bulwark::gateway::filters
