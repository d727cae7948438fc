// The admin listener: a small HTTP/1.1 server (loopback by default) on its own thread and
// io_context, so that a saturated proxy never makes /metrics or /readyz unreachable.
//
// Endpoints (anything else: 404; a known path with the wrong method: 405 with Allow):
//   GET  /          HTML status page (listeners, routes, clusters, endpoints; HAProxy-stats
//                   style tables, rendered on the server, no JavaScript needed)
//   GET  /metrics   Prometheus text format 0.0.4 (text/plain; version=0.0.4; charset=utf-8)
//   GET  /healthz   200 {"status":"alive"}
//   GET  /readyz    200 {"status":"ready"}; 503 {"status":"draining"} (or "not_ready") with
//                   Retry-After when handlers.ready() says no
//   GET  /stats     JSON (handlers.stats())
//   GET  /clusters  JSON (handlers.clusters())
//   GET  /config    JSON of the effective config, secrets redacted (handlers.config())
//   GET  /alerts    JSON (handlers.alerts())
//   POST /reload    200 {"result":"ok","generation":N} or 400 {"result":"error","errors":[...]}
//                   (handlers.reload()); the request body is ignored
// HEAD is accepted wherever GET is. Every JSON answer has content-type application/json.
//
// Access (admin.token): with a token set, every request other than GET/HEAD must carry
// `Authorization: Bearer <token>`; on a listener bound off loopback every request must. A
// missing or wrong token gets 401 with `WWW-Authenticate: Bearer realm="bulwark-admin"` (plus
// `error="invalid_token"` when one was sent and is wrong). Tokens are compared in constant time.
// A listener bound off loopback without a token refuses to be built (std::invalid_argument).
//
// TLS (admin.tls, set_tls): the handshake within the request timeout, then the same API.
//
// Limits: request headers 8 KiB, bodies 64 KiB, 10 s to read a request, 60 s idle keep-alive,
// at most 64 connections at once (more are closed on accept).
//
// Thread-safety: the handlers are called on the admin thread, one at a time; they must be safe
// against the proxy workers themselves. start()/stop() from one controlling thread.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "http/tls_context.h"

namespace bulwark::gateway::admin {

struct ReloadOutcome {
  bool ok = false;
  uint64_t generation = 0;          // the generation serving after the call
  std::vector<std::string> errors;  // "file:line:col: path: message" lines when !ok
};

struct ReadyState {
  bool ready = true;
  std::string status = "ready";      // "ready", "draining", "not_ready"
  std::vector<std::string> failing;  // the failing critical checks ("cluster:<name>")
};

struct AdminHandlers {
  std::function<std::string()> metrics;
  std::function<ReadyState()> ready;
  std::function<nlohmann::json()> stats;
  std::function<nlohmann::json()> clusters;
  std::function<nlohmann::json()> config;
  std::function<nlohmann::json()> alerts;
  std::function<ReloadOutcome()> reload;
};

class AdminServer {
 public:
  // Binds host:port (port 0: ephemeral) at construction; throws std::system_error when the
  // address cannot be bound, std::invalid_argument when it is bound off loopback and `token`
  // is empty.
  AdminServer(const std::string& host, uint16_t port, AdminHandlers handlers,
              std::string token = {});
  ~AdminServer();  // stop()s
  AdminServer(const AdminServer&) = delete;
  AdminServer& operator=(const AdminServer&) = delete;

  uint16_t port() const noexcept;  // the bound port
  bool loopback() const noexcept;  // bound to a loopback address
  // Replaces the token (a reload); safe from any thread. Throws std::invalid_argument for an
  // empty token on a listener bound off loopback (the old one stays).
  void set_token(std::string token);
  // admin.tls: connections accepted from now on speak TLS with these certificates (null: plain
  // HTTP); safe from any thread (a reload).
  void set_tls(std::shared_ptr<http::ServerTls> tls);
  void start();                    // runs the admin thread
  void stop();                     // closes the listener and every connection; joins the thread

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Whether two strings are equal, in a time that depends on neither's content (both are hashed
// with SHA-256 and the digests compared with CRYPTO_memcmp).
bool constant_time_equal(std::string_view a, std::string_view b);
// Whether an Authorization field value carries `token` as a bearer credential ("Bearer" in any
// case, then spaces, then the token).
bool bearer_matches(std::string_view authorization, std::string_view token);

// Renders the status page from the /stats and /clusters documents (pure; unit-tested).
std::string render_status_page(const nlohmann::json& stats, const nlohmann::json& clusters);

}  // namespace bulwark::gateway::admin
