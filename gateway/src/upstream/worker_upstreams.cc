#include "upstream/worker_upstreams.h"

namespace bulwark::gateway::upstream {

void WorkerUpstreams::resolve(const route::Snapshot& snapshot) {
  // By serial: a later snapshot may be allocated where a released one was.
  if (resolved_serial_ == snapshot.serial) return;
  resolved_serial_ = snapshot.serial;
  endpoint_pools_.assign(snapshot.endpoint_count, nullptr);
  cursors_.resize(snapshot.clusters.size(), 0);
  for (const auto& cluster : snapshot.clusters) {
    for (const auto& e : cluster.endpoints) {
      endpoint_pools_[e.index] = &pools_.at(e.pool_key, e.metrics);
    }
  }
}

EndpointPool& WorkerUpstreams::pool(const route::Snapshot& snapshot,
                                    const route::EndpointRuntime& endpoint) {
  resolve(snapshot);
  return *endpoint_pools_[endpoint.index];
}

uint64_t WorkerUpstreams::next_cursor(const route::Snapshot& snapshot,
                                      const route::ClusterRuntime& cluster) {
  resolve(snapshot);
  return cursors_[cluster.index]++;
}

}  // namespace bulwark::gateway::upstream
