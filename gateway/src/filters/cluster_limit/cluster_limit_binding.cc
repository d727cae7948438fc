// The config binding of the cluster limit (see cluster_limit.h).
#include "filters/cluster_limit/cluster_limit.h"

namespace bulwark::gateway::filters {

std::unique_ptr<filter::RequestFilter> bind_cluster_limit(std::shared_ptr<limit::Bulkhead> bulkhead,
                                                          observe::ClusterMetrics& metrics) {
  return std::make_unique<ClusterLimit>(std::move(bulkhead), metrics.requests_active);
}

}  // namespace bulwark::gateway::filters
