#include <gtest/gtest.h>

#include <algorithm>
#include <set>
#include <thread>
#include <vector>

#include "bulwark/core/clock.h"
#include "bulwark/core/deadline.h"
#include "bulwark/core/error.h"
#include "bulwark/core/function_ref.h"
#include "bulwark/core/random.h"
#include "bulwark/core/striped_counter.h"

namespace bulwark {
namespace {

using namespace std::chrono_literals;

TEST(SystemClock, IsMonotonic) {
  auto& clock = SystemClock::instance();
  TimePoint prev = clock.now();
  for (int i = 0; i < 1000; ++i) {
    const TimePoint t = clock.now();
    ASSERT_GE(t, prev);
    prev = t;
  }
}

TEST(SaturatingAdd, ClampsAtMax) {
  EXPECT_EQ(saturating_add(kTimePointMax - 1ns, 10s), kTimePointMax);
  EXPECT_EQ(saturating_add(TimePoint(5s), 1s), TimePoint(6s));
  EXPECT_EQ(saturating_add(TimePoint(5s), Duration::max()), kTimePointMax);
}

TEST(Deadline, NeverIsNeverExpired) {
  const Deadline d = Deadline::never();
  EXPECT_TRUE(d.is_never());
  EXPECT_FALSE(d.expired(kTimePointMax - 1ns));
  EXPECT_EQ(d.remaining(TimePoint(1s)), Duration::max());
  EXPECT_EQ(d.clamp(TimePoint(1s), 250ms), 250ms);
  EXPECT_EQ(Deadline(), Deadline::never());
}

TEST(Deadline, RemainingAndExpiry) {
  const TimePoint t0(100s);
  const Deadline d = Deadline::after(t0, 2s);
  EXPECT_EQ(d.time(), t0 + 2s);
  EXPECT_EQ(d.remaining(t0), 2s);
  EXPECT_EQ(d.remaining(t0 + 1500ms), 500ms);
  EXPECT_FALSE(d.expired(t0 + 1999ms));
  EXPECT_TRUE(d.expired(t0 + 2s));  // expiry is inclusive: at the deadline no time is left
  EXPECT_EQ(d.remaining(t0 + 5s), 0ns);
}

TEST(Deadline, ClampGivesPerTryTimeout) {
  const TimePoint t0(100s);
  const Deadline d = Deadline::after(t0, 2s);
  EXPECT_EQ(d.clamp(t0, 500ms), 500ms);           // per-try shorter than what is left
  EXPECT_EQ(d.clamp(t0 + 1800ms, 500ms), 200ms);  // deadline shorter than per-try
  EXPECT_EQ(d.clamp(t0 + 3s, 500ms), 0ns);
}

TEST(Deadline, NegativeTimeoutIsAlreadyExpiredAndAfterSaturates) {
  const TimePoint t0(100s);
  EXPECT_TRUE(Deadline::after(t0, -1s).expired(t0));
  EXPECT_TRUE(Deadline::after(t0, Duration::max()).is_never());
}

TEST(Deadline, EarliestPicksTheSooner) {
  const TimePoint t0(100s);
  const Deadline a = Deadline::after(t0, 1s);
  const Deadline b = Deadline::after(t0, 2s);
  EXPECT_EQ(earliest(a, b), a);
  EXPECT_EQ(earliest(b, a), a);
  EXPECT_EQ(earliest(Deadline::never(), b), b);
}

TEST(Random, SameSeedSameSequence) {
  Random a(42), b(42), c(43);
  bool differs = false;
  for (int i = 0; i < 100; ++i) {
    const uint64_t x = a.next_u64();
    EXPECT_EQ(x, b.next_u64());
    differs |= x != c.next_u64();
  }
  EXPECT_TRUE(differs);
}

TEST(Random, UniformBoundsAreInclusiveAndCovered) {
  Random rng(7);
  std::set<int64_t> seen;
  for (int i = 0; i < 10000; ++i) {
    const Duration d = rng.uniform(10ns, 20ns);
    ASSERT_GE(d, 10ns);
    ASSERT_LE(d, 20ns);
    seen.insert(d.count());
  }
  EXPECT_EQ(seen.size(), 11u);  // every value from 10 to 20 appears
  EXPECT_EQ(rng.uniform(5ms, 5ms), 5ms);
  EXPECT_EQ(rng.uniform(5ms, 1ms), 5ms);  // hi < lo returns lo
}

TEST(Random, Uniform01MeanIsAboutHalf) {
  Random rng(1);
  double sum = 0;
  constexpr int kN = 200000;
  for (int i = 0; i < kN; ++i) {
    const double u = rng.uniform01();
    ASSERT_GE(u, 0.0);
    ASSERT_LT(u, 1.0);
    sum += u;
  }
  EXPECT_NEAR(sum / kN, 0.5, 0.005);
}

TEST(Random, BelowStaysBelow) {
  Random rng(3);
  EXPECT_EQ(rng.below(0), 0u);
  EXPECT_EQ(rng.below(1), 0u);
  for (int i = 0; i < 1000; ++i) ASSERT_LT(rng.below(3), 3u);
}

TEST(Errc, CategoryAndNames) {
  const boost::system::error_code ec = errc::circuit_open;
  EXPECT_EQ(&ec.category(), &bulwark_category());
  EXPECT_STREQ(ec.category().name(), "bulwark");
  EXPECT_EQ(ec.message(), "circuit_open");
  EXPECT_TRUE(ec == errc::circuit_open);
  EXPECT_FALSE(ec == errc::timeout);
  EXPECT_EQ(to_string(errc::budget_exhausted), "budget_exhausted");
  EXPECT_EQ(to_string(static_cast<errc>(999)), "unknown");
}

TEST(Errc, ResultCarriesValueOrError) {
  Result<int> ok = 5;
  Result<int> bad = make_error_code(errc::timeout);
  ASSERT_TRUE(ok);
  EXPECT_EQ(*ok, 5);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error(), errc::timeout);
  EXPECT_THROW((void)bad.value(), boost::system::system_error);
}

TEST(Outcome, FinalAndBreakerFailure) {
  EXPECT_FALSE(is_final(Outcome::retryable_failure));
  EXPECT_TRUE(is_final(Outcome::success));
  EXPECT_TRUE(is_final(Outcome::final_failure));
  EXPECT_TRUE(is_final(Outcome::caller_error));
  EXPECT_TRUE(is_breaker_failure(Outcome::retryable_failure));
  EXPECT_TRUE(is_breaker_failure(Outcome::final_failure));
  EXPECT_FALSE(is_breaker_failure(Outcome::caller_error));
  EXPECT_FALSE(is_breaker_failure(Outcome::success));
  EXPECT_EQ(to_string(Outcome::caller_error), "caller_error");
}

TEST(FunctionRef, CallsWithoutCopying) {
  int calls = 0;
  auto add = [&calls](int x) {
    calls += x;
    return calls;
  };
  FunctionRef<int(int)> ref = add;
  EXPECT_EQ(ref(2), 2);
  EXPECT_EQ(ref(3), 5);
  EXPECT_EQ(calls, 5);
}

TEST(StripedCounter, ConcurrentAddsSumExactly) {
  StripedCounter counter;
  constexpr int kThreads = 4;
  constexpr int kPerThread = 100000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kPerThread; ++i) counter.add();
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(counter.value(), uint64_t{kThreads} * kPerThread);
  counter.add(10);
  EXPECT_EQ(counter.value(), uint64_t{kThreads} * kPerThread + 10);
}

}  // namespace
}  // namespace bulwark
