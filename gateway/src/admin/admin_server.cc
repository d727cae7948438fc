#include "admin/admin_server.h"

#include <cctype>
#include <chrono>
#include <cstddef>
#include <exception>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <tuple>
#include <unordered_map>
#include <utility>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/serializer.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>

#include <openssl/crypto.h>
#include <openssl/evp.h>

namespace bulwark::gateway::admin {

namespace http_tls = bulwark::gateway::http;
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using nlohmann::json;
using Request = http::request<http::string_body>;
using Response = http::response<http::string_body>;
using ErrorCode = boost::system::error_code;

// Completion token: results as (error_code, values...) tuples instead of exceptions. A named
// constant, so that no temporary token lives inside a co_await expression (GCC 12 miscompiles
// some of those).
constexpr asio::as_tuple_t<asio::use_awaitable_t<>> kToken{};

constexpr std::size_t kHeaderLimit = 8 * 1024UL;
constexpr std::uint64_t kBodyLimit = 64 * 1024UL;
constexpr auto kRequestTimeout = std::chrono::seconds(10);
constexpr auto kIdleTimeout = std::chrono::seconds(60);
constexpr auto kWriteTimeout = std::chrono::seconds(10);
// After an error answer the rest of the request is read and dropped for a short while, so that
// closing with unread input does not reset the connection before the client read the answer.
constexpr auto kLingerTimeout = std::chrono::seconds(1);
constexpr std::size_t kLingerBytes = 256 * 1024UL;
constexpr std::size_t kMaxConnections = 64;
constexpr auto kAcceptRetryDelay = std::chrono::milliseconds(100);

constexpr std::string_view kJson = "application/json";
constexpr std::string_view kHtml = "text/html; charset=utf-8";
constexpr std::string_view kPrometheus = "text/plain; version=0.0.4; charset=utf-8";

Response make_response(http::status status, std::string_view content_type, std::string body) {
  Response res{status, 11};
  res.set(http::field::content_type, content_type);
  res.set(http::field::cache_control, "no-store");
  res.body() = std::move(body);
  return res;
}

Response json_response(http::status status, const json& document) {
  // Invalid UTF-8 (an upstream's error text, say) must not turn an answer into an exception.
  std::string body = document.dump(-1, ' ', false, json::error_handler_t::replace);
  body += '\n';
  return make_response(status, kJson, std::move(body));
}

Response error_response(http::status status, std::string_view message) {
  return json_response(status, json{{"error", message}});
}

// A handler that the embedding program left unset.
Response not_available() {
  return error_response(http::status::service_unavailable, "not available");
}

enum class Allowed { get, post };

struct Endpoint {
  std::string_view path;
  Allowed allowed;
};

constexpr Endpoint kEndpoints[] = {
    {"/", Allowed::get},       {"/metrics", Allowed::get}, {"/healthz", Allowed::get},
    {"/readyz", Allowed::get}, {"/stats", Allowed::get},   {"/clusters", Allowed::get},
    {"/config", Allowed::get}, {"/alerts", Allowed::get},  {"/reload", Allowed::post},
};

constexpr std::string_view kRealm = "Bearer realm=\"bulwark-admin\"";

Response unauthorized(bool token_sent) {
  Response res = error_response(http::status::unauthorized,
                                token_sent ? "invalid token" : "missing bearer token");
  res.set(http::field::www_authenticate,
          token_sent ? std::string(kRealm) + ", error=\"invalid_token\"" : std::string(kRealm));
  return res;
}

bool is_http_parse_error(const ErrorCode& ec) {
  return ec.category() == http::make_error_code(http::error::bad_method).category() &&
         ec != http::error::end_of_stream && ec != http::error::partial_message;
}

}  // namespace

