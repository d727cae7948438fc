// The gateway's metric series, registered once in a bulwark::observe::Registry and handed to
// the data path as plain pointers so that recording never takes a lock or looks anything up.
//
// Series (all names fixed; docs/observability.md lists them):
//   bulwark_listener_connections_active{listener}              gauge
//   bulwark_listener_connections_total{listener}               counter  accepted connections
//   bulwark_listener_requests_active{listener}                 gauge
//   bulwark_gateway_responses_total{listener,code,reason}      counter  responses the gateway
//                                                                       made itself (400, 503..)
//   bulwark_route_requests_total{route,class}                  counter  class: 1xx..5xx
//   bulwark_route_request_duration_seconds{route}              histogram
//   bulwark_route_request_bytes_total{route}                   counter  request body bytes
//   bulwark_route_response_bytes_total{route}                  counter  response body bytes
//   bulwark_route_stream_aborts_total{route,reason}            counter  stream guard breaches
//   bulwark_cluster_requests_total{cluster,class}              counter
//   bulwark_cluster_request_duration_seconds{cluster}          histogram
//   bulwark_cluster_requests_active{cluster}                   gauge    against the cluster's
//                                                                       max_concurrent_requests
//   bulwark_route_fallbacks_total{route}                       counter  calls moved on to a
//                                                                       fallback cluster
//   bulwark_route_hedges_total{route}                          counter  hedged attempts started
//   bulwark_route_hedge_wins_total{route}                      counter  requests answered by a
//                                                                       hedge, not the first try
//   bulwark_route_retries_total{route}                         counter  attempts after the first
//   bulwark_route_retries_denied_total{route,reason}           counter  retryable failures not
//                                                                       retried, by reason
//   bulwark_route_blocked_total{route,pattern}                 counter  block_patterns refusals
//                                                                       (pattern: sqli | xss)
//   bulwark_route_faults_total{route,fault}                    counter  injected faults
//                                                                       (fault: abort | delay)
//   bulwark_auth_results_total{route,result}                   counter  JWT decisions on routes
//                                                                       with auth (result: ok or
//                                                                       the jwt_* reason)
//   bulwark_endpoint_requests_total{cluster,endpoint,class}    counter
//   bulwark_endpoint_request_duration_seconds{cluster,endpoint} histogram
//   bulwark_endpoint_requests_active{cluster,endpoint}         gauge
//   bulwark_endpoint_connect_failures_total{cluster,endpoint}  counter
//   bulwark_endpoint_connections_opened_total{cluster,endpoint} counter
//   bulwark_endpoint_pool_connections{cluster,endpoint,state}  gauge    state: idle | busy
//   bulwark_listener_tls_handshakes_total{listener,result}     counter  ok | timeout |
//                                                                       protocol_version |
//                                                                       no_shared_cipher |
//                                                                       client_certificate | other
//   bulwark_listener_tls_connections_total{listener,version}   counter  TLSv1.2 | TLSv1.3
//   bulwark_cluster_tls_handshakes_total{cluster,result}       counter  ok | resumed |
//                                                                       verify_failed | failed
//   bulwark_redis_round_trip_seconds                           histogram  one global decision
//   bulwark_redis_errors_total{kind}                           counter  connect | auth | timeout
//                                                                       | closed | reply |
//                                                                       unavailable | overflow
//   bulwark_redis_connections_up                               gauge    across workers
//   bulwark_redis_script_loads_total                           counter  SCRIPT LOAD and EVAL
//                                                                       after NOSCRIPT
//   bulwark_global_rate_limit_decisions_total{limit,result}    counter  decided by Redis:
//                                                                       allowed | limited
//   bulwark_global_rate_limit_fallbacks_total{limit,mode}      counter  decided without it:
//                                                                       local | allow | deny
//   bulwark_config_reloads_total{result}                       counter  result: success|failure
//   bulwark_config_generation                                  gauge
//   bulwark_config_last_reload_success                         gauge    1 or 0
//   bulwark_draining                                           gauge    1 while draining
//   bulwark_access_log_dropped_total                           counter  (collector)
//
// `class` is "1xx".."5xx" from the status code (anything else counts as "5xx").
//
// Lifetime: handles returned by route()/cluster()/endpoint()/listener() live as long as the
// GatewayMetrics; asking twice for the same name returns the same handle (a reload that keeps
// a route keeps its counters). Lookups take a mutex: call them when a config is installed,
// not per request. Recording through a handle is lock-free.
//
// Thread-safety: every member is safe from any thread.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <string_view>

#include "bulwark/observe/metrics.h"
#include "bulwark/observe/registry.h"

