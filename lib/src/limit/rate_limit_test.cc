// Properties every rate limiter shares: long-run accuracy, the burst bound at one instant, the
// bound over any interval, exact retry_after; and the common vocabulary (Rate, headers).
#include "bulwark/limit/rate_limit.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "bulwark/core/random.h"
#include "bulwark/limit/gcra.h"
#include "bulwark/limit/sliding_window.h"
#include "bulwark/limit/token_bucket.h"
#include "bulwark/testing/manual_clock.h"
#include "rate_test_util.h"

namespace bulwark::limit {
namespace {

using namespace std::chrono_literals;
using bulwark::testing::ManualClock;
using testing::drain;
using testing::expect_exact_retry_after;

// Rate 100/s, burst 50 (sliding window: 100 per 1 s window).
std::vector<testing::LimiterCase> cases() {
  return {
      {"token_bucket",
       [] {
         return std::make_unique<TokenBucket>(
             TokenBucketOptions{.rate = Rate::per_second(100), .burst = 50});
       },
       100.0 * 10 + 50},
      {"gcra",
       [] {
         return std::make_unique<Gcra>(GcraOptions{.rate = Rate::per_second(100), .burst = 50});
       },
       100.0 * 10 + 50},
      // A window limiter has no burst on top of its rate: the first window's `limit` at once is
      // that window's share. 10 windows of 100.
      {"sliding_window",
       [] {
         return std::make_unique<SlidingWindow>(SlidingWindowOptions{.limit = 100, .window = 1s});
       },
       100.0 * 10},
  };
}

// A client that always wants more: at each step it takes permits until refused.
uint64_t saturate(RateLimiter& limiter, ManualClock& clock, Duration total,
                  const std::function<Duration()>& step, const std::function<uint64_t()>& n) {
  const TimePoint end = clock.now() + total;
  uint64_t granted = 0;
  for (;;) {
    const uint64_t k = n();
    while (limiter.try_acquire(clock.now(), k).allowed) granted += k;
    const Duration d = step();
    if (clock.now() + d > end) break;
    clock.advance(d);
  }
  // The last instant of the run is always visited.
  clock.advance_to(end);
  while (limiter.try_acquire(clock.now(), 1).allowed) ++granted;
  return granted;
}

TEST(RateLimiterAccuracy, SmallRegularStepsAdmitRateTimesTimePlusBurst) {
  for (const auto& c : cases()) {
    SCOPED_TRACE(c.name);
    ManualClock clock;  // starts on a whole second: window boundaries are aligned
    auto limiter = c.make();
    const uint64_t granted = saturate(
        *limiter, clock, 10s, [] { return Duration(1ms); }, [] { return uint64_t{1}; });
    EXPECT_NEAR(static_cast<double>(granted), c.expected_per_run, c.expected_per_run * 0.01);
  }
}

TEST(RateLimiterAccuracy, IrregularStepsAndPermitCountsStayWithinOnePercent) {
  for (uint64_t seed : {1u, 2u, 3u}) {
    for (const auto& c : cases()) {
      SCOPED_TRACE(std::string(c.name) + " seed " + std::to_string(seed));
      ManualClock clock;
      Random rng(seed);
      auto limiter = c.make();
      const uint64_t granted = saturate(
          *limiter, clock, 10s, [&] { return rng.uniform(0ns, Duration(2ms)); },
          [&] { return 1 + rng.below(3); });
      EXPECT_NEAR(static_cast<double>(granted), c.expected_per_run, c.expected_per_run * 0.01);
    }
  }
}

// Coarse irregular steps (up to 37 ms, several permits per interval): the token bucket and
// GCRA keep unused permits (up to the burst), so a client polling rarely still gets the full
// rate. A window limiter does not carry room over a window boundary: what a client did not
// use before the end of a window is lost, so it admits somewhat less (never more).
TEST(RateLimiterAccuracy, CoarseIrregularSteps) {
  for (uint64_t seed : {1u, 2u, 3u}) {
    for (const auto& c : cases()) {
      SCOPED_TRACE(std::string(c.name) + " seed " + std::to_string(seed));
      ManualClock clock;
      Random rng(seed);
      auto limiter = c.make();
      const uint64_t granted = saturate(
          *limiter, clock, 10s, [&] { return rng.uniform(0ns, Duration(37ms)); },
          [&] { return 1 + rng.below(3); });
      if (limiter->algorithm() == RateAlgorithm::sliding_window) {
        EXPECT_LE(static_cast<double>(granted), c.expected_per_run * 1.01);
        EXPECT_GE(static_cast<double>(granted), c.expected_per_run * 0.96);
      } else {
        EXPECT_NEAR(static_cast<double>(granted), c.expected_per_run, c.expected_per_run * 0.01);
      }
    }
  }
}

TEST(RateLimiterAccuracy, SlidingWindowStartingMidWindowStaysWithinOneWindow) {
  ManualClock clock(TimePoint(std::chrono::hours(24) + 370ms));
  SlidingWindow limiter({.limit = 100, .window = 1s});
  const uint64_t granted = saturate(
      limiter, clock, 10s, [] { return Duration(1ms); }, [] { return uint64_t{1}; });
  // 100 at once, then 100 per window: between 10 and 11 windows' worth.
  EXPECT_GE(granted, 1000u);
  EXPECT_LE(granted, 1100u);
}

TEST(RateLimiterBurst, NeverMoreThanTheLimitAtOneInstant) {
  for (const auto& c : cases()) {
    SCOPED_TRACE(c.name);
    ManualClock clock;
    auto limiter = c.make();
    EXPECT_EQ(drain(*limiter, clock.now()), limiter->limit());
    EXPECT_EQ(drain(*limiter, clock.now()), 0u);
    // Fully recovered after a long pause: exactly the limit again, never more.
    clock.advance(1h);
    EXPECT_EQ(drain(*limiter, clock.now()), limiter->limit());
    // Many permits at once: the largest request that fits is the limit.
    limiter->reset();
    EXPECT_FALSE(limiter->try_acquire(clock.now(), limiter->limit() + 1).allowed);
    EXPECT_TRUE(limiter->try_acquire(clock.now(), limiter->limit()).allowed);
    EXPECT_FALSE(limiter->try_acquire(clock.now(), 1).allowed);
  }
}

// Random traffic: every refusal's retry_after is exact; at every instant the grants never
// exceed the limit; token bucket and GCRA never grant more than burst + rate * t over any
// interval of length t, the sliding window never more than limit within one fixed window.
TEST(RateLimiterProperties, RandomTrafficKeepsEveryBoundAndExactRetryAfter) {
  for (uint64_t seed = 1; seed <= 4; ++seed) {
    for (const auto& c : cases()) {
      SCOPED_TRACE(std::string(c.name) + " seed " + std::to_string(seed));
      ManualClock clock;
      Random rng(seed);
      auto limiter = c.make();
      const bool window = limiter->algorithm() == RateAlgorithm::sliding_window;
      const TimePoint t0 = clock.now();
      std::vector<std::pair<TimePoint, uint64_t>> grants;
      int refusals_checked = 0;
      for (int i = 0; i < 3000; ++i) {
        if (rng.below(4) == 0) clock.advance(rng.uniform(0ns, Duration(40ms)));
        const uint64_t n = 1 + rng.below(4);
        const TimePoint now = clock.now();
        const RateDecision d = limiter->try_acquire(now, n);
        EXPECT_EQ(d.limit, limiter->limit());
        EXPECT_LE(d.remaining, d.limit);
        if (d.allowed) {
          grants.emplace_back(now, n);
          EXPECT_EQ(d.retry_after, Duration::zero());
        } else if (rng.below(3) == 0) {
          expect_exact_retry_after(*limiter, now, n, d);
          clock.advance(d.retry_after);
          grants.emplace_back(clock.now(), n);
          ++refusals_checked;
        }
      }
      EXPECT_GT(refusals_checked, 50);
      // Bounds over intervals starting at each grant (the worst intervals start at one).
      for (std::size_t a = 0; a < grants.size(); ++a) {
        uint64_t sum = 0;
        for (std::size_t b = a; b < grants.size(); ++b) {
          sum += grants[b].second;
          const Duration t = grants[b].first - grants[a].first;
          if (window) {
            const auto wa = (grants[a].first - t0) / 1s;
            const auto wb = (grants[b].first - t0) / 1s;
            if (wa == wb) {
              ASSERT_LE(sum, 100u) << "more than the limit in one window";
            }
          } else {
            // burst + t / interval (10 ms); GCRA sees time in whole microseconds, so an
            // interval may look up to 1 us longer to it.
            ASSERT_LE(sum, 50u + static_cast<uint64_t>((t + 1us) / 10ms)) << "from grant " << a;
          }
        }
      }
    }
  }
}

TEST(RateLimiterPeek, DescribesTheStateWithoutTakingAnything) {
  for (const auto& c : cases()) {
    SCOPED_TRACE(c.name);
    ManualClock clock;
    auto limiter = c.make();
    RateDecision p = limiter->peek(clock.now());
    EXPECT_TRUE(p.allowed);
    EXPECT_EQ(p.remaining, limiter->limit());
    EXPECT_EQ(p.reset, Duration::zero());
    drain(*limiter, clock.now());
    p = limiter->peek(clock.now());
    EXPECT_FALSE(p.allowed);
    EXPECT_EQ(p.remaining, 0u);
    // peek's retry_after is that of one permit, and peeking took nothing.
    const RateDecision one = limiter->try_acquire(clock.now(), 1);
    EXPECT_EQ(p.retry_after, one.retry_after);
    EXPECT_EQ(p.reset, one.reset);
    // permits == 0 is a query too: allowed, nothing taken.
    const RateDecision q = limiter->try_acquire(clock.now(), 0);
    EXPECT_TRUE(q.allowed);
    EXPECT_EQ(q.remaining, 0u);
  }
}

TEST(RateLimiterTime, AnOlderNowIsDecidedConservatively) {
  for (const auto& c : cases()) {
    SCOPED_TRACE(c.name);
    ManualClock clock;
    auto limiter = c.make();
    clock.advance(5s);
    const uint64_t at_now = drain(*limiter, clock.now());
    EXPECT_EQ(at_now, limiter->limit());
    // A caller whose `now` is 2 s old sees no more than what is left now.
    EXPECT_FALSE(limiter->try_acquire(clock.now() - 2s, 1).allowed);
  }
}

TEST(Rate, IntervalAndPerSecond) {
  EXPECT_EQ(Rate::per_second(10).interval(), 100ms);
  EXPECT_EQ((Rate{3, 1s}).interval(), Duration(333'333'333));
  EXPECT_EQ(Rate::per_second(0.5).interval(), 2s);
  EXPECT_EQ(Rate::per_minute(6000).interval(), 10ms);
  EXPECT_EQ(Rate::per_hour(3600).interval(), 1s);
  EXPECT_DOUBLE_EQ(Rate::per_minute(120).per_second(), 2.0);
  EXPECT_EQ((Rate{0, 1s}).interval(), Duration::zero());
  EXPECT_EQ((Rate{-1, 1s}).interval(), Duration::zero());
  EXPECT_EQ((Rate{NAN, 1s}).interval(), Duration::zero());
  EXPECT_EQ((Rate{1, 0s}).interval(), Duration::zero());
}

TEST(RateLimitHeaders, SecondsRoundUpAndRetryAfterOnlyWhenRefused) {
  EXPECT_EQ(ceil_seconds(Duration::zero()), 0u);
  EXPECT_EQ(ceil_seconds(-5s), 0u);
  EXPECT_EQ(ceil_seconds(1ns), 1u);
  EXPECT_EQ(ceil_seconds(1s), 1u);
  EXPECT_EQ(ceil_seconds(1s + 1ns), 2u);
  EXPECT_EQ(ceil_seconds(Duration::max()), 9'223'372'037u);

  RateDecision ok{.allowed = true, .limit = 20, .remaining = 7, .reset = 1200ms};
  RateLimitHeaders h = to_headers(ok);
  EXPECT_EQ(h.limit, 20u);
  EXPECT_EQ(h.remaining, 7u);
  EXPECT_EQ(h.reset_seconds, 2u);
  EXPECT_FALSE(h.retry_after_seconds);

  RateDecision refused{
      .allowed = false, .limit = 20, .remaining = 0, .reset = 3s, .retry_after = 100ms};
  h = to_headers(refused);
  ASSERT_TRUE(h.retry_after_seconds);
  EXPECT_EQ(*h.retry_after_seconds, 1u);
  EXPECT_EQ(h.reset_seconds, 3u);

  RateDecision never{.allowed = false, .limit = 20, .retry_after = Duration::max()};
  EXPECT_FALSE(to_headers(never).retry_after_seconds);
}

TEST(RateAlgorithmNames, RoundTrip) {
  for (RateAlgorithm a :
       {RateAlgorithm::token_bucket, RateAlgorithm::gcra, RateAlgorithm::sliding_window}) {
    auto parsed = parse_rate_algorithm(to_string(a));
    ASSERT_TRUE(parsed);
    EXPECT_EQ(*parsed, a);
  }
  EXPECT_EQ(to_string(RateAlgorithm::gcra), "gcra");
  EXPECT_FALSE(parse_rate_algorithm("leaky_bucket"));
  EXPECT_FALSE(parse_rate_algorithm(""));
}

}  // namespace
}  // namespace bulwark::limit
