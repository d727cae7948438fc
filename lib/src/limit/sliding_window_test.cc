#include "bulwark/limit/sliding_window.h"

#include <gtest/gtest.h>

#include <chrono>
#include <stdexcept>
#include <string>

#include "bulwark/testing/manual_clock.h"
#include "rate_test_util.h"

namespace bulwark::limit {
namespace {

using namespace std::chrono_literals;
using bulwark::testing::ManualClock;

TEST(SlidingWindow, DecisionFieldsOnAKnownScenario) {
  ManualClock clock;  // starts on a window boundary (a whole second)
  SlidingWindow limiter({.limit = 10, .window = 1s});
  const TimePoint t0 = clock.now();

  RateDecision d = limiter.try_acquire(t0);
  EXPECT_TRUE(d.allowed);
  EXPECT_EQ(d.limit, 10u);
  EXPECT_EQ(d.remaining, 9u);
  EXPECT_EQ(d.reset, 2s);  // the permit leaves the estimate at the end of the next window
  for (int i = 0; i < 9; ++i) EXPECT_TRUE(limiter.try_acquire(t0).allowed);

  // cur = 10: the next permit fits in the next window once 10 * (1 - e) + 1 <= 10, e >= 0.1.
  d = limiter.try_acquire(t0);
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(d.remaining, 0u);
  EXPECT_EQ(d.reset, 2s);
  EXPECT_EQ(d.retry_after, 1100ms);
  EXPECT_FALSE(limiter.try_acquire(t0 + 1100ms - 1ns).allowed);

  // Half-way through the next window: estimate = 10 * 0.5 + 0 = 5.
  const TimePoint t1 = t0 + 1500ms;
  EXPECT_DOUBLE_EQ(limiter.estimate(t1), 5.0);
  RateDecision p = limiter.peek(t1);
  EXPECT_TRUE(p.allowed);
  EXPECT_EQ(p.remaining, 5u);
  EXPECT_EQ(p.reset, 500ms);  // prev only: gone at the end of this window
  EXPECT_TRUE(limiter.try_acquire(t1, 5).allowed);
  EXPECT_DOUBLE_EQ(limiter.estimate(t1), 10.0);

  // cur = 5, prev = 10: one more fits once 10 * (1 - e) <= 4, e >= 0.6.
  d = limiter.try_acquire(t1);
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(d.reset, 1500ms);
  EXPECT_EQ(d.retry_after, 100ms);
  testing::expect_exact_retry_after(limiter, t1, 1, d);  // takes it at t0 + 1.6 s

  // Six permits with cur = 6: not in this window (6 + 6 > 10); in the next one prev = 6:
  // 6 * (1 - e) + 6 <= 10, e >= 1/3 -> W - floor(4 W / 6) = 333,333,334 ns into it.
  d = limiter.try_acquire(t0 + 1600ms, 6);
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(d.retry_after, 400ms + Duration(333'333'334));
  testing::expect_exact_retry_after(limiter, t0 + 1600ms, 6, d);

  // More than the limit never fits; two idle windows later everything is forgotten.
  d = limiter.try_acquire(t0 + 10s, 11);
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(d.retry_after, Duration::max());
  EXPECT_EQ(d.remaining, 10u);
  EXPECT_EQ(d.reset, Duration::zero());
}

TEST(SlidingWindow, NeverMoreThanTheLimitInOneFixedWindow) {
  ManualClock clock;
  SlidingWindow limiter({.limit = 50, .window = 200ms});
  const TimePoint t0 = clock.now();
  uint64_t in_window = 0;
  int64_t window = 0;
  for (int i = 0; i < 20'000; ++i) {
    const TimePoint now = t0 + Duration(i * 97'531LL);  // irregular phase against the window
    const int64_t w = (now - t0) / 200ms;
    if (w != window) {
      window = w;
      in_window = 0;
    }
    if (limiter.try_acquire(now).allowed) ++in_window;
    ASSERT_LE(in_window, 50u);
  }
}

TEST(SlidingWindow, StateSurvivesAWindowIndexFarInThePast) {
  ManualClock clock;
  SlidingWindow limiter({.limit = 3, .window = 1s});
  EXPECT_EQ(testing::drain(limiter, clock.now()), 3u);
  // Two windows later, and a million windows later: fresh both times.
  clock.advance(2s);
  EXPECT_EQ(testing::drain(limiter, clock.now()), 3u);
  clock.advance(std::chrono::seconds(1'000'000));
  EXPECT_EQ(testing::drain(limiter, clock.now()), 3u);
}

TEST(SlidingWindow, InvalidOptionsThrowNamingTheOption) {
  auto message = [](SlidingWindowOptions o) {
    try {
      SlidingWindow s(o);
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string("no exception");
  };
  EXPECT_EQ(message({.limit = 0, .window = 1s}).rfind("SlidingWindowOptions.limit", 0), 0u);
  EXPECT_EQ(message({.limit = SlidingWindowOptions::kMaxLimit + 1, .window = 1s})
                .rfind("SlidingWindowOptions.limit", 0),
            0u);
  EXPECT_EQ(message({.limit = 1, .window = 0s}).rfind("SlidingWindowOptions.window", 0), 0u);
  EXPECT_EQ(message({.limit = SlidingWindowOptions::kMaxLimit, .window = 24h}), "no exception");
}

}  // namespace
}  // namespace bulwark::limit
