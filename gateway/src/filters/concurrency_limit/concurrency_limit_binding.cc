// The config binding of the listener concurrency limit (see concurrency_limit.h).
#include "filters/concurrency_limit/concurrency_limit.h"

#include "filter/reasons.h"

namespace bulwark::gateway::filters {

std::unique_ptr<filter::RequestFilter> bind_concurrency_limit(const config::Listener& listener,
                                                              std::atomic<uint32_t>& in_flight,
                                                              observe::ListenerMetrics& metrics) {
  return std::make_unique<ConcurrencyLimit>(in_flight, listener.limits.max_concurrent_requests,
                                            metrics.requests_active, reason::kConcurrencyLimit);
}

std::unique_ptr<filter::RequestFilter> bind_cluster_concurrency_limit(
    const config::Cluster& cluster, std::atomic<uint32_t>& in_flight,
    observe::ClusterMetrics& metrics) {
  return std::make_unique<ConcurrencyLimit>(in_flight, cluster.max_concurrent_requests,
                                            metrics.requests_active,
                                            reason::kClusterConcurrencyLimit);
}

}  // namespace bulwark::gateway::filters
