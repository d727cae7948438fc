#include "bulwark/limit/token_bucket.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <stdexcept>

#include "bulwark/testing/manual_clock.h"
#include "rate_test_util.h"

namespace bulwark::limit {
namespace {

using namespace std::chrono_literals;
using bulwark::testing::ManualClock;

TEST(TokenBucket, DecisionFieldsOnAKnownScenario) {
  ManualClock clock;
  TokenBucket bucket({.rate = Rate::per_second(10), .burst = 5});  // one token per 100 ms
  EXPECT_EQ(bucket.interval(), 100ms);
  const TimePoint t0 = clock.now();

  RateDecision d = bucket.try_acquire(t0);
  EXPECT_TRUE(d.allowed);
  EXPECT_EQ(d.limit, 5u);
  EXPECT_EQ(d.remaining, 4u);
  EXPECT_EQ(d.reset, 100ms);
  EXPECT_EQ(d.retry_after, Duration::zero());

  for (int i = 0; i < 3; ++i) EXPECT_TRUE(bucket.try_acquire(t0).allowed);
  d = bucket.try_acquire(t0);
  EXPECT_TRUE(d.allowed);
  EXPECT_EQ(d.remaining, 0u);
  EXPECT_EQ(d.reset, 500ms);

  d = bucket.try_acquire(t0);
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(d.remaining, 0u);
  EXPECT_EQ(d.reset, 500ms);
  EXPECT_EQ(d.retry_after, 100ms);

  d = bucket.try_acquire(t0 + 30ms);
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(d.retry_after, 70ms);
  EXPECT_EQ(d.reset, 470ms);
  EXPECT_NEAR(bucket.tokens(t0 + 30ms), 0.3, 1e-9);

  EXPECT_FALSE(bucket.try_acquire(t0 + 100ms - 1ns).allowed);
  d = bucket.try_acquire(t0 + 100ms);
  EXPECT_TRUE(d.allowed);
  EXPECT_EQ(d.remaining, 0u);
  EXPECT_EQ(d.reset, 500ms);

  // Three tokens need 300 ms more.
  d = bucket.try_acquire(t0 + 100ms, 3);
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(d.retry_after, 300ms);
  d = bucket.try_acquire(t0 + 400ms, 3);
  EXPECT_TRUE(d.allowed);
  EXPECT_EQ(d.remaining, 0u);

  // Full again after burst * interval; more than the burst never fits.
  const TimePoint later = t0 + 400ms + 500ms;
  EXPECT_DOUBLE_EQ(bucket.tokens(later), 5.0);
  EXPECT_DOUBLE_EQ(bucket.tokens(later + 1h), 5.0);
  d = bucket.try_acquire(later, 6);
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(d.retry_after, Duration::max());
  EXPECT_EQ(d.remaining, 5u);
  EXPECT_EQ(d.reset, Duration::zero());
}

TEST(TokenBucket, FractionalRatesAndTokens) {
  ManualClock clock;
  TokenBucket bucket({.rate = Rate::per_second(0.5), .burst = 1});  // one per 2 s
  const TimePoint t0 = clock.now();
  EXPECT_TRUE(bucket.try_acquire(t0).allowed);
  RateDecision d = bucket.try_acquire(t0 + 1500ms);
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(d.retry_after, 500ms);
  EXPECT_DOUBLE_EQ(bucket.tokens(t0 + 1500ms), 0.75);
  EXPECT_TRUE(bucket.try_acquire(t0 + 2s).allowed);
}

TEST(TokenBucket, ResetRefillsAndStartsFull) {
  ManualClock clock;
  TokenBucket bucket({.rate = Rate::per_minute(1), .burst = 3});
  EXPECT_DOUBLE_EQ(bucket.tokens(clock.now()), 3.0);
  EXPECT_EQ(testing::drain(bucket, clock.now()), 3u);
  EXPECT_DOUBLE_EQ(bucket.tokens(clock.now()), 0.0);
  bucket.reset();
  EXPECT_EQ(testing::drain(bucket, clock.now()), 3u);
}

TEST(TokenBucket, InvalidOptionsThrowNamingTheOption) {
  auto message = [](TokenBucketOptions o) {
    try {
      TokenBucket b(o);
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string("no exception");
  };
  EXPECT_EQ(
      message({.rate = Rate::per_second(10), .burst = 0}).rfind("TokenBucketOptions.burst", 0), 0u);
  EXPECT_EQ(message({.rate = Rate::per_second(0), .burst = 1}).rfind("TokenBucketOptions.rate", 0),
            0u);
  EXPECT_EQ(message({.rate = {NAN, 1s}, .burst = 1}).rfind("TokenBucketOptions.rate", 0), 0u);
  EXPECT_EQ(message({.rate = {1, 0s}, .burst = 1}).rfind("TokenBucketOptions.rate", 0), 0u);
  // Faster than one token per nanosecond.
  EXPECT_EQ(
      message({.rate = Rate::per_second(3e9), .burst = 1}).rfind("TokenBucketOptions.rate", 0), 0u);
  // burst * interval beyond 2^62 ns.
  EXPECT_EQ(message({.rate = Rate::per_hour(1), .burst = uint64_t{1} << 40})
                .rfind("TokenBucketOptions.burst", 0),
            0u);
  EXPECT_EQ(message({.rate = Rate::per_second(1e9), .burst = 1}), "no exception");
}

}  // namespace
}  // namespace bulwark::limit