namespace bulwark::gateway::observe {

using bulwark::observe::Counter;
using bulwark::observe::Gauge;
using bulwark::observe::Histogram;

// Index 0..4 for 1xx..5xx (out-of-range codes map to 4).
constexpr std::size_t status_class_index(int status) noexcept {
  return (status >= 100 && status <= 599) ? static_cast<std::size_t>(status / 100 - 1) : 4;
}

// How a client's TLS handshake ended (listeners with tls).
inline constexpr std::array<std::string_view, 6> kTlsHandshakeResults{
    "ok", "timeout", "protocol_version", "no_shared_cipher", "client_certificate", "other"};
// How a TLS connection to an upstream was set up (clusters with tls).
inline constexpr std::array<std::string_view, 4> kUpstreamTlsResults{"ok", "resumed",
                                                                     "verify_failed", "failed"};

struct ListenerMetrics {
  Gauge* connections_active = nullptr;
  Counter* connections_total = nullptr;
  Gauge* requests_active = nullptr;
  // The series for a response the gateway made itself; creates it on first use (locks: these
  // are the unusual path).
  Counter& response(int status, std::string_view reason);

  bulwark::observe::Family<Counter>* responses_family = nullptr;
  std::string name;
  std::array<Counter*, kTlsHandshakeResults.size()> tls_handshakes{};
  Counter* tls12 = nullptr;  // connections by negotiated version
  Counter* tls13 = nullptr;
};

struct RouteMetrics {
  std::array<Counter*, 5> requests{};  // by status class
  Histogram* duration = nullptr;
  Counter* request_bytes = nullptr;
  Counter* response_bytes = nullptr;
  // Stream guard breach; creates the series on first use.
  Counter& stream_abort(std::string_view reason);

  bulwark::observe::Family<Counter>* aborts_family = nullptr;
  std::string name;
  Counter* retries = nullptr;
  Counter* fallbacks = nullptr;
  Counter* hedges = nullptr;
  Counter* hedge_wins = nullptr;
  // By kRetryDenials order: retries_exhausted, budget_exhausted, deadline_exceeded,
  // not_replayable, not_idempotent.
  std::array<Counter*, 5> retries_denied{};
  std::array<Counter*, 2> blocked{};  // by kBlockedPatterns order: sqli, xss
  std::array<Counter*, 2> faults{};   // by kFaults order: abort, delay
  // The series of one authentication result; creates it on first use (a route with auth
  // resolves all of its results when its filter is built).
  Counter& auth_result(std::string_view result);
  bulwark::observe::Family<Counter>* auth_family = nullptr;
};

inline constexpr std::array<std::string_view, 2> kBlockedPatterns{"sqli", "xss"};
inline constexpr std::array<std::string_view, 2> kFaults{"abort", "delay"};

inline constexpr std::array<std::string_view, 5> kRetryDenials{
    "retries_exhausted", "budget_exhausted", "deadline_exceeded", "not_replayable",
    "not_idempotent"};

struct ClusterMetrics {
  std::array<Counter*, 5> requests{};
  Histogram* duration = nullptr;
  Gauge* requests_active = nullptr;
  std::array<Counter*, kUpstreamTlsResults.size()> tls_handshakes{};
};

// Why a conversation with Redis failed (redis/client.h).
enum class RedisError : uint8_t {
  connect, auth, timeout, closed, reply, unavailable, overflow, tls
};
inline constexpr std::array<std::string_view, 8> kRedisErrors{
    "connect", "auth", "timeout", "closed", "reply", "unavailable", "overflow", "tls"};

struct RedisMetrics {
  Histogram* round_trip = nullptr;
  std::array<Counter*, kRedisErrors.size()> errors{};
  Gauge* connections_up = nullptr;
  Counter* script_loads = nullptr;
  void error(RedisError kind) noexcept {
    if (Counter* c = errors[static_cast<std::size_t>(kind)]) c->inc();
  }
};

// How a global rate limit decided without Redis (redis.on_failure).
inline constexpr std::array<std::string_view, 3> kGlobalFallbacks{"local", "allow", "deny"};

struct GlobalLimitMetrics {
  Counter* allowed = nullptr;
  Counter* limited = nullptr;
  std::array<Counter*, kGlobalFallbacks.size()> fallbacks{};
};

struct EndpointMetrics {
  std::array<Counter*, 5> requests{};
  Histogram* duration = nullptr;
  Gauge* active = nullptr;
  Counter* connect_failures = nullptr;
  Counter* connections_opened = nullptr;
  Gauge* pool_idle = nullptr;
  Gauge* pool_busy = nullptr;
};

class GatewayMetrics {
 public:
  explicit GatewayMetrics(bulwark::observe::Registry& registry);

