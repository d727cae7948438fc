#include "upstream/exchange.h"

#include <boost/asio/connect.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/http/error.hpp>

#include "bulwark/retry/classifier.h"
#include "filter/reasons.h"
#include "upstream/endpoint_health.h"

namespace bulwark::gateway::upstream {

namespace net = boost::asio;
namespace beast_http = boost::beast::http;
using boost::system::error_code;

namespace {

constexpr std::size_t kUpstreamHeaderLimit = 64 * 1024UL;
constexpr std::size_t kUpstreamBufferBytes = kUpstreamHeaderLimit + 8 * 1024UL;
constexpr std::size_t kMaxUpstreamFields = 1024;
// Reads ask for at least this much room (a small answer arrives in one read).
constexpr std::size_t kMinReadRoom = 16 * 1024UL;
// The relay sends what it has once this much is waiting.
constexpr std::size_t kFlushBytes = 64 * 1024UL;
// A retry is not started with less than this left before the route's deadline.
constexpr Duration kMinAttempt = std::chrono::milliseconds(1);

bool is_connection_loss(const error_code& ec) noexcept {
  return ec == net::error::eof || ec == net::error::connection_reset ||
         ec == net::error::broken_pipe || ec == net::error::connection_aborted;
}

}  // namespace

http::Task<void> Exchange::run(ClientLeg& client, const ExchangeRequest& request,
                               ExchangeResult& result) {
  request_ = &request;
  result_ = &result;
  client_ = &client;
  stage_ = Stage::ok;
  head_sent_ = false;
  stream_end_ = {};
  request_body_failed_ = false;
  last_chunk_sent_ = false;
  response_last_chunk_sent_ = false;
  route_deadline_ = request.start + request.route->config->timeouts.request;
  replay_.clear();
  replay_overflow_ = false;
  replaying_ = false;
  continue_sent_ = false;
  previous_endpoint_ = nullptr;

  sent_any_ = false;
  picked_ = false;
  pool_ = nullptr;
  race_.reset();
  raced_ = false;
  leg_ = 0;

  if (request.hold > std::chrono::nanoseconds::zero() && !co_await hold_within_deadline()) {
    in_.release(worker_.buffers);
    co_return;
  }
  for (std::size_t index = 0;; ++index) {
    cluster_ = index == 0 ? request.route->cluster : request.route->fallbacks[index - 1];
    cluster_index_ = static_cast<filter::ClusterIndex>(index);
    co_await call_cluster(client);
    if (!may_fall_back(index)) break;
    // The next cluster gets the request afresh: this one's connection carries nothing more.
    close_upstream();
    in_.consume(in_.size());
    if (pool_ != nullptr) release_slot(*pool_);
    pool_ = nullptr;
    previous_endpoint_ = nullptr;
    result.reply = {};
    replaying_ = body_taken();
    if (request.route->metrics->fallbacks) request.route->metrics->fallbacks->inc();
  }
  if (pool_ != nullptr) {
    if (stage_ == Stage::ok) co_await relay_response(client);
    finish(*pool_);
    release_slot(*pool_);
    pool_ = nullptr;
  }
  in_.release(worker_.buffers);
}

http::Task<void> Exchange::call_cluster(ClientLeg& client) {
  for (;;) {
    const route::EndpointRuntime* endpoint = choose_endpoint(*cluster_);
    if (endpoint == nullptr) {
      fail(503, cluster_->endpoints.empty() ? reason::kNoEndpoint : reason::kNoHealthyEndpoint);
      result_->reply.close = !client.parser.is_done();
      co_return;
    }
    result_->endpoint = endpoint;
    EndpointPool& pool = worker_.upstreams.pool(*request_->snapshot, *endpoint);
    if (!pool.reserve(cluster_->config->pool.max_per_endpoint)) {
      fail(503, reason::kPoolExhausted);
      result_->reply.close = !client.parser.is_done();
      co_return;
    }
    ++pool.active;
    if (endpoint->metrics->active) endpoint->metrics->active->inc();
    pool_ = &pool;
    co_await attempts(client, pool);
    const filter::RetryAdvice advice = ask_retry();
    if (!advice.again) co_return;
    // The failed attempt's connection carries nothing more; the next goes elsewhere if it can.
    // (After a hedged race the current attempt may be on another endpoint than `endpoint`.)
    close_upstream();
    in_.consume(in_.size());
    if (pool_ != nullptr) release_slot(*pool_);
    pool_ = nullptr;
    previous_endpoint_ = result_->endpoint;
    co_await wait_before_retry(advice.delay);
    result_->reply = {};
    replaying_ = body_taken();
  }
}

bool Exchange::may_fall_back(std::size_t index) const noexcept {
  if (index >= request_->route->fallbacks.size()) return false;
  if (stage_ == Stage::client_gone || request_body_failed_ || result_->client_gone) return false;
  FallbackFacts facts;
  facts.failed_locally = stage_ == Stage::failed;
  facts.reply_status = result_->reply.status;
  facts.reply_reason = result_->reply.reason;
  facts.upstream_status = stage_ == Stage::ok && parser_ ? parser_->status() : 0;
  facts.replayable = !body_taken() || (client_->parser.is_done() && !replay_overflow_);
  facts.idempotent = is_idempotent(request_->head.method);
  facts.sent = sent_any_;
  facts.non_idempotent_allowed =
      request_->route->config->retry && request_->route->config->retry->non_idempotent;
  return should_fall_back(facts);
}

void Exchange::release_slot(EndpointPool& pool) noexcept {
  release_slot(pool, *result_->endpoint);
}

void Exchange::release_slot(EndpointPool& pool, const route::EndpointRuntime& endpoint) noexcept {
  pool.release();
  --pool.active;
  if (endpoint.metrics->active) endpoint.metrics->active->dec();
}

const route::EndpointRuntime* Exchange::choose_endpoint(const route::ClusterRuntime& cluster) {
  // The first pick judges ejections at the request's start (already read: no clock read on
  // the common path); a retry or a fallback reads the clock again.
  const TimePoint t = picked_ ? now() : request_->start;
  picked_ = true;
  const std::size_t avoid =
      previous_endpoint_ != nullptr
          ? static_cast<std::size_t>(previous_endpoint_ - cluster.endpoints.data())
          : kNoEndpoint;
  const std::optional<std::size_t> pick = pick_endpoint(
      cluster.config->lb, worker_.upstreams.next_cursor(*request_->snapshot, cluster),
      cluster.endpoints.size(),
      [&](std::size_t i) {
        return worker_.upstreams.pool(*request_->snapshot, cluster.endpoints[i]).active;
      },
      [&](std::size_t i) { return cluster.endpoints[i].health->usable(t); }, avoid);
  return pick ? &cluster.endpoints[*pick] : nullptr;
}

http::Task<void> Exchange::attempts(ClientLeg& client, EndpointPool& pool) {
  attempt_ran_ = false;
  raced_ = false;
  for (int round = 0; round < 2; ++round) {
    stage_ = Stage::ok;
    upstream_reusable_ = true;
    leg_ = 0;
    result_->reply = request_->chain->before_attempt({now(), cluster_index_, leg_});
    if (result_->reply) {
      result_->reply.close = result_->reply.close || !client.parser.is_done();
      stage_ = Stage::failed;
      co_return;
    }
    attempt_started_ = now();
    received_any_ = false;
    request_sent_ = false;
    // The replacement round always opens a new connection: the next idle one may be just as
    // dead.
    if (co_await open_connection(pool, round == 0)) {
      ++result_->attempts;
      co_await send_request(client);
      // The head is read straight from here (no coroutine frame more on the common path);
      // when the hedge delay passes first, the race takes over.
      if (stage_ == Stage::ok && co_await read_response_head(arm_head_wait())) {
        co_await race(client);
      }
    }
    // After a race the current attempt is the one that answered, or the last to fail.
    last_outcome_ = describe_attempt(connected_);
    sent_any_ = sent_any_ || request_sent_;
    last_outcome_.discarded = !raced_ && round == 0 && connected_ && stage_ == Stage::failed &&
                              !request_body_failed_ && may_replace_stale(stale_facts());
    request_->chain->after_attempt(last_outcome_);
    if (!last_outcome_.discarded) {
      attempt_ran_ = true;
      record_outlier(last_outcome_);
      co_return;
    }
    close_upstream();
    result_->reply = {};
  }
}

StaleFacts Exchange::stale_facts() const noexcept {
  const bool timed_out = last_outcome_.kind == filter::AttemptOutcome::Kind::timeout;
  return {reused_, request_->has_body, last_outcome_.idempotent, !received_any_, timed_out};
}

filter::AttemptOutcome Exchange::describe_attempt(bool connected) const {
  using Kind = filter::AttemptOutcome::Kind;
  filter::AttemptOutcome outcome;
  outcome.now = now();
  outcome.elapsed = outcome.now - attempt_started_;
  outcome.request_sent = request_sent_;
  outcome.idempotent = is_idempotent(request_->head.method);
  // A body not yet taken from the client can still be sent; one taken must have been kept.
  outcome.replayable = !body_taken() || (client_->parser.is_done() && !replay_overflow_);
  outcome.random = &worker_.random;
  outcome.cluster = cluster_index_;
  outcome.leg = leg_;
  if (stage_ != Stage::failed) {
    outcome.kind = Kind::response;
    outcome.status = stage_ == Stage::ok ? parser_->status() : 0;
    if (outcome.status >= 300) {
      outcome.retry_after = retry::parse_retry_after(http::field_value(fields_, "retry-after"));
    }
  } else if (!connected) {
    outcome.kind = Kind::connect_failure;
  } else if (result_->reply.status == 504) {
    outcome.kind = Kind::timeout;
  } else if (result_->reply.reason == reason::kBadResponse) {
    outcome.kind = Kind::bad_response;
  } else {
    outcome.kind = Kind::reset;
  }
  return outcome;
}

filter::RetryAdvice Exchange::ask_retry() {
  if (!attempt_ran_ || stage_ == Stage::client_gone || request_body_failed_) return {};
  const filter::RetryAdvice advice = request_->chain->retry(last_outcome_);
  // The wait and a useful attempt must fit in the route's deadline: otherwise the failure at
  // hand is the answer.
  if (advice.again && now() + advice.delay + kMinAttempt > route_deadline_) return {};
  return advice;
}

http::Task<bool> Exchange::hold_within_deadline() {
  const TimePoint start = now();
  const bool fits = start + request_->hold < route_deadline_;
  co_await wait_before_retry(fits ? request_->hold : route_deadline_ - start);
  if (fits) co_return true;
  fail(504, reason::kRequestTimeout);
  result_->reply.close = !client_->parser.is_done();
  co_return false;
}

http::Task<void> Exchange::wait_before_retry(std::chrono::nanoseconds delay) {
  if (delay <= std::chrono::nanoseconds::zero()) co_return;
  // A timer of the wait's own (not a member: an Exchange outlives its worker's io_context,
  // which a timer must not); the wait is bounded by the delay, itself within the deadline.
  boost::asio::basic_waitable_timer<std::chrono::steady_clock,
                                    boost::asio::wait_traits<std::chrono::steady_clock>,
                                    http::Executor>
      backoff(worker_.executor);
  backoff.expires_after(delay);
  auto [ec] = co_await backoff.async_wait(http::kTuple);
  (void)ec;
}

void Exchange::record_outlier(const filter::AttemptOutcome& outcome) {
  const route::ClusterRuntime& cluster = *cluster_;
  const std::optional<config::OutlierDetection>& spec = cluster.config->outlier_detection;
  if (!spec) return;
  const bool failure =
      is_outlier_failure(outcome.kind == filter::AttemptOutcome::Kind::response, outcome.status);
  std::size_t ejected = 0;
  if (failure) {
    for (const route::EndpointRuntime& e : cluster.endpoints)
      ejected += e.health->ejected(outcome.now);
  }
  result_->endpoint->health->record(failure, outcome.now, *spec, ejected, cluster.endpoints.size());
}

void Exchange::keep_for_replay(std::string_view framed_body) {
  if (framed_body.empty() || replay_overflow_) return;
  // Kept only where it can be sent again: a route with retry, hedging or fallback clusters.
  const bool may_resend = request_->route->config->retry || request_->route->hedge ||
                          !request_->route->fallbacks.empty();
  if (!may_resend || replay_.size() + framed_body.size() > kReplayBytes) {
    replay_overflow_ = true;  // never sent again: nothing more is kept
    replay_.clear();
    return;
  }
  replay_.append(framed_body);
}

http::Task<bool> Exchange::open_connection(EndpointPool& pool, bool allow_reuse) {
  close_upstream();
  reused_ = false;
  connected_ = false;
  const config::Cluster& cluster = *cluster_->config;
  if (allow_reuse) {
    if (auto idle = pool.take_idle(now(), cluster.pool.idle_timeout)) {
      socket_.emplace(std::move(*idle));
      reused_ = true;
      connected_ = true;
      co_return true;
    }
  }
  const route::EndpointRuntime& endpoint = *result_->endpoint;
  if (cluster_->tls) {
    socket_.emplace(http::Socket(worker_.executor), cluster_->tls->context());
  } else {
    socket_.emplace(worker_.executor);
  }
  const Binding deadline = connect_deadline(now(), cluster.connect_timeout, route_deadline_);
  client_->timer.guard(socket_->socket(), deadline.at);
  auto [ec] = co_await socket_->socket().async_connect(endpoint.endpoint, http::kTuple);
  if (ec) {
    if (endpoint.metrics->connect_failures) endpoint.metrics->connect_failures->inc();
    if (client_->timer.fired()) {
      fail(504, deadline.reason);
    } else {
      fail(502, reason::kConnectFailure);
    }
    close_upstream();
    co_return false;
  }
  if (endpoint.metrics->connections_opened) endpoint.metrics->connections_opened->inc();
  error_code ignored;
  socket_->socket().set_option(net::ip::tcp::no_delay(true), ignored);
  if (cluster_->tls && !co_await tls_handshake(pool, deadline)) {
    close_upstream();
    co_return false;
  }
  connected_ = true;
  co_return true;
}

http::Task<bool> Exchange::tls_handshake(EndpointPool& pool, const Binding& deadline) {
  SSL* ssl = socket_->ssl_handle();
  const route::EndpointRuntime& endpoint = *result_->endpoint;
  auto& counts = cluster_->metrics->tls_handshakes;
  if (!cluster_->tls->prepare(ssl, endpoint.host)) {
    if (counts[3] != nullptr) counts[3]->inc();
    fail(502, reason::kUpstreamTls);
    co_return false;
  }
  // A session of an earlier connection to this endpoint saves the full handshake.
  if (SSL_SESSION* session = pool.tls_session()) SSL_set_session(ssl, session);
  client_->timer.guard(socket_->socket(), deadline.at);
  auto [ec] = co_await socket_->async_handshake(http::ssl::stream_base::client, http::kTuple);
  if (ec) {
    const bool unverified = SSL_get_verify_result(ssl) != X509_V_OK;
    if (auto* c = counts[unverified ? 2 : 3]) c->inc();
    if (client_->timer.fired()) {
      fail(504, deadline.reason);
    } else {
      fail(502, reason::kUpstreamTls);
      worker_.log.warn("upstream TLS handshake failed",
                       {{"cluster", cluster_->config->name},
                        {"endpoint", endpoint.address},
                        {"cause", http::upstream_tls_cause(ssl, ec)}});
    }
    co_return false;
  }
  if (auto* c = counts[SSL_session_reused(ssl) ? 1 : 0]) c->inc();
  co_return true;
}

http::Task<void> Exchange::send_request(ClientLeg& client) {
  head_ = request_->head;
  head_.default_host = result_->endpoint->address;
  client.out.clear();
  http::append_request_head(client.out, head_, tokens_);
  const bool body_pending = !client.parser.is_done();
  if (replaying_) {
    client.out.append(replay_);  // a retry: the body as the first attempt framed it
  } else if (body_pending && !request_->expect_continue) {
    // Whatever body is already buffered goes with the head, unless the client waits for
    // 100 Continue before it sends any.
    const std::size_t head_bytes = client.out.size();
    if (!pump_request_body(client)) co_return;
    keep_for_replay(std::string_view(client.out).substr(head_bytes));
  }
  client_->timer.guard(socket_->socket(), route_deadline_);
  request_sent_ = true;
  auto [ec, n] = co_await net::async_write(*socket_, net::buffer(client.out), http::kTuple);
  if (ec) {
    fail(client_->timer.fired() ? 504 : 502,
         client_->timer.fired() ? reason::kRequestTimeout : reason::kUpstreamReset);
    if (request_->has_body && !client_->timer.fired()) {
      // The upstream stopped taking the request: its answer (a refusal of the upload, often)
      // may still be in the receive queue; it is read next, and the client's unread body makes
      // its connection close afterwards.
      stage_ = Stage::ok;
      result_->reply = {};
      upstream_reusable_ = false;
      result_->close_client = true;
    }
    co_return;
  }
  if (!body_pending) co_return;
  if (request_->expect_continue && !continue_sent_) {
    continue_sent_ = true;
    client_->timer.guard(client.stream.socket(), now() + request_->listener->timeouts.idle);
    auto [cec, cn] =
        co_await net::async_write(client.stream, net::buffer(http::kContinue), http::kTuple);
    if (cec) {
      stage_ = Stage::client_gone;
      result_->client_gone = true;
      result_->reason = reason::kClientClosed;
      co_return;
    }
  }
  co_await send_body(client);
}

http::Task<void> Exchange::send_body(ClientLeg& client) {
  const Binding deadline =
      body_read_deadline(route_deadline_, request_->start + request_->listener->timeouts.request);
  while (!client.parser.is_done()) {
    client.out.clear();
    if (!pump_request_body(client)) co_return;
    if (client.out.empty()) {
      client_->timer.guard(client.stream.socket(), deadline.at);
      auto room = client.buffer.prepare(worker_.buffers, client.buffer_capacity, 4096);
      auto [ec, n] = co_await client.stream.async_read_some(room, http::kTuple);
      if (ec && client_->timer.fired()) {
        request_body_failed_ = true;
        upstream_reusable_ = false;
        result_->close_client = true;
        fail(deadline.status, deadline.reason);
        co_return;
      }
      if (ec) {
        fail_request_body(ec);
        co_return;
      }
      client.buffer.commit(n);
      continue;
    }
    keep_for_replay(client.out);
    client_->timer.guard(socket_->socket(), route_deadline_);
    auto [ec, n] = co_await net::async_write(*socket_, net::buffer(client.out), http::kTuple);
    if (ec) {
      if (client_->timer.fired()) {
        fail(504, reason::kRequestTimeout);
        co_return;
      }
      // See send_request: the answer may already be there.
      upstream_reusable_ = false;
      result_->close_client = true;
      co_return;
    }
  }
}

bool Exchange::pump_request_body(ClientLeg& client) {
  while (!client.parser.is_done() && !client.buffer.empty()) {
    error_code ec;
    const std::size_t used =
        client.parser.put(net::buffer(client.buffer.data().data(), client.buffer.size()), ec);
    const std::string_view piece = client.parser.take_piece();
    if (!piece.empty()) {
      result_->bytes_in += piece.size();
      if (request_->chunked_body) {
        http::append_chunk(client.out, piece);
      } else {
        client.out.append(piece);
      }
    }
    client.buffer.consume(used);
    if (ec == beast_http::error::need_more) break;
    if (ec) {
      fail_request_body(ec);
      return false;
    }
    if (used == 0) break;
  }
  if (client.parser.is_done() && request_->chunked_body && !last_chunk_sent_) {
    client.out.append(http::kLastChunk);
    last_chunk_sent_ = true;
  }
  return true;
}

void Exchange::fail_request_body(const error_code& ec) {
  request_body_failed_ = true;
  upstream_reusable_ = false;
  result_->close_client = true;
  if (ec == beast_http::error::body_limit) {
    fail(413, reason::kBodyTooLarge);
  } else if (ec.category() ==
             beast_http::make_error_code(beast_http::error::bad_chunk).category()) {
    fail(400, reason::kMalformed);
  } else {
    // The client went away: nobody to answer.
    stage_ = Stage::client_gone;
    result_->client_gone = true;
    result_->reason = reason::kClientClosed;
  }
}

TimePoint Exchange::arm_head_wait() {
  const config::Route& route = *request_->route->config;
  const auto budget =
      route.timeouts.first_byte ? route.timeouts.first_byte : route.timeouts.per_try;
  head_deadline_ = first_byte_deadline(now(), budget, route_deadline_);
  if (request_->route->hedge == nullptr || !hedge_allowed()) return TimePoint::max();
  race_.emplace(request_->route->hedge->start(route_deadline_));
  race_->on_start(attempt_started_);  // attempt 0: this one
  return race_->next_hedge_at().value_or(TimePoint::max());
}

http::Task<bool> Exchange::read_response_head(TimePoint hedge_at) {
  const config::Route& route = *request_->route->config;
  const Binding deadline = head_deadline_;
  client_->timer.guard(socket_->socket(), std::min(deadline.at, hedge_at));
  for (;;) {
    parser_.emplace(fields_, kMaxUpstreamFields);
    parser_->header_limit(kUpstreamHeaderLimit);
    parser_->body_limit(boost::none);
    parser_->max_chunk_bytes(route.stream.max_chunk_bytes);
    parser_->max_chunks(route.stream.max_chunks);
    if (request_->head_request) parser_->skip(true);
    for (;;) {
      if (!in_.empty()) {
        error_code ec;
        const std::size_t used = parser_->put(net::buffer(in_.data().data(), in_.size()), ec);
        in_.consume(used);
        if (!ec && parser_->is_header_done()) break;
        if (ec && ec != beast_http::error::need_more) {
          fail_response_head(ec, false);
          co_return false;
        }
      }
      auto room = in_.prepare(worker_.buffers, kUpstreamBufferBytes, kMinReadRoom);
      auto [ec, n] = co_await socket_->async_read_some(room, http::kTuple);
      if (ec && client_->timer.fired() && now() < deadline.at) {
        // The hedge delay ran out before the first-byte deadline: a hedge is due unless the
        // answer is already on its way, which is then waited for.
        if (!received_any_) co_return true;
        client_->timer.guard(socket_->socket(), deadline.at);
        continue;
      }
      if (ec) {
        fail_response_head(ec, client_->timer.fired());
        if (client_->timer.fired()) fail(deadline.status, deadline.reason);
        co_return false;
      }
      received_any_ = true;
      in_.commit(n);
    }
    received_any_ = true;
    const int status = parser_->status();
    // Upgrades are not proxied (Upgrade is stripped from requests): an upstream that switches
    // protocols anyway has answered something this hop cannot relay.
    if (status == 101) {
      fail(502, reason::kBadResponse);
      co_return false;
    }
    // Interim answers (100 Continue was given by the gateway itself; 102, 103) are dropped.
    if (status >= 200) co_return false;
  }
}

void Exchange::fail_response_head(const error_code& ec, bool timed_out) {
  upstream_reusable_ = false;
  if (timed_out) return;  // the caller names the deadline
  if (is_connection_loss(ec) || ec == beast_http::error::partial_message) {
    fail(502, reason::kUpstreamReset);
  } else {
    fail(502, reason::kBadResponse);
  }
}

http::Task<void> Exchange::relay_response(ClientLeg& client) {
  const int status = parser_->status();
  result_->status = status;
  http::ResponseFacts facts;
  facts.status = status;
  facts.head_request = request_->head_request;
  facts.has_content_length = parser_->content_length().has_value();
  facts.upstream_chunked = parser_->chunked();
  facts.client_version = request_->client_version;
  facts.client_keep_alive = request_->client_keep_alive && !worker_.draining &&
                            client.parser.is_done() && !result_->close_client;
  framing_ = http::decide_response_framing(facts);
  if (!framing_.reusable) upstream_reusable_ = false;

  filter::ResponseHead filtered;
  filtered.status = status;
  filtered.headers = fields_;
  request_->chain->on_response_head(filtered);

  http::ClientResponseHead head;
  head.status = status;
  head.reason = parser_->reason();
  head.version = request_->client_version;
  head.fields = fields_;
  head.request_id = request_->head.request_id;
  head.added = std::span(filtered.added.data(), filtered.added_count);
  head.framing = framing_;
  client.out.clear();
  http::append_response_head(client.out, head, tokens_);
  // When body bytes are already here (a small answer usually arrives with its head), the head
  // goes out with the first piece of body in one write; otherwise at once, so that a
  // streaming client sees the head before the first event.
  if (framing_.no_body || !(parser_->is_done() || !in_.empty())) {
    if (!co_await write_to_client(client)) co_return;
  }
  if (!framing_.no_body) co_await relay_body(client);
  request_->chain->on_end(stream_end_.empty());
}

http::Task<void> Exchange::relay_body(ClientLeg& client) {
  const config::Route& route = *request_->route->config;
  const TimePoint stream_deadline = now() + route.timeouts.stream_total;
  while (stream_end_.empty()) {
    if (!pump_response_body(client.out)) break;
    const bool done = parser_->is_done();
    // Whatever was parsed goes out before the next read (pump stops when it needs more bytes
    // or has kFlushBytes): each piece reaches the client as soon as it arrived.
    if (done || !client.out.empty()) {
      if (!co_await write_to_client(client)) co_return;
      if (done) co_return;
      continue;
    }
    const TimePoint t = now();
    if (t >= stream_deadline) {
      stream_end_ = reason::kStreamTotalTimeout;
      break;
    }
    const Binding deadline = stream_read_deadline(t, route.timeouts.stream_idle, stream_deadline);
    client_->timer.guard(socket_->socket(), deadline.at);
    auto room = in_.prepare(worker_.buffers, kUpstreamBufferBytes, kMinReadRoom);
    auto [ec, n] = co_await socket_->async_read_some(room, http::kTuple);
    if (!ec) {
      in_.commit(n);
      continue;
    }
    if (client_->timer.fired()) {
      stream_end_ = deadline.reason;
    } else if (ec == net::error::eof && parser_->need_eof()) {
      error_code eof_ec;
      parser_->put_eof(eof_ec);  // the body was delimited by the upstream closing
      if (eof_ec) stream_end_ = reason::kUpstreamReset;
      continue;
    } else {
      stream_end_ = reason::kUpstreamReset;
    }
  }
  // A cut stream: what was gathered is not sent (the client sees the connection close).
}

bool Exchange::pump_response_body(std::string& out) {
  const uint64_t max_bytes = request_->route->config->stream.max_bytes;
  while (!parser_->is_done() && !in_.empty()) {
    error_code ec;
    const std::size_t used = parser_->put(net::buffer(in_.data().data(), in_.size()), ec);
    const std::string_view piece = parser_->take_piece();
    if (!piece.empty()) {
      if (result_->bytes_out + piece.size() > max_bytes) {
        stream_end_ = reason::kStreamMaxBytes;
        return false;
      }
      result_->bytes_out += piece.size();
      request_->chain->on_body(piece);
      if (framing_.chunk_out) {
        http::append_chunk(out, piece);
      } else {
        out.append(piece);
      }
    }
    in_.consume(used);
    if (ec == beast_http::error::need_more) break;
    if (ec) {
      stream_end_ = parser_->chunk_too_big()     ? reason::kStreamMaxChunk
                    : parser_->too_many_chunks() ? reason::kStreamMaxChunks
                                                 : reason::kUpstreamReset;
      return false;
    }
    if (used == 0 || out.size() >= kFlushBytes) break;
  }
  if (parser_->is_done() && framing_.chunk_out && !response_last_chunk_sent_) {
    out.append(http::kLastChunk);
    response_last_chunk_sent_ = true;
  }
  return true;
}

http::Task<bool> Exchange::write_to_client(ClientLeg& client) {
  client_->timer.guard(client.stream.socket(), now() + request_->route->config->timeouts.stream_idle);
  auto [ec, n] = co_await net::async_write(client.stream, net::buffer(client.out), http::kTuple);
  client.out.clear();
  if (ec) {
    // A client that stops reading is cut at stream_idle like a silent upstream.
    stream_end_ = client_->timer.fired() ? reason::kStreamIdleTimeout : reason::kClientClosed;
    co_return false;
  }
  head_sent_ = true;
  co_return true;
}

void Exchange::fail(int status, std::string_view reason) {
  stage_ = Stage::failed;
  result_->reply = filter::refuse(status, reason);
}

void Exchange::finish(EndpointPool& pool) {
  const bool clean =
      stage_ == Stage::ok && stream_end_.empty() && (framing_.no_body || parser_->is_done());
  const PoolFacts facts{clean, upstream_reusable_, clean && parser_->keep_alive(), !in_.empty(),
                        worker_.draining};
  if (socket_ && can_pool(facts)) {
    // A TLS session (its ticket arrives after the handshake) is kept for the next connection.
    if (SSL* ssl = socket_->ssl_handle()) pool.keep_tls_session(ssl);
    // After an answer without a body a misbehaving upstream may send one anyway: such a
    // connection is peeked before its next use.
    const config::Cluster& cluster = *cluster_->config;
    pool.put_idle(std::move(*socket_), now(), cluster.pool.max_idle, cluster.pool.idle_timeout,
                  /*verify=*/framing_.no_body);
    socket_.reset();
  } else {
    close_upstream();
  }
  in_.consume(in_.size());
  if (stage_ == Stage::failed) {
    // Nothing of an answer reached the client; the listener sends the reply.
    result_->close_client = result_->close_client || request_body_failed_;
    return;
  }
  if (stage_ == Stage::client_gone) return;
  if (!stream_end_.empty()) {
    result_->reason = stream_end_;
    if (stream_end_ != reason::kClientClosed) {
      request_->route->metrics->stream_abort(stream_end_).inc();
      if (!head_sent_) {
        // Nothing of the answer reached the client yet, so it can still be told why.
        result_->reply = filter::refuse(502, stream_end_, true);
        result_->status = 0;
      }
    } else {
      result_->client_gone = true;
    }
    result_->close_client = true;
    return;
  }
  if (framing_.close_after) result_->close_client = true;
}

void Exchange::close_upstream() noexcept {
  if (!socket_) return;
  error_code ignored;
  socket_->socket().close(ignored);
  socket_.reset();
}

}  // namespace bulwark::gateway::upstream
