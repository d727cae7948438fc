#include "bulwark/retry/retry_budget.h"

#include <gtest/gtest.h>

#include <atomic>
#include <barrier>
#include <chrono>
#include <cmath>
#include <memory>
#include <stdexcept>
#include <thread>
#include <vector>

#include "bulwark/testing/manual_clock.h"

namespace bulwark::retry {
namespace {

using namespace std::chrono_literals;
using bulwark::testing::ManualClock;

RetryBudgetOptions opts(double ratio, double min_per_second, Duration window = 10s) {
  RetryBudgetOptions o;
  o.ratio = ratio;
  o.min_per_second = min_per_second;
  o.window = window;
  return o;
}

// Withdraws until denied; returns how many were granted.
int drain(RetryBudget& budget, TimePoint now, int limit = 1'000'000) {
  int granted = 0;
  while (granted < limit && budget.try_withdraw(now)) ++granted;
  return granted;
}

TEST(RetryBudgetTest, MinPerSecondIsAFloorWithoutTraffic) {
  ManualClock clock;
  RetryBudget budget;  // 0.2, 10/s, 10s -> floor of 100 retries per window
  EXPECT_EQ(drain(budget, clock.now()), 100);
  EXPECT_FALSE(budget.try_withdraw(clock.now()));
  EXPECT_EQ(budget.exhausted_total(), 2u);
}

TEST(RetryBudgetTest, RatioOfRequestsInTheWindow) {
  ManualClock clock;
  RetryBudget budget(opts(0.2, 0));
  for (int i = 0; i < 50; ++i) budget.record_request(clock.now());
  EXPECT_EQ(drain(budget, clock.now()), 10);
  for (int i = 0; i < 5; ++i) budget.record_request(clock.now());
  EXPECT_EQ(drain(budget, clock.now()), 1);  // 55 * 0.2 = 11
}

TEST(RetryBudgetTest, AllowedIsRatioTimesRequestsPlusFloor) {
  ManualClock clock;
  RetryBudget budget(opts(0.5, 2));  // floor 2/s * 10s = 20
  for (int i = 0; i < 30; ++i) budget.record_request(clock.now());
  auto s = budget.snapshot(clock.now());
  EXPECT_EQ(s.requests, 30u);
  EXPECT_EQ(s.retries, 0u);
  EXPECT_DOUBLE_EQ(s.allowed, 0.5 * 30 + 20);
  EXPECT_EQ(drain(budget, clock.now()), 35);
  s = budget.snapshot(clock.now());
  EXPECT_EQ(s.retries, 35u);
  EXPECT_EQ(budget.exhausted_total(), 1u);
}

TEST(RetryBudgetTest, FractionalAllowanceRoundsDown) {
  ManualClock clock;
  RetryBudget budget(opts(0.2, 0));
  for (int i = 0; i < 14; ++i) budget.record_request(clock.now());  // 2.8 allowed
  EXPECT_EQ(drain(budget, clock.now()), 2);
}

TEST(RetryBudgetTest, FloatingPointRoundingDoesNotLoseARetry) {
  ManualClock clock;
  RetryBudget budget(opts(0.29, 0));
  for (int i = 0; i < 100; ++i) budget.record_request(clock.now());
  ASSERT_LT(0.29 * 100, 29.0);  // the binary product is just below 29
  EXPECT_EQ(drain(budget, clock.now()), 29);
}

TEST(RetryBudgetTest, ZeroBudgetAllowsNothing) {
  ManualClock clock;
  RetryBudget budget(opts(0, 0));
  budget.record_request(clock.now());
  EXPECT_FALSE(budget.try_withdraw(clock.now()));
  EXPECT_EQ(budget.exhausted_total(), 1u);
}

TEST(RetryBudgetTest, ExhaustedBudgetRefillsAfterTheWindowSlides) {
  ManualClock clock;
  RetryBudget budget(opts(0.2, 1));  // floor 10
  EXPECT_EQ(drain(budget, clock.now()), 10);
  clock.advance(5s);
  EXPECT_FALSE(budget.try_withdraw(clock.now()));  // the retries are still in the window
  clock.advance(5s);
  EXPECT_EQ(drain(budget, clock.now()), 10);  // they aged out
}

TEST(RetryBudgetTest, RetriesAgeOutOneBucketAtATime) {
  ManualClock clock;               // starts at 24h: a bucket boundary
  RetryBudget budget(opts(0, 1));  // floor 10 per 10s window, 1s buckets
  ASSERT_EQ(budget.bucket_width(), 1s);
  // 3 retries in bucket 0, 7 in bucket 4.
  EXPECT_EQ(drain(budget, clock.now(), 3), 3);
  clock.advance(4s);
  EXPECT_EQ(drain(budget, clock.now()), 7);
  // Bucket 0 leaves the window exactly when the clock reaches bucket 10.
  clock.advance(6s - 1ns);
  EXPECT_EQ(budget.snapshot(clock.now()).retries, 10u);
  EXPECT_FALSE(budget.try_withdraw(clock.now()));
  clock.advance(1ns);
  EXPECT_EQ(budget.snapshot(clock.now()).retries, 7u);
  EXPECT_EQ(drain(budget, clock.now()), 3);
  // Bucket 4 leaves at bucket 14.
  clock.advance(4s);
  EXPECT_EQ(budget.snapshot(clock.now()).retries, 3u);
  EXPECT_EQ(drain(budget, clock.now()), 7);
}

TEST(RetryBudgetTest, RequestsAgeOutAndShrinkTheBudget) {
  ManualClock clock;
  RetryBudget budget(opts(1.0, 0));
  for (int i = 0; i < 40; ++i) budget.record_request(clock.now());
  clock.advance(3s);
  for (int i = 0; i < 60; ++i) budget.record_request(clock.now());
  EXPECT_EQ(budget.snapshot(clock.now()).requests, 100u);
  clock.advance(7s);  // the first 40 leave
  EXPECT_EQ(budget.snapshot(clock.now()).requests, 60u);
  EXPECT_EQ(drain(budget, clock.now()), 60);
  clock.advance(3s);  // the other 60 leave; the retries granted at 10s stay
  const auto s = budget.snapshot(clock.now());
  EXPECT_EQ(s.requests, 0u);
  EXPECT_EQ(s.retries, 60u);
  EXPECT_DOUBLE_EQ(s.allowed, 0.0);
  EXPECT_FALSE(budget.try_withdraw(clock.now()));
}

TEST(RetryBudgetTest, StaleBucketIsResetNotAddedTo) {
  ManualClock clock;
  RetryBudget budget(opts(1.0, 0));
  for (int i = 0; i < 5; ++i) budget.record_request(clock.now());
  clock.advance(10s);  // same slot, next lap
  budget.record_request(clock.now());
  EXPECT_EQ(budget.snapshot(clock.now()).requests, 1u);
  clock.advance(1h);  // long idle: everything is stale
  EXPECT_EQ(budget.snapshot(clock.now()).requests, 0u);
}

TEST(RetryBudgetTest, NonRoundWindowUsesItsOwnLength) {
  ManualClock clock;
  RetryBudget budget(opts(0, 2, 15s));  // floor 30, buckets of 1.5s
  EXPECT_EQ(budget.bucket_width(), 1500ms);
  EXPECT_DOUBLE_EQ(budget.snapshot(clock.now()).allowed, 30.0);
  EXPECT_EQ(drain(budget, clock.now()), 30);
}

TEST(RetryBudgetTest, LaterBucketIsNotCountedBeforeItsTime) {
  ManualClock clock;
  RetryBudget budget(opts(1.0, 0));
  // Another thread, slightly ahead, recorded into the next bucket.
  budget.record_request(clock.now() + 1s);
  EXPECT_EQ(budget.snapshot(clock.now()).requests, 0u);
  EXPECT_EQ(budget.snapshot(clock.now() + 1s).requests, 1u);
}

TEST(RetryBudgetTest, RejectsInvalidOptions) {
  EXPECT_THROW(RetryBudget(opts(-0.1, 10)), std::invalid_argument);
  EXPECT_THROW(RetryBudget(opts(std::nan(""), 10)), std::invalid_argument);
  EXPECT_THROW(RetryBudget(opts(INFINITY, 10)), std::invalid_argument);
  EXPECT_THROW(RetryBudget(opts(0.2, -1)), std::invalid_argument);
  EXPECT_THROW(RetryBudget(opts(0.2, INFINITY)), std::invalid_argument);
  EXPECT_THROW(RetryBudget(opts(0.2, 10, 9ms)), std::invalid_argument);
  EXPECT_THROW(RetryBudget(opts(0.2, 10, -1s)), std::invalid_argument);
  EXPECT_NO_THROW(RetryBudget(opts(0, 0, 10ms)));
}

TEST(RetryBudgetTest, DefaultsMatchTheDocumentation) {
  RetryBudget budget;
  EXPECT_EQ(budget.options().ratio, 0.2);
  EXPECT_EQ(budget.options().min_per_second, 10);
  EXPECT_EQ(budget.options().window, 10s);
  EXPECT_EQ(budget.bucket_width(), 1s);
}

// With time standing still, concurrent withdrawals grant exactly `allowed` in total.
TEST(RetryBudgetTest, ConcurrentWithdrawalsAreExact) {
  ManualClock clock;
  RetryBudget budget;  // 0.2 * 500 + 100 = 200
  const TimePoint now = clock.now();
  for (int i = 0; i < 500; ++i) budget.record_request(now);

  constexpr int kThreads = 4;
  constexpr int kTriesPerThread = 20'000;
  std::atomic<int> granted{0};
  std::atomic<bool> go{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      while (!go.load(std::memory_order_acquire)) {
      }
      int mine = 0;
      for (int i = 0; i < kTriesPerThread; ++i) mine += budget.try_withdraw(now);
      granted.fetch_add(mine);
    });
  }
  go.store(true, std::memory_order_release);
  for (auto& t : threads) t.join();