struct AdminServer::Impl {
  Impl(const std::string& host, uint16_t port, AdminHandlers h, std::string t)
      : acceptor(ioc), retry_timer(ioc), handlers(std::move(h)), token(std::move(t)) {
    const tcp::endpoint endpoint = resolve(host, port);
    ErrorCode ec;
    acceptor.open(endpoint.protocol(), ec);
    if (!ec) acceptor.set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) acceptor.bind(endpoint, ec);
    if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
      throw std::system_error(std::error_code(ec),
                              "admin listener " + host + ":" + std::to_string(port));
    }
    bound_port = acceptor.local_endpoint().port();
    asio::ip::address bound = acceptor.local_endpoint().address();
    if (bound.is_v6() && bound.to_v6().is_v4_mapped()) {
      bound = asio::ip::make_address_v4(asio::ip::v4_mapped, bound.to_v6());
    }
    on_loopback = bound.is_loopback();
    if (!on_loopback && token.empty()) {
      throw std::invalid_argument("admin listener " + host + ":" + std::to_string(port) +
                                  " is off loopback and has no token (admin.token)");
    }
  }

  void set_token(std::string t) {
    if (!on_loopback && t.empty()) {
      throw std::invalid_argument(
          "the admin listener is off loopback: its token cannot be removed");
    }
    std::lock_guard lock(token_mu);
    token = std::move(t);
  }

  // 401 when the request needs the token and does not carry it; nullopt when it may go on.
  std::optional<Response> check_access(const Request& req) {
    const bool read = req.method() == http::verb::get || req.method() == http::verb::head;
    std::string expected;
    {
      std::lock_guard lock(token_mu);
      expected = token;
    }
    if (expected.empty() || (read && on_loopback)) return std::nullopt;
    const auto field = req.find(http::field::authorization);
    if (field == req.end()) return unauthorized(false);
    // Two Authorization fields are ambiguous: refused like a wrong token.
    const bool single = req.count(http::field::authorization) == 1;
    if (single && bearer_matches(field->value(), expected)) return std::nullopt;
    return unauthorized(true);
  }

  static tcp::endpoint resolve(const std::string& host, uint16_t port) {
    ErrorCode ec;
    const auto address = asio::ip::make_address(host, ec);
    if (!ec) return tcp::endpoint(address, port);
    asio::io_context resolver_context;
    tcp::resolver resolver(resolver_context);
    const auto results = resolver.resolve(host, std::to_string(port), ec);
    if (ec || results.empty()) {
      throw std::system_error(
          ec ? std::error_code(ec) : std::make_error_code(std::errc::address_not_available),
          "admin listener " + host + ":" + std::to_string(port));
    }
    return results.begin()->endpoint();
  }

  void start() {
    if (started || stopping) return;
    started = true;
    asio::co_spawn(ioc, accept_loop(), [](const std::exception_ptr&) {});
    thread = std::thread([this] {
      for (;;) {
        try {
          ioc.run();
          return;
        } catch (...) {
          // A handler escaped with an exception; the other connections keep being served.
        }
      }
    });
  }

  void stop() {
    if (thread.joinable()) {
      asio::post(ioc, [this] { close_all(); });
      thread.join();
    } else {
      // Never started (or already stopped): nothing runs on the io_context.
      stopping = true;
      ErrorCode ec;
      acceptor.close(ec);
    }
  }

  // On the admin thread. Every pending operation completes with operation_aborted, each
  // coroutine returns, and the io_context runs out of work, which ends the thread.
  void close_all() {
    stopping = true;
    ErrorCode ec;
    acceptor.close(ec);
    retry_timer.cancel();
    for (auto& [id, stream] : sessions) {
      stream->socket().shutdown(tcp::socket::shutdown_both, ec);
      stream->close();
    }
  }

  asio::awaitable<void> accept_loop() {
    while (!stopping) {
      auto [ec, socket] = co_await acceptor.async_accept(kToken);
      if (stopping) co_return;
      if (ec) {
        // EMFILE and friends: back off instead of spinning on a failing accept.
        retry_timer.expires_after(kAcceptRetryDelay);
        auto waited = co_await retry_timer.async_wait(kToken);
        std::ignore = waited;
        continue;
      }
      if (sessions.size() >= kMaxConnections) {
        ErrorCode ignored;
        socket.close(ignored);
        continue;
      }
      const uint64_t id = next_session_id++;
      if (std::shared_ptr<http_tls::ServerTls> tls = current_tls()) {
        auto stream = std::make_unique<beast::ssl_stream<beast::tcp_stream>>(std::move(socket),
                                                                             tls->context());
        sessions.emplace(id, &beast::get_lowest_layer(*stream));
        asio::co_spawn(ioc, tls_session(std::move(stream), std::move(tls), id),
                       [](const std::exception_ptr&) {});
      } else {
        auto stream = std::make_unique<beast::tcp_stream>(std::move(socket));
        sessions.emplace(id, stream.get());
        asio::co_spawn(ioc, session(std::move(stream), id), [](const std::exception_ptr&) {});
      }
    }
  }

  std::shared_ptr<http_tls::ServerTls> current_tls() {
    std::lock_guard lock(token_mu);
    return tls;
  }

  // admin.tls: the handshake under the request timeout, then the same session as plain HTTP.
  asio::awaitable<void> tls_session(std::unique_ptr<beast::ssl_stream<beast::tcp_stream>> owned,
                                    std::shared_ptr<http_tls::ServerTls> context, uint64_t id) {
    beast::get_lowest_layer(*owned).expires_after(kRequestTimeout);
    auto [ec] = co_await owned->async_handshake(asio::ssl::stream_base::server, kToken);
    if (ec) {
      sessions.erase(id);
      if (!stopping) beast::get_lowest_layer(*owned).close();
      co_return;
    }
    co_await session(std::move(owned), id);
    (void)context;  // kept alive for the connection's life
  }

  template <class Stream>
  asio::awaitable<void> session(std::unique_ptr<Stream> owned, uint64_t id) {
    struct Deregister {
      Impl* self;
      uint64_t id;
      ~Deregister() { self->sessions.erase(id); }
    } deregister{this, id};
    Stream& stream = *owned;
    beast::tcp_stream& tcp = beast::get_lowest_layer(stream);
    beast::flat_buffer buffer;
    bool linger = false;
    for (bool first = true; !stopping; first = false) {
      if (!first && buffer.size() == 0) {
        // Between requests: wait up to the idle timeout for the next one to begin.
        tcp.expires_after(kIdleTimeout);
        auto space = buffer.prepare(4096);
        auto [ec, n] = co_await stream.async_read_some(space, kToken);
        if (ec) break;
        buffer.commit(n);
      }
      http::request_parser<http::string_body> parser;
      parser.header_limit(kHeaderLimit);
      parser.body_limit(kBodyLimit);
      tcp.expires_after(kRequestTimeout);
      auto [read_ec, read_n] = co_await http::async_read(stream, buffer, parser, kToken);
      std::ignore = read_n;
      if (stopping) break;
      Response res;
      bool head = false;
      bool keep_alive = false;
      if (read_ec) {
        if (!is_http_parse_error(read_ec)) break;  // EOF, timeout, reset: nothing to answer
        if (read_ec == http::error::header_limit) {
          res = error_response(http::status::request_header_fields_too_large,
                               "request header too large");
        } else if (read_ec == http::error::body_limit) {
          res = error_response(http::status::payload_too_large, "request body too large");
        } else {
          res = error_response(http::status::bad_request, "bad request");
        }
        linger = true;
      } else {
        const Request& req = parser.get();
        head = req.method() == http::verb::head;
        keep_alive = req.keep_alive();
        res = handle(req);
      }
      res.keep_alive(keep_alive && !stopping);
      res.prepare_payload();
      http::response_serializer<http::string_body> serializer(res);
      tcp.expires_after(kWriteTimeout);
      ErrorCode write_ec;
      if (head) {
        auto [ec, n] = co_await http::async_write_header(stream, serializer, kToken);
        write_ec = ec;
      } else {
        auto [ec, n] = co_await http::async_write(stream, serializer, kToken);
        write_ec = ec;
      }
      if (write_ec || !res.keep_alive()) break;
    }
    if (stopping) co_return;  // close_all() closed the socket already
    ErrorCode ec;
    tcp.socket().shutdown(asio::ip::tcp::socket::shutdown_send, ec);
    if (linger && !ec) {
      tcp.expires_after(kLingerTimeout);
      std::size_t dropped = 0;
      while (dropped < kLingerBytes && !stopping) {
        buffer.clear();
        auto space = buffer.prepare(16 * 1024UL);
        auto [read_ec, n] = co_await stream.async_read_some(space, kToken);
        if (read_ec) break;
        dropped += n;
      }
    }
    if (!stopping) tcp.close();
  }

  Response handle(const Request& req) {
    // Before the path: an unauthorized client learns nothing, not even which paths exist.
    if (auto denied = check_access(req)) return std::move(*denied);
    const std::string_view target = req.target();
    const std::string_view path = target.substr(0, target.find('?'));
    const Endpoint* endpoint = nullptr;
    for (const Endpoint& e : kEndpoints) {
      if (e.path == path) endpoint = &e;
    }
    if (endpoint == nullptr) return error_response(http::status::not_found, "not found");
    const http::verb method = req.method();
    const bool allowed = endpoint->allowed == Allowed::get
                             ? method == http::verb::get || method == http::verb::head
                             : method == http::verb::post;
    if (!allowed) {
      Response res = error_response(http::status::method_not_allowed, "method not allowed");
      res.set(http::field::allow, endpoint->allowed == Allowed::get ? "GET, HEAD" : "POST");
      return res;
    }
    try {
      return dispatch(path);
    } catch (const std::exception& e) {
      return json_response(http::status::internal_server_error,
                           json{{"error", "internal error"}, {"detail", e.what()}});
    } catch (...) {
      return error_response(http::status::internal_server_error, "internal error");
    }
  }

  Response dispatch(std::string_view path) {
    if (path == "/healthz") return json_response(http::status::ok, json{{"status", "alive"}});
    if (path == "/readyz") {
      const ReadyState state = handlers.ready ? handlers.ready() : ReadyState{};
      if (state.ready) {
        return json_response(http::status::ok,
                             json{{"status", state.status.empty() ? "ready" : state.status}});
      }
      json body{
          {"status", state.status.empty() || state.status == "ready" ? "not_ready" : state.status}};
      if (!state.failing.empty()) body["failing"] = state.failing;
      Response res = json_response(http::status::service_unavailable, body);
      res.set(http::field::retry_after, "1");
      return res;
    }
    if (path == "/metrics") {
      if (!handlers.metrics) return not_available();
      return make_response(http::status::ok, kPrometheus, handlers.metrics());
    }
    if (path == "/") {
      const json stats = handlers.stats ? handlers.stats() : json();
      const json clusters = handlers.clusters ? handlers.clusters() : json();
      return make_response(http::status::ok, kHtml, render_status_page(stats, clusters));
    }
    if (path == "/reload") {
      if (!handlers.reload) return not_available();
      const ReloadOutcome outcome = handlers.reload();
      if (outcome.ok) {
        return json_response(http::status::ok,
                             json{{"result", "ok"}, {"generation", outcome.generation}});
      }
      return json_response(http::status::bad_request,
                           json{{"result", "error"}, {"errors", outcome.errors}});
    }
    const std::function<json()>* source = nullptr;
    if (path == "/stats") source = &handlers.stats;
    if (path == "/clusters") source = &handlers.clusters;
    if (path == "/config") source = &handlers.config;
    if (path == "/alerts") source = &handlers.alerts;
    if (source == nullptr || !*source) return not_available();
    return json_response(http::status::ok, (*source)());
  }

  asio::io_context ioc{1};
  tcp::acceptor acceptor;
  asio::steady_timer retry_timer;
  AdminHandlers handlers;
  std::mutex token_mu;
  std::string token;                          // guarded by token_mu
  std::shared_ptr<http_tls::ServerTls> tls;  // admin.tls; guarded by token_mu
  bool on_loopback = true;
  uint16_t bound_port = 0;
  std::thread thread;
  bool started = false;
  bool stopping = false;
  // Live connections, for close_all(). Touched only on the admin thread once it runs.
  std::unordered_map<uint64_t, beast::tcp_stream*> sessions;
  uint64_t next_session_id = 0;
};

