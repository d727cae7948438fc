// The state of one worker that its connections share (listener/worker.cc owns it): the event
// loop, the clock, the current snapshot, the upstream pools, spare buffers, the drain flag and
// the pooled per-request state, the list of open connections (for drain). Worker thread only,
// except `open`.
#pragma once

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <list>
#include <memory>

#include "bulwark/core/clock.h"
#include "bulwark/core/random.h"
#include "http/connection_io.h"
#include "listener/request_context.h"
#include "redis/client.h"
#include "route/runtime.h"
#include "upstream/worker_upstreams.h"

namespace bulwark::gateway::listener {

class Connection;

struct WorkerState {
  WorkerState(const Clock& c, route::Shared& s, std::shared_ptr<const route::Snapshot> snap,
              uint64_t seed)
      // One thread runs the loop, and only it touches the worker's sockets and timers (other
      // threads only post to it): the reactor's per-socket locks are switched off; the
      // scheduler's queue stays locked for those posts.
      : ioc_owner(std::make_unique<boost::asio::io_context>(BOOST_ASIO_CONCURRENCY_HINT_UNSAFE_IO)),
        ioc(*ioc_owner),
        clock(c),
        shared(s),
        snapshot(std::move(snap)),
        random(seed),
        wake_hub(std::make_shared<WakeHub>(ioc.get_executor())),
        contexts(upstream::WorkerLeg{ioc.get_executor(), shared.upstream_log, clock, upstreams,
                                     buffers, draining, random},
                 wake_hub),
        redis(ioc.get_executor(), clock, shared.metrics.redis(), random) {
    redis.configure(snapshot->redis);
  }

  // Destroyed first (Worker::Impl's destructor): suspended connections are destroyed with it
  // and give back what they hold in the members below on the way out.
  std::unique_ptr<boost::asio::io_context> ioc_owner;
  boost::asio::io_context& ioc;
  const Clock& clock;
  route::Shared& shared;
  std::shared_ptr<const route::Snapshot> snapshot;
  Random random;
  upstream::WorkerUpstreams upstreams;
  http::BufferPool buffers;
  bool draining = false;
  // Wakes requests that wait for a filter's decision; closed before the loop is destroyed.
  std::shared_ptr<WakeHub> wake_hub;
  RequestContextPool contexts;
  // The worker's connections to Redis (global rate limits), configured from the snapshot.
  redis::Client redis;
  std::list<Connection*> connections;
  std::atomic<uint32_t> open{0};
};

}  // namespace bulwark::gateway::listener
