// The config binding of JWT authentication (see jwt.h).
#include "filters/jwt/jwt.h"

namespace bulwark::gateway::filters {

std::unique_ptr<filter::RequestFilter> bind_jwt(const config::Route& route,
                                                observe::RouteMetrics& metrics) {
  const auto& spec = route.auth.jwt;
  if (!spec) return nullptr;
  AuthCounters counters{};
  for (std::size_t i = 0; i < counters.size(); ++i) {
    counters[i] = &metrics.auth_result(jwt::result_name(static_cast<jwt::Result>(i)));
  }
  return std::make_unique<JwtFilter>(*spec, route.name, counters);
}

}  // namespace bulwark::gateway::filters
