#include "listener/connection.h"

#include <boost/asio/write.hpp>
#include <boost/beast/http/error.hpp>

#include "filter/reasons.h"
#include "http/head_writer.h"
#include "observe/request_id.h"

namespace bulwark::gateway::listener {

namespace net = boost::asio;
namespace beast_http = boost::beast::http;
using boost::system::error_code;

namespace {

// Room for the method, the version and the line ends around a request target of
// max_uri_bytes, so that an overlong request line is told apart from overlong headers.
constexpr std::size_t kRequestLineSlack = 64;
constexpr std::size_t kMinReadRoom = 4096;
constexpr std::size_t kMinBufferBytes = 32 * 1024UL;

std::size_t max_line(const config::Listener& l) noexcept {
  return l.limits.max_uri_bytes + kRequestLineSlack;
}
std::size_t max_block(const config::Listener& l) noexcept {
  return max_line(l) + l.limits.max_header_bytes + 4;
}

// Where the head ends (after its empty line), or npos. Bare-LF line ends are found too: the
// parser refuses them with a precise reason.
}  // namespace

bool release_while_idle(uint32_t open_connections) noexcept {
  return open_connections > kKeepStateUpToConnections;
}

namespace {

std::size_t find_head_end(std::string_view data) noexcept {
  if (const auto crlf = data.find("\r\n\r\n"); crlf != std::string_view::npos) return crlf + 4;
  if (const auto lf = data.find("\n\n"); lf != std::string_view::npos) return lf + 2;
  return std::string_view::npos;
}

}  // namespace

namespace {

http::Stream client_stream(http::Socket socket, const std::shared_ptr<http::ServerTls>& tls) {
  if (tls) return http::Stream(std::move(socket), tls->context());
  return http::Stream(std::move(socket));
}

}  // namespace

Connection::Connection(WorkerState& worker, http::Socket socket, std::size_t listener)
    : worker_(worker),
      tls_(worker.snapshot->listeners[listener].tls),
      stream_(client_stream(std::move(socket), tls_)),
      listener_(listener),
      accepted_(worker.clock.now()),
      timer_(worker.ioc.get_executor()) {
  error_code ec;
  const auto remote = stream_.socket().remote_endpoint(ec);
  if (!ec) client_ = remote.address().to_string() + ":" + std::to_string(remote.port());
  client_ip_ = std::string_view(client_).substr(0, client_.rfind(':'));
  stream_.socket().set_option(net::ip::tcp::no_delay(true), ec);
  registration_ = worker_.connections.insert(worker_.connections.end(), this);
  worker_.open.fetch_add(1, std::memory_order_relaxed);
  connections_at_accept_ =
      worker_.shared.listeners[listener_]->connections.fetch_add(1, std::memory_order_relaxed) + 1;
  auto* metrics = worker_.snapshot->listeners[listener_].metrics;
  if (metrics->connections_total) metrics->connections_total->inc();
  if (metrics->connections_active) metrics->connections_active->inc();
}

Connection::~Connection() {
  if (ctx_) {
    ctx_->exchange.abandon();
    ctx_->chain.complete({0, reason::kClientClosed, now()});
    ctx_->in.consume(ctx_->in.size());
    give_back_context();
  }
  worker_.connections.erase(registration_);
  worker_.shared.listeners[listener_]->connections.fetch_sub(1, std::memory_order_relaxed);
  worker_.open.fetch_sub(1, std::memory_order_relaxed);
  auto* metrics = worker_.snapshot->listeners[listener_].metrics;
  if (metrics->connections_active) metrics->connections_active->dec();
}

void Connection::cancel_if_idle() noexcept {
  if (!idle_) return;
  error_code ignored;
  stream_.socket().cancel(ignored);
}

http::Task<void> Connection::serve(std::unique_ptr<Connection> self) {
  Connection& c = *self;
  if (c.stream_.secure() && !co_await c.handshake()) co_return;
  c.begin_request();
  if (c.connections_at_accept_ > c.listener_runtime_->config->limits.max_connections) {
    // Refused before a byte is read: logged without method and path.
    c.ctx_->reply = filter::refuse(503, reason::kConnectionLimit, true);
    co_await c.answer();
    co_return;
  }
  for (;;) {
    // The wait for the next request runs in this frame, the only one an idle connection holds.
    // Silence until the deadline, the client leaving or a drain: close without an answer.
    if (!c.ctx_ || c.ctx_->in.empty()) {
      if (c.worker_.draining) co_return;
      // (TLS may already hold the next request's bytes, which the socket no longer signals.)
      if (!c.begin_idle_wait() && !c.stream_.has_buffered_input()) {
        auto [wait_error] =
            co_await c.stream_.socket().async_wait(net::socket_base::wait_read, http::kTuple);
        if (wait_error) co_return;
      }
      auto [read_error, n] = co_await c.stream_.async_read_some(c.read_room(), http::kTuple);
      c.idle_ = false;
      if (read_error) co_return;
      c.ctx_->in.commit(n);
    }
    c.begin_request();
    const HeadResult head = co_await c.read_head();
    if (head != HeadResult::ready) co_return;
    c.ctx_->reply = c.admit();
    while (c.ctx_->reply.wait) co_await c.wait_for_filter();
    if (!c.ctx_->reply) c.ctx_->reply = c.prepare_exchange();
    if (c.ctx_->reply) {
      if (!co_await c.answer()) co_return;
      continue;
    }
    if (!co_await c.proxy()) co_return;
  }
}

http::Task<bool> Connection::handshake() {
  timer_.guard(stream_.socket(), accepted_ + tls_->spec().handshake_timeout);
  auto [ec] = co_await stream_.async_handshake(http::ssl::stream_base::server, http::kTuple);
  observe::ListenerMetrics& metrics = *worker_.snapshot->listeners[listener_].metrics;
  const std::size_t result = http::handshake_result(ec, timer_.fired());
  if (observe::Counter* c = metrics.tls_handshakes[result]) c->inc();
  if (ec) co_return false;  // closed without a word: there is no channel to answer on
  observe::Counter* version =
      SSL_version(stream_.ssl_handle()) == TLS1_3_VERSION ? metrics.tls13 : metrics.tls12;
  if (version != nullptr) version->inc();
  client_subject_ = http::verified_client_subject(stream_.ssl_handle());
  co_return true;
}

void Connection::take_context() {
  if (!ctx_) ctx_ = worker_.contexts.take();
}

void Connection::give_back_context() noexcept {
  if (!ctx_ || !ctx_->in.empty()) return;  // pipelined bytes stay with the connection
  ctx_->in.release(worker_.buffers);
  worker_.contexts.give(std::move(ctx_));
}

void Connection::begin_request() {
  take_context();
  // Each request runs on the snapshot current when it starts.
  snapshot_ = worker_.snapshot;
  listener_runtime_ = &snapshot_->listeners[listener_];
  route_ = nullptr;
  start_ = now();
  ctx_->request_id.clear();
  ctx_->log_method.clear();
  ctx_->log_path.clear();
  keep_alive_ = true;
  head_request_ = false;
  has_body_ = false;
  ctx_->exchange_result = {};
  const auto& limits = listener_runtime_->config->limits;
  in_capacity_ = std::max(kMinBufferBytes, max_block(*listener_runtime_->config) + kMinReadRoom);
  if (ctx_->fields.capacity() < limits.max_headers + 1)
    ctx_->fields.reserve(limits.max_headers + 1);
}

bool Connection::begin_idle_wait() {
  const config::Listener& config = *listener_runtime_->config;
  // A brand-new connection that sends nothing is a slowloris too: it gets header_read.
  timer_.guard(stream_.socket(), first_request_ ? accepted_ + config.timeouts.header_read
                                       : now() + config.timeouts.idle);
  idle_ = true;
  if (!release_while_idle(worker_.open.load(std::memory_order_relaxed))) {
    // Few connections: the next request is read straight into the buffer the connection keeps
    // (Asio reads at once when bytes are there, without re-arming epoll).
    take_context();
    return true;
  }
  // Many connections: an idle one holds no read buffer and no request state; both go back to
  // the worker while it waits for readability, and are taken again when bytes arrive (one
  // epoll re-arm per request, the price of a light idle connection).
  give_back_context();
  return false;
}

boost::asio::mutable_buffer Connection::read_room() {
  take_context();
  return ctx_->in.prepare(worker_.buffers, in_capacity_, kMinReadRoom);
}

http::Task<Connection::HeadResult> Connection::read_head() {
  const config::Listener& config = *listener_runtime_->config;
  // The header deadline runs from the first byte of this request (from the accept for a new
  // connection).
  const TimePoint deadline = (first_request_ ? accepted_ : now()) + config.timeouts.header_read;
  first_request_ = false;
  timer_.guard(stream_.socket(), deadline);
  for (;;) {
    // Empty lines before a request line are ignored (RFC 9112 §2.2).
    while (ctx_->in.data().starts_with("\r\n") || ctx_->in.data().starts_with("\n")) {
      ctx_->in.consume(ctx_->in.data().starts_with("\r\n") ? 2 : 1);
    }
    const std::size_t head_end = find_head_end(ctx_->in.data());
    if (head_end != std::string_view::npos) {
      ctx_->reply = check_buffered_head(head_end);
      if (!ctx_->reply) ctx_->reply = parse_head(head_end);
      if (!ctx_->reply) co_return HeadResult::ready;
      co_await answer();
      co_return HeadResult::refused;
    }
    const std::string_view data = ctx_->in.data();
    const auto line_end = data.find('\n');
    if ((line_end == std::string_view::npos && data.size() > max_line(config)) ||
        (line_end != std::string_view::npos && line_end > max_line(config))) {
      ctx_->reply = filter::refuse(414, reason::kUriTooLong, true);
      co_await answer();
      co_return HeadResult::refused;
    }
    if (data.size() > max_block(config)) {
      ctx_->reply = filter::refuse(431, reason::kHeadersTooLarge, true);
      co_await answer();
      co_return HeadResult::refused;
    }
    auto room = ctx_->in.prepare(worker_.buffers, in_capacity_, kMinReadRoom);
    auto [ec, n] = co_await stream_.async_read_some(room, http::kTuple);
    if (timer_.fired()) {
      ctx_->reply = filter::refuse(408, reason::kHeaderTimeout, true);
      co_await answer();
      co_return HeadResult::refused;
    }
    if (ec) co_return HeadResult::gone;  // the client went away mid-header
    ctx_->in.commit(n);
  }
}

filter::LocalReply Connection::check_buffered_head(std::size_t head_end) {
  // The raw bytes are checked for what a parser may accept silently (obs-fold, bare CR, NUL).
  const std::string_view block = ctx_->in.data().substr(0, head_end);
  const auto first_line = block.find('\n');
  if (const auto v = http::check_raw_header_block(block.substr(first_line + 1))) {
    return filter::refuse(v.status, v.reason, true);
  }
  if (first_line > max_line(*listener_runtime_->config)) {
    return filter::refuse(414, reason::kUriTooLong, true);
  }
  return {};
}

filter::LocalReply Connection::parse_head(std::size_t head_end) {
  const config::Listener& config = *listener_runtime_->config;
  ctx_->parser.emplace(ctx_->fields, config.limits.max_headers);
  ctx_->parser->header_limit(static_cast<std::uint32_t>(max_block(config) + 1));
  ctx_->parser->body_limit(config.limits.max_body_bytes);
  error_code ec;
  const std::size_t used =
      ctx_->parser->put(net::buffer(ctx_->in.data().data(), ctx_->in.size()), ec);
  if (ec == beast_http::error::need_more && ctx_->parser->is_header_done()) ec = {};
  if (ec == beast_http::error::body_limit) return filter::refuse(413, reason::kBodyTooLarge, true);
  if (ec == beast_http::error::header_limit) {
    return filter::refuse(431, reason::kHeadersTooLarge, true);
  }
  if (ec || !ctx_->parser->is_header_done()) {
    // The whole head was buffered, so this is a parse error; name the rule it breaks when one
    // of ours does (the parser stops at the first problem without saying which).
    const http::HeaderLimits limits{config.limits.max_headers, config.limits.max_header_bytes};
    const auto v = http::check_request_head(ctx_->in.data().substr(0, head_end), limits,
                                            config.limits.max_uri_bytes);
    return filter::refuse(v ? v.status : 400, v ? v.reason : reason::kMalformed, true);
  }
  // The head's bytes stay where they are (the views point at them) until the next read.
  ctx_->in.consume(used);
  return {};
}

filter::LocalReply Connection::admit() {
  const config::Listener& config = *listener_runtime_->config;
  http::RequestParser& parser = *ctx_->parser;
  ctx_->log_method.assign(parser.method());
  head_request_ = parser.verb() == beast_http::verb::head;
  keep_alive_ = parser.keep_alive();
  const auto target = http::check_target_into(parser.target(), parser.method(),
                                              config.limits.max_uri_bytes, ctx_->target);
  // A refused target is logged as received (bounded; the log escapes it).
  ctx_->log_path.assign(target ? parser.target().substr(0, 256)
                               : std::string_view(ctx_->target.path));
  const std::string_view id = http::field_value(ctx_->fields, "x-request-id");
  if (observe::is_valid_request_id(id)) ctx_->request_id.assign(id);
  if (target) return filter::refuse(target.status, target.reason, true);
  http::Framing framing;
  const http::HeaderLimits limits{config.limits.max_headers, config.limits.max_header_bytes};
  if (const auto v = http::check_headers(ctx_->fields, parser.version() % 10, limits, &framing)) {
    return filter::refuse(v.status, v.reason, true);
  }
  has_body_ = framing.chunked || framing.content_length.value_or(0) > 0;
  ensure_request_id();
  if (framing.content_length && *framing.content_length > config.limits.max_body_bytes) {
    return filter::refuse(413, reason::kBodyTooLarge, true);
  }
  return route_request(framing);
}

filter::LocalReply Connection::route_request(const http::Framing& framing) {
  const std::string_view host = ctx_->target.authority.empty()
                                    ? http::field_value(ctx_->fields, "host")
                                    : ctx_->target.authority;
  const auto match = snapshot_->router.match(host, ctx_->target.asterisk ? "*" : ctx_->target.path,
                                             ctx_->parser->method());
  if (match.route < 0) {
    if (!match.method_mismatch) return filter::refuse(404, reason::kNoRoute, has_body_);
    filter::LocalReply reply = filter::refuse(405, reason::kMethodNotAllowed, has_body_);
    ctx_->allow.clear();
    for (const auto& method : match.allowed)
      ctx_->allow.append(ctx_->allow.empty() ? "" : ", ").append(method);
    reply.add_header("Allow", ctx_->allow);
    return reply;
  }
  route_ = &snapshot_->routes[static_cast<std::size_t>(match.route)];
  chunked_body_ = framing.chunked;
  ctx_->chain.begin(listener_runtime_->filters.get(), route_->filters.get());
  filter::RequestInfo& info = ctx_->request_info;
  info.method = ctx_->parser->method();
  info.path = ctx_->target.path;
  info.query = ctx_->target.query;
  info.host = host;
  info.client_ip = client_ip_;
  info.headers = ctx_->fields;
  info.has_body = has_body_;
  info.now = now();
  info.random = &worker_.random;
  ctx_->wake_token.wait = ctx_->wake->current_wait();
  info.wake = &ctx_->wake_token;
  info.deadline = start_ + route_->config->timeouts.request;
  info.priority = static_cast<int>(route_->config->priority);
  ctx_->edits.clear();
  info.edits = &ctx_->edits;
  info.secure = stream_.secure();
  if (tls_ && !tls_->spec().client_ca.empty()) {
    // Only the gateway says who the client certificate names: a client's own header goes.
    const std::string_view header = tls_->spec().client_subject_header;
    ctx_->edits.remove(header);
    if (!client_subject_.empty()) ctx_->edits.add(header, client_subject_);
  }
  info.remote = worker_.redis.configured() ? &worker_.redis : nullptr;
  return ctx_->chain.on_request(info);
}

http::Task<void> Connection::wait_for_filter() {
  // The wait ends when the filter's decision is made, at the filter's own deadline, or at the
  // route's deadline (the filter's deadline is never later); the filter is then asked again.
  const TimePoint until = std::min(ctx_->reply.wait_until, ctx_->request_info.deadline);
  co_await ctx_->wake->wait_for(worker_.ioc.get_executor(), until - now());
  ctx_->wake_token.wait = ctx_->wake->current_wait();
  ctx_->request_info.now = now();
  ctx_->reply = ctx_->chain.resume(ctx_->request_info);
}

filter::LocalReply Connection::prepare_exchange() {
  // A cluster without an address (a name that has not resolved yet) is the exchange's to
  // answer: its fallback clusters may still serve the request.
  if (route_->cluster == nullptr) {
    return filter::refuse(503, reason::kNoEndpoint, has_body_);
  }
  upstream::ExchangeRequest& x = ctx_->exchange_request;
  x.snapshot = snapshot_.get();
  x.route = route_;
  x.listener = listener_runtime_->config;
  x.chain = &ctx_->chain;
  x.start = start_;
  x.hold = ctx_->reply.hold;
  x.head = {};
  x.head.method = ctx_->parser->method();
  x.head.path = ctx_->target.path;
  x.head.query = ctx_->target.query;
  x.head.has_query = ctx_->target.has_query;
  x.head.fields = ctx_->fields;
  x.head.authority = ctx_->target.authority;
  x.head.client_ip = client_ip_;
  x.head.request_id = ctx_->request_id;
  x.head.forwarded_proto = stream_.secure() ? "https" : "http";
  x.head.added = ctx_->edits.added();
  x.head.removed = ctx_->edits.removed();
  x.has_body = has_body_;
  x.chunked_body = chunked_body_;
  // HTTP/1.0 clients know no interim answers (RFC 9110 §10.1.1): their Expect is ignored.
  x.expect_continue = http::iequals(http::field_value(ctx_->fields, "expect"), "100-continue") &&
                      has_body_ && ctx_->parser->version() >= 11;
  x.head_request = head_request_;
  // Under critical overload every connection closes after its answer.
  keep_alive_ = keep_alive_ && worker_.shared.overload.keep_alive_allowed();
  x.client_keep_alive = keep_alive_;
  x.client_version = ctx_->parser->version();
  return {};
}

http::Task<bool> Connection::proxy() {
  upstream::ClientLeg client{stream_, ctx_->in, in_capacity_, *ctx_->parser, ctx_->out, timer_};
  upstream::ExchangeResult& result = ctx_->exchange_result;
  co_await ctx_->exchange.run(client, ctx_->exchange_request, result);
  if (result.reply) {
    // Nothing of an answer reached the client: it is told why.
    ctx_->reply = result.reply;
    ctx_->reply.close = ctx_->reply.close || result.close_client || !ctx_->parser->is_done();
    co_return co_await answer();
  }
  if (result.client_gone) {
    record(result.status, result.reason.empty() ? reason::kClientClosed : result.reason);
    shutdown(net::socket_base::shutdown_both);
    co_return false;
  }
  record(result.status, result.reason);
  if (!result.reason.empty() || result.close_client) {
    shutdown(net::socket_base::shutdown_both);
    co_return false;
  }
  co_return true;
}

http::Task<bool> Connection::answer() {
  const filter::LocalReply& reply = ctx_->reply;
  ensure_request_id();
  const bool keep_alive = keep_alive_ && !reply.close && !worker_.draining;
  ctx_->out.clear();
  http::write_local_reply(ctx_->out, reply, ctx_->request_id, keep_alive, head_request_);
  listener_runtime_->metrics->response(reply.status, reply.reason).inc();
  timer_.guard(stream_.socket(), now() + listener_runtime_->config->timeouts.idle);
  auto [ec, n] = co_await net::async_write(stream_, net::buffer(ctx_->out), http::kTuple);
  record(reply.status, reply.reason);
  if (ec || !keep_alive) {
    shutdown(net::socket_base::shutdown_send);
    co_return false;
  }
  co_return true;
}

void Connection::ensure_request_id() {
  if (ctx_->request_id.empty()) observe::format_request_id(worker_.random, ctx_->request_id);
}

void Connection::record(int status, std::string_view reason) {
  const TimePoint end = now();
  ctx_->chain.complete({status, reason, end});
  const auto elapsed = end - start_;
  const std::size_t cls = observe::status_class_index(status);
  const upstream::ExchangeResult& x = ctx_->exchange_result;
  if (route_ != nullptr && status != 0) {
    auto* rm = route_->metrics;
    if (rm->requests[cls]) rm->requests[cls]->inc();
    if (rm->duration) rm->duration->observe(elapsed);
    if (rm->request_bytes) rm->request_bytes->inc(static_cast<double>(x.bytes_in));
    if (rm->response_bytes) rm->response_bytes->inc(static_cast<double>(x.bytes_out));
    if (route_->cluster != nullptr && x.endpoint != nullptr) {
      auto* cm = route_->cluster->metrics;
      if (cm->requests[cls]) cm->requests[cls]->inc();
      if (cm->duration) cm->duration->observe(elapsed);
      auto* em = x.endpoint->metrics;
      if (em->requests[cls]) em->requests[cls]->inc();
      if (em->duration) em->duration->observe(elapsed);
    }
  }
  auto* log = worker_.shared.access_log.get();
  if (log == nullptr || !log->enabled()) return;
  observe::AccessRecord r;
  // The wall-clock start, from the steady clock's elapsed time (the log's only wall reading).
  r.start = std::chrono::system_clock::now() -
            std::chrono::duration_cast<std::chrono::system_clock::duration>(elapsed);
  r.request_id = ctx_->request_id;
  r.client = client_;
  r.method = ctx_->log_method;
  r.path = ctx_->log_path;
  r.status = status;
  if (route_ != nullptr) {
    r.route = route_->config->name;
    if (route_->cluster != nullptr) r.cluster = route_->cluster->config->name;
  }
  if (x.endpoint != nullptr) r.endpoint = x.endpoint->address;
  r.attempts = x.attempts;
  r.duration = std::chrono::duration_cast<std::chrono::nanoseconds>(elapsed);
  r.bytes_in = x.bytes_in;
  r.bytes_out = x.bytes_out;
  r.reason = reason;
  log->log(r);
}

void Connection::shutdown(net::socket_base::shutdown_type how) noexcept {
  error_code ignored;
  stream_.socket().shutdown(how, ignored);
}

}  // namespace bulwark::gateway::listener
