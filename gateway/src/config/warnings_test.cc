#include "config/warnings.h"

#include <gtest/gtest.h>

namespace bulwark::gateway::config {
namespace {

std::optional<std::string> no_env(const std::string&) { return std::nullopt; }

std::vector<std::string> texts(const std::string& yaml) {
  std::vector<std::string> out;
  for (const Warning& w : warnings(parse(yaml, "gw.yaml", no_env)))
    out.push_back(w.text("gw.yaml"));
  return out;
}

constexpr const char* kQuiet = R"(
listeners:
  - {name: public, listen: 127.0.0.1:8080}
routes:
  - {name: api, cluster: backend, retry: {attempts: 3}}
clusters:
  - {name: backend, endpoints: [127.0.0.1:9001], tls: {verify: true}}
)";

TEST(Warnings, TheDefaultsOnLoopbackWarnOfNothing) { EXPECT_TRUE(texts(kQuiet).empty()); }

TEST(Warnings, AdminOffLoopbackAndAShortToken) {
  const auto w = texts(std::string(kQuiet) + "admin: {listen: 0.0.0.0:9901, token: short}\n");
  ASSERT_EQ(w.size(), 2u);
  EXPECT_EQ(w[0],
            "gw.yaml: warning: admin.listen: the admin API (0.0.0.0:9901) is reachable off "
            "loopback, guarded by admin.token alone: keep it behind a firewall or on loopback");
  EXPECT_EQ(w[1].rfind("gw.yaml: warning: admin.token: shorter than 16 characters", 0), 0u);
  EXPECT_TRUE(texts(std::string(kQuiet) + "admin: {listen: 127.0.0.1:0, token: 0123456789abcdef}\n")
                  .empty());
}

TEST(Warnings, PlainHttpOffLoopback) {
  const auto w = texts(R"(
listeners:
  - {name: inside, listen: "[::1]:8080"}
  - {name: outside, listen: 0.0.0.0:8080}
clusters:
  - {name: backend, endpoints: [127.0.0.1:9001]}
)");
  ASSERT_EQ(w.size(), 1u);
  EXPECT_EQ(w[0].rfind("gw.yaml: warning: listeners[1].listen: plain HTTP on 0.0.0.0:8080, off "
                       "loopback",
                       0),
            0u);
}

TEST(Warnings, UnverifiedUpstreamCertificates) {
  const auto w = texts(R"(
listeners:
  - {name: public, listen: 127.0.0.1:8080}
clusters:
  - {name: a, endpoints: [127.0.0.1:9001]}
  - {name: b, endpoints: [127.0.0.1:9002], tls: {verify: false}}
)");
  ASSERT_EQ(w.size(), 1u);
  EXPECT_EQ(
      w[0].rfind("gw.yaml: warning: clusters[1].tls.verify: certificate verification is off", 0),
      0u);
}

TEST(Warnings, LimitsAboveTheirThresholds) {
  const auto at_threshold = texts(R"(
listeners:
  - name: public
    listen: 127.0.0.1:8080
    limits: {max_header_bytes: 64KiB, max_headers: 500, max_uri_bytes: 64KiB, max_body_bytes: 1GiB}
)");
  EXPECT_TRUE(at_threshold.empty());
  const auto w = texts(R"(
listeners:
  - name: public
    listen: 127.0.0.1:8080
    limits: {max_header_bytes: 1MiB, max_headers: 501, max_uri_bytes: 65537, max_body_bytes: 2GiB}
)");
  ASSERT_EQ(w.size(), 4u);
  EXPECT_EQ(
      w[0].rfind("gw.yaml: warning: listeners[0].limits.max_header_bytes: 1MiB is above 64KiB", 0),
      0u);
  EXPECT_EQ(w[1].rfind("gw.yaml: warning: listeners[0].limits.max_headers: 501 is above 500", 0),
            0u);
  EXPECT_EQ(
      w[2].rfind("gw.yaml: warning: listeners[0].limits.max_uri_bytes: 65537 is above 64KiB", 0),
      0u);
  EXPECT_EQ(
      w[3].rfind("gw.yaml: warning: listeners[0].limits.max_body_bytes: 2GiB is above 1GiB", 0),
      0u);
}

TEST(Warnings, RetryBudgetsThatLetRetriesDoubleTheLoad) {
  const auto w = texts(R"(
listeners:
  - {name: public, listen: 127.0.0.1:8080}
routes:
  - {name: a, cluster: backend, retry: {budget: {ratio: 0.99}}}
  - {name: b, cluster: backend, retry: {budget: {ratio: 1}}}
clusters:
  - {name: backend, endpoints: [127.0.0.1:9001]}
)");
  ASSERT_EQ(w.size(), 1u);
  EXPECT_EQ(w[0].rfind("gw.yaml: warning: routes[1].retry.budget.ratio: retries may reach as many "
                       "as the requests themselves: while cluster 'backend' fails",
                       0),
            0u);
}

}  // namespace
}  // namespace bulwark::gateway::config
