// Worker: one thread, one io_context (concurrency hint 1), one SO_REUSEPORT acceptor per
// listener, its own upstream pools and buffers. Every client connection is a
// listener::Connection on its worker; nothing on the data path is shared between workers except
// atomics (limits, metrics) and the immutable route::Snapshot.
//
// The request's path, station by station (docs/architecture.md):
//   listener/   accept, max_connections, the keep-alive loop, drain        (this folder)
//   http/       the head read and checked in place (hygiene), heads written, local replies
//   route/      the router and the snapshot's runtime of routes and clusters
//   filter/     request filters (filters/<name>/), call policies, response filters
//   upstream/   endpoint pick, pool, the exchange and the body relay
//
// Time comes from the Clock given at construction (SystemClock in the binary).
// Thread-safety: install()/begin_drain()/stop() may be called from any thread (they post to
// the worker); everything else runs on the worker thread.
#pragma once

#include <atomic>
#include <boost/asio/ip/tcp.hpp>
#include <cstdint>
#include <memory>
#include <vector>

#include "bulwark/core/clock.h"
#include "route/runtime.h"

namespace bulwark::gateway::listener {

class Worker {
 public:
  Worker(const Clock& clock, route::Shared& shared, std::shared_ptr<const route::Snapshot> snapshot,
         uint64_t seed);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // Binds one acceptor per endpoint (SO_REUSEPORT, so every worker binds the same address).
  // Throws std::runtime_error naming the address when it cannot be bound. Returns the ports.
  std::vector<uint16_t> listen(const std::vector<boost::asio::ip::tcp::endpoint>& endpoints);

  void start();
  void install(std::shared_ptr<const route::Snapshot> snapshot);
  // Stops accepting, closes idle client and upstream connections; requests in flight finish
  // and then close their connections.
  void begin_drain();
  // Connections still open on this worker.
  uint32_t open_connections() const noexcept;
  // Stops the event loop (whatever is still running is abandoned) and joins the thread.
  void stop();

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace bulwark::gateway::listener
