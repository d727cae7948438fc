#include "bulwark/limit/gcra.h"

#include <gtest/gtest.h>

#include <chrono>
#include <stdexcept>
#include <string>

#include "bulwark/core/random.h"
#include "bulwark/limit/token_bucket.h"
#include "bulwark/testing/manual_clock.h"
#include "rate_test_util.h"

namespace bulwark::limit {
namespace {

using namespace std::chrono_literals;
using bulwark::testing::ManualClock;

int64_t us(TimePoint t) { return t.time_since_epoch().count() / 1000; }

TEST(Gcra, TatArithmeticOnAKnownScenario) {
  ManualClock clock;  // on a whole microsecond
  Gcra gcra({.rate = Rate::per_second(10), .burst = 5});
  EXPECT_EQ(gcra.interval_us(), 100'000);   // T
  EXPECT_EQ(gcra.tolerance_us(), 400'000);  // tau = (burst - 1) * T
  EXPECT_EQ(gcra.tat_us(), INT64_MIN);
  const TimePoint t0 = clock.now();

  RateDecision d = gcra.try_acquire(t0);
  EXPECT_TRUE(d.allowed);
  EXPECT_EQ(gcra.tat_us(), us(t0) + 100'000);  // TAT = max(TAT, now) + T
  EXPECT_EQ(d.limit, 5u);
  EXPECT_EQ(d.remaining, 4u);
  EXPECT_EQ(d.reset, 100ms);  // TAT - now

  for (int i = 0; i < 4; ++i) EXPECT_TRUE(gcra.try_acquire(t0).allowed);
  EXPECT_EQ(gcra.tat_us(), us(t0) + 500'000);
  d = gcra.try_acquire(t0);
  EXPECT_FALSE(d.allowed);                     // new_tat - now = 600 ms > tau + T = 500 ms
  EXPECT_EQ(gcra.tat_us(), us(t0) + 500'000);  // a refusal changes nothing
  EXPECT_EQ(d.remaining, 0u);
  EXPECT_EQ(d.reset, 500ms);
  EXPECT_EQ(d.retry_after, 100ms);  // (new_tat - burst * T) - now

  // Sub-microsecond `now`: GCRA sees floor(now / 1 us), retry_after stays exact in ns.
  d = gcra.try_acquire(t0 + 500ns);
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(d.retry_after, 100ms - 500ns);
  EXPECT_EQ(d.reset, 500ms - 500ns);
  EXPECT_FALSE(gcra.try_acquire(t0 + 100ms - 1ns).allowed);
  d = gcra.try_acquire(t0 + 100ms);
  EXPECT_TRUE(d.allowed);
  EXPECT_EQ(gcra.tat_us(), us(t0) + 600'000);
  EXPECT_EQ(d.remaining, 0u);

  // Two permits: new_tat = TAT + 2T.
  d = gcra.try_acquire(t0 + 150ms, 2);
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(d.retry_after, 150ms);  // (600 + 200 - 500) ms - 150 ms
  EXPECT_TRUE(gcra.try_acquire(t0 + 300ms, 2).allowed);
  EXPECT_EQ(gcra.tat_us(), us(t0) + 800'000);

  // Idle past TAT: full again; more than burst never fits.
  d = gcra.try_acquire(t0 + 2s, 6);
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(d.retry_after, Duration::max());
  EXPECT_EQ(d.remaining, 5u);
  EXPECT_EQ(d.reset, Duration::zero());
}

TEST(Gcra, IntervalRoundsToTheNearestMicrosecond) {
  EXPECT_EQ(Gcra({.rate = Rate::per_second(3), .burst = 1}).interval_us(), 333'333);
  EXPECT_EQ(Gcra({.rate = Rate::per_second(6), .burst = 1}).interval_us(), 166'667);
  EXPECT_EQ(Gcra({.rate = Rate::per_minute(6000), .burst = 1}).interval_us(), 10'000);
  EXPECT_EQ(Gcra({.rate = Rate::per_second(1'000'000), .burst = 1}).interval_us(), 1);
}

// The token bucket and GCRA are the same limit in two representations: with an interval that
// is a whole number of microseconds and `now` on whole microseconds they decide identically.
TEST(Gcra, DecidesLikeTheTokenBucketOnWholeMicroseconds) {
  ManualClock clock;
  Random rng(7);
  Gcra gcra({.rate = Rate::per_second(40), .burst = 8});
  TokenBucket bucket({.rate = Rate::per_second(40), .burst = 8});
  for (int i = 0; i < 5000; ++i) {
    clock.advance(std::chrono::microseconds(rng.below(30'000)));
    const uint64_t n = 1 + rng.below(3);
    const RateDecision g = gcra.try_acquire(clock.now(), n);
    const RateDecision b = bucket.try_acquire(clock.now(), n);
    ASSERT_EQ(g.allowed, b.allowed) << i;
    ASSERT_EQ(g.remaining, b.remaining) << i;
    ASSERT_EQ(g.reset, b.reset) << i;
    ASSERT_EQ(g.retry_after, b.retry_after) << i;
  }
}

TEST(Gcra, InvalidOptionsThrowNamingTheOption) {
  auto message = [](GcraOptions o) {
    try {
      Gcra g(o);
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string("no exception");
  };
  EXPECT_EQ(message({.rate = Rate::per_second(10), .burst = 0}).rfind("GcraOptions.burst", 0), 0u);
  EXPECT_EQ(message({.rate = Rate::per_second(0), .burst = 1}).rfind("GcraOptions.rate", 0), 0u);
  // T would round to 0 us.
  EXPECT_EQ(message({.rate = Rate::per_second(3'000'000), .burst = 1}).rfind("GcraOptions.rate", 0),
            0u);
  EXPECT_EQ(message({.rate = Rate::per_hour(1), .burst = uint64_t{1} << 30})
                .rfind("GcraOptions.burst", 0),
            0u);
  EXPECT_EQ(message({.rate = Rate::per_second(2'000'000), .burst = 1}), "no exception");
}

}  // namespace
}  // namespace bulwark::limit
