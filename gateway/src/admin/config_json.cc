#include "admin/config_json.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <string>
#include <string_view>
#include <thread>
#include <utility>

namespace bulwark::gateway::admin {
namespace {

using nlohmann::json;

constexpr std::string_view kRedacted = "<redacted>";

// The largest unit that represents the duration exactly, so that every value reads back through
// config::parse_duration() unchanged ("1500ms", not "1.5s").
std::string format_duration(Duration d) {
  const int64_t ns = d.count();
  if (ns == 0) return "0s";
  struct Unit {
    int64_t ns;
    const char* suffix;
  };
  static constexpr std::array<Unit, 6> kUnits = {{{3'600'000'000'000, "h"},
                                                  {60'000'000'000, "m"},
                                                  {1'000'000'000, "s"},
                                                  {1'000'000, "ms"},
                                                  {1'000, "us"},
                                                  {1, "ns"}}};
  for (const Unit& unit : kUnits) {
    if (ns % unit.ns == 0) return std::to_string(ns / unit.ns) + unit.suffix;
  }
  return std::to_string(ns) + "ns";  // unreachable: every count is a multiple of 1 ns
}

// Duration::max() is how the library spells "disabled" (e.g. slow-call tracking): null.
json duration_or_null(Duration d) {
  if (d == Duration::max()) return nullptr;
  return format_duration(d);
}

json optional_duration(const std::optional<Duration>& d) {
  if (!d) return nullptr;
  return duration_or_null(*d);
}

std::string format_number(double value) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.10g", value);
  return buf;
}

bool is_whole(double value) { return std::abs(value - std::round(value)) < 1e-9; }

// "100/s"; a rate that is whole only per minute or per hour keeps that unit ("1/m").
std::string format_rate(double per_second) {
  if (is_whole(per_second)) return format_number(std::round(per_second)) + "/s";
  if (is_whole(per_second * 60)) return format_number(std::round(per_second * 60)) + "/m";
  if (is_whole(per_second * 3600)) return format_number(std::round(per_second * 3600)) + "/h";
  return format_number(per_second) + "/s";
}

// Fractions are written as the design writes them: "50%".
std::string format_percent(double fraction) { return format_number(fraction * 100) + "%"; }

std::string lower(std::string_view text) {
  std::string out(text);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

bool is_sensitive_key(std::string_view key) {
  const std::string k = lower(key);
  for (std::string_view word : {"password", "secret", "token", "api_key", "authorization"}) {
    if (k.find(word) != std::string::npos) return true;
  }
  return false;
}

bool is_address_key(std::string_view key) {
  const std::string k = lower(key);
  return k.find("address") != std::string::npos || k.find("url") != std::string::npos ||
         k == "listen" || k == "endpoints";
}

// "user:pass@host:port" -> "<redacted>@host:port"; the last '@' ends the userinfo (a password
// may itself contain '@').
std::string redact_userinfo_prefix(std::string_view text) {
  const auto at = text.rfind('@');
  if (at == std::string_view::npos) return std::string(text);
  return std::string(kRedacted) + std::string(text.substr(at));
}

// The userinfo of the authority of "scheme://authority/path"; other strings are unchanged.
std::string redact_url(std::string_view text) {
  const auto scheme_end = text.find("://");
  if (scheme_end == std::string_view::npos) return std::string(text);
  const auto authority_begin = scheme_end + 3;
  auto authority_end = text.find_first_of("/?#", authority_begin);
  if (authority_end == std::string_view::npos) authority_end = text.size();
  const std::string_view authority = text.substr(authority_begin, authority_end - authority_begin);
  if (authority.find('@') == std::string_view::npos) return std::string(text);
  return std::string(text.substr(0, authority_begin)) + redact_userinfo_prefix(authority) +
         std::string(text.substr(authority_end));
}

void redact_value(json& value, bool address_like);

void redact_string(json& value, bool address_like) {
  const auto& text = value.get_ref<const std::string&>();
  std::string out;
  if (text.find("://") != std::string::npos) {
    out = redact_url(text);
  } else if (address_like && text.find('/') == std::string::npos) {
    out = redact_userinfo_prefix(text);  // "user:pass@host:port"
  } else {
    return;
  }
  if (out != text) value = std::move(out);
}

void redact_value(json& value, bool address_like) {
  if (value.is_object()) {
    for (auto& [key, child] : value.items()) {
      // A flag or a size under such a name (strip_token, max_token_bytes) is no secret.
      if (is_sensitive_key(key) && !child.is_boolean() && !child.is_number()) {
        const bool empty =
            child.is_null() || (child.is_string() && child.get_ref<const std::string&>().empty());
        if (!empty) child = kRedacted;
      } else {
        redact_value(child, is_address_key(key));
      }
    }
  } else if (value.is_array()) {
    for (json& child : value) redact_value(child, address_like);
  } else if (value.is_string()) {
    redact_string(value, address_like);
  }
}

// An address as written in the file ("host:port", "[::1]:port"); a host holding userinfo
// ("user@host") loses it here already, so no code path can print it.
std::string address_text(const config::Address& address) {
  std::string host = address.host;
  if (host.find('@') != std::string::npos) host = redact_userinfo_prefix(host);
  const auto at = host.rfind('@');
  const std::string_view bare =
      at == std::string::npos ? std::string_view(host) : std::string_view(host).substr(at + 1);
  if (bare.find(':') != std::string_view::npos) {
    host = host.substr(0, at == std::string::npos ? 0 : at + 1) + "[" + std::string(bare) + "]";
  }
  return host + ":" + std::to_string(address.port);
}

json rate_spec(const config::RateSpec& rate) {
  const uint64_t burst =
      rate.burst != 0 ? rate.burst : std::max<uint64_t>(1, static_cast<uint64_t>(rate.per_second));
  return {{"rate", format_rate(rate.per_second)}, {"burst", burst}};
}

json listener_json(const config::Listener& l) {
  json out = {
      {"name", l.name},
      {"listen", address_text(l.listen)},
      {"limits",
       {{"max_header_bytes", l.limits.max_header_bytes},
        {"max_headers", l.limits.max_headers},
        {"max_uri_bytes", l.limits.max_uri_bytes},
        {"max_body_bytes", l.limits.max_body_bytes},
        {"max_connections", l.limits.max_connections},
        {"max_concurrent_requests", l.limits.max_concurrent_requests}}},
      {"timeouts",
       {{"header_read", format_duration(l.timeouts.header_read)},
        {"idle", format_duration(l.timeouts.idle)},
        {"request", format_duration(l.timeouts.request)}}},
  };
  out["rate_limit"] = l.per_client_rate_limit
                          ? json{{"per_client", rate_spec(*l.per_client_rate_limit)}}
                          : json(nullptr);
  return out;
}

json retry_json(const config::RetrySpec& r) {
  return {
      {"attempts", r.attempts},
      {"on", r.on},
      {"backoff",
       {{"kind", std::string(retry::to_string(r.backoff.kind))},
        {"base", format_duration(r.backoff.base)},
        {"max", format_duration(r.backoff.max)},
        {"multiplier", r.backoff.multiplier},
        {"jitter", std::string(retry::to_string(r.backoff.jitter))}}},
      {"budget", {{"ratio", r.budget.ratio}, {"min_per_second", r.budget.min_per_second}}},
      {"non_idempotent", r.non_idempotent},
  };
}

std::string rate_limit_key(const config::RouteRateLimit& rl) {
  switch (rl.key) {
    case config::RateLimitKey::client_ip:
      return "client_ip";
    case config::RateLimitKey::route:
      return "route";
    case config::RateLimitKey::header:
      return "header:" + rl.header;
  }
  return "client_ip";
}

json route_filters_json(const config::RouteFilters& f) {
  json out = json::object();
  out["block_patterns"] =
      f.block_patterns ? json{{"sqli", f.block_patterns->sqli}, {"xss", f.block_patterns->xss}}
                       : json(nullptr);
  if (!f.fault) {
    out["fault"] = nullptr;
    return out;
  }
  json fault = json::object();
  fault["header"] = f.fault->header.empty() ? json(nullptr) : json(f.fault->header);
  fault["abort"] = f.fault->abort ? json{{"percent", f.fault->abort->fraction * 100},
                                         {"status", f.fault->abort->status}}
                                  : json(nullptr);
  fault["delay"] = f.fault->delay ? json{{"percent", f.fault->delay->fraction * 100},
                                         {"duration", format_duration(f.fault->delay->duration)}}
                                  : json(nullptr);
  out["fault"] = std::move(fault);
  return out;
}

// routes[].auth; the secret is redacted by redact() like every key named *secret*.
json route_auth_json(const config::RouteAuth& a) {
  if (!a.jwt) return nullptr;
  const config::JwtSpec& j = *a.jwt;
  json forward = json::object();
  for (const auto& [claim, header] : j.forward_claims) forward[claim] = header;
  return {{"jwt",
           {{"issuer", j.issuer.empty() ? json(nullptr) : json(j.issuer)},
            {"audiences", j.audiences},
            {"algorithms", j.algorithms},
            {"jwks_file", j.jwks_file.empty() ? json(nullptr) : json(j.jwks_file)},
            {"secret", j.secret.empty() ? json(nullptr) : json(j.secret)},
            {"leeway", format_duration(j.leeway)},
            {"required_claims", j.required_claims},
            {"forward_claims", std::move(forward)},
            {"strip_token", j.strip_token},
            {"cookie", j.cookie.empty() ? json(nullptr) : json(j.cookie)},
            {"max_token_bytes", j.max_token_bytes}}}};
}

json route_json(const config::Route& r) {
  json out = {
      {"name", r.name},
      {"match",
       {{"path_prefix", r.match.path_prefix},
        {"host", r.match.host},
        {"methods", r.match.methods}}},
      {"cluster", r.cluster},
      {"fallback", r.fallback},
      {"timeouts",
       {{"request", format_duration(r.timeouts.request)},
        {"per_try", optional_duration(r.timeouts.per_try)},
        {"first_byte", optional_duration(r.timeouts.first_byte)},
        {"stream_idle", format_duration(r.timeouts.stream_idle)},
        {"stream_total", format_duration(r.timeouts.stream_total)}}},
      {"stream",
       {{"max_chunk_bytes", r.stream.max_chunk_bytes}, {"max_bytes", r.stream.max_bytes}}},
  };
  out["retry"] = r.retry ? retry_json(*r.retry) : json(nullptr);
  if (r.rate_limit) {
    json rl = rate_spec(r.rate_limit->rate);
    rl["key"] = rate_limit_key(*r.rate_limit);
    rl["scope"] = r.rate_limit->scope == config::RateLimitScope::global ? "global" : "local";
    out["rate_limit"] = std::move(rl);
  } else {
    out["rate_limit"] = nullptr;
  }
  out["cache"] = r.cache ? json{{"ttl", format_duration(r.cache->ttl)},
                                {"max_entry_bytes", r.cache->max_entry_bytes},
                                {"stale_if_error", format_duration(r.cache->stale_if_error)}}
                         : json(nullptr);
  static constexpr const char* kPriorities[] = {"low", "normal", "high"};
  out["priority"] = kPriorities[static_cast<int>(r.priority)];
  out["hedge"] = r.hedge ? json{{"delay", format_duration(r.hedge->delay)},
                                {"max_attempts", r.hedge->max_attempts}}
                         : json(nullptr);
  out["filters"] = route_filters_json(r.filters);
  out["auth"] = route_auth_json(r.auth);
  return out;
}

json breaker_json(const circuit::BreakerOptions& o) {
  json window;
  if (o.window_type == circuit::WindowType::time) {
    window = {{"type", "time"}, {"size", format_duration(std::chrono::seconds(o.window_size))}};
  } else {
    window = {{"type", "count"}, {"size", o.window_size}};
  }
  return {
      {"window", std::move(window)},
      {"min_calls", o.min_calls},
      {"failure_rate", format_percent(o.failure_rate)},
      {"slow_call",
       {{"duration", duration_or_null(o.slow_call_duration)},
        {"rate", format_percent(o.slow_call_rate)}}},
      {"consecutive_failures", o.consecutive_failures},
      {"open",
       {{"duration", format_duration(o.open_duration)},
        {"multiplier", o.open_multiplier},
        {"max", format_duration(o.max_open_duration)}}},
      {"half_open",
       {{"probes", o.half_open_probes},
        {"success_threshold", o.success_threshold},
        {"max_wait", format_duration(o.half_open_max_wait)}}},
  };
}

json cluster_json(const config::Cluster& c) {
  json endpoints = json::array();
  for (const config::Address& a : c.endpoints) endpoints.push_back(address_text(a));
  json out = {
      {"name", c.name},
      {"endpoints", std::move(endpoints)},
      {"dns_refresh", format_duration(c.dns_refresh)},
      {"lb", c.lb == config::LoadBalancing::least_request ? "least_request" : "round_robin"},
      {"connect_timeout", format_duration(c.connect_timeout)},
      {"pool",
       {{"max_per_endpoint", c.pool.max_per_endpoint},
        {"max_idle", c.pool.max_idle},
        {"idle_timeout", format_duration(c.pool.idle_timeout)}}},
      {"max_concurrent_requests", c.max_concurrent_requests},
      {"critical", c.critical},
  };
  out["circuit_breaker"] = c.circuit_breaker ? breaker_json(*c.circuit_breaker) : json(nullptr);
  out["outlier_detection"] =
      c.outlier_detection
          ? json{{"consecutive_5xx", c.outlier_detection->consecutive_5xx},
                 {"base_ejection", format_duration(c.outlier_detection->base_ejection)},
                 {"max_ejection_percent",
                  format_percent(c.outlier_detection->max_ejection_percent)}}
          : json(nullptr);
  out["health_check"] = c.health_check
                            ? json{{"path", c.health_check->path},
                                   {"interval", format_duration(c.health_check->interval)},
                                   {"timeout", format_duration(c.health_check->timeout)},
                                   {"healthy_threshold", c.health_check->healthy_threshold},
                                   {"unhealthy_threshold", c.health_check->unhealthy_threshold},
                                   {"expected_statuses", c.health_check->expected_statuses}}
                            : json(nullptr);
  return out;
}

std::string failure_mode(config::RedisFailureMode mode) {
  switch (mode) {
    case config::RedisFailureMode::local:
      return "local";
    case config::RedisFailureMode::allow:
      return "allow";
    case config::RedisFailureMode::deny:
      return "deny";
  }
  return "local";
}

}  // namespace

void redact(nlohmann::json& document) { redact_value(document, false); }

nlohmann::json config_to_json(const config::Config& config) {
  // workers: 0 in the file means one per core; show the number that is in force.
  const uint32_t workers =
      config.workers != 0 ? config.workers : std::max(1u, std::thread::hardware_concurrency());
  json out = {{"workers", workers},
              {"admin",
               {{"listen", address_text(config.admin)},
                // Not configured: null (an empty token is not a value the file may hold).
                {"token", config.admin_token.empty() ? json(nullptr) : json(config.admin_token)}}}};

  json listeners = json::array();
  for (const auto& l : config.listeners) listeners.push_back(listener_json(l));
  out["listeners"] = std::move(listeners);

  json routes = json::array();
  for (const auto& r : config.routes) routes.push_back(route_json(r));
  out["routes"] = std::move(routes);

  json clusters = json::array();
  for (const auto& c : config.clusters) clusters.push_back(cluster_json(c));
  out["clusters"] = std::move(clusters);

  out["cache"] = {{"max_bytes", config.cache.max_bytes}, {"max_entries", config.cache.max_entries}};
  out["redis"] = config.redis ? json{{"address", address_text(config.redis->address)},
                                     {"timeout", format_duration(config.redis->timeout)},
                                     {"on_failure", failure_mode(config.redis->on_failure)},
                                     {"password", config.redis->password}}
                              : json(nullptr);
  static constexpr const char* kLevels[] = {"normal", "warning", "critical", "exhausted"};
  out["overload"] = {
      {"memory_limit",
       config.overload.memory_limit ? json(*config.overload.memory_limit) : json(nullptr)},
      {"force_level", kLevels[static_cast<int>(config.overload.force_level)]}};

  json alerts = json::array();
  for (const auto& a : config.alerts) {
    alerts.push_back({{"name", a.name},
                      {"metric", a.metric},
                      {"op", a.op},
                      {"threshold", a.threshold},
                      {"for", format_duration(a.for_duration)},
                      {"severity", a.severity}});
  }
  out["alerts"] = std::move(alerts);
  out["logging"] = {
      {"level", config.logging.level},
      {"access", {{"path", config.logging.access.path}, {"format", config.logging.access.format}}}};
  out["shutdown"] = {{"drain_timeout", format_duration(config.shutdown.drain_timeout)}};

  redact(out);
  return out;
}

}  // namespace bulwark::gateway::admin
