// Route selection: the first route (in file order) whose host, path prefix and method match.
//
//   host         "*" matches any; "*.example.com" matches any name ending in ".example.com"
//                (not "example.com" itself); anything else must equal the request's host.
//                Comparison ignores ASCII case and the port of the Host header
//                ("api.example.com:8080" matches "api.example.com").
//   path_prefix  a plain string prefix of the normalised path (like Envoy's `prefix`):
//                "/api" matches "/api", "/api/x" and "/apix". Matching runs after dot-segment
//                and slash normalisation (http/hygiene.h), so "/a/../api" routes as "/api".
//   methods      empty matches any method; otherwise an exact, case-sensitive method name.
//
// When no route matches, Match says whether some route matched host and path but not the
// method, and lists the methods those routes allow (for 405 + Allow); otherwise it is a 404.
//
// match() allocates nothing unless some route matched host and path but not the method.
//
// Thread-safety: immutable after construction; match() is safe from any thread.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.h"

namespace bulwark::gateway::route {

class Router {
 public:
  struct Match {
    int route = -1;                    // index into the config's routes; -1: none
    bool method_mismatch = false;      // some route matched host and path, not the method
    std::vector<std::string> allowed;  // methods of those routes (sorted, unique)
  };

  explicit Router(const std::vector<config::Route>& routes);

  Match match(std::string_view host, std::string_view path, std::string_view method) const;

  // The host part of a Host header value: without the port, lower-cased.
  static std::string host_of(std::string_view host_header);
  // The same without the lower-casing (a view into `host_header`).
  static std::string_view host_view(std::string_view host_header) noexcept;

 private:
  struct Entry {
    enum class HostKind { any, suffix, exact } host_kind = HostKind::any;
    std::string host;  // lower-cased; for suffix: ".example.com"
    std::string prefix;
    std::vector<std::string> methods;
  };
  static bool host_matches(const Entry& e, std::string_view host) noexcept;
  std::vector<Entry> entries_;
};

}  // namespace bulwark::gateway::route
