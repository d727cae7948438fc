// One worker's view of the upstreams: its keep-alive pools (upstream/pool.h, keyed by endpoint
// so they carry over reloads) and its round-robin cursors, with both resolved to plain indexes
// per config snapshot — a request looks nothing up by name.
//
// Thread-safety: none; one per worker thread.
#pragma once

#include <cstdint>
#include <vector>

#include "route/runtime.h"
#include "upstream/pool.h"

namespace bulwark::gateway::upstream {

class WorkerUpstreams {
 public:
  EndpointPool& pool(const route::Snapshot& snapshot, const route::EndpointRuntime& endpoint);
  // The cluster's next round-robin position on this worker.
  uint64_t next_cursor(const route::Snapshot& snapshot, const route::ClusterRuntime& cluster);
  void close_idle() { pools_.close_idle(); }

 private:
  void resolve(const route::Snapshot& snapshot);

  WorkerPools pools_;
  uint64_t resolved_serial_ = UINT64_MAX;      // Snapshot::serial of the indexes below
  std::vector<EndpointPool*> endpoint_pools_;  // by EndpointRuntime::index
  std::vector<uint64_t> cursors_;              // by ClusterRuntime::index
};

}  // namespace bulwark::gateway::upstream