  EXPECT_EQ(granted.load(), 200);
  EXPECT_EQ(budget.snapshot(now).retries, 200u);
  EXPECT_EQ(budget.exhausted_total(), uint64_t{kThreads} * kTriesPerThread - 200);
}

// The same race repeated many times from a common start line, so that the threads collide
// right at the moment the budget runs out (where a check-then-increment would over-grant).
TEST(RetryBudgetTest, ConcurrentWithdrawalsAreExactAtTheBoundary) {
  ManualClock clock;
  const TimePoint now = clock.now();
  constexpr int kWorkers = 3;
  constexpr int kRounds = 5000;
  constexpr int kTriesPerWorker = 40;  // 120 tries for 50 allowed retries
  std::unique_ptr<RetryBudget> budget;
  std::atomic<int> granted{0};
  std::barrier sync(kWorkers + 1);
  std::vector<std::thread> workers;
  for (int t = 0; t < kWorkers; ++t) {
    workers.emplace_back([&] {
      for (int round = 0; round < kRounds; ++round) {
        sync.arrive_and_wait();  // start line: `budget` is ready
        int mine = 0;
        for (int i = 0; i < kTriesPerWorker; ++i) mine += budget->try_withdraw(now);
        granted.fetch_add(mine, std::memory_order_relaxed);
        sync.arrive_and_wait();  // finish line
      }
    });
  }
  int wrong_rounds = 0;
  for (int round = 0; round < kRounds; ++round) {
    budget = std::make_unique<RetryBudget>(opts(0, 5));  // 50 per window
    granted.store(0, std::memory_order_relaxed);
    sync.arrive_and_wait();
    sync.arrive_and_wait();
    wrong_rounds += granted.load(std::memory_order_relaxed) != 50;
  }
  for (auto& t : workers) t.join();
  EXPECT_EQ(wrong_rounds, 0);
}

// Requests recorded while others withdraw: never more than allowed, and nothing lost.
TEST(RetryBudgetTest, ConcurrentRecordAndWithdrawNeverOvergrant) {
  ManualClock clock;
  RetryBudget budget(opts(0.25, 0));
  const TimePoint now = clock.now();

  constexpr int kRequestsPerThread = 40'000;
  std::atomic<int> granted{0};
  std::atomic<bool> go{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([&] {
      while (!go.load(std::memory_order_acquire)) {
      }
      int mine = 0;
      for (int i = 0; i < kRequestsPerThread; ++i) {
        budget.record_request(now);
        mine += budget.try_withdraw(now);
      }
      granted.fetch_add(mine);
    });
  }
  go.store(true, std::memory_order_release);
  for (auto& t : threads) t.join();

  const int total_requests = 2 * kRequestsPerThread;
  EXPECT_EQ(budget.snapshot(now).requests, uint64_t{total_requests});
  EXPECT_LE(granted.load(), total_requests / 4);
  // What was not granted during the race is still there to be withdrawn.
  EXPECT_EQ(granted.load() + drain(budget, now), total_requests / 4);
}

}  // namespace
}  // namespace bulwark::retry
