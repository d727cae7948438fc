// The config bindings of the rate limits (see rate_limit.h).
#include <algorithm>
#include <cctype>

#include "bulwark/limit/gcra.h"
#include "filters/rate_limit/rate_limit.h"

namespace bulwark::gateway::filters {

namespace {

// scope: global — the Redis side of the limit, with the local limiter's arithmetic.
RateLimitFilter::Global global_of(const std::string& limit, const config::RateSpec& spec,
                                  const config::RedisSpec& redis, route::PolicyStore& policies,
                                  observe::GatewayMetrics& metrics) {
  RateLimitFilter::Global g;
  g.breaker = policies.redis_breaker(redis.circuit_breaker);
  const uint64_t burst = route::effective_burst(spec);
  // The emission interval exactly as the library's Gcra computes it.
  const limit::Gcra gcra({.rate = limit::Rate::per_second(spec.per_second), .burst = burst});
  g.rate = {gcra.interval_us(), burst};
  g.timeout = redis.timeout;
  g.on_failure = redis.on_failure;
  g.key_prefix = redis.key_prefix;
  g.metrics = &metrics.global_limit(limit);
  return g;
}

}  // namespace

std::unique_ptr<filter::RequestFilter> bind_client_rate_limit(
    const config::Listener& listener, const std::optional<config::RedisSpec>& redis,
    route::PolicyStore& policies, observe::GatewayMetrics& metrics) {
  if (!listener.per_client_rate_limit) return nullptr;
  const std::string name = listener.name + "/per_client";
  RateLimitFilter::Options options;
  options.key = config::RateLimitKey::client_ip;
  options.dry_run = listener.per_client_dry_run;
  if (listener.per_client_scope == config::RateLimitScope::global && redis) {
    options.global = global_of(name, *listener.per_client_rate_limit, *redis, policies, metrics);
  }
  return std::make_unique<RateLimitFilter>(
      policies.limiter(name, *listener.per_client_rate_limit), std::move(options));
}

std::unique_ptr<filter::RequestFilter> bind_route_rate_limit(
    const config::Route& route, const std::optional<config::RedisSpec>& redis,
    route::PolicyStore& policies, observe::GatewayMetrics& metrics) {
  if (!route.rate_limit) return nullptr;
  const config::RouteRateLimit& spec = *route.rate_limit;
  RateLimitFilter::Options options;
  options.key = spec.key;
  options.header = spec.header;
  std::transform(options.header.begin(), options.header.end(), options.header.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  options.route = route.name;
  options.max_key_bytes = spec.max_key_bytes;
  options.dry_run = spec.dry_run;
  if (spec.scope == config::RateLimitScope::global && redis) {
    options.global = global_of(route.name, spec.rate, *redis, policies, metrics);
  }
  return std::make_unique<RateLimitFilter>(policies.limiter(route.name, spec.rate),
                                           std::move(options));
}

}  // namespace bulwark::gateway::filters
