// The config bindings of the rate limits (see rate_limit.h).
#include <algorithm>
#include <cctype>

#include "filters/rate_limit/rate_limit.h"

namespace bulwark::gateway::filters {

std::unique_ptr<filter::RequestFilter> bind_client_rate_limit(const config::Listener& listener,
                                                              route::PolicyStore& policies) {
  if (!listener.per_client_rate_limit) return nullptr;
  RateLimitFilter::Options options;
  options.key = config::RateLimitKey::client_ip;
  options.dry_run = listener.per_client_dry_run;
  return std::make_unique<RateLimitFilter>(
      policies.limiter(listener.name + "/per_client", *listener.per_client_rate_limit),
      std::move(options));
}

std::unique_ptr<filter::RequestFilter> bind_route_rate_limit(const config::Route& route,
                                                             route::PolicyStore& policies) {
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
  return std::make_unique<RateLimitFilter>(policies.limiter(route.name, spec.rate),
                                           std::move(options));
}

}  // namespace bulwark::gateway::filters
