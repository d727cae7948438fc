#include "proxy/readiness.h"

#include <gtest/gtest.h>

#include "bulwark/circuit/circuit_breaker.h"
#include "bulwark/testing/manual_clock.h"
#include "upstream/endpoint_health.h"

namespace bulwark::gateway::proxy {
namespace {

using namespace std::chrono_literals;

struct ReadinessTest : ::testing::Test {
  testing::ManualClock clock;
  bulwark::observe::Registry registry;
  route::PolicyStore store{clock, registry};
  std::shared_ptr<config::Config> config = std::make_shared<config::Config>();

  // A config of two clusters, "backend" (critical when asked) and "other" (never).
  void configure(bool backend_critical, std::optional<circuit::BreakerOptions> breaker = {}) {
    config->clusters.clear();
    for (const char* name : {"backend", "other"}) {
      config::Cluster c;
      c.name = name;
      c.endpoints = {{"127.0.0.1", 9001}, {"127.0.0.1", 9002}};
      c.critical = backend_critical && c.name == "backend";
      c.circuit_breaker = breaker;
      config->clusters.push_back(c);
    }
  }
  std::unique_ptr<route::Snapshot> snapshot() {
    auto snap =
        std::make_unique<route::Snapshot>(config, route::Router(std::vector<config::Route>{}));
    for (const config::Cluster& c : config->clusters) {
      route::ClusterRuntime runtime;
      runtime.config = &c;
      runtime.state = store.cluster(c);
      snap->clusters.push_back(std::move(runtime));
    }
    return snap;
  }
};

TEST_F(ReadinessTest, AClusterIsUnreadyWithoutAUsableEndpointOrWithItsBreakerOpen) {
  circuit::BreakerOptions breaker;
  breaker.consecutive_failures = 1;
  breaker.open_duration = 10s;
  configure(true, breaker);
  auto state = store.cluster(config->clusters[0]);
  EXPECT_EQ(unready_reason(*state, clock.now()), std::nullopt);
  state->endpoints.at("127.0.0.1:9001")->set_status(upstream::HealthStatus::down);
  EXPECT_EQ(unready_reason(*state, clock.now()), std::nullopt);  // one is left
  state->endpoints.at("127.0.0.1:9002")->set_status(upstream::HealthStatus::down);
  EXPECT_EQ(unready_reason(*state, clock.now()), "no usable endpoint");
  state->endpoints.at("127.0.0.1:9002")->set_status(upstream::HealthStatus::up);

  const auto admission = state->breaker->try_acquire(clock.now());
  ASSERT_TRUE(admission.allowed);
  state->breaker->on_failure(admission.permit, clock.now());
  EXPECT_EQ(unready_reason(*state, clock.now()), "breaker open");
  // Once the open time has run out the breaker may be tried: ready again, with no traffic.
  clock.advance(10s);
  EXPECT_EQ(unready_reason(*state, clock.now()), std::nullopt);
  EXPECT_EQ(state->breaker->state(), circuit::State::half_open);
}

TEST_F(ReadinessTest, OnlyCriticalClustersCountAndReloadsAddAndRemoveTheirChecks) {
  configure(true);
  Readiness readiness(clock);
  const auto snap = snapshot();
  readiness.watch(*snap);
  EXPECT_EQ(readiness.run_due(clock.now()), 1u);  // "other" has no check
  EXPECT_TRUE(readiness.verdict().ready);

  for (auto& [address, health] : snap->clusters[1].state->endpoints) {
    health->set_status(upstream::HealthStatus::down);
  }
  clock.advance(Readiness::kInterval);
  readiness.run_due(clock.now());
  EXPECT_TRUE(readiness.verdict().ready) << "a cluster that is not critical counted";

  for (auto& [address, health] : snap->clusters[0].state->endpoints) {
    health->set_status(upstream::HealthStatus::down);
  }
  clock.advance(Readiness::kInterval);
  readiness.run_due(clock.now());
  const Readiness::Verdict verdict = readiness.verdict();
  EXPECT_FALSE(verdict.ready);
  EXPECT_EQ(verdict.failing, std::vector<std::string>{"cluster:backend"});

  // A reload that makes it not critical takes its check away.
  configure(false);
  const auto reloaded = snapshot();
  readiness.watch(*reloaded);
  EXPECT_TRUE(readiness.verdict().ready);
  clock.advance(Readiness::kInterval);
  EXPECT_EQ(readiness.run_due(clock.now()), 0u);
}

}  // namespace
}  // namespace bulwark::gateway::proxy
