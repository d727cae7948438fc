#include "bulwark/retry/backoff.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <set>
#include <stdexcept>
#include <vector>

#include "bulwark/testing/manual_clock.h"

namespace bulwark::retry {
namespace {

using namespace std::chrono_literals;
using bulwark::testing::seeded_random;

constexpr int kDraws = 20000;

BackoffOptions no_jitter(BackoffKind kind, Duration base, Duration max, double multiplier = 2.0) {
  BackoffOptions o;
  o.kind = kind;
  o.base = base;
  o.max = max;
  o.multiplier = multiplier;
  o.jitter = Jitter::none;
  return o;
}

std::vector<Duration> sequence(const Backoff& b, uint32_t n) {
  Random rng = seeded_random();
  std::vector<Duration> out;
  Duration prev = Duration::zero();
  for (uint32_t r = 1; r <= n; ++r) out.push_back(prev = b.delay(r, prev, rng));
  return out;
}

struct Stats {
  Duration min = Duration::max();
  Duration max = Duration::min();
  std::set<int64_t> distinct;
};

Stats draw_many(const Backoff& b, uint32_t retry, Duration previous = Duration::zero(),
                uint64_t seed = 7) {
  Random rng(seed);
  Stats s;
  for (int i = 0; i < kDraws; ++i) {
    const Duration d = b.delay(retry, previous, rng);
    s.min = std::min(s.min, d);
    s.max = std::max(s.max, d);
    s.distinct.insert(d.count());
  }
  return s;
}

// --- growth curves (no jitter) ---------------------------------------------------------------

TEST(BackoffTest, ConstantIsBase) {
  Backoff b(no_jitter(BackoffKind::constant, 30ms, 1s));
  EXPECT_EQ(sequence(b, 5), (std::vector<Duration>{30ms, 30ms, 30ms, 30ms, 30ms}));
  Random rng = seeded_random();
  EXPECT_EQ(b.delay(1'000'000, Duration::zero(), rng), 30ms);
}

TEST(BackoffTest, LinearIsBaseTimesRetryCapped) {
  Backoff b(no_jitter(BackoffKind::linear, 10ms, 35ms));
  EXPECT_EQ(sequence(b, 5), (std::vector<Duration>{10ms, 20ms, 30ms, 35ms, 35ms}));
}

TEST(BackoffTest, ExponentialIsBaseTimesMultiplierPowerCapped) {
  Backoff b(no_jitter(BackoffKind::exponential, 25ms, 250ms, 2.0));
  EXPECT_EQ(sequence(b, 6), (std::vector<Duration>{25ms, 50ms, 100ms, 200ms, 250ms, 250ms}));
}

TEST(BackoffTest, ExponentialWithFractionalMultiplier) {
  Backoff b(no_jitter(BackoffKind::exponential, 100ms, 1s, 1.5));
  EXPECT_EQ(sequence(b, 4), (std::vector<Duration>{100ms, 150ms, 225ms, 337500us}));
}

TEST(BackoffTest, FibonacciIsBaseTimesFibonacciCapped) {
  Backoff b(no_jitter(BackoffKind::fibonacci, 10ms, 100ms));
  EXPECT_EQ(sequence(b, 9),
            (std::vector<Duration>{10ms, 10ms, 20ms, 30ms, 50ms, 80ms, 100ms, 100ms, 100ms}));
}

TEST(BackoffTest, RetryZeroIsTreatedAsFirstRetry) {
  Backoff b(no_jitter(BackoffKind::linear, 10ms, 1s));
  Random rng = seeded_random();
  EXPECT_EQ(b.delay(0, Duration::zero(), rng), 10ms);
}

TEST(BackoffTest, HugeRetryNumbersSaturateAtTheCapWithoutOverflow) {
  const Duration cap = Duration::max();
  for (BackoffKind kind : {BackoffKind::linear, BackoffKind::exponential, BackoffKind::fibonacci}) {
    // Linear needs a large base to reach Duration::max() within 2^32 retries.
    const Duration base = kind == BackoffKind::linear ? cap / 1000 : 1ns;
    Backoff b(no_jitter(kind, base, cap, 2.0));
    Random rng = seeded_random();
    EXPECT_EQ(b.delay(std::numeric_limits<uint32_t>::max(), Duration::zero(), rng), cap)
        << to_string(kind);
    // Past the table, still monotonic and never negative.
    Duration prev = Duration::zero();
    for (uint32_t r = 1; r < 200; ++r) {
      const Duration d = b.delay(r, Duration::zero(), rng);
      ASSERT_GE(d, prev) << to_string(kind) << " retry " << r;
      prev = d;
    }
  }
}

TEST(BackoffTest, LinearBeyondTheTableIsComputed) {
  // 1s * n only reaches a 1h cap at n = 3600, far past the precomputed table.
  Backoff b(no_jitter(BackoffKind::linear, 1s, 1h));
  Random rng = seeded_random();
  EXPECT_EQ(b.delay(Backoff::kTableSize + 36, Duration::zero(), rng),
            1s * (Backoff::kTableSize + 36));
  EXPECT_EQ(b.delay(1000, Duration::zero(), rng), 1000s);
  EXPECT_EQ(b.delay(3599, Duration::zero(), rng), 3599s);
  EXPECT_EQ(b.delay(3600, Duration::zero(), rng), 1h);
  EXPECT_EQ(b.delay(3601, Duration::zero(), rng), 1h);
}

TEST(BackoffTest, SlowExponentialBeyondTheTableIsComputed) {
  Backoff b(no_jitter(BackoffKind::exponential, 1ms, 1h, 1.01));
  Random rng = seeded_random();
  const double expect = 1e6 * std::pow(1.01, 99);
  EXPECT_NEAR(static_cast<double>(b.delay(100, Duration::zero(), rng).count()), expect, 1.0);
  EXPECT_EQ(b.delay(5000, Duration::zero(), rng), 1h);
}

TEST(BackoffTest, HugeAndInfiniteMultipliersDoNotOverflow) {
  for (double m : {1e300, std::numeric_limits<double>::infinity()}) {
    Backoff b(no_jitter(BackoffKind::exponential, 5ms, 7s, m));
    EXPECT_EQ(sequence(b, 4), (std::vector<Duration>{5ms, 7s, 7s, 7s})) << m;
  }
}

TEST(BackoffTest, MultiplierOneIsConstant) {
  Backoff b(no_jitter(BackoffKind::exponential, 5ms, 7s, 1.0));
  Random rng = seeded_random();
  EXPECT_EQ(b.delay(3, Duration::zero(), rng), 5ms);
  EXPECT_EQ(b.delay(100'000, Duration::zero(), rng), 5ms);
}

TEST(BackoffTest, CappedRawExplainsTheCurve) {
  Backoff b(no_jitter(BackoffKind::exponential, 25ms, 250ms));
  EXPECT_EQ(b.capped_raw(1), 25ms);
  EXPECT_EQ(b.capped_raw(4), 200ms);
  EXPECT_EQ(b.capped_raw(5), 250ms);
  EXPECT_EQ(b.capped_raw(1000), 250ms);
}

// --- jitter -----------------------------------------------------------------------------------

BackoffOptions jittered(Jitter j, double fraction = 0.2) {
  BackoffOptions o;  // exponential 25ms..250ms, x2
  o.jitter = j;
  o.jitter_fraction = fraction;
  return o;
}

TEST(BackoffTest, FullJitterIsWithinZeroAndDelayAndSpread) {
  Backoff b(jittered(Jitter::full));
  const Stats s = draw_many(b, 3);  // d = 100ms
  EXPECT_GE(s.min, 0ms);
  EXPECT_LE(s.max, 100ms);
  EXPECT_LT(s.min, 5ms);  // reaches near both ends over 20000 draws
  EXPECT_GT(s.max, 95ms);
  EXPECT_GT(s.distinct.size(), kDraws * 9 / 10u);
}

TEST(BackoffTest, EqualJitterIsWithinHalfAndDelay) {
  Backoff b(jittered(Jitter::equal));
  const Stats s = draw_many(b, 3);  // d = 100ms
  EXPECT_GE(s.min, 50ms);
  EXPECT_LE(s.max, 100ms);
  EXPECT_LT(s.min, 52ms);
  EXPECT_GT(s.max, 98ms);
  EXPECT_GT(s.distinct.size(), kDraws * 9 / 10u);
}

TEST(BackoffTest, ProportionalJitterIsWithinFraction) {
  Backoff b(jittered(Jitter::proportional, 0.2));
  const Stats s = draw_many(b, 2);  // d = 50ms -> [40ms, 60ms]
  EXPECT_GE(s.min, 40ms);
  EXPECT_LE(s.max, 60ms);
  EXPECT_LT(s.min, 41ms);
  EXPECT_GT(s.max, 59ms);
}

TEST(BackoffTest, ProportionalFractionZeroIsExact) {
  Backoff b(jittered(Jitter::proportional, 0.0));
  const Stats s = draw_many(b, 2);
  EXPECT_EQ(s.min, 50ms);
  EXPECT_EQ(s.max, 50ms);
}

TEST(BackoffTest, JitterIsReproducibleFromTheSeed) {
  Backoff b(jittered(Jitter::full));
  Random a(99), c(99), other(100);
  std::vector<Duration> first, second, third;
  for (uint32_t r = 1; r <= 20; ++r) {
    first.push_back(b.delay(r, Duration::zero(), a));
    second.push_back(b.delay(r, Duration::zero(), c));
    third.push_back(b.delay(r, Duration::zero(), other));
  }
  EXPECT_EQ(first, second);
  EXPECT_NE(first, third);
}

// The cap applies inside the draw: delays at the cap are still spread out, never all equal to it.
TEST(BackoffTest, CapInsideTheDrawKeepsCappedDelaysSpread) {
  for (Jitter j : {Jitter::full, Jitter::equal, Jitter::proportional}) {
    Backoff b(jittered(j, 0.2));
    const Stats s = draw_many(b, 10);  // raw 12.8s, capped to 250ms
    EXPECT_LE(s.max, 250ms) << to_string(j);
    EXPECT_GT(s.distinct.size(), 1000u) << to_string(j);
    // Capping after the draw would make most of these exactly 250ms.
    Random rng(3);
    int at_cap = 0;
    for (int i = 0; i < kDraws; ++i) at_cap += b.delay(10, Duration::zero(), rng) == 250ms;
    EXPECT_LT(at_cap, kDraws / 100) << to_string(j);
  }
}

TEST(BackoffTest, ProportionalUpperBoundIsTheCapAtTheCap) {
  Backoff b(jittered(Jitter::proportional, 0.2));
  const Stats s = draw_many(b, 10);  // d = 250ms -> [200ms, min(250ms, 300ms)]
  EXPECT_GE(s.min, 200ms);
  EXPECT_LT(s.min, 201ms);
  EXPECT_LE(s.max, 250ms);
  EXPECT_GT(s.max, 249ms);
}

TEST(BackoffTest, JitterNearDurationMaxDoesNotOverflow) {
  for (Jitter j : {Jitter::full, Jitter::equal, Jitter::proportional}) {
    BackoffOptions o = jittered(j, 1.0);
    o.base = Duration::max() / 2;
    o.max = Duration::max();
    Backoff b(o);
    const Stats s = draw_many(b, 40);
    EXPECT_GE(s.min, 0ns) << to_string(j);
    EXPECT_GT(s.distinct.size(), 1u) << to_string(j);
  }
}

// --- decorrelated -----------------------------------------------------------------------------

TEST(BackoffTest, DecorrelatedFirstDrawIsBetweenBaseAndThreeBase) {
  BackoffOptions o;
  o.kind = BackoffKind::decorrelated;
  o.base = 10ms;
  o.max = 1s;
  Backoff b(o);
  const Stats s = draw_many(b, 1, Duration::zero());
  EXPECT_GE(s.min, 10ms);
  EXPECT_LE(s.max, 30ms);
  EXPECT_LT(s.min, 10100us);
  EXPECT_GT(s.max, 29900us);
}

TEST(BackoffTest, DecorrelatedUsesThreeTimesPreviousCappedInsideTheDraw) {
  BackoffOptions o;
  o.kind = BackoffKind::decorrelated;
  o.base = 10ms;
  o.max = 100ms;
  Backoff b(o);
  Stats s = draw_many(b, 2, 20ms);  // [10ms, 60ms]
  EXPECT_GE(s.min, 10ms);
  EXPECT_LE(s.max, 60ms);
  EXPECT_GT(s.max, 59ms);
  s = draw_many(b, 5, 90ms);  // [10ms, min(100ms, 270ms)] -- still spread, not pinned at 100ms
  EXPECT_GE(s.min, 10ms);
  EXPECT_LE(s.max, 100ms);
  EXPECT_GT(s.distinct.size(), 1000u);
  s = draw_many(b, 5, 5s);  // previous above the cap is clamped to it
  EXPECT_GE(s.min, 10ms);
  EXPECT_LE(s.max, 100ms);
}

TEST(BackoffTest, DecorrelatedSequenceStaysInBoundsAndIgnoresJitterOption) {
  BackoffOptions o;
  o.kind = BackoffKind::decorrelated;
  o.base = 1ms;
  o.max = 50ms;
  o.jitter = Jitter::none;  // ignored: decorrelated is random by construction
  Backoff b(o);
  Random rng(11);
  Duration prev = Duration::zero();
  std::set<int64_t> distinct;
  for (uint32_t r = 1; r <= 5000; ++r) {
    const Duration d = b.delay(r, prev, rng);
    ASSERT_GE(d, 1ms);
    ASSERT_LE(d, std::min<Duration>(50ms, 3 * std::max<Duration>(prev, 1ms)));
    distinct.insert(d.count());
    prev = d;
  }
  EXPECT_GT(distinct.size(), 1000u);
}

TEST(BackoffTest, DecorrelatedWithCapEqualToBaseIsBase) {
  BackoffOptions o;
  o.kind = BackoffKind::decorrelated;
  o.base = 10ms;
  o.max = 10ms;
  Backoff b(o);
  const Stats s = draw_many(b, 3, 10ms);
  EXPECT_EQ(s.min, 10ms);
  EXPECT_EQ(s.max, 10ms);
}

// --- options ----------------------------------------------------------------------------------

TEST(BackoffTest, RejectsInvalidOptions) {
  auto make = [](auto mutate) {
    BackoffOptions o;
    mutate(o);
    return Backoff(o);
  };
  EXPECT_THROW(make([](BackoffOptions& o) { o.base = 0ms; }), std::invalid_argument);
  EXPECT_THROW(make([](BackoffOptions& o) { o.base = -1ms; }), std::invalid_argument);
  EXPECT_THROW(make([](BackoffOptions& o) { o.max = 24ms; }), std::invalid_argument);
  EXPECT_THROW(make([](BackoffOptions& o) { o.multiplier = 0.5; }), std::invalid_argument);
  EXPECT_THROW(make([](BackoffOptions& o) { o.multiplier = std::nan(""); }), std::invalid_argument);
  EXPECT_THROW(make([](BackoffOptions& o) { o.jitter_fraction = -0.1; }), std::invalid_argument);
  EXPECT_THROW(make([](BackoffOptions& o) { o.jitter_fraction = 1.5; }), std::invalid_argument);
  EXPECT_THROW(make([](BackoffOptions& o) { o.jitter_fraction = std::nan(""); }),
               std::invalid_argument);
  EXPECT_THROW(make([](BackoffOptions& o) { o.kind = static_cast<BackoffKind>(42); }),
               std::invalid_argument);
  EXPECT_THROW(make([](BackoffOptions& o) { o.jitter = static_cast<Jitter>(42); }),
               std::invalid_argument);
  EXPECT_NO_THROW(make([](BackoffOptions& o) { o.max = o.base; }));
  EXPECT_NO_THROW(make([](BackoffOptions& o) { o.jitter_fraction = 1.0; }));
}

TEST(BackoffTest, ErrorMessageNamesTheOption) {
  BackoffOptions o;
  o.max = 1ms;
  try {
    Backoff b(o);
    FAIL() << "expected std::invalid_argument";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("max"), std::string::npos) << e.what();
  }
}

TEST(BackoffTest, DefaultsMatchTheDocumentation) {
  Backoff b;
  EXPECT_EQ(b.options().kind, BackoffKind::exponential);
  EXPECT_EQ(b.options().base, 25ms);
  EXPECT_EQ(b.options().max, 250ms);
  EXPECT_EQ(b.options().multiplier, 2.0);
  EXPECT_EQ(b.options().jitter, Jitter::full);
  EXPECT_EQ(b.options().jitter_fraction, 0.2);
  EXPECT_EQ(to_string(BackoffKind::fibonacci), "fibonacci");
  EXPECT_EQ(to_string(Jitter::proportional), "proportional");
}

}  // namespace
}  // namespace bulwark::retry
