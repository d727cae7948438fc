// AIMD and Gradient2: convergence up under flat latency, down under rising latency or drops,
// always within [min_limit, max_limit]. Time comes from a ManualClock, noise from a seeded
// Random, so every run sees the same samples.
#include "bulwark/limit/adaptive_limit.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <stdexcept>
#include <vector>

#include "bulwark/core/random.h"
#include "bulwark/limit/bulkhead.h"
#include "bulwark/testing/manual_clock.h"

namespace bulwark::limit {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;

// Latency around `base` with +-10% noise.
Duration noisy(Random& rng, Duration base) { return rng.uniform(base * 9 / 10, base * 11 / 10); }

// Feeds `n` samples of a saturated client (in flight == the current limit) and returns the
// limit after each.
std::vector<uint32_t> feed(AdaptiveLimit& limit, testing::ManualClock& clock, Random& rng, int n,
                           Duration base, bool dropped = false) {
  std::vector<uint32_t> seen;
  for (int i = 0; i < n; ++i) {
    clock.advance(1ms);
    seen.push_back(limit.on_sample(clock.now(), noisy(rng, base), limit.limit(), dropped));
  }
  return seen;
}

bool within(const std::vector<uint32_t>& v, uint32_t lo, uint32_t hi) {
  for (uint32_t x : v) {
    if (x < lo || x > hi) return false;
  }
  return true;
}

// ---------------------------------------------------------------------------------------------
// AIMD

TEST(AimdLimit, GrowsByOnePerSuccessUpToTheMaximum) {
  testing::ManualClock clock;
  Random rng(1);
  AimdLimit aimd({.initial_limit = 10, .min_limit = 5, .max_limit = 30});
  auto seen = feed(aimd, clock, rng, 25, 10ms);
  EXPECT_EQ(seen.front(), 11u);
  EXPECT_EQ(seen[9], 20u);
  EXPECT_EQ(aimd.limit(), 30u);  // 10 + 20 steps, then capped
  EXPECT_TRUE(within(seen, 5, 30));
}

TEST(AimdLimit, BacksOffMultiplicativelyOnDropsDownToTheMinimum) {
  testing::ManualClock clock;
  Random rng(2);
  AimdLimit aimd({.initial_limit = 100, .min_limit = 10, .max_limit = 200, .backoff_ratio = 0.9});
  auto seen = feed(aimd, clock, rng, 40, 10ms, /*dropped=*/true);
  EXPECT_EQ(seen[0], 90u);
  EXPECT_EQ(seen[1], 81u);
  EXPECT_EQ(seen[2], 72u);  // floor(81 * 0.9)
  EXPECT_EQ(aimd.limit(), 10u);
  EXPECT_TRUE(within(seen, 10, 200));
}

TEST(AimdLimit, AnRttAboveTheTimeoutCountsAsADrop) {
  testing::ManualClock clock;
  AimdLimit aimd(
      {.initial_limit = 50, .min_limit = 1, .max_limit = 100, .backoff_ratio = 0.5, .timeout = 1s});
  EXPECT_EQ(aimd.on_sample(clock.now(), 1s, 50, false), 51u);  // at the timeout: fine
  EXPECT_EQ(aimd.on_sample(clock.now(), 1s + 1ns, 51, false), 25u);
}

TEST(AimdLimit, DoesNotGrowWhenTheLimitIsNotInUse) {
  testing::ManualClock clock;
  AimdLimit aimd({.initial_limit = 40, .min_limit = 1, .max_limit = 100});
  for (int i = 0; i < 10; ++i) EXPECT_EQ(aimd.on_sample(clock.now(), 5ms, 19, false), 40u);
  EXPECT_EQ(aimd.on_sample(clock.now(), 5ms, 20, false), 41u);
}

TEST(AimdLimit, RecoversAfterAnOverloadEnds) {
  testing::ManualClock clock;
  Random rng(3);
  AimdLimit aimd({.initial_limit = 50, .min_limit = 5, .max_limit = 60});
  feed(aimd, clock, rng, 30, 10ms, true);
  EXPECT_EQ(aimd.limit(), 5u);
  auto seen = feed(aimd, clock, rng, 100, 10ms);
  EXPECT_EQ(aimd.limit(), 60u);
  EXPECT_TRUE(within(seen, 5, 60));
}

TEST(AimdLimit, InvalidOptionsNameTheField) {
  auto message = [](AimdOptions o) -> std::string {
    try {
      AimdLimit l(o);
    } catch (const std::invalid_argument& e) {
      return e.what();
    }
    return "";
  };
  EXPECT_THAT(message({.initial_limit = 0, .min_limit = 0}), HasSubstr("min_limit"));
  EXPECT_THAT(message({.min_limit = 10, .max_limit = 5}), HasSubstr("max_limit"));
  EXPECT_THAT(message({.initial_limit = 300}), HasSubstr("initial_limit"));
  EXPECT_THAT(message({.backoff_ratio = 1.0}), HasSubstr("backoff_ratio"));
  EXPECT_THAT(message({.backoff_ratio = 0.4}), HasSubstr("backoff_ratio"));
  EXPECT_THAT(message({.timeout = 0ms}), HasSubstr("timeout"));
  EXPECT_EQ(message({}), "");
}

// ---------------------------------------------------------------------------------------------
// Gradient2

TEST(Gradient2Limit, ConvergesUpToTheMaximumWhileLatencyIsFlat) {
  testing::ManualClock clock;
  Random rng(4);
  Gradient2Limit g({.initial_limit = 10, .min_limit = 5, .max_limit = 100});
  auto seen = feed(g, clock, rng, 1000, 20ms);
  EXPECT_EQ(g.limit(), 100u);
  EXPECT_TRUE(within(seen, 5, 100));
  // Growth is gradual: about smoothing * queue_size = 0.8 per sample at first.
  EXPECT_LE(seen[9], 20u);
  EXPECT_GE(seen[9], 16u);
  EXPECT_GT(g.long_rtt(), 18ms);
  EXPECT_LT(g.long_rtt(), 22ms);
}

TEST(Gradient2Limit, ConvergesDownWhenLatencyRises) {
  testing::ManualClock clock;
  Random rng(5);
  Gradient2Limit g({.initial_limit = 10, .min_limit = 5, .max_limit = 100});
  feed(g, clock, rng, 1000, 20ms);
  ASSERT_EQ(g.limit(), 100u);
  // The dependency slows down 5x: the short-term RTT is far above the long-term average.
  auto seen = feed(g, clock, rng, 60, 100ms);
  EXPECT_LT(seen.back(), 40u);
  EXPECT_LT(seen[30], seen[0]);
  EXPECT_TRUE(within(seen, 5, 100));
}

TEST(Gradient2Limit, NeverCutsBelowHalfPerSampleNorBelowTheMinimum) {
  testing::ManualClock clock;
  Random rng(6);
  Gradient2Limit g({.initial_limit = 50, .min_limit = 30, .max_limit = 100});
  feed(g, clock, rng, 50, 10ms);
  const uint32_t before = g.limit();
  // One huge outlier: the gradient is clamped at 0.5, and smoothing spreads it further.
  const uint32_t after = g.on_sample(clock.now(), 10s, before, false);
  EXPECT_GE(after, before * 9 / 10);
  EXPECT_LT(after, before);
  // Latency that keeps climbing (2% per sample) stays far above the slow long-term average:
  // the limit goes down to the minimum and stays there.
  std::vector<uint32_t> seen;
  double rtt_ms = 10;
  for (int i = 0; i < 300; ++i) {
    rtt_ms *= 1.02;
    clock.advance(1ms);
    seen.push_back(g.on_sample(clock.now(),
                               to_duration(std::chrono::duration<double, std::milli>(rtt_ms)),
                               g.limit(), false));
  }
  EXPECT_EQ(g.limit(), 30u);
  EXPECT_TRUE(within(seen, 30, 100));
}

TEST(Gradient2Limit, DropsDriveTheLimitDown) {
  testing::ManualClock clock;
  Random rng(7);
  Gradient2Limit g({.initial_limit = 80, .min_limit = 8, .max_limit = 100});
  // Same latency throughout: only the drops signal the overload.
  auto seen = feed(g, clock, rng, 100, 10ms, /*dropped=*/true);
  EXPECT_LT(seen[20], 80u);
  EXPECT_LE(g.limit(), 12u);  // fixed point of L = 0.9 L + 0.8 is 8 (+ the floor of min 8)
  EXPECT_TRUE(within(seen, 8, 100));
}

TEST(Gradient2Limit, DoesNotGrowWhenApplicationLimited) {
  testing::ManualClock clock;
  Gradient2Limit g({.initial_limit = 40, .min_limit = 1, .max_limit = 100});
  for (int i = 0; i < 50; ++i) EXPECT_EQ(g.on_sample(clock.now(), 10ms, 19, false), 40u);
  // With enough of the limit in use it grows again, by ~0.8 per sample (smoothing * queue_size).
  uint32_t limit = 0;
  for (int i = 0; i < 3; ++i) limit = g.on_sample(clock.now(), 10ms, 30, false);
  EXPECT_EQ(limit, 42u);
}

TEST(Gradient2Limit, LongRttIsAWarmUpMeanThenAnEwma) {
  testing::ManualClock clock;
  Gradient2Limit g(
      {.initial_limit = 10, .min_limit = 1, .max_limit = 10, .long_window = 9, .warmup = 2});
  g.on_sample(clock.now(), 10ms, 10, false);
  EXPECT_EQ(g.long_rtt(), 10ms);
  g.on_sample(clock.now(), 20ms, 10, false);
  EXPECT_EQ(g.long_rtt(), 15ms);  // mean of the warm-up samples
  g.on_sample(clock.now(), 25ms, 10, false);
  EXPECT_EQ(g.long_rtt(), 17ms);  // EWMA with weight 2 / (9 + 1) = 0.2
}

TEST(Gradient2Limit, InvalidOptionsNameTheField) {
  auto message = [](Gradient2Options o) -> std::string {
    try {
      Gradient2Limit l(o);
    } catch (const std::invalid_argument& e) {
      return e.what();
    }
    return "";
  };
  EXPECT_THAT(message({.smoothing = 0}), HasSubstr("smoothing"));
  EXPECT_THAT(message({.rtt_tolerance = 0.9}), HasSubstr("rtt_tolerance"));
  EXPECT_THAT(message({.long_window = 0}), HasSubstr("long_window"));
  EXPECT_THAT(message({.warmup = 0}), HasSubstr("warmup"));
  EXPECT_THAT(message({.initial_limit = 5}), HasSubstr("initial_limit"));
  EXPECT_EQ(message({}), "");
}

// ---------------------------------------------------------------------------------------------
// AdaptiveConcurrency driving a Bulkhead

TEST(AdaptiveConcurrency, AppliesTheInitialLimitAndEveryChange) {
  testing::ManualClock clock;
  Bulkhead b("api", {.max_concurrent = 1000}, clock);
  std::vector<uint32_t> applied;
  AdaptiveConcurrency adaptive(
      std::make_unique<AimdLimit>(
          AimdOptions{.initial_limit = 4, .min_limit = 2, .max_limit = 6, .backoff_ratio = 0.5}),
      [&](uint32_t limit, TimePoint now) {
        applied.push_back(limit);
        b.set_limit(limit, now);
      },
      clock.now());
  EXPECT_EQ(b.limit(), 4u);
  adaptive.record(clock.now(), 1ms, 4, false);  // 5
  adaptive.record(clock.now(), 1ms, 5, false);  // 6
  adaptive.record(clock.now(), 1ms, 6, false);  // 6: capped, not applied again
  adaptive.record(clock.now(), 1ms, 6, true);   // 3
  EXPECT_EQ(b.limit(), 3u);
  EXPECT_EQ(adaptive.limit(), 3u);
  EXPECT_EQ(adaptive.samples(), 4u);
  EXPECT_EQ(applied, (std::vector<uint32_t>{4, 5, 6, 3}));
  EXPECT_THROW(AdaptiveConcurrency(nullptr, {}), std::invalid_argument);
}

}  // namespace
}  // namespace bulwark::limit
