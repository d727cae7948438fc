// HedgeRun decisions on a ManualClock: when hedges start, how many, what the budget allows,
// which result wins and which failure is reported.
#include "bulwark/fallback/hedge.h"

#include <gtest/gtest.h>

#include <stdexcept>

#include "bulwark/testing/manual_clock.h"

namespace bulwark::fallback {
namespace {

using namespace std::chrono_literals;
using Kind = RaceAction::Kind;
using testing::ManualClock;

constexpr Duration k1ns = Duration(1);

TEST(HedgeRun, HedgeStartsExactlyAtTheDelay) {
  ManualClock clock;
  HedgePolicy policy({.delay = 50ms, .max_attempts = 2});
  HedgeRun run = policy.start();
  const TimePoint t0 = clock.now();
  EXPECT_EQ(run.on_start(t0), RaceAction::start(0));
  ASSERT_TRUE(run.next_hedge_at().has_value());
  EXPECT_EQ(*run.next_hedge_at(), t0 + 50ms);

  clock.advance(50ms - k1ns);
  EXPECT_EQ(run.on_timer(clock.now()), RaceAction::none());
  EXPECT_EQ(run.started(), 1u);
  clock.advance(k1ns);
  EXPECT_EQ(run.on_timer(clock.now()), RaceAction::start(1));
  EXPECT_EQ(run.started(), 2u);
  EXPECT_EQ(run.running_mask(), 0b11u);
  EXPECT_EQ(policy.stats().hedges, 1u);
}

TEST(HedgeRun, EachStartReArmsTheTimerAndMaxAttemptsIsRespected) {
  ManualClock clock;
  HedgePolicy policy({.delay = 10ms, .max_attempts = 3});
  HedgeRun run = policy.start();
  const TimePoint t0 = clock.now();
  run.on_start(t0);
  clock.advance(10ms);
  EXPECT_EQ(run.on_timer(clock.now()), RaceAction::start(1));
  EXPECT_EQ(*run.next_hedge_at(), t0 + 20ms);
  clock.advance(10ms - k1ns);
  EXPECT_EQ(run.on_timer(clock.now()), RaceAction::none());
  clock.advance(k1ns);
  EXPECT_EQ(run.on_timer(clock.now()), RaceAction::start(2));
  // Three attempts started: no timer any more, and none starts however long we wait.
  EXPECT_FALSE(run.next_hedge_at().has_value());
  clock.advance(1h);
  EXPECT_EQ(run.on_timer(clock.now()), RaceAction::none());
  EXPECT_EQ(run.started(), 3u);
}

TEST(HedgeRun, OneAttemptMeansNoHedging) {
  ManualClock clock;
  HedgeRun run({.delay = 1ms, .max_attempts = 1});
  EXPECT_EQ(run.on_start(clock.now()), RaceAction::start(0));
  EXPECT_FALSE(run.next_hedge_at().has_value());
  clock.advance(1s);
  EXPECT_EQ(run.on_timer(clock.now()), RaceAction::none());
  // A retryable failure cannot start another attempt either.
  EXPECT_EQ(run.on_result(0, Outcome::retryable_failure, clock.now()), RaceAction::finish(0));
  EXPECT_FALSE(run.answered());
}

TEST(HedgeRun, ZeroDelayStartsEveryAttemptAtOnce) {
  ManualClock clock;
  retry::RetryBudget budget;
  HedgeRun run({.delay = Duration::zero(), .max_attempts = 3}, &budget);
  const TimePoint now = clock.now();
  EXPECT_EQ(run.on_start(now), RaceAction::start(0));
  EXPECT_EQ(run.on_timer(now), RaceAction::start(1));
  EXPECT_EQ(run.on_timer(now), RaceAction::start(2));
  EXPECT_EQ(run.on_timer(now), RaceAction::none());
  EXPECT_EQ(budget.snapshot(now).retries, 2u);  // both hedges drawn from the budget
}

TEST(HedgeRun, BudgetWithNoRoomStartsNoHedge) {
  ManualClock clock;
  retry::RetryBudget budget({.ratio = 0, .min_per_second = 0});
  HedgePolicy policy({.delay = 5ms, .max_attempts = 3}, &budget);
  HedgeRun run = policy.start();
  run.on_start(clock.now());
  clock.advance(5ms);
  EXPECT_EQ(run.on_timer(clock.now()), RaceAction::none());
  EXPECT_EQ(run.started(), 1u);
  EXPECT_EQ(run.policy_reason(), errc::budget_exhausted);
  // Hedging stops for this run: no timer, no hedge later either.
  EXPECT_FALSE(run.next_hedge_at().has_value());
  clock.advance(1s);
  EXPECT_EQ(run.on_timer(clock.now()), RaceAction::none());
  EXPECT_EQ(policy.stats().budget_refused, 1u);
  EXPECT_EQ(policy.stats().hedges, 0u);
  // The first attempt still answers.
  EXPECT_EQ(run.on_result(0, Outcome::success, clock.now()), RaceAction::finish(0));
  EXPECT_TRUE(run.answered());
}

TEST(HedgeRun, BudgetCapsHedgesAcrossCalls) {
  ManualClock clock;
  // No share of traffic, a floor of 0.2/s over 10 s: exactly 2 hedges in the window.
  retry::RetryBudget budget({.ratio = 0, .min_per_second = 0.2});
  HedgePolicy policy({.delay = 1ms, .max_attempts = 2}, &budget);
  int hedged = 0;
  for (int call = 0; call < 5; ++call) {
    HedgeRun run = policy.start();
    run.on_start(clock.now());
    clock.advance(1ms);
    if (run.on_timer(clock.now()).kind == Kind::start) ++hedged;
  }
  EXPECT_EQ(hedged, 2);
  EXPECT_EQ(policy.stats().calls, 5u);
  EXPECT_EQ(policy.stats().hedges, 2u);
  EXPECT_EQ(policy.stats().budget_refused, 3u);
  EXPECT_EQ(budget.snapshot(clock.now()).requests, 5u);  // one request per call
}

TEST(HedgeRun, RequestsAreNotRecordedWhenTheAttemptsRecordThem) {
  ManualClock clock;
  retry::RetryBudget budget;
  HedgeRun run({.delay = 1ms, .record_requests = false}, &budget);
  run.on_start(clock.now());
  EXPECT_EQ(budget.snapshot(clock.now()).requests, 0u);
}

TEST(HedgeRun, FirstSuccessWinsAndLateResultsAreIgnored) {
  ManualClock clock;
  HedgePolicy policy({.delay = 10ms, .max_attempts = 3});
  HedgeRun run = policy.start();
  run.on_start(clock.now());
  clock.advance(10ms);
  ASSERT_EQ(run.on_timer(clock.now()), RaceAction::start(1));

  EXPECT_EQ(run.on_result(1, Outcome::success, clock.now()), RaceAction::finish(1));
  EXPECT_TRUE(run.done());
  EXPECT_TRUE(run.answered());
  EXPECT_EQ(run.answer(), 1u);
  EXPECT_EQ(run.running_mask(), 0b01u);  // attempt 0 is the one to cancel
  EXPECT_FALSE(run.next_hedge_at().has_value());

  // The loser's late answer, a result for an attempt never started, and the timer: all ignored.
  EXPECT_EQ(run.on_result(0, Outcome::success, clock.now()), RaceAction::none());
  EXPECT_EQ(run.on_result(2, Outcome::success, clock.now()), RaceAction::none());
  clock.advance(1h);
  EXPECT_EQ(run.on_timer(clock.now()), RaceAction::none());
  EXPECT_EQ(run.answer(), 1u);
  EXPECT_EQ(policy.stats().hedge_wins, 1u);
}

TEST(HedgeRun, ASecondResultFromTheSameAttemptIsIgnored) {
  ManualClock clock;
  HedgeRun run({.delay = 10ms, .max_attempts = 2, .hedge_on_failure = false});
  run.on_start(clock.now());
  clock.advance(10ms);
  run.on_timer(clock.now());
  EXPECT_EQ(run.on_result(0, Outcome::retryable_failure, clock.now()), RaceAction::none());
  EXPECT_EQ(run.on_result(0, Outcome::success, clock.now()), RaceAction::none());
  EXPECT_FALSE(run.done());
  EXPECT_EQ(run.on_result(1, Outcome::success, clock.now()), RaceAction::finish(1));
}

TEST(HedgeRun, CallerErrorIsAnAnswer) {
  ManualClock clock;
  HedgeRun run({.delay = 10ms});
  run.on_start(clock.now());
  EXPECT_EQ(run.on_result(0, Outcome::caller_error, clock.now()), RaceAction::finish(0));
  EXPECT_TRUE(run.answered());
}

TEST(HedgeRun, RetryableFailureStartsTheNextAttemptAtOnce) {
  ManualClock clock;
  HedgePolicy policy({.delay = 50ms, .max_attempts = 3});
  HedgeRun run = policy.start();
  const TimePoint t0 = clock.now();
  run.on_start(t0);
  clock.advance(10ms);
  EXPECT_EQ(run.on_result(0, Outcome::retryable_failure, clock.now()), RaceAction::start(1));
  // The timer now counts from the new start.
  EXPECT_EQ(*run.next_hedge_at(), t0 + 60ms);
  clock.advance(50ms);
  EXPECT_EQ(run.on_timer(clock.now()), RaceAction::start(2));
  EXPECT_EQ(policy.stats().hedges, 2u);
}

TEST(HedgeRun, WithoutHedgeOnFailureAFailureWithNothingRunningEndsTheRun) {
  ManualClock clock;
  HedgeRun run({.delay = 50ms, .max_attempts = 3, .hedge_on_failure = false});
  run.on_start(clock.now());
  clock.advance(10ms);
  EXPECT_EQ(run.on_result(0, Outcome::retryable_failure, clock.now()), RaceAction::finish(0));
  EXPECT_TRUE(run.done());
  EXPECT_FALSE(run.answered());
  EXPECT_EQ(run.started(), 1u);
}

TEST(HedgeRun, WithoutHedgeOnFailureTheOthersKeepRacing) {
  ManualClock clock;
  HedgeRun run({.delay = 10ms, .max_attempts = 3, .hedge_on_failure = false});
  run.on_start(clock.now());
  clock.advance(10ms);
  ASSERT_EQ(run.on_timer(clock.now()), RaceAction::start(1));
  EXPECT_EQ(run.on_result(0, Outcome::retryable_failure, clock.now()), RaceAction::none());
  // The timer still runs for the third attempt.
  clock.advance(10ms);
  EXPECT_EQ(run.on_timer(clock.now()), RaceAction::start(2));
}

TEST(HedgeRun, FinalFailureStartsNothingMoreButKeepsRunningAttempts) {
  ManualClock clock;
  HedgeRun run({.delay = 10ms, .max_attempts = 3});
  run.on_start(clock.now());
  clock.advance(10ms);
  ASSERT_EQ(run.on_timer(clock.now()), RaceAction::start(1));
  // The hedge is rejected outright (e.g. by an open breaker): no third attempt, but attempt 0
  // is not given up.
  EXPECT_EQ(run.on_result(1, Outcome::final_failure, clock.now()), RaceAction::none());
  EXPECT_FALSE(run.next_hedge_at().has_value());
  clock.advance(1s);
  EXPECT_EQ(run.on_timer(clock.now()), RaceAction::none());
  EXPECT_EQ(run.on_result(0, Outcome::success, clock.now()), RaceAction::finish(0));
  EXPECT_EQ(run.started(), 2u);
}

TEST(HedgeRun, FinalFailureOfTheOnlyAttemptEndsTheRun) {
  ManualClock clock;
  HedgeRun run({.delay = 10ms, .max_attempts = 3});
  run.on_start(clock.now());
  EXPECT_EQ(run.on_result(0, Outcome::final_failure, clock.now()), RaceAction::finish(0));
  EXPECT_FALSE(run.answered());
}

TEST(HedgeRun, BudgetRefusalOnFailureEndsTheRunWithThatFailure) {
  ManualClock clock;
  retry::RetryBudget budget({.ratio = 0, .min_per_second = 0});
  HedgeRun run({.delay = 10ms, .max_attempts = 3}, &budget);
  run.on_start(clock.now());
  EXPECT_EQ(run.on_result(0, Outcome::retryable_failure, clock.now()), RaceAction::finish(0));
  EXPECT_FALSE(run.answered());
  EXPECT_EQ(run.policy_reason(), errc::budget_exhausted);
}

TEST(HedgeRun, NoHedgeStartsAfterTheDeadline) {
  ManualClock clock;
  HedgeRun run({.delay = 50ms, .max_attempts = 3}, nullptr, Deadline::after(clock.now(), 30ms));
  run.on_start(clock.now());
  clock.advance(50ms);
  EXPECT_EQ(run.on_timer(clock.now()), RaceAction::none());
  EXPECT_EQ(run.policy_reason(), errc::deadline_exceeded);
  EXPECT_EQ(run.started(), 1u);
  EXPECT_FALSE(run.next_hedge_at().has_value());
}

TEST(HedgeRun, NeverOnTimeDelayHedgesOnlyOnFailure) {
  ManualClock clock;
  HedgeRun run({.delay = Duration::max(), .max_attempts = 2});
  run.on_start(clock.now());
  EXPECT_FALSE(run.next_hedge_at().has_value());
  clock.advance(24h);
  EXPECT_EQ(run.on_timer(clock.now()), RaceAction::none());
  EXPECT_EQ(run.on_result(0, Outcome::retryable_failure, clock.now()), RaceAction::start(1));
}

TEST(HedgeRun, AbortEndsWithoutAnAnswer) {
  ManualClock clock;
  HedgeRun run({.delay = 10ms, .max_attempts = 2});
  run.on_start(clock.now());
  run.abort();
  EXPECT_TRUE(run.done());
  EXPECT_FALSE(run.answer().has_value());
  EXPECT_EQ(run.running_mask(), 0b1u);  // still to be cancelled by the adapter
  EXPECT_EQ(run.on_result(0, Outcome::success, clock.now()), RaceAction::none());
  clock.advance(10ms);
  EXPECT_EQ(run.on_timer(clock.now()), RaceAction::none());
}

TEST(HedgeRun, ParallelStartsAllBranchesAtOnce) {
  ManualClock clock;
  HedgeRun run = HedgeRun::parallel(3);
  const TimePoint now = clock.now();
  EXPECT_EQ(run.on_start(now), RaceAction::start(0));
  EXPECT_EQ(run.on_timer(now), RaceAction::start(1));
  EXPECT_EQ(run.on_timer(now), RaceAction::start(2));
  EXPECT_EQ(run.on_timer(now), RaceAction::none());
  EXPECT_EQ(run.running_mask(), 0b111u);
  // A fast failure does not end the race; the next answer does.
  EXPECT_EQ(run.on_result(0, Outcome::retryable_failure, now), RaceAction::none());
  EXPECT_EQ(run.on_result(2, Outcome::success, now), RaceAction::finish(2));
  EXPECT_EQ(run.running_mask(), 0b010u);
}

// Every branch fails, in the order 2, 0, 1.
uint32_t failure_reported(FailureChoice choice) {
  ManualClock clock;
  HedgeRun run = HedgeRun::parallel(3, choice);
  const TimePoint now = clock.now();
  run.on_start(now);
  run.on_timer(now);
  run.on_timer(now);
  EXPECT_EQ(run.on_result(2, Outcome::retryable_failure, now), RaceAction::none());
  EXPECT_EQ(run.on_result(0, Outcome::final_failure, now), RaceAction::none());
  const RaceAction last = run.on_result(1, Outcome::retryable_failure, now);
  EXPECT_EQ(last.kind, Kind::finish);
  EXPECT_FALSE(run.answered());
  return last.index;
}

TEST(HedgeRun, AllFailedReportsTheChosenFailure) {
  EXPECT_EQ(failure_reported(FailureChoice::last_to_fail), 1u);
  EXPECT_EQ(failure_reported(FailureChoice::first_to_fail), 2u);
  EXPECT_EQ(failure_reported(FailureChoice::lowest_index), 0u);
}

TEST(HedgeRun, InvalidOptionsThrow) {
  EXPECT_THROW(HedgePolicy({.delay = -1ms}), std::invalid_argument);
  EXPECT_THROW(HedgePolicy({.max_attempts = 0}), std::invalid_argument);
  EXPECT_THROW(HedgePolicy({.max_attempts = 65}), std::invalid_argument);
  EXPECT_THROW(HedgeRun::parallel(0), std::invalid_argument);
  EXPECT_NO_THROW(HedgePolicy({.delay = Duration::zero(), .max_attempts = 64}));
}

TEST(HedgeRun, OnStartTwiceIsIgnored) {
  ManualClock clock;
  retry::RetryBudget budget;
  HedgeRun run({.delay = 10ms}, &budget);
  EXPECT_EQ(run.on_start(clock.now()), RaceAction::start(0));
  EXPECT_EQ(run.on_start(clock.now()), RaceAction::none());
  EXPECT_EQ(budget.snapshot(clock.now()).requests, 1u);
}

TEST(FailureChoice, Names) {
  EXPECT_EQ(to_string(FailureChoice::last_to_fail), "last_to_fail");
  EXPECT_EQ(to_string(FailureChoice::first_to_fail), "first_to_fail");
  EXPECT_EQ(to_string(FailureChoice::lowest_index), "lowest_index");
}

}  // namespace
}  // namespace bulwark::fallback
