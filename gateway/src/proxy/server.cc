// The data path of the gateway: client connections, request checks, routing, upstream
// exchange and streaming. This is the one proxy translation unit that includes Beast's HTTP
// headers (with BOOST_BEAST_SEPARATE_COMPILATION they are declarations only).
#include "proxy/server.h"

#include <algorithm>
#include <array>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <list>
#include <optional>
#include <string>
#include <string_view>

#include "bulwark/core/clock.h"
#include "bulwark/core/random.h"
#include "http/hygiene.h"
#include "observe/request_id.h"
#include "upstream/pool.h"

namespace bulwark::gateway::proxy {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace hygiene = ::bulwark::gateway::http;
namespace http = beast::http;
using tcp = net::ip::tcp;
using boost::system::error_code;

namespace {

// Named so that co_await expressions take an lvalue (GCC 12 mishandles some temporaries
// inside co_await operands).
constexpr auto kTuple = net::as_tuple(net::use_awaitable);
constexpr std::size_t kBufferBytes = 64 * 1024UL;
constexpr std::size_t kUpstreamHeaderLimit = 64 * 1024UL;
constexpr std::size_t kUpstreamReadBytes = 16 * 1024UL;
// Room for the method, the version and the line ends around a request target of
// max_uri_bytes, so that an overlong request line is told apart from overlong headers.
constexpr std::size_t kRequestLineSlack = 64;

TimePoint now() { return SystemClock::instance().now(); }

std::string_view reason_phrase(int status) {
  return http::obsolete_reason(static_cast<http::status>(status));
}

bool is_idempotent(http::verb v) {
  switch (v) {
    case http::verb::get:
    case http::verb::head:
    case http::verb::options:
    case http::verb::put:
    case http::verb::delete_:
    case http::verb::trace:
      return true;
    default:
      return false;
  }
}

// Removes the hop-by-hop fields (RFC 9110 §7.6.1): Connection and every field it names, and
// the fixed list. Transfer-Encoding is re-framed per hop by Beast and stays.
template <class Fields>
void strip_hop_by_hop(Fields& fields) {
  std::vector<std::string> named;
  const auto range = fields.equal_range(http::field::connection);
  for (auto it = range.first; it != range.second; ++it) {
    for (auto token : http::token_list(it->value())) named.emplace_back(token);
  }
  for (const auto& n : named) {
    // Framing and Host are never hop-by-hop, whatever Connection says: removing them would
    // change how the next hop reads the message (requests naming them are refused earlier).
    if (beast::iequals(n, "content-length") || beast::iequals(n, "transfer-encoding") ||
        beast::iequals(n, "host")) {
      continue;
    }
    fields.erase(n);
  }
  for (auto f : {http::field::connection, http::field::keep_alive, http::field::proxy_connection,
                 http::field::te, http::field::trailer, http::field::upgrade,
                 http::field::proxy_authenticate, http::field::proxy_authorization}) {
    fields.erase(f);
  }
}

// Why a body stopped, mapped to the stream-guard reasons of the access log and metrics.
enum class StreamEnd { done, upstream_reset, idle, total, max_bytes, max_chunk, client_closed };

std::string_view stream_reason(StreamEnd e) {
  switch (e) {
    case StreamEnd::done:
      return "";
    case StreamEnd::upstream_reset:
      return "upstream_reset";
    case StreamEnd::idle:
      return "stream_idle_timeout";
    case StreamEnd::total:
      return "stream_total_timeout";
    case StreamEnd::max_bytes:
      return "stream_max_bytes";
    case StreamEnd::max_chunk:
      return "stream_max_chunk";
    case StreamEnd::client_closed:
      return "client_closed";
  }
  return "";
}

// Cancels a pending read on a stream at a deadline, without closing the socket. Shared with
// the timer's handler, which may run after the session frame is gone: it touches the stream
// only while armed.
struct HeaderTimer : std::enable_shared_from_this<HeaderTimer> {
  explicit HeaderTimer(net::io_context& ioc) : timer(ioc) {}
  void arm(TimePoint deadline, beast::tcp_stream& s) {
    stream = &s;
    timer.expires_at(deadline);
    timer.async_wait([self = shared_from_this()](error_code ec) {
      if (ec || self->stream == nullptr) return;
      self->fired = true;
      error_code ignored;
      self->stream->socket().cancel(ignored);
    });
  }
  void disarm() {
    stream = nullptr;
    timer.cancel();
  }
  net::steady_timer timer;
  beast::tcp_stream* stream = nullptr;
  bool fired = false;
};

}  // namespace

struct Worker::Impl {
  Impl(Shared& s, std::shared_ptr<const Snapshot> snap, uint64_t seed)
      : ioc_owner(std::make_unique<net::io_context>(1)),
        ioc(*ioc_owner),
        shared(s),
        snapshot(std::move(snap)),
        random(seed) {}
  // Suspended sessions are destroyed with the io_context and touch `conns` and the pools on
  // the way out, so the io_context goes first; sockets it owns (acceptors, idle upstream
  // connections) must go before it.
  ~Impl() {
    ioc.stop();
    if (thread.joinable()) thread.join();
    acceptors.clear();
    pools.close_idle();
    ioc_owner.reset();
  }

  std::unique_ptr<net::io_context> ioc_owner;
  net::io_context& ioc;
  Shared& shared;
  std::vector<std::unique_ptr<tcp::acceptor>> acceptors;
  std::shared_ptr<const Snapshot> snapshot;  // worker thread only
  Random random;
  upstream::WorkerPools pools;
  std::unordered_map<std::string, uint64_t> rr;  // round-robin cursor per cluster
  std::thread thread;
  std::atomic<uint32_t> open{0};
  bool draining = false;  // worker thread only

