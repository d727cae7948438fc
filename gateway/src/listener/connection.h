// Connection: one client connection and its keep-alive loop — where a request starts and ends.
//
//   serve()            max_connections, then request after request until either side closes
//   the idle wait      (in serve's own frame) (a brand-new connection waits at most header_read, a
//                      kept-alive one `idle`); with many connections open it holds no read
//                      buffer meanwhile (release_while_idle)
//   read_head          the head under the header deadline (408) and the size limits (414,
//                      431), parsed in place (http/message_parser.h)
//   admit              hygiene (http/hygiene.h), routing (route/router.h), request filters
//                      (filter/chain.h): pure decisions; a refusal is a LocalReply; a filter
//                      that must wait for its decision (a queued cluster permit) suspends the
//                      request in wait_for_filter until it is woken or its deadline passes
//   upstream::Exchange the call and the relay of the answer
//   answer             every answer the gateway makes itself: http/head_writer.h
//                      write_local_reply, counted per reason, access-logged
//
// The per-request state (buffers, parser, exchange, filter state) is a RequestContext from the
// worker's pool, held while a request is in progress: an idle keep-alive connection holds its
// socket and its timer, nothing else. Nothing is reallocated per request.
#pragma once

#include <list>
#include <optional>
#include <string>
#include <vector>

#include "filter/chain.h"
#include "http/connection_io.h"
#include "http/hygiene.h"
#include "http/message_parser.h"
#include "http/stream.h"
#include "http/tls_context.h"
#include "listener/request_context.h"
#include "listener/worker_state.h"
#include "upstream/exchange.h"

namespace bulwark::gateway::listener {

// Up to this many open connections on a worker, a connection waiting for its next request keeps
// its request state and read buffer (the cheaper wait); beyond it, waiting connections give
// them back to the worker (the lighter wait: a few hundred bytes each). The decision is taken at
// each wait.
inline constexpr uint32_t kKeepStateUpToConnections = 256;
bool release_while_idle(uint32_t open_connections) noexcept;

class Connection {
 public:
  Connection(WorkerState& worker, http::Socket socket, std::size_t listener);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // The connection's life; the coroutine owns the connection (one frame for both).
  static http::Task<void> serve(std::unique_ptr<Connection> self);
  // Drain: a connection waiting for its next request is closed at once.
  void cancel_if_idle() noexcept;

 private:
  enum class HeadResult : uint8_t { ready, refused, gone };

  // TLS: the server handshake within tls.handshake_timeout of the accept, counted by result.
  http::Task<bool> handshake();
  // The idle wait's decisions (serve() awaits in its own frame): arms the idle deadline and
  // says whether the connection keeps its state while it waits (else: wait for readability).
  bool begin_idle_wait();
  boost::asio::mutable_buffer read_room();
  http::Task<HeadResult> read_head();
  // Sends ctx_->reply (kept in the context rather than in coroutine frames: Asio reuses frames
  // of up to about 1 KiB only, and a frame holding LocalReply temporaries grows past that).
  http::Task<bool> answer();
  http::Task<bool> proxy();

  void begin_request();
  void take_context();
  void give_back_context() noexcept;
  filter::LocalReply check_buffered_head(std::size_t head_end);
  filter::LocalReply parse_head(std::size_t head_end);
  filter::LocalReply admit();
  filter::LocalReply route_request(const http::Framing& framing);
  // A request filter asked the request to wait (LocalReply::wait): waits, then asks it again.
  http::Task<void> wait_for_filter();
  // The routed, admitted request made ready for upstream::Exchange (503 no_endpoint when its
  // cluster has none).
  filter::LocalReply prepare_exchange();
  void ensure_request_id();
  void record(int status, std::string_view reason);
  void shutdown(boost::asio::socket_base::shutdown_type how) noexcept;
  TimePoint now() const noexcept { return worker_.clock.now(); }

  WorkerState& worker_;
  // listeners[].tls as the connection was accepted (kept for its life: the stream uses it).
  std::shared_ptr<http::ServerTls> tls_;
  http::Stream stream_;  // the client's connection: TCP, or TLS over it
  std::string client_subject_;  // a verified client certificate's subject (RFC 2253)
  std::size_t listener_;
  std::list<Connection*>::iterator registration_;
  std::string client_;          // "ip:port"
  std::string_view client_ip_;  // view into client_
  TimePoint accepted_;
  uint32_t connections_at_accept_ = 0;  // this listener's open connections, this one included
  bool first_request_ = true;
  bool idle_ = false;

  std::size_t in_capacity_ = 0;
  http::DeadlineTimer timer_;
  // The per-request state, from the worker's pool while a request is in progress (an idle
  // connection holds none).
  std::unique_ptr<RequestContext> ctx_;

  // The request in progress.
  std::shared_ptr<const route::Snapshot> snapshot_;
  const route::ListenerRuntime* listener_runtime_ = nullptr;
  const route::RouteRuntime* route_ = nullptr;
  TimePoint start_;
  bool keep_alive_ = true;
  bool head_request_ = false;
  bool has_body_ = false;
  bool chunked_body_ = false;
};

}  // namespace bulwark::gateway::listener