AdminServer::AdminServer(const std::string& host, uint16_t port, AdminHandlers handlers,
                         std::string token)
    : impl_(std::make_unique<Impl>(host, port, std::move(handlers), std::move(token))) {}

AdminServer::~AdminServer() { stop(); }

uint16_t AdminServer::port() const noexcept { return impl_->bound_port; }

bool AdminServer::loopback() const noexcept { return impl_->on_loopback; }

void AdminServer::set_token(std::string token) { impl_->set_token(std::move(token)); }

void AdminServer::set_tls(std::shared_ptr<http_tls::ServerTls> tls) {
  std::lock_guard lock(impl_->token_mu);
  impl_->tls = std::move(tls);
}

bool constant_time_equal(std::string_view a, std::string_view b) {
  unsigned char da[EVP_MAX_MD_SIZE];
  unsigned char db[EVP_MAX_MD_SIZE];
  unsigned int na = 0;
  unsigned int nb = 0;
  if (EVP_Digest(a.data(), a.size(), da, &na, EVP_sha256(), nullptr) != 1 ||
      EVP_Digest(b.data(), b.size(), db, &nb, EVP_sha256(), nullptr) != 1 || na != nb) {
    return false;
  }
  // Equal digests of different strings would need a SHA-256 collision.
  return CRYPTO_memcmp(da, db, na) == 0;
}

bool bearer_matches(std::string_view authorization, std::string_view token) {
  constexpr std::string_view kScheme = "bearer";
  if (authorization.size() <= kScheme.size()) return false;
  for (std::size_t i = 0; i < kScheme.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(authorization[i])) != kScheme[i]) return false;
  }
  std::string_view rest = authorization.substr(kScheme.size());
  if (rest.front() != ' ') return false;
  while (!rest.empty() && rest.front() == ' ') rest.remove_prefix(1);
  while (!rest.empty() && (rest.back() == ' ' || rest.back() == '\t')) rest.remove_suffix(1);
  return !rest.empty() && constant_time_equal(rest, token);
}

void AdminServer::start() { impl_->start(); }

void AdminServer::stop() { impl_->stop(); }

}  // namespace bulwark::gateway::admin
