// Worker: one thread, one io_context, one SO_REUSEPORT acceptor per listener, its own upstream
// pools. Every client connection is a coroutine on its worker; nothing on the data path is
// shared between workers except atomics (limits, metrics) and the immutable Snapshot.
//
// The per-request path (proxy/server.cc): read the header under timeouts.header_read and the
// header limits -> hygiene checks (http/hygiene.h) -> route -> listener concurrency limit ->
// pick an endpoint (round_robin / least_request) -> pooled or new upstream connection
// (connect_timeout) -> forward the header, stream the request body -> read the response header
// (first-byte and request deadlines) -> stream the response body under the route's stream
// guards -> back to the pool when both sides allow keep-alive. Every refusal is answered by
// the gateway itself with a status, `x-bulwark-reason` and a JSON body; docs/gateway.md lists
// them.
//
// Thread-safety: install()/begin_drain()/stop() may be called from any thread (they post to
// the worker); everything else runs on the worker thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <thread>
#include <vector>

#include "proxy/runtime.h"

namespace bulwark::gateway::proxy {

class Worker {
 public:
  Worker(Shared& shared, std::shared_ptr<const Snapshot> snapshot, uint64_t seed);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // Binds one acceptor per endpoint (SO_REUSEPORT, so every worker binds the same address).
  // Throws std::runtime_error naming the address when it cannot be bound. Returns the ports.
  std::vector<uint16_t> listen(const std::vector<boost::asio::ip::tcp::endpoint>& endpoints);

  void start();
  void install(std::shared_ptr<const Snapshot> snapshot);
  // Stops accepting, closes idle client and upstream connections; requests in flight finish
  // and then close their connections.
  void begin_drain();
  // Connections still open on this worker.
  uint32_t open_connections() const noexcept;
  // Stops the event loop (whatever is still running is abandoned) and joins the thread.
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace bulwark::gateway::proxy
