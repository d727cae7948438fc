// Security warnings about a configuration that loads fine but is risky, in the spirit of
// `nginx -t` and `haproxy -c`: `bulwark --check-config` prints them on stderr and the gateway
// logs them at start-up and on each reload; they never fail the load.
//
// The rules (docs/gateway.md, "Configuration warnings"):
//   admin.listen                  the admin listener is off loopback (even with a token)
//   admin.token                   the token is shorter than kMinAdminTokenLength characters
//   listeners[i].listen           plain HTTP (no `tls`) on an address other than loopback
//   clusters[i].tls.verify        certificate verification of the upstream is off
//   listeners[i].limits.*         max_header_bytes or max_uri_bytes above 64 KiB, max_headers
//                                 above 500, max_body_bytes above 1 GiB
//   routes[i].retry.budget.ratio  1 or more: retries may add as much load as the requests
//                                 themselves while the cluster is failing
// (TLS versions below 1.2 cannot be configured, so there is no rule for them.)
#pragma once

#include <string>
#include <vector>

#include "config/config.h"

namespace bulwark::gateway::config {

struct Warning {
  std::string path;     // key path, e.g. listeners[0].listen
  std::string message;  // what is risky and what to do about it
  // "file: warning: path: message"
  std::string text(const std::string& file) const;
};

inline constexpr std::size_t kMinAdminTokenLength = 16;
inline constexpr uint64_t kWarnHeaderBytes = 64 * 1024UL;
inline constexpr uint32_t kWarnHeaders = 500;
inline constexpr uint64_t kWarnUriBytes = 64 * 1024UL;
inline constexpr uint64_t kWarnBodyBytes = 1ull << 30;
inline constexpr double kWarnRetryBudgetRatio = 1.0;

// The warnings for `config`, in file order of their sections (admin, listeners, routes,
// clusters). Pure: reads nothing but `config`.
std::vector<Warning> warnings(const Config& config);

}  // namespace bulwark::gateway::config
