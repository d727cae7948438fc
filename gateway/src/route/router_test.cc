#include "route/router.h"

#include <gtest/gtest.h>

namespace bulwark::gateway::route {
namespace {

config::Route route(std::string name, std::string prefix, std::string host = "*",
                    std::vector<std::string> methods = {}) {
  config::Route r;
  r.name = std::move(name);
  r.match.path_prefix = std::move(prefix);
  r.match.host = std::move(host);
  r.match.methods = std::move(methods);
  return r;
}

TEST(Router, FirstMatchInFileOrderWins) {
  const Router router({route("a", "/api"), route("b", "/api/v2"), route("c", "/")});
  EXPECT_EQ(router.match("x", "/api/v2/items", "GET").route, 0);
  EXPECT_EQ(router.match("x", "/apix", "GET").route, 0);  // plain prefix, like Envoy's prefix
  EXPECT_EQ(router.match("x", "/other", "GET").route, 2);
}

TEST(Router, HostExactSuffixAnyIgnoringCaseAndPort) {
  const Router router({route("exact", "/", "API.example.com"), route("wild", "/", "*.example.com"),
                       route("other", "/", "other.test")});
  EXPECT_EQ(router.match("api.EXAMPLE.com:8080", "/", "GET").route, 0);
  EXPECT_EQ(router.match("www.example.com", "/", "GET").route, 1);
  EXPECT_EQ(router.match("example.com", "/", "GET").route, -1);  // suffix needs a label before
  EXPECT_EQ(router.match("other.test", "/", "GET").route, 2);
  EXPECT_EQ(router.match("unknown.test", "/", "GET").route, -1);
  EXPECT_FALSE(router.match("unknown.test", "/", "GET").method_mismatch);
}

TEST(Router, MethodMismatchListsAllowedMethods) {
  const Router router({route("r", "/r", "*", {"POST", "GET"}), route("w", "/r", "*", {"PUT"}),
                       route("o", "/other", "*", {"DELETE"})});
  const auto m = router.match("h", "/r/1", "PATCH");
  EXPECT_EQ(m.route, -1);
  EXPECT_TRUE(m.method_mismatch);
  EXPECT_EQ(m.allowed, (std::vector<std::string>{"GET", "POST", "PUT"}));
  EXPECT_EQ(router.match("h", "/r/1", "PUT").route, 1);
  EXPECT_EQ(router.match("h", "/r/1", "get").route, -1);  // methods are case-sensitive
}

TEST(Router, HostOfStripsPortAndLowers) {
  EXPECT_EQ(Router::host_of("Example.COM:80"), "example.com");
  EXPECT_EQ(Router::host_of("[::1]:8080"), "[::1]");
  EXPECT_EQ(Router::host_of("plain"), "plain");
}

}  // namespace
}  // namespace bulwark::gateway::route
