#include "upstream/endpoint_health.h"

#include <gtest/gtest.h>

#include "bulwark/testing/manual_clock.h"

namespace bulwark::gateway::upstream {
namespace {

using std::chrono::seconds;

TEST(OutlierEjection, AtLeastOneOfTwoButNeverAllAndNeverASingleEndpoint) {
  EXPECT_EQ(max_ejected(1, 1.0), 0u);
  EXPECT_EQ(max_ejected(2, 0.1), 1u);
  EXPECT_EQ(max_ejected(2, 1.0), 1u);
  EXPECT_EQ(max_ejected(10, 0.5), 5u);
  EXPECT_EQ(max_ejected(10, 1.0), 9u);
  EXPECT_TRUE(may_eject(0, 2, 0.5));
  EXPECT_FALSE(may_eject(1, 2, 0.5));
}

TEST(OutlierEjection, EjectionTimeGrowsWithEachEjectionUpToTheCap) {
  EXPECT_EQ(ejection_duration(seconds(30), 1), seconds(30));
  EXPECT_EQ(ejection_duration(seconds(30), 3), seconds(90));
  EXPECT_EQ(ejection_duration(seconds(30), 1000), kMaxEjection);
  EXPECT_EQ(ejection_duration(std::chrono::minutes(10), 2), std::chrono::minutes(10));
}

TEST(OutlierEjection, ConsecutiveFailuresEjectAndTheEndpointComesBackByItself) {
  testing::ManualClock clock;
  const config::OutlierDetection spec{
      .consecutive_5xx = 3, .base_ejection = seconds(10), .max_ejection_percent = 0.5};
  EndpointHealth health;
  EXPECT_FALSE(health.record(true, clock.now(), spec, 0, 2));
  EXPECT_FALSE(health.record(true, clock.now(), spec, 0, 2));
  EXPECT_FALSE(health.record(false, clock.now(), spec, 0, 2));  // a success resets the run
  EXPECT_FALSE(health.record(true, clock.now(), spec, 0, 2));
  EXPECT_FALSE(health.record(true, clock.now(), spec, 0, 2));
  EXPECT_TRUE(health.usable(clock.now()));
  EXPECT_TRUE(health.record(true, clock.now(), spec, 0, 2));
  EXPECT_FALSE(health.usable(clock.now()));
  EXPECT_EQ(health.ejections(), 1u);
  clock.advance(seconds(10) - std::chrono::nanoseconds(1));
  EXPECT_TRUE(health.ejected(clock.now()));
  clock.advance(std::chrono::nanoseconds(1));
  EXPECT_TRUE(health.usable(clock.now()));
  // The second ejection lasts twice as long.
  for (int i = 0; i < 3; ++i) health.record(true, clock.now(), spec, 0, 2);
  EXPECT_EQ(health.ejections(), 2u);
  EXPECT_EQ(health.ejected_until(), clock.now() + seconds(20));
}

TEST(OutlierEjection, TheClusterBoundKeepsTheLastEndpointsIn) {
  testing::ManualClock clock;
  const config::OutlierDetection spec{
      .consecutive_5xx = 1, .base_ejection = seconds(10), .max_ejection_percent = 0.5};
  EndpointHealth alone;
  EXPECT_FALSE(alone.record(true, clock.now(), spec, 0, 1));
  EXPECT_TRUE(alone.usable(clock.now()));
  EndpointHealth second;
  EXPECT_FALSE(second.record(true, clock.now(), spec, 1, 2));  // one of two is out already
  EXPECT_TRUE(second.usable(clock.now()));
}

TEST(HealthChecks, ThresholdsMoveTheStatusAndDownMeansUnusable) {
  HealthProbeState probes;
  EXPECT_EQ(probes.status(), HealthStatus::unknown);
  EXPECT_EQ(probes.record(true, 2, 3), std::nullopt);
  EXPECT_EQ(probes.record(true, 2, 3), HealthStatus::up);
  EXPECT_EQ(probes.record(false, 2, 3), std::nullopt);
  EXPECT_EQ(probes.record(false, 2, 3), std::nullopt);
  EXPECT_EQ(probes.record(false, 2, 3), HealthStatus::down);
  EXPECT_EQ(probes.record(false, 2, 3), std::nullopt);  // no change, no news
  EndpointHealth health;
  health.set_status(HealthStatus::down);
  EXPECT_FALSE(health.usable(TimePoint{}));
  EXPECT_EQ(to_string(HealthStatus::down), "down");
}

}  // namespace
}  // namespace bulwark::gateway::upstream
