#include "filters/circuit_breaker/circuit_breaker.h"

#include <gtest/gtest.h>

#include "bulwark/observe/registry.h"
#include "bulwark/testing/manual_clock.h"
#include "filter/reasons.h"

namespace bulwark::gateway::filters {
namespace {

using Kind = filter::AttemptOutcome::Kind;
using std::chrono::seconds;

filter::AttemptOutcome outcome(Kind kind, int status, TimePoint now) {
  filter::AttemptOutcome o;
  o.kind = kind;
  o.status = status;
  o.now = now;
  return o;
}

TEST(BreakerFailures, TheDefaultSetIsTransportFailuresAnd5xx) {
  const config::FailureSet failures;
  EXPECT_TRUE(counts_as_failure(failures, outcome(Kind::connect_failure, 0, {})));
  EXPECT_TRUE(counts_as_failure(failures, outcome(Kind::reset, 0, {})));
  EXPECT_TRUE(counts_as_failure(failures, outcome(Kind::timeout, 0, {})));
  EXPECT_TRUE(counts_as_failure(failures, outcome(Kind::bad_response, 0, {})));
  EXPECT_TRUE(counts_as_failure(failures, outcome(Kind::response, 503, {})));
  EXPECT_FALSE(counts_as_failure(failures, outcome(Kind::response, 404, {})));
  EXPECT_FALSE(counts_as_failure(failures, outcome(Kind::response, 200, {})));
  config::FailureSet only_429{};
  only_429.connect_failure = only_429.reset = only_429.timeout = only_429.bad_response = false;
  only_429.status = config::StatusSet::range(429, 429);
  EXPECT_TRUE(counts_as_failure(only_429, outcome(Kind::response, 429, {})));
  EXPECT_FALSE(counts_as_failure(only_429, outcome(Kind::response, 503, {})));
  EXPECT_FALSE(counts_as_failure(only_429, outcome(Kind::reset, 0, {})));
}

TEST(BreakerFailures, RetryAfterIsWholeSecondsRoundedUpAndAtLeastOne) {
  EXPECT_EQ(breaker_retry_after_seconds(Duration::zero()), 1u);
  EXPECT_EQ(breaker_retry_after_seconds(std::chrono::milliseconds(1)), 1u);
  EXPECT_EQ(breaker_retry_after_seconds(std::chrono::milliseconds(2001)), 3u);
}

struct BreakerTest : ::testing::Test {
  testing::ManualClock clock;
  std::shared_ptr<route::ClusterState> cluster = std::make_shared<route::ClusterState>();
  BreakerTest() {
    circuit::BreakerOptions options;
    options.consecutive_failures = 2;
    options.open_duration = seconds(5);
    options.half_open_probes = 1;
    options.success_threshold = 1;
    cluster->breaker = std::make_unique<circuit::CircuitBreaker>("api", options, clock);
  }
};

TEST_F(BreakerTest, OpensOnConsecutiveFailuresAndRefusesWithRetryAfter) {
  CircuitBreakerPolicy policy(cluster, config::FailureSet{});
  for (int i = 0; i < 2; ++i) {
    filter::FilterState state;
    ASSERT_FALSE(policy.before_attempt({clock.now()}, state));
    policy.after_attempt(outcome(Kind::response, 503, clock.now()), state);
  }
  EXPECT_EQ(cluster->breaker->state(), circuit::State::open);
  filter::FilterState refused;
  const filter::LocalReply reply = policy.before_attempt({clock.now()}, refused);
  EXPECT_EQ(reply.status, 503);
  EXPECT_EQ(reply.reason, reason::kCircuitOpen);
  EXPECT_EQ(reply.retry_after_seconds, 5u);
  policy.after_attempt(outcome(Kind::response, 200, clock.now()), refused);  // nothing held

  // After the open time one probe goes through; its success closes the breaker.
  clock.advance(seconds(5));
  filter::FilterState probe;
  ASSERT_FALSE(policy.before_attempt({clock.now()}, probe));
  filter::FilterState second;
  EXPECT_EQ(policy.before_attempt({clock.now()}, second).status, 503);  // probes all taken
  policy.after_attempt(outcome(Kind::response, 200, clock.now()), probe);
  EXPECT_EQ(cluster->breaker->state(), circuit::State::closed);
}

TEST_F(BreakerTest, CallerErrorsAndReplacedStaleConnectionsAreNotFailures) {
  CircuitBreakerPolicy policy(cluster, config::FailureSet{});
  for (int i = 0; i < 4; ++i) {
    filter::FilterState state;
    ASSERT_FALSE(policy.before_attempt({clock.now()}, state));
    filter::AttemptOutcome o = outcome(Kind::reset, 0, clock.now());
    o.discarded = true;
    policy.after_attempt(o, state);
    ASSERT_FALSE(policy.before_attempt({clock.now()}, state));
    policy.after_attempt(outcome(Kind::response, 404, clock.now()), state);
  }
  EXPECT_EQ(cluster->breaker->state(), circuit::State::closed);
  const circuit::BreakerStats stats = cluster->breaker->stats();
  EXPECT_EQ(stats.released, 4u);
  EXPECT_EQ(stats.successes, 4u);
  EXPECT_EQ(stats.failures, 0u);
}

}  // namespace
}  // namespace bulwark::gateway::filters
