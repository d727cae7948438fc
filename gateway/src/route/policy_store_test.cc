#include "route/policy_store.h"

#include <gtest/gtest.h>

#include "bulwark/observe/prometheus.h"
#include "bulwark/testing/manual_clock.h"

namespace bulwark::gateway::route {
namespace {

config::Cluster cluster_with(std::vector<std::string> addresses,
                             std::optional<circuit::BreakerOptions> breaker) {
  config::Cluster c;
  c.name = "api";
  for (auto& a : addresses) c.endpoints.push_back({a, 80});
  c.circuit_breaker = breaker;
  return c;
}

TEST(PolicyStore, AReloadWithTheSameBreakerKeepsItsStateAndEndpointHealth) {
  testing::ManualClock clock;
  bulwark::observe::Registry registry;
  PolicyStore store(clock, registry);
  circuit::BreakerOptions options;
  options.consecutive_failures = 1;
  auto first = store.cluster(cluster_with({"a", "b"}, options));
  ASSERT_NE(first->breaker, nullptr);
  first->breaker->force_open();
  auto a_health = first->endpoints.at("a:80");

  auto second = store.cluster(cluster_with({"a", "c"}, options));
  EXPECT_EQ(second, first);
  EXPECT_EQ(second->breaker->state(), circuit::State::forced_open);
  EXPECT_EQ(second->endpoints.at("a:80"), a_health);
  EXPECT_EQ(second->endpoints.count("b:80"), 0u);
  EXPECT_EQ(second->endpoints.count("c:80"), 1u);

  // Other breaker options: a fresh breaker, the endpoints' health carried over.
  options.consecutive_failures = 2;
  auto third = store.cluster(cluster_with({"a"}, options));
  EXPECT_NE(third, first);
  EXPECT_EQ(third->breaker->state(), circuit::State::closed);
  EXPECT_EQ(third->endpoints.at("a:80"), a_health);

  auto none = store.cluster(cluster_with({"a"}, std::nullopt));
  EXPECT_EQ(none->breaker, nullptr);
}

TEST(PolicyStore, LimitersAndBudgetsAreKeptForTheSameOptionsOnly) {
  testing::ManualClock clock;
  bulwark::observe::Registry registry;
  PolicyStore store(clock, registry);
  auto limiter = store.limiter("public/per_client", {.per_second = 5, .burst = 0});
  EXPECT_EQ(limiter->limiter->limit(), 5u);
  EXPECT_EQ(store.limiter("public/per_client", {.per_second = 5, .burst = 0}), limiter);
  EXPECT_NE(store.limiter("public/per_client", {.per_second = 6, .burst = 0}), limiter);
  EXPECT_EQ(effective_burst({.per_second = 0.5, .burst = 0}), 1u);
  EXPECT_EQ(effective_burst({.per_second = 100, .burst = 7}), 7u);

  auto budget = store.budget("api", {.ratio = 0.2, .min_per_second = 10});
  EXPECT_EQ(store.budget("api", {.ratio = 0.2, .min_per_second = 10}), budget);
  EXPECT_NE(store.budget("api", {.ratio = 0.5, .min_per_second = 10}), budget);
  EXPECT_NE(store.budget("other", {.ratio = 0.2, .min_per_second = 10}), budget);
}

TEST(PolicyStore, ReportsEndpointBreakerAndLimiterSeries) {
  testing::ManualClock clock;
  bulwark::observe::Registry registry;
  PolicyStore store(clock, registry);
  auto cluster = store.cluster(cluster_with({"a"}, circuit::BreakerOptions{}));
  auto limiter = store.limiter("r", {.per_second = 1, .burst = 1});
  limiter->limiter->try_acquire("k", clock.now());
  limiter->limiter->try_acquire("k", clock.now());
  const std::string text = bulwark::observe::to_prometheus_text(registry);
  EXPECT_NE(text.find("bulwark_endpoint_ejected{cluster=\"api\",endpoint=\"a:80\"} 0"),
            std::string::npos)
      << text;
  EXPECT_NE(
      text.find("bulwark_endpoint_health{cluster=\"api\",endpoint=\"a:80\",status=\"unknown\"} 1"),
      std::string::npos)
      << text;
  EXPECT_NE(text.find("bulwark_rate_limit_decisions_total{limit=\"r\",result=\"limited\"} 1"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("breaker=\"api\""), std::string::npos);
}

}  // namespace
}  // namespace bulwark::gateway::route