  struct Conn {
    beast::tcp_stream* stream = nullptr;
    bool idle = false;
  };
  std::list<Conn> conns;  // worker thread only; for drain

  net::awaitable<void> accept_loop(tcp::acceptor& acceptor, std::size_t listener);
  net::awaitable<void> session(tcp::socket socket, std::size_t listener);
};

namespace {

// Everything one request carries through its life, for the response, metrics and the log.
struct Exchange {
  std::shared_ptr<const Snapshot> snap;
  std::size_t listener = 0;
  TimePoint start;
  std::chrono::system_clock::time_point wall_start;
  std::string request_id;
  std::string client;
  std::string method;
  std::string path;
  const RouteRuntime* route = nullptr;
  const EndpointRuntime* endpoint = nullptr;
  int status = 0;
  std::string_view reason;
  uint32_t attempts = 0;
  uint64_t bytes_in = 0;
  uint64_t bytes_out = 0;
};

void record(Shared& shared, const Exchange& x) {
  const TimePoint end = now();
  const auto elapsed = end - x.start;
  const std::size_t cls = observe::status_class_index(x.status);
  if (x.route != nullptr && x.status != 0) {
    auto* rm = x.route->metrics;
    if (rm->requests[cls]) rm->requests[cls]->inc();
    if (rm->duration) rm->duration->observe(elapsed);
    if (rm->request_bytes) rm->request_bytes->inc(static_cast<double>(x.bytes_in));
    if (rm->response_bytes) rm->response_bytes->inc(static_cast<double>(x.bytes_out));
    if (x.route->cluster != nullptr && x.endpoint != nullptr) {
      auto* cm = x.route->cluster->metrics;
      if (cm->requests[cls]) cm->requests[cls]->inc();
      if (cm->duration) cm->duration->observe(elapsed);
      auto* em = x.endpoint->metrics;
      if (em->requests[cls]) em->requests[cls]->inc();
      if (em->duration) em->duration->observe(elapsed);
    }
  }
  if (shared.access_log && shared.access_log->enabled()) {
    observe::AccessRecord r;
    r.start = x.wall_start;
    r.request_id = x.request_id;
    r.client = x.client;
    r.method = x.method;
    r.path = x.path;
    r.status = x.status;
    if (x.route != nullptr) {
      r.route = x.route->config->name;
      if (x.route->cluster != nullptr) r.cluster = x.route->cluster->config->name;
    }
    if (x.endpoint != nullptr) r.endpoint = x.endpoint->address;
    r.attempts = x.attempts;
    r.duration = std::chrono::duration_cast<std::chrono::nanoseconds>(elapsed);
    r.bytes_in = x.bytes_in;
    r.bytes_out = x.bytes_out;
    r.reason = x.reason;
    shared.access_log->log(r);
  }
}

// The response the gateway makes itself.
http::response<http::string_body> error_response(int status, std::string_view reason,
                                                 const std::string& request_id, int version,
                                                 bool keep_alive) {
  http::response<http::string_body> res{static_cast<http::status>(status), version};
  res.set(http::field::server, "bulwark");
  res.set(http::field::content_type, "application/json");
  res.set("x-bulwark-reason", reason);
  res.set("x-request-id", request_id);
  if (status == 503) res.set(http::field::retry_after, "1");
  std::string body = "{\"error\":\"";
  body += reason_phrase(status);
  body += "\",\"reason\":\"";
  body += reason;  // reasons are snake_case constants: nothing to escape
  body += "\",\"request_id\":\"";
  body += request_id;  // validated or generated: [A-Za-z0-9._:-] only
  body += "\"}";
  res.body() = std::move(body);
  res.keep_alive(keep_alive);
  res.prepare_payload();
  return res;
}

// Writes a response of the gateway's own; to a HEAD request only its head (with the
// Content-Length the body would have), as RFC 9110 §9.3.2 requires.
net::awaitable<error_code> write_answer(beast::tcp_stream& stream,
                                        http::response<http::string_body>& res, bool head) {
  if (head) {
    http::response_serializer<http::string_body> sr{res};
    auto [ec, n] = co_await http::async_write_header(stream, sr, kTuple);
    co_return ec;
  }
  auto [ec, n] = co_await http::async_write(stream, res, kTuple);
  co_return ec;
}

}  // namespace

net::awaitable<void> Worker::Impl::accept_loop(tcp::acceptor& acceptor, std::size_t listener) {
  for (;;) {
    auto [ec, socket] = co_await acceptor.async_accept(kTuple);
    if (ec) {
      if (ec == net::error::operation_aborted || !acceptor.is_open()) co_return;
      // EMFILE and friends: the listening socket stays readable, so retrying at once would
      // spin; pause briefly and let connections finish (the resource monitor reports it).
      net::steady_timer pause(ioc);
      pause.expires_after(std::chrono::milliseconds(50));
      auto [wec] = co_await pause.async_wait(kTuple);
      if (wec || !acceptor.is_open()) co_return;
      continue;
    }
    net::co_spawn(ioc, session(std::move(socket), listener), net::detached);
  }
}

net::awaitable<void> Worker::Impl::session(tcp::socket socket, std::size_t listener_index) {
  ListenerShared& ls = *shared.listeners[listener_index];
  std::string client;
  {
    error_code ec;
    const auto remote = socket.remote_endpoint(ec);
    if (!ec) client = remote.address().to_string() + ":" + std::to_string(remote.port());
  }
  std::string client_ip = client.substr(0, client.rfind(':'));
  socket.set_option(tcp::no_delay(true));
  beast::tcp_stream stream(std::move(socket));
  open.fetch_add(1, std::memory_order_relaxed);
  const uint32_t connections = ls.connections.fetch_add(1, std::memory_order_relaxed) + 1;
  auto conn_it = conns.insert(conns.end(), Conn{&stream, false});
  {
    auto* lm = snapshot->listeners[listener_index].metrics;
    if (lm->connections_total) lm->connections_total->inc();
    if (lm->connections_active) lm->connections_active->inc();
  }
  // Whatever happens below, the connection is accounted for exactly once.
  struct Leave {
    Impl* self = nullptr;
    ListenerShared* ls = nullptr;
    std::list<Conn>::iterator it;
    observe::ListenerMetrics* lm = nullptr;
    ~Leave() {
      self->conns.erase(it);
      ls->connections.fetch_sub(1, std::memory_order_relaxed);
      self->open.fetch_sub(1, std::memory_order_relaxed);
      if (lm->connections_active) lm->connections_active->dec();
    }
  } leave{this, &ls, conn_it, snapshot->listeners[listener_index].metrics};

  beast::flat_buffer buffer;
  bool first = true;
  const TimePoint accepted = now();

  {
    const auto& lc = *snapshot->listeners[listener_index].config;
    if (connections > lc.limits.max_connections) {
      // Refused before a byte is read: logged without method and path.
      Exchange x;
      x.snap = snapshot;
      x.listener = listener_index;
      x.start = accepted;
      x.wall_start = std::chrono::system_clock::now();
      x.client = client;
      x.request_id = observe::generate_request_id(random);
      x.status = 503;
      x.reason = "connection_limit";
      auto res = error_response(503, x.reason, x.request_id, 11, false);
      snapshot->listeners[listener_index].metrics->response(503, x.reason).inc();
      stream.expires_after(std::chrono::seconds(1));
      co_await http::async_write(stream, res, kTuple);
      record(shared, x);
      error_code ignored;
      stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
      co_return;
    }
  }

  for (;;) {
    // Each request runs on the snapshot current when it starts.
    const std::shared_ptr<const Snapshot> snap = snapshot;
    const ListenerRuntime& lr = snap->listeners[listener_index];
    const config::Listener& lc = *lr.config;

    // 1. Wait for the request to begin: the idle timeout between keep-alive requests, the
    //    header timeout for a brand-new connection (a client that connects and sends nothing
    //    is a slowloris too).
    if (buffer.size() == 0) {
      if (draining) co_return;
      conn_it->idle = true;
      stream.expires_at(first ? accepted + lc.timeouts.header_read : now() + lc.timeouts.idle);
      auto [ec, n] = co_await stream.async_read_some(buffer.prepare(kBufferBytes), kTuple);
      conn_it->idle = false;
      // Silence until the deadline, or the client leaving: close without an answer (nothing
      // was asked).
      if (ec) co_return;
      buffer.commit(n);
    }
    const bool new_connection = first;
    first = false;

    Exchange x;
    x.snap = snap;
    x.listener = listener_index;
    x.start = now();
    x.wall_start = std::chrono::system_clock::now();
    x.client = client;

    // Answers with a response of the gateway's own, records it, and says whether the
    // connection can go on.
    bool keep_alive = true;
    bool head_request = false;
    auto refuse = [&](int status, std::string_view reason, bool close) -> net::awaitable<bool> {
      if (x.request_id.empty()) x.request_id = observe::generate_request_id(random);
      x.status = status;
      x.reason = reason;
      const bool ka = keep_alive && !close && !draining;
      auto res = error_response(status, reason, x.request_id, 11, ka);
      lr.metrics->response(status, reason).inc();
      stream.expires_after(lc.timeouts.idle);
      const error_code ec = co_await write_answer(stream, res, head_request);
      record(shared, x);
      if (ec || !ka) {
        error_code ignored;
        stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
        co_return false;
      }
      co_return true;
    };

    // 2. Read the whole header block under the header deadline, so that the raw bytes can be
    //    checked for what a parser may accept silently (obs-fold, bare CR, NUL).
    const std::size_t max_line = lc.limits.max_uri_bytes + kRequestLineSlack;
    const std::size_t max_block = max_line + lc.limits.max_header_bytes + 4;
    std::size_t header_end = std::string_view::npos;
    // The header deadline runs from the first byte of this request (from the accept for a
    // new connection). It is a timer that cancels the read rather than the stream's own
    // timeout, because the stream closes the socket on expiry and the client is owed a 408.
    const TimePoint header_deadline = (new_connection ? accepted : now()) + lc.timeouts.header_read;
    stream.expires_never();
    auto header_timer = std::make_shared<HeaderTimer>(ioc);
    header_timer->arm(header_deadline, stream);
    struct Disarm {
      std::shared_ptr<HeaderTimer> t;
      ~Disarm() { t->disarm(); }
    } disarm{header_timer};
    for (;;) {
      // Empty lines before a request line are ignored (RFC 9112 §2.2): some clients send a
      // CRLF after a request body. Bounded by the header deadline like any other byte.
      for (;;) {
        const std::string_view d(static_cast<const char*>(buffer.data().data()), buffer.size());
        if (d.starts_with("\r\n")) {
          buffer.consume(2);
        } else if (d.starts_with("\n")) {
          buffer.consume(1);
        } else {
          break;
        }
      }
      const std::string_view data(static_cast<const char*>(buffer.data().data()), buffer.size());
      header_end = data.find("\r\n\r\n");
      if (header_end != std::string_view::npos) {
        header_end += 4;
        break;
      }
      if (const auto lf2 = data.find("\n\n"); lf2 != std::string_view::npos) {
        header_end = lf2 + 2;  // bare-LF line ends: the parser refuses them below
        break;
      }
      const auto line_end = data.find('\n');
      if ((line_end == std::string_view::npos && data.size() > max_line) ||
          (line_end != std::string_view::npos && line_end > max_line)) {
        co_await refuse(414, "uri_too_long", true);
        co_return;
      }
      if (data.size() > max_block) {
        co_await refuse(431, "headers_too_large", true);
        co_return;
      }
      auto [ec, n] = co_await stream.async_read_some(buffer.prepare(kBufferBytes), kTuple);
      if (header_timer->fired) {
        header_timer->disarm();
        co_await refuse(408, "header_timeout", true);
        co_return;
      }
      if (ec) co_return;  // the client went away mid-header
      buffer.commit(n);
    }
    header_timer->disarm();
    {
      const std::string_view block(static_cast<const char*>(buffer.data().data()), header_end);
      const auto first_line = block.find('\n');
      if (const auto v = hygiene::check_raw_header_block(block.substr(first_line + 1))) {
        co_await refuse(v.status, v.reason, true);
        co_return;
      }
      if (first_line > max_line) {
        co_await refuse(414, "uri_too_long", true);
        co_return;
      }
    }

    // Beast consumes the request line before it refuses a field; keep the head to name the
    // broken rule afterwards (a few hundred bytes).
    const std::string head_copy(static_cast<const char*>(buffer.data().data()), header_end);
    http::request_parser<http::buffer_body> parser;
    parser.header_limit(static_cast<std::uint32_t>(max_block + 1));
    parser.body_limit(lc.limits.max_body_bytes);
    parser.eager(false);
    {
      auto [ec, n] = co_await http::async_read_header(stream, buffer, parser, kTuple);
      if (ec == http::error::body_limit) {
        co_await refuse(413, "body_too_large", true);
        co_return;
      }
      if (ec == http::error::header_limit) {
        co_await refuse(431, "headers_too_large", true);
        co_return;
      }
      if (ec == beast::error::timeout) {
        co_await refuse(408, "header_timeout", true);
        co_return;
      }
      if (ec) {
        // The whole head was in the buffer, so this is a parse error; name the rule it breaks
        // when one of ours does (Beast stops at the first problem without saying which).
        const hygiene::HeaderLimits limits{lc.limits.max_headers, lc.limits.max_header_bytes};
        const auto v = hygiene::check_request_head(head_copy, limits, lc.limits.max_uri_bytes);
        co_await refuse(v ? v.status : 400, v ? v.reason : "malformed", true);
        co_return;
      }
    }
    auto& req = parser.get();
    x.method = std::string(req.method_string());
    head_request = req.method() == http::verb::head;
    keep_alive = req.keep_alive();

    // 3. Hygiene.
    const auto target =
        hygiene::check_target(req.target(), req.method_string(), lc.limits.max_uri_bytes);
    // A refused target is logged as received (bounded; the log escapes it).
    x.path = target.verdict ? std::string(req.target().substr(0, 256)) : target.target.path;
    {
      const auto id = req["x-request-id"];
      if (observe::is_valid_request_id(id)) x.request_id = std::string(id);
    }
    if (target.verdict) {
      co_await refuse(target.verdict.status, target.verdict.reason, true);
      co_return;
    }
    hygiene::Framing framing;
    {
      std::vector<hygiene::HeaderField> fields;
      fields.reserve(32);
      for (const auto& f : req) fields.push_back({f.name_string(), f.value()});
      const hygiene::HeaderLimits limits{lc.limits.max_headers, lc.limits.max_header_bytes};
      if (const auto v = hygiene::check_headers(fields, static_cast<int>(req.version() % 10),
                                                limits, &framing)) {
        co_await refuse(v.status, v.reason, true);
        co_return;
      }
    }
    const bool has_body = framing.chunked || framing.content_length.value_or(0) > 0;
    if (x.request_id.empty()) x.request_id = observe::generate_request_id(random);
    if (framing.content_length && *framing.content_length > lc.limits.max_body_bytes) {
      co_await refuse(413, "body_too_large", true);
      co_return;
    }

    // 4. Route.
    std::string host(req[http::field::host]);
    if (!target.target.authority.empty()) host = target.target.authority;
    const auto m = snap->router.match(host, target.target.asterisk ? "*" : target.target.path,
                                      req.method_string());
    if (m.route < 0) {
      if (m.method_mismatch) {
        x.request_id = x.request_id.empty() ? observe::generate_request_id(random) : x.request_id;
        x.status = 405;
        x.reason = "method_not_allowed";
        auto res = error_response(405, "method_not_allowed", x.request_id, 11,
                                  keep_alive && !has_body && !draining);
        std::string allow;
        for (const auto& a : m.allowed) allow += (allow.empty() ? "" : ", ") + a;
        res.set(http::field::allow, allow);
        lr.metrics->response(405, "method_not_allowed").inc();
        stream.expires_after(lc.timeouts.idle);
        const error_code ec = co_await write_answer(stream, res, head_request);
        record(shared, x);
        if (ec || !res.keep_alive()) co_return;
        continue;
      }
      if (!co_await refuse(404, "no_route", has_body)) co_return;
      continue;
    }
    const RouteRuntime& route = snap->routes[static_cast<std::size_t>(m.route)];
    x.route = &route;
    const config::Route& rc = *route.config;

    // 5. Listener concurrency limit (across workers).
    ListenerShared& lsh = ls;
    if (lsh.requests.fetch_add(1, std::memory_order_relaxed) >= lc.limits.max_concurrent_requests) {
      lsh.requests.fetch_sub(1, std::memory_order_relaxed);
      if (!co_await refuse(503, "concurrency_limit", has_body)) co_return;
      continue;
    }
    struct RequestSlot {
      ListenerShared* ls;
      observe::ListenerMetrics* lm;
      ~RequestSlot() {
        ls->requests.fetch_sub(1, std::memory_order_relaxed);
        if (lm->requests_active) lm->requests_active->dec();
      }
    } slot{&lsh, lr.metrics};
    if (lr.metrics->requests_active) lr.metrics->requests_active->inc();

    // 6. Pick an endpoint.
    const ClusterRuntime* cluster = route.cluster;
    if (cluster == nullptr || cluster->endpoints.empty()) {
      if (!co_await refuse(503, "no_endpoint", has_body)) co_return;
      continue;
    }
    const std::string& cname = cluster->config->name;
    auto pool_of = [&](const EndpointRuntime& e) -> upstream::EndpointPool& {
      return pools.at(e.pool_key, e.metrics);
    };
    const std::size_t n_ep = cluster->endpoints.size();
    std::size_t pick = 0;
    {
      const uint64_t cursor = rr[cname]++;
      if (cluster->config->lb == config::LoadBalancing::least_request) {
        // Fewest requests in flight from this worker; ties broken in round-robin order.
        uint32_t best = UINT32_MAX;
        for (std::size_t k = 0; k < n_ep; ++k) {
          const std::size_t i = (cursor + k) % n_ep;
          const uint32_t a = pool_of(cluster->endpoints[i]).active;
          if (a < best) {
            best = a;
            pick = i;
          }
        }
      } else {
        pick = cursor % n_ep;
      }
    }
    const EndpointRuntime& ep = cluster->endpoints[pick];
    x.endpoint = &ep;
    upstream::EndpointPool& pool = pool_of(ep);
    if (!pool.reserve(cluster->config->pool.max_per_endpoint)) {
      if (!co_await refuse(503, "pool_exhausted", has_body)) co_return;
      continue;
    }
    struct Busy {
      upstream::EndpointPool* pool;
      observe::EndpointMetrics* em;
      ~Busy() {
        pool->release();
        --pool->active;
        if (em->active) em->active->dec();
      }
    } busy{&pool, ep.metrics};
    ++pool.active;
    if (ep.metrics->active) ep.metrics->active->inc();

    // 7. The upstream request header: hop-by-hop fields out, forwarding fields in.
    // HTTP/1.0 clients know no interim answers (RFC 9110 §10.1.1): their Expect is ignored.
    const bool expect_continue =
        beast::iequals(req[http::field::expect], "100-continue") && has_body && req.version() >= 11;
    strip_hop_by_hop(req);
    req.erase(http::field::expect);
    {
      // Every X-Forwarded-For line the client sent, in order, then the client itself.
      std::string xff;
      const auto lines = req.equal_range("x-forwarded-for");
      for (auto it = lines.first; it != lines.second; ++it) {
        if (it->value().empty()) continue;
        if (!xff.empty()) xff += ", ";
        xff += it->value();
      }
      if (xff.empty()) {
        xff = client_ip;
      } else {
        xff.append(", ").append(client_ip);
      }
      req.set("x-forwarded-for", xff);
    }
    req.set("x-forwarded-proto", "http");
    req.set("x-request-id", x.request_id);
    if (!target.target.authority.empty()) req.set(http::field::host, target.target.authority);
    // HTTP/1.0 may omit Host; the request goes upstream as HTTP/1.1, which requires it.
    if (req[http::field::host].empty()) req.set(http::field::host, ep.address);
    {
      std::string forwarded = target.target.asterisk ? std::string("*") : target.target.path;
      if (target.target.has_query) forwarded += "?" + target.target.query;
      req.target(forwarded);
    }
    const int client_version = static_cast<int>(req.version());
    req.version(11);
    req.keep_alive(true);

    const TimePoint route_deadline = x.start + rc.timeouts.request;
    const auto first_byte_budget =
        rc.timeouts.first_byte ? rc.timeouts.first_byte : rc.timeouts.per_try;

    // 8. Connect (or reuse), send, read the response header. A reused connection that turns
    //    out to be dead before any response byte is replaced once by a fresh one, when the
    //    request is idempotent and has no body (so nothing could have been processed twice).
    std::optional<beast::tcp_stream> up;
    beast::flat_buffer upstream_buffer;
    // Beast sizes each read by the buffer's free capacity (at least 512 bytes): without room
    // up front, a 1 KiB answer would take three reads.
    upstream_buffer.reserve(kUpstreamReadBytes);
    std::optional<http::response_parser<http::buffer_body>> rpo;
    // Not zeroed: every byte is written before it is read, and zeroing 64 KiB per request
    // costs more than the copy it serves.
    std::array<char, kBufferBytes> body_buf;  // NOLINT(cppcoreguidelines-pro-type-member-init)
    bool response_ready = false;
    bool upstream_reusable = true;
    int fail_status = 0;
    std::string_view fail_reason;
    bool client_body_failed = false;
    for (int round = 0; round < 2 && !response_ready; ++round) {
      bool reused = false;
      up.reset();
      // The replacement round always opens a new connection: the next idle one may be just
      // as dead.
      std::optional<tcp::socket> idle;
      if (round == 0) idle = pool.take_idle(now(), cluster->config->pool.idle_timeout);
      if (idle) {
        up.emplace(std::move(*idle));
        reused = true;
      } else {
        up.emplace(ioc);
        up->expires_at(std::min(route_deadline, now() + cluster->config->connect_timeout));
        auto [ec] = co_await up->async_connect(ep.endpoint, kTuple);
        if (ec) {
          if (ep.metrics->connect_failures) ep.metrics->connect_failures->inc();
          if (ec == beast::error::timeout) {
            fail_status = 504;
            fail_reason = now() >= route_deadline ? "request_timeout" : "connect_timeout";
          } else {
            fail_status = 502;
            fail_reason = "connect_failure";
          }
          break;
        }
        if (ep.metrics->connections_opened) ep.metrics->connections_opened->inc();
        up->socket().set_option(tcp::no_delay(true));
      }
      ++x.attempts;

      // Send the header, then stream the body from the client.
      up->expires_at(route_deadline);
      req.body().data = nullptr;
      req.body().size = 0;
      req.body().more = !parser.is_done();
      http::request_serializer<http::buffer_body> sr{req};
      error_code wec;
      if (parser.is_done()) {
        // No body: the whole request in one write. The connection carries nothing else, so
        // the head (bounded by the header limits, far below the socket's send buffer) is
        // taken by the kernel at once; no timer is armed for it (one less per request).
        up->expires_never();
        auto [ec, n] = co_await http::async_write(*up, sr, kTuple);
        wec = ec;
      } else {
        auto [ec, n] = co_await http::async_write_header(*up, sr, kTuple);
        wec = ec;
      }
      if (!wec && expect_continue && round == 0) {
        static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
        stream.expires_after(lc.timeouts.idle);
        auto [ec, n] = co_await net::async_write(stream, net::buffer(kContinue), kTuple);
        if (ec) {
          x.reason = "client_closed";  // status 0: the client left before any answer
          record(shared, x);
          co_return;
        }
      }
      // The client's body is read under a timer that cancels the read rather than closing
      // the socket, so the client can still be told why (408, or 504 when the route's
      // deadline is the earlier one).
      std::shared_ptr<HeaderTimer> body_timer;
      const TimePoint listener_deadline = x.start + lc.timeouts.request;
      if (!parser.is_done()) {
        body_timer = std::make_shared<HeaderTimer>(ioc);
        body_timer->arm(std::min(route_deadline, listener_deadline), stream);
        stream.expires_never();
      }
      struct DisarmBody {
        std::shared_ptr<HeaderTimer>& t;
        ~DisarmBody() {
          if (t) t->disarm();
        }
      } disarm_body{body_timer};
      while (!wec && !parser.is_done()) {
        req.body().data = body_buf.data();
        req.body().size = body_buf.size();
        auto [rec, rn] = co_await http::async_read_some(stream, buffer, parser, kTuple);
        if (rec == http::error::need_buffer) rec = {};
        if (body_timer && body_timer->fired) rec = beast::error::timeout;
        const std::size_t got = body_buf.size() - req.body().size;
        if (rec) {
          client_body_failed = true;
          upstream_reusable = false;
          if (rec == http::error::body_limit) {
            fail_status = 413;
            fail_reason = "body_too_large";
          } else if (rec == beast::error::timeout) {
            const bool route_binds = route_deadline < listener_deadline;
            fail_status = route_binds ? 504 : 408;
            fail_reason = route_binds ? "request_timeout" : "body_timeout";
          } else if (rec.category() == make_error_code(http::error::bad_chunk).category()) {
            fail_status = 400;
            fail_reason = "malformed";
          } else {
            fail_status = 0;  // the client went away
            fail_reason = "client_closed";
          }
          break;
        }
        x.bytes_in += got;
        req.body().data = got > 0 ? body_buf.data() : nullptr;
        req.body().size = got;
        req.body().more = !parser.is_done();
        if (got == 0 && !parser.is_done()) continue;
        auto [ec, n] = co_await http::async_write(*up, sr, kTuple);
        if (ec == http::error::need_buffer) ec = {};
        wec = ec;
      }
      if (client_body_failed) break;
      if (!wec && !sr.is_done()) {
        req.body().data = nullptr;
        req.body().size = 0;
        req.body().more = false;
        auto [ec, n] = co_await http::async_write(*up, sr, kTuple);
        if (ec == http::error::need_buffer) ec = {};
        wec = ec;
      }
      const bool retry_ok = reused && !has_body && is_idempotent(req.method());
      if (wec) {
        if (retry_ok) continue;
        if (wec == beast::error::timeout || !has_body) {
          fail_status = wec == beast::error::timeout ? 504 : 502;
          fail_reason = wec == beast::error::timeout ? "request_timeout" : "upstream_reset";
          break;
        }
        // The upstream stopped taking the body: a server that refuses an upload (413, 401,
        // 403) often answers at once and closes without reading the rest. Its answer is still
        // in the socket's receive queue, so it is read below and relayed; an upstream that
        // left without answering ends there as 502 upstream_reset. The client's unread body
        // makes its connection close after the answer.
        upstream_reusable = false;
      }

      // Response header, under the first-byte and request deadlines. 1xx answers other than
      // 101 are interim and skipped (100 Continue was answered by the gateway itself).
      const TimePoint sent = now();
      const TimePoint fb_deadline =
          first_byte_budget ? std::min(route_deadline, sent + *first_byte_budget) : route_deadline;
      up->expires_at(fb_deadline);
      error_code hec;
      bool nothing_received = true;
      for (;;) {
        rpo.emplace();
        rpo->header_limit(kUpstreamHeaderLimit);
        rpo->body_limit(boost::none);
        if (req.method() == http::verb::head) rpo->skip(true);
        auto [ec, n] = co_await http::async_read_header(*up, upstream_buffer, *rpo, kTuple);
        hec = ec;
        if (rpo->got_some() || upstream_buffer.size() > 0) nothing_received = false;
        const int code = hec ? 0 : static_cast<int>(rpo->get().result_int());
        // Interim answers (100 Continue was given by the gateway itself; 102, 103) are not
        // forwarded.
        if (code == 101) {
          // Upgrades are not proxied (Upgrade is stripped from requests): an upstream that
          // switches protocols anyway has answered something this hop cannot relay.
          hec = http::error::bad_version;
          break;
        }
        if (hec || code >= 200) break;
      }
      response_ready = true;
      if (hec) {
        response_ready = false;
        if (retry_ok && nothing_received && hec != beast::error::timeout) continue;
        if (hec == beast::error::timeout) {
          fail_status = 504;
          fail_reason = fb_deadline < route_deadline ? "first_byte_timeout" : "request_timeout";
        } else if (hec == http::error::end_of_stream || hec == net::error::eof ||
                   hec == net::error::connection_reset || hec == net::error::broken_pipe ||
                   hec == http::error::partial_message) {
          fail_status = 502;
          fail_reason = "upstream_reset";
        } else {
          fail_status = 502;
          fail_reason = "bad_response";
        }
        break;
      }
    }
    (void)client_version;
    // The client part that was not read makes the connection unusable afterwards.
    if (!response_ready) {
      upstream_buffer.consume(upstream_buffer.size());
      if (up) {
        error_code ignored;
        up->socket().close(ignored);
      }
      if (fail_status == 0 && !client_body_failed) {
        // Both rounds found the connection dead before any answer byte.
        fail_status = 502;
        fail_reason = "upstream_reset";
      }
      if (fail_status == 0) {
        x.reason = fail_reason;
        record(shared, x);
        co_return;
      }
      const bool close = client_body_failed || !parser.is_done();
      if (!co_await refuse(fail_status, fail_reason, close)) co_return;
      continue;
    }
    // 9. The response header to the client.
    auto& rp = *rpo;
    auto& res = rp.get();
    x.status = static_cast<int>(res.result_int());
    const bool upstream_keep_alive = rp.keep_alive();
    const bool head = req.method() == http::verb::head;
    strip_hop_by_hop(res);
    const bool no_body = head || x.status == 204 || x.status == 304 || x.status < 200;
    const bool has_length = res.has_content_length();
    const bool client_keep_alive = keep_alive && !draining && parser.is_done();
    if (res["x-request-id"].empty()) res.set("x-request-id", x.request_id);
    res.version(client_version);
    bool close_after = !client_keep_alive;
    if (!no_body && !has_length && !res.chunked()) {
      // Delimited by the upstream closing: re-frame as chunked for HTTP/1.1 clients.
      if (client_version >= 11) {
        res.chunked(true);
      } else {
        close_after = true;
      }
      upstream_reusable = false;
    } else if (!no_body && res.chunked() && client_version < 11) {
      res.chunked(false);
      close_after = true;
    } else if (no_body && client_version < 11) {
      // HTTP/1.0 has no Transfer-Encoding; an answer without a body just loses the field.
      res.erase(http::field::transfer_encoding);
    }
    res.keep_alive(!close_after);
    res.body().data = nullptr;
    res.body().size = 0;
    res.body().more = !rp.is_done();
    http::response_serializer<http::buffer_body> rs{res};
    StreamEnd end = StreamEnd::done;
    // When body bytes are already here (a small answer usually arrives with its head), the
    // head goes out with the first piece of body in one write; otherwise it goes out at once,
    // so that a streaming client sees the head before the first event.
    bool head_sent = false;
    if (no_body || !(rp.is_done() || upstream_buffer.size() > 0)) {
      stream.expires_after(rc.timeouts.stream_idle);
      auto [ec, n] = co_await http::async_write_header(stream, rs, kTuple);
      if (ec) end = StreamEnd::client_closed;
      head_sent = true;
    }

    // 10. The body, chunk by chunk as the upstream sends it, under the stream guards.
    const TimePoint stream_deadline = now() + rc.timeouts.stream_total;
    const uint64_t max_chunk = rc.stream.max_chunk_bytes;
    bool chunk_too_big = false;
    // Beast keeps a reference to the callback: it lives in this frame for the whole body.
    auto on_chunk = [&](std::uint64_t size, auto, error_code& ec) {
      if (size > max_chunk) {
        chunk_too_big = true;
        ec = boost::system::errc::make_error_code(boost::system::errc::message_size);
      }
    };
    rp.on_chunk_header(on_chunk);
    while (end == StreamEnd::done && !no_body && !rp.is_done()) {
      res.body().data = body_buf.data();
      res.body().size = body_buf.size();
      const TimePoint t = now();
      if (t >= stream_deadline) {
        end = StreamEnd::total;
        break;
      }
      const bool total_binds = stream_deadline <= t + rc.timeouts.stream_idle;
      up->expires_at(std::min(stream_deadline, t + rc.timeouts.stream_idle));
      auto [rec, rn] = co_await http::async_read_some(*up, upstream_buffer, rp, kTuple);
      if (rec == http::error::need_buffer) rec = {};
      const std::size_t got = body_buf.size() - res.body().size;
      if (rec) {
        if (chunk_too_big) {
          end = StreamEnd::max_chunk;
        } else if (rec == beast::error::timeout) {
          end = total_binds ? StreamEnd::total : StreamEnd::idle;
        } else {
          end = StreamEnd::upstream_reset;
        }
        break;
      }
      if (x.bytes_out + got > rc.stream.max_bytes) {
        end = StreamEnd::max_bytes;
        break;
      }
      if (got == 0 && !rp.is_done()) continue;
      // A zero-length piece must be passed as "no data": Beast would otherwise frame it as
      // an empty chunk, which on the wire is the last-chunk marker.
      res.body().data = got > 0 ? body_buf.data() : nullptr;
      res.body().size = got;
      res.body().more = !rp.is_done();
      stream.expires_after(rc.timeouts.stream_idle);
      auto [wec, wn] = co_await http::async_write(stream, rs, kTuple);
      if (wec == http::error::need_buffer) wec = {};
      if (wec) {
        // A client that stops reading is cut at stream_idle like a silent upstream.
        end = wec == beast::error::timeout ? StreamEnd::idle : StreamEnd::client_closed;
        break;
      }
      head_sent = true;
      x.bytes_out += got;
    }
    if (end == StreamEnd::done && !no_body && !rs.is_done()) {
      res.body().data = nullptr;
      res.body().size = 0;
      res.body().more = false;
      stream.expires_after(rc.timeouts.stream_idle);
      auto [wec, wn] = co_await http::async_write(stream, rs, kTuple);
      if (wec == http::error::need_buffer) wec = {};
      if (wec) end = StreamEnd::client_closed;
      head_sent = true;
    }

    // 11. Keep or close both connections.
    const bool clean = end == StreamEnd::done && (no_body || rp.is_done());
    if (clean && upstream_reusable && upstream_keep_alive && upstream_buffer.size() == 0 &&
        !draining) {
      // After an answer without a body a misbehaving upstream may send one anyway: such a
      // connection is peeked before its next use, so bytes that came meanwhile drop it
      // instead of being read as the next request's answer.
      pool.put_idle(up->release_socket(), now(), cluster->config->pool.max_idle,
                    cluster->config->pool.idle_timeout, /*verify=*/no_body);
    } else {
      error_code ignored;
      up->socket().close(ignored);
    }
    upstream_buffer.consume(upstream_buffer.size());
    if (end != StreamEnd::done) {
      x.reason = stream_reason(end);
      // A client that leaves is not a guard breach; everything else is.
      if (end != StreamEnd::client_closed) route.metrics->stream_abort(x.reason).inc();
      if (!head_sent && end != StreamEnd::client_closed) {
        // Nothing of the answer reached the client yet, so it can still be told why.
        co_await refuse(502, x.reason, true);
        co_return;
      }
    }
    record(shared, x);
    if (!clean || close_after) {
      error_code ignored;
      stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
      co_return;
    }
  }
}

Worker::Worker(Shared& shared, std::shared_ptr<const Snapshot> snapshot, uint64_t seed)
    : impl_(std::make_unique<Impl>(shared, std::move(snapshot), seed)) {}

Worker::~Worker() { stop(); }

std::vector<uint16_t> Worker::listen(const std::vector<tcp::endpoint>& endpoints) {
  std::vector<uint16_t> ports;
  for (const auto& e : endpoints) {
    auto a = std::make_unique<tcp::acceptor>(impl_->ioc);
    error_code ec;
    using reuse_port = net::detail::socket_option::boolean<SOL_SOCKET, SO_REUSEPORT>;
    a->open(e.protocol(), ec);
    if (!ec) a->set_option(net::socket_base::reuse_address(true), ec);
    if (!ec) a->set_option(reuse_port(true), ec);
    if (!ec) a->bind(e, ec);
    if (!ec) a->listen(net::socket_base::max_listen_connections, ec);
    if (ec) {
      // The address and the cause, without Boost's source location.
      throw std::runtime_error("cannot listen on " + e.address().to_string() + ":" +
                               std::to_string(e.port()) + ": " + ec.message());
    }
    ports.push_back(a->local_endpoint().port());
    impl_->acceptors.push_back(std::move(a));
  }
  return ports;
}

void Worker::start() {
  for (std::size_t i = 0; i < impl_->acceptors.size(); ++i) {
    net::co_spawn(impl_->ioc, impl_->accept_loop(*impl_->acceptors[i], i), net::detached);
  }
  impl_->thread = std::thread([this] { impl_->ioc.run(); });
}

void Worker::install(std::shared_ptr<const Snapshot> snapshot) {
  net::post(impl_->ioc, [impl = impl_.get(), s = std::move(snapshot)]() mutable {
    impl->snapshot = std::move(s);
  });
}

void Worker::begin_drain() {
  net::post(impl_->ioc, [impl = impl_.get()] {
    impl->draining = true;
    for (auto& a : impl->acceptors) {
      error_code ignored;
      a->close(ignored);
    }
    for (auto& c : impl->conns) {
      if (c.idle) c.stream->cancel();
    }
    impl->pools.close_idle();
  });
}

uint32_t Worker::open_connections() const noexcept {
  return impl_->open.load(std::memory_order_relaxed);
}

void Worker::stop() {
  if (!impl_) return;
  impl_->ioc.stop();
  if (impl_->thread.joinable()) impl_->thread.join();
}

}  // namespace bulwark::gateway::proxy