  ListenerMetrics& listener(const std::string& name);
  RouteMetrics& route(const std::string& name);
  ClusterMetrics& cluster(const std::string& name);
  EndpointMetrics& endpoint(const std::string& cluster, const std::string& endpoint);
  RedisMetrics& redis() noexcept { return redis_; }
  GlobalLimitMetrics& global_limit(const std::string& limit);

  // Counts a reload attempt. On success `generation` (the generation now in service) is
  // published and bulwark_config_last_reload_success is set to 1; on failure it is set to 0 and
  // the generation gauge keeps its value.
  void reload_result(bool success, uint64_t generation);
  void set_draining(bool draining);

  // Optional source of bulwark_access_log_dropped_total, read at scrape time (e.g. a lambda
  // returning AccessLog::dropped()). The series is exported only once a source was set (so an
  // owner that reports it through its own collector does not clash). Replacing the source (a
  // reload that reopens the access log) adds the old source's last value to a base, so the
  // exported counter never goes down; the old source is not called after this returns. An
  // empty function detaches the source (the base keeps being exported).
  void set_access_log_dropped_source(std::function<uint64_t()> source);

  bulwark::observe::Registry& registry() noexcept { return registry_; }

  ~GatewayMetrics();
  GatewayMetrics(const GatewayMetrics&) = delete;
  GatewayMetrics& operator=(const GatewayMetrics&) = delete;

 private:
  template <class M>
  using FamilyPtr = bulwark::observe::Family<M>*;

  // The constructor's parts: each registers one group of series.
  void register_listener_series();
  void register_route_and_cluster_series();
  void register_endpoint_series();
  void register_tls_series();
  void register_global_limit_series();
  void register_process_series();

  bulwark::observe::Registry& registry_;

  FamilyPtr<Gauge> listener_connections_active_;
  FamilyPtr<Counter> listener_connections_total_;
  FamilyPtr<Gauge> listener_requests_active_;
  FamilyPtr<Counter> gateway_responses_;
  FamilyPtr<Counter> route_requests_;
  FamilyPtr<Histogram> route_duration_;
  FamilyPtr<Counter> route_request_bytes_;
  FamilyPtr<Counter> route_response_bytes_;
  FamilyPtr<Counter> route_stream_aborts_;
  FamilyPtr<Counter> cluster_requests_;
  FamilyPtr<Histogram> cluster_duration_;
  FamilyPtr<Gauge> cluster_requests_active_;
  FamilyPtr<Counter> route_retries_;
  FamilyPtr<Counter> route_fallbacks_;
  FamilyPtr<Counter> route_hedges_;
  FamilyPtr<Counter> route_hedge_wins_;
  FamilyPtr<Counter> route_retries_denied_;
  FamilyPtr<Counter> route_blocked_;
  FamilyPtr<Counter> route_faults_;
  FamilyPtr<Counter> auth_results_;
  FamilyPtr<Counter> endpoint_requests_;
  FamilyPtr<Histogram> endpoint_duration_;
  FamilyPtr<Gauge> endpoint_active_;
  FamilyPtr<Counter> endpoint_connect_failures_;
  FamilyPtr<Counter> endpoint_connections_opened_;
  FamilyPtr<Gauge> endpoint_pool_connections_;
  FamilyPtr<Counter> listener_tls_handshakes_;
  FamilyPtr<Counter> listener_tls_connections_;
  FamilyPtr<Counter> cluster_tls_handshakes_;
  FamilyPtr<Counter> global_decisions_;
  FamilyPtr<Counter> global_fallbacks_;
  RedisMetrics redis_;
  Counter* reloads_success_;
  Counter* reloads_failure_;
  Gauge* generation_;
  Gauge* last_reload_success_;
  Gauge* draining_;

  // The access log's dropped count (set_access_log_dropped_source).
  std::mutex dropped_mu_;
  std::function<uint64_t()> dropped_source_;  // guarded by dropped_mu_
  uint64_t dropped_base_ = 0;                 // guarded by dropped_mu_
  std::once_flag dropped_once_;
  bulwark::observe::Registry::CollectorId dropped_collector_ = 0;  // 0: not registered

  std::mutex mu_;
  std::map<std::string, ListenerMetrics, std::less<>> listeners_;
  std::map<std::string, RouteMetrics, std::less<>> routes_;
  std::map<std::string, ClusterMetrics, std::less<>> clusters_;
  std::map<std::pair<std::string, std::string>, EndpointMetrics> endpoints_;
  std::map<std::string, GlobalLimitMetrics, std::less<>> global_limits_;
};

}  // namespace bulwark::gateway::observe
