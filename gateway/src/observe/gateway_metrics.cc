#include "observe/gateway_metrics.h"

#include <charconv>
#include <span>
#include <utility>
#include <vector>

namespace bulwark::gateway::observe {
namespace {

constexpr std::array<std::string_view, 5> kClassLabels = {"1xx", "2xx", "3xx", "4xx", "5xx"};

std::array<Counter*, 5> by_class(bulwark::observe::Family<Counter>& family,
                                 std::initializer_list<std::string_view> leading) {
  std::array<Counter*, 5> out{};
  std::vector<std::string_view> values(leading);
  values.emplace_back();
  for (std::size_t i = 0; i < kClassLabels.size(); ++i) {
    values.back() = kClassLabels[i];
    out[i] = &family.with(std::span<const std::string_view>(values));
  }
  return out;
}

}  // namespace

Counter& ListenerMetrics::response(int status, std::string_view reason) {
  char code[12];
  const auto res = std::to_chars(code, code + sizeof code, status);
  return responses_family->with({name, std::string_view(code, res.ptr - code), reason});
}

Counter& RouteMetrics::stream_abort(std::string_view reason) {
  return aborts_family->with({name, reason});
}

Counter& RouteMetrics::auth_result(std::string_view result) {
  return auth_family->with({name, result});
}

GatewayMetrics::GatewayMetrics(bulwark::observe::Registry& registry) : registry_(registry) {
  register_listener_series();
  register_route_and_cluster_series();
  register_endpoint_series();
  register_tls_series();
  register_global_limit_series();
  register_process_series();
}

void GatewayMetrics::register_listener_series() {
  auto& r = registry_;
  listener_connections_active_ = &r.gauge("bulwark_listener_connections_active",
                                          "Client connections open on the listener.", {"listener"});
  listener_connections_total_ = &r.counter("bulwark_listener_connections_total",
                                           "Client connections accepted.", {"listener"});
  listener_requests_active_ = &r.gauge("bulwark_listener_requests_active",
                                       "Requests in progress on the listener.", {"listener"});
  gateway_responses_ =
      &r.counter("bulwark_gateway_responses_total",
                 "Responses the gateway made itself (refusals and upstream failures), by status "
                 "code and x-bulwark-reason.",
                 {"listener", "code", "reason"});
}

void GatewayMetrics::register_route_and_cluster_series() {
  auto& r = registry_;
  route_requests_ =
      &r.counter("bulwark_route_requests_total",
                 "Requests routed, by status class of the response sent.", {"route", "class"});
  route_duration_ =
      &r.histogram("bulwark_route_request_duration_seconds",
                   "Time from request start to the end of the response, in seconds.", {"route"});
  route_request_bytes_ = &r.counter("bulwark_route_request_bytes_total",
                                    "Request body bytes read from clients.", {"route"});
  route_response_bytes_ = &r.counter("bulwark_route_response_bytes_total",
                                     "Response body bytes written to clients.", {"route"});
  route_stream_aborts_ = &r.counter(
      "bulwark_route_stream_aborts_total",
      "Responses cut short by a stream guard after the header was sent.", {"route", "reason"});
  cluster_requests_ = &r.counter("bulwark_cluster_requests_total",
                                 "Requests sent to the cluster, by status class of the response.",
                                 {"cluster", "class"});
  cluster_duration_ =
      &r.histogram("bulwark_cluster_request_duration_seconds",
                   "Upstream request duration for the cluster, in seconds.", {"cluster"});
  cluster_requests_active_ = &r.gauge(
      "bulwark_cluster_requests_active",
      "Requests to the cluster in flight (its max_concurrent_requests bounds them).", {"cluster"});
  route_retries_ = &r.counter("bulwark_route_retries_total",
                              "Upstream attempts after the first one, by route.", {"route"});
  route_fallbacks_ =
      &r.counter("bulwark_route_fallbacks_total",
                 "Calls that moved on to one of the route's fallback clusters.", {"route"});
  route_hedges_ = &r.counter("bulwark_route_hedges_total",
                             "Hedged attempts started (routes[].hedge), by route.", {"route"});
  route_hedge_wins_ =
      &r.counter("bulwark_route_hedge_wins_total",
                 "Requests answered by a hedged attempt rather than the first one.", {"route"});
  route_retries_denied_ = &r.counter(
      "bulwark_route_retries_denied_total",
      "Retryable failures that were not retried, by route and reason.", {"route", "reason"});
  route_blocked_ = &r.counter("bulwark_route_blocked_total",
                              "Requests refused by the route's block patterns, by pattern kind.",
                              {"route", "pattern"});
  route_faults_ =
      &r.counter("bulwark_route_faults_total",
                 "Faults injected into the route's requests, by fault.", {"route", "fault"});
  auth_results_ = &r.counter(
      "bulwark_auth_results_total",
      "Authentication decisions on routes with auth, by result (ok or the refusal's reason).",
      {"route", "result"});
}

void GatewayMetrics::register_endpoint_series() {
  auto& r = registry_;
  endpoint_requests_ = &r.counter("bulwark_endpoint_requests_total",
                                  "Requests sent to the endpoint, by status class of the response.",
                                  {"cluster", "endpoint", "class"});
  endpoint_duration_ = &r.histogram("bulwark_endpoint_request_duration_seconds",
                                    "Upstream request duration for the endpoint, in seconds.",
                                    {"cluster", "endpoint"});
  endpoint_active_ = &r.gauge("bulwark_endpoint_requests_active",
                              "Requests in progress on the endpoint.", {"cluster", "endpoint"});
  endpoint_connect_failures_ =
      &r.counter("bulwark_endpoint_connect_failures_total",
                 "Failed connection attempts to the endpoint.", {"cluster", "endpoint"});
  endpoint_connections_opened_ =
      &r.counter("bulwark_endpoint_connections_opened_total", "Connections opened to the endpoint.",
                 {"cluster", "endpoint"});
  endpoint_pool_connections_ =
      &r.gauge("bulwark_endpoint_pool_connections",
               "Pooled upstream connections to the endpoint, by state (idle or busy).",
               {"cluster", "endpoint", "state"});
}

void GatewayMetrics::register_tls_series() {
  auto& r = registry_;
  listener_tls_handshakes_ =
      &r.counter("bulwark_listener_tls_handshakes_total",
                 "Client TLS handshakes on the listener, by result.", {"listener", "result"});
  listener_tls_connections_ = &r.counter("bulwark_listener_tls_connections_total",
                                         "Client TLS connections established, by protocol version.",
                                         {"listener", "version"});
  cluster_tls_handshakes_ =
      &r.counter("bulwark_cluster_tls_handshakes_total",
                 "TLS handshakes with the cluster's endpoints, by result.", {"cluster", "result"});
}

void GatewayMetrics::register_global_limit_series() {
  auto& r = registry_;
  global_decisions_ =
      &r.counter("bulwark_global_rate_limit_decisions_total",
                 "Global rate limit decisions made by Redis, by result.", {"limit", "result"});
  global_fallbacks_ =
      &r.counter("bulwark_global_rate_limit_fallbacks_total",
                 "Global rate limit decisions made without Redis (redis.on_failure), by mode.",
                 {"limit", "mode"});
  redis_.round_trip = &r.histogram("bulwark_redis_round_trip_seconds",
                                   "Time from sending a global decision to Redis to its reply.")
                           .with();
  auto& redis_errors = r.counter("bulwark_redis_errors_total",
                                 "Failed conversations with Redis, by kind.", {"kind"});
  for (std::size_t i = 0; i < kRedisErrors.size(); ++i) {
    redis_.errors[i] = &redis_errors.with({kRedisErrors[i]});
  }
  redis_.connections_up =
      &r.gauge("bulwark_redis_connections_up", "Connections to Redis logged in and ready.").with();
  redis_.script_loads = &r.counter("bulwark_redis_script_loads_total",
                                   "GCRA script loads (SCRIPT LOAD, and EVAL after NOSCRIPT).")
                             .with();
}

void GatewayMetrics::register_process_series() {
  auto& r = registry_;
  auto& reloads = r.counter("bulwark_config_reloads_total",
                            "Configuration reload attempts, by result.", {"result"});
  reloads_success_ = &reloads.with({"success"});
  reloads_failure_ = &reloads.with({"failure"});
  generation_ =
      &r.gauge("bulwark_config_generation", "Generation of the configuration in service.").with();
  last_reload_success_ = &r.gauge("bulwark_config_last_reload_success",
                                  "1 if the last configuration reload succeeded, else 0.")
                              .with();
  draining_ = &r.gauge("bulwark_draining", "1 while the gateway is draining for shutdown.").with();
}

GatewayMetrics::~GatewayMetrics() {
  if (dropped_collector_ != 0) registry_.remove_collector(dropped_collector_);
}

ListenerMetrics& GatewayMetrics::listener(const std::string& name) {
  std::lock_guard lock(mu_);
  auto [it, inserted] = listeners_.try_emplace(name);
  ListenerMetrics& m = it->second;
  if (inserted) {
    m.name = name;
    m.connections_active = &listener_connections_active_->with({name});
    m.connections_total = &listener_connections_total_->with({name});
    m.requests_active = &listener_requests_active_->with({name});
    m.responses_family = gateway_responses_;
    for (std::size_t i = 0; i < kTlsHandshakeResults.size(); ++i) {
      m.tls_handshakes[i] = &listener_tls_handshakes_->with({name, kTlsHandshakeResults[i]});
    }
    m.tls12 = &listener_tls_connections_->with({name, "TLSv1.2"});
    m.tls13 = &listener_tls_connections_->with({name, "TLSv1.3"});
  }
  return m;
}

RouteMetrics& GatewayMetrics::route(const std::string& name) {
  std::lock_guard lock(mu_);
  auto [it, inserted] = routes_.try_emplace(name);
  RouteMetrics& m = it->second;
  if (inserted) {
    m.name = name;
    m.requests = by_class(*route_requests_, {name});
    m.duration = &route_duration_->with({name});
    m.request_bytes = &route_request_bytes_->with({name});
    m.response_bytes = &route_response_bytes_->with({name});
    m.aborts_family = route_stream_aborts_;
    m.auth_family = auth_results_;
    m.retries = &route_retries_->with({name});
    m.fallbacks = &route_fallbacks_->with({name});
    m.hedges = &route_hedges_->with({name});
    m.hedge_wins = &route_hedge_wins_->with({name});
    for (std::size_t i = 0; i < kRetryDenials.size(); ++i) {
      m.retries_denied[i] = &route_retries_denied_->with({name, kRetryDenials[i]});
    }
    for (std::size_t i = 0; i < kBlockedPatterns.size(); ++i) {
      m.blocked[i] = &route_blocked_->with({name, kBlockedPatterns[i]});
    }
    for (std::size_t i = 0; i < kFaults.size(); ++i) {
      m.faults[i] = &route_faults_->with({name, kFaults[i]});
    }
  }
  return m;
}

ClusterMetrics& GatewayMetrics::cluster(const std::string& name) {
  std::lock_guard lock(mu_);
  auto [it, inserted] = clusters_.try_emplace(name);
  ClusterMetrics& m = it->second;
  if (inserted) {
    m.requests = by_class(*cluster_requests_, {name});
    m.duration = &cluster_duration_->with({name});
    m.requests_active = &cluster_requests_active_->with({name});
    for (std::size_t i = 0; i < kUpstreamTlsResults.size(); ++i) {
      m.tls_handshakes[i] = &cluster_tls_handshakes_->with({name, kUpstreamTlsResults[i]});
    }
  }
  return m;
}

GlobalLimitMetrics& GatewayMetrics::global_limit(const std::string& limit) {
  std::lock_guard lock(mu_);
  auto [it, inserted] = global_limits_.try_emplace(limit);
  GlobalLimitMetrics& m = it->second;
  if (inserted) {
    m.allowed = &global_decisions_->with({limit, "allowed"});
    m.limited = &global_decisions_->with({limit, "limited"});
    for (std::size_t i = 0; i < kGlobalFallbacks.size(); ++i) {
      m.fallbacks[i] = &global_fallbacks_->with({limit, kGlobalFallbacks[i]});
    }
  }
  return m;
}

EndpointMetrics& GatewayMetrics::endpoint(const std::string& cluster, const std::string& endpoint) {
  std::lock_guard lock(mu_);
  auto [it, inserted] = endpoints_.try_emplace({cluster, endpoint});
  EndpointMetrics& m = it->second;
  if (inserted) {
    m.requests = by_class(*endpoint_requests_, {cluster, endpoint});
    m.duration = &endpoint_duration_->with({cluster, endpoint});
    m.active = &endpoint_active_->with({cluster, endpoint});
    m.connect_failures = &endpoint_connect_failures_->with({cluster, endpoint});
    m.connections_opened = &endpoint_connections_opened_->with({cluster, endpoint});
    m.pool_idle = &endpoint_pool_connections_->with({cluster, endpoint, "idle"});
    m.pool_busy = &endpoint_pool_connections_->with({cluster, endpoint, "busy"});
  }
  return m;
}

void GatewayMetrics::reload_result(bool success, uint64_t generation) {
  if (success) {
    reloads_success_->inc();
    generation_->set(static_cast<double>(generation));
    last_reload_success_->set(1);
  } else {
    reloads_failure_->inc();
    last_reload_success_->set(0);
  }
}

void GatewayMetrics::set_draining(bool draining) { draining_->set(draining ? 1 : 0); }

void GatewayMetrics::set_access_log_dropped_source(std::function<uint64_t()> source) {
  // Registered outside dropped_mu_: the collector takes that lock while the registry holds its
  // own collector locks.
  std::call_once(dropped_once_, [this] {
    dropped_collector_ = registry_.add_collector([this](bulwark::observe::MetricsSink& sink) {
      uint64_t value;
      {
        std::lock_guard lock(dropped_mu_);
        value = dropped_base_ + (dropped_source_ ? dropped_source_() : 0);
      }
      sink.counter("bulwark_access_log_dropped_total",
                   "Access log lines dropped because the queue was full or the write failed.", {},
                   static_cast<double>(value));
    });
  });
  std::lock_guard lock(dropped_mu_);
  if (dropped_source_) dropped_base_ += dropped_source_();
  dropped_source_ = std::move(source);
}

}  // namespace bulwark::gateway::observe
