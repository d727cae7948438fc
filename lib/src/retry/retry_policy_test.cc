#include "bulwark/retry/retry_policy.h"

#include <gtest/gtest.h>

#include <chrono>
#include <stdexcept>
#include <vector>

#include "bulwark/testing/manual_clock.h"

namespace bulwark::retry {
namespace {

using namespace std::chrono_literals;
using bulwark::testing::ManualClock;
using bulwark::testing::seeded_random;

// Exponential 25ms x2 up to 250ms without jitter, so delays are exact.
RetryOptions exact(uint32_t max_attempts = 3) {
  RetryOptions o;
  o.max_attempts = max_attempts;
  o.backoff.jitter = Jitter::none;
  return o;
}

TEST(RetryPolicyTest, MaxAttemptsCountsTheFirstCall) {
  ManualClock clock;
  Random rng = seeded_random();
  RetryPolicy policy(exact(3));
  auto a = policy.start(clock.now());
  EXPECT_EQ(a.attempt(), 1u);

  auto d = a.on_outcome(Outcome::retryable_failure, clock.now(), rng);
  EXPECT_EQ(d.action, RetryAction::retry);
  EXPECT_EQ(d.delay, 25ms);
  EXPECT_EQ(a.attempt(), 2u);

  d = a.on_outcome(Outcome::retryable_failure, clock.now(), rng);
  EXPECT_EQ(d.action, RetryAction::retry);
  EXPECT_EQ(d.delay, 50ms);
  EXPECT_EQ(a.attempt(), 3u);

  d = a.on_outcome(Outcome::retryable_failure, clock.now(), rng);
  EXPECT_EQ(d.action, RetryAction::stop);
  EXPECT_EQ(d.reason, errc::retries_exhausted);
  EXPECT_EQ(a.attempt(), 3u);
  EXPECT_TRUE(a.finished());
}

TEST(RetryPolicyTest, OneAttemptMeansNoRetries) {
  ManualClock clock;
  Random rng = seeded_random();
  RetryPolicy policy(exact(1));
  auto a = policy.start(clock.now());
  const auto d = a.on_outcome(Outcome::retryable_failure, clock.now(), rng);
  EXPECT_EQ(d.action, RetryAction::stop);
  EXPECT_EQ(d.reason, errc::retries_exhausted);
}

TEST(RetryPolicyTest, NonRetryableOutcomesAreDone) {
  ManualClock clock;
  Random rng = seeded_random();
  RetryPolicy policy(exact());
  for (Outcome o : {Outcome::success, Outcome::caller_error, Outcome::final_failure}) {
    auto a = policy.start(clock.now());
    const auto d = a.on_outcome(o, clock.now(), rng);
    EXPECT_EQ(d.action, RetryAction::done) << to_string(o);
    EXPECT_EQ(a.attempt(), 1u);
    EXPECT_TRUE(a.finished());
  }
}

TEST(RetryPolicyTest, SuccessAfterARetryIsDone) {
  ManualClock clock;
  Random rng = seeded_random();
  RetryPolicy policy(exact());
  auto a = policy.start(clock.now());
  EXPECT_EQ(a.on_outcome(Outcome::retryable_failure, clock.now(), rng).action, RetryAction::retry);
  EXPECT_EQ(a.on_outcome(Outcome::success, clock.now(), rng).action, RetryAction::done);
  EXPECT_EQ(a.attempt(), 2u);
}

TEST(RetryPolicyTest, DelaysFollowTheBackoffWithTheSameRandomSequence) {
  ManualClock clock;
  RetryOptions o;  // full jitter
  o.max_attempts = 6;
  RetryPolicy policy(o);
  Backoff reference(o.backoff);
  Random rng(1234), ref_rng(1234);
  auto a = policy.start(clock.now());
  Duration prev = Duration::zero();
  for (uint32_t retry = 1; retry <= 5; ++retry) {
    const auto d = a.on_outcome(Outcome::retryable_failure, clock.now(), rng);
    ASSERT_EQ(d.action, RetryAction::retry);
    prev = reference.delay(retry, prev, ref_rng);
    EXPECT_EQ(d.delay, prev) << "retry " << retry;
  }
}

TEST(RetryPolicyTest, DecorrelatedBackoffSeesThePreviousDelay) {
  ManualClock clock;
  RetryOptions o;
  o.max_attempts = 50;
  o.backoff.kind = BackoffKind::decorrelated;
  o.backoff.base = 1ms;
  o.backoff.max = 10s;
  RetryPolicy policy(o);
  Random rng = seeded_random();
  auto a = policy.start(clock.now());
  Duration prev = 1ms;
  for (int i = 0; i < 40; ++i) {
    const auto d = a.on_outcome(Outcome::retryable_failure, clock.now(), rng);
    ASSERT_EQ(d.action, RetryAction::retry);
    EXPECT_GE(d.delay, 1ms);
    EXPECT_LE(d.delay, 3 * prev);
    prev = d.delay;
  }
}

TEST(RetryPolicyTest, DeadlineShorterThanBackoffStopsWithoutSleeping) {
  ManualClock clock;
  Random rng = seeded_random();
  RetryPolicy policy(exact());
  auto a = policy.start(clock.now(), Deadline::after(clock.now(), 20ms));
  const auto d = a.on_outcome(Outcome::retryable_failure, clock.now(), rng);  // backoff 25ms
  EXPECT_EQ(d.action, RetryAction::stop);
  EXPECT_EQ(d.reason, errc::deadline_exceeded);
  EXPECT_EQ(a.attempt(), 1u);
}

TEST(RetryPolicyTest, BackoffMustLeaveMinPerTryBeforeTheDeadline) {
  ManualClock clock;
  Random rng = seeded_random();
  RetryOptions o = exact();
  o.min_per_try = 5ms;
  RetryPolicy policy(o);

  // remaining 30ms: 25ms backoff leaves exactly 5ms -> retry.
  auto a = policy.start(clock.now(), Deadline::after(clock.now(), 30ms));
  auto d = a.on_outcome(Outcome::retryable_failure, clock.now(), rng);
  EXPECT_EQ(d.action, RetryAction::retry);
  EXPECT_EQ(d.delay, 25ms);

  // remaining 30ms - 1ns: it would leave less than 5ms -> stop now.
  auto b = policy.start(clock.now(), Deadline::after(clock.now(), 30ms - 1ns));
  d = b.on_outcome(Outcome::retryable_failure, clock.now(), rng);
  EXPECT_EQ(d.action, RetryAction::stop);
  EXPECT_EQ(d.reason, errc::deadline_exceeded);
}

TEST(RetryPolicyTest, DeadlineStopsALaterRetry) {
  ManualClock clock;
  Random rng = seeded_random();
  RetryPolicy policy(exact(5));
  auto a = policy.start(clock.now(), Deadline::after(clock.now(), 100ms));
  auto d = a.on_outcome(Outcome::retryable_failure, clock.now(), rng);
  ASSERT_EQ(d.action, RetryAction::retry);  // 25ms
  clock.advance(d.delay + 10ms);            // the second attempt took 10ms; 65ms left
  ASSERT_TRUE(a.may_start(clock.now()));
  d = a.on_outcome(Outcome::retryable_failure, clock.now(), rng);
  ASSERT_EQ(d.action, RetryAction::retry);                         // 50ms, leaves 15ms
  clock.advance(d.delay + 10ms);                                   // 5ms left
  d = a.on_outcome(Outcome::retryable_failure, clock.now(), rng);  // 100ms > 5ms
  EXPECT_EQ(d.action, RetryAction::stop);
  EXPECT_EQ(d.reason, errc::deadline_exceeded);
}

TEST(RetryPolicyTest, MayStartNeedsMinPerTryLeft) {
  ManualClock clock;
  RetryOptions o;
  o.min_per_try = 2ms;
  RetryPolicy policy(o);
  auto a = policy.start(clock.now(), Deadline::after(clock.now(), 10ms));
  EXPECT_TRUE(a.may_start(clock.now()));
  clock.advance(8ms);  // exactly 2ms left
  EXPECT_TRUE(a.may_start(clock.now()));
  clock.advance(1ns);
  EXPECT_FALSE(a.may_start(clock.now()));
  clock.advance(1h);
  EXPECT_FALSE(a.may_start(clock.now()));

  auto never = policy.start(clock.now());
  EXPECT_TRUE(never.may_start(clock.now() + 1000h));
}

TEST(RetryPolicyTest, PerTryTimeoutIsClampedByTheDeadline) {
  ManualClock clock;
  RetryOptions o;
  o.per_try_timeout = 100ms;
  RetryPolicy policy(o);
  auto a = policy.start(clock.now(), Deadline::after(clock.now(), 250ms));
  EXPECT_EQ(a.per_try_timeout(clock.now()), 100ms);
  clock.advance(200ms);
  EXPECT_EQ(a.per_try_timeout(clock.now()), 50ms);
  clock.advance(1s);
  EXPECT_EQ(a.per_try_timeout(clock.now()), 0ms);
  EXPECT_EQ(a.deadline(), Deadline::after(clock.now() - 1200ms, 250ms));

  auto unbounded = policy.start(clock.now());
  EXPECT_EQ(unbounded.per_try_timeout(clock.now()), 100ms);
  RetryPolicy defaults;
  EXPECT_EQ(defaults.start(clock.now()).per_try_timeout(clock.now()), Duration::max());
}

TEST(RetryPolicyTest, RetryAfterReplacesTheBackoffAndIsCapped) {
  ManualClock clock;
  Random rng = seeded_random();
  RetryOptions o = exact(5);
  o.max_retry_after = 2s;
  RetryPolicy policy(o);
  auto a = policy.start(clock.now());
  auto d = a.on_outcome(Outcome::retryable_failure, clock.now(), rng, 700ms);
  EXPECT_EQ(d.action, RetryAction::retry);
  EXPECT_EQ(d.delay, 700ms);
  d = a.on_outcome(Outcome::retryable_failure, clock.now(), rng, 120s);
  EXPECT_EQ(d.delay, 2s);
  d = a.on_outcome(Outcome::retryable_failure, clock.now(), rng, -5s);
  EXPECT_EQ(d.delay, 0s);
  // Without a hint, the backoff continues where it is: retry 4 -> 25ms * 2^3.
  d = a.on_outcome(Outcome::retryable_failure, clock.now(), rng);
  EXPECT_EQ(d.delay, 200ms);
}

TEST(RetryPolicyTest, RetryAfterIgnoredWhenNotHonoured) {
  ManualClock clock;
  Random rng = seeded_random();
  RetryOptions o = exact();
  o.honour_retry_after = false;
  RetryPolicy policy(o);
  auto a = policy.start(clock.now());
  const auto d = a.on_outcome(Outcome::retryable_failure, clock.now(), rng, 10s);
  EXPECT_EQ(d.delay, 25ms);
}

TEST(RetryPolicyTest, RetryAfterBeyondTheDeadlineStops) {
  ManualClock clock;
  Random rng = seeded_random();
  RetryPolicy policy(exact());
  auto a = policy.start(clock.now(), Deadline::after(clock.now(), 5s));
  const auto d = a.on_outcome(Outcome::retryable_failure, clock.now(), rng, 10s);
  EXPECT_EQ(d.action, RetryAction::stop);
  EXPECT_EQ(d.reason, errc::deadline_exceeded);
}

TEST(RetryPolicyTest, StartRecordsARequestAndRetriesWithdraw) {
  ManualClock clock;
  Random rng = seeded_random();
  RetryBudget budget;
  RetryPolicy policy(exact());
  auto a = policy.start(clock.now(), Deadline::never(), &budget);
  EXPECT_EQ(budget.snapshot(clock.now()).requests, 1u);
  EXPECT_EQ(a.on_outcome(Outcome::retryable_failure, clock.now(), rng).action, RetryAction::retry);
  EXPECT_EQ(budget.snapshot(clock.now()).retries, 1u);
  EXPECT_EQ(a.on_outcome(Outcome::success, clock.now(), rng).action, RetryAction::done);
  EXPECT_EQ(budget.snapshot(clock.now()).retries, 1u);
}

TEST(RetryPolicyTest, ExhaustedBudgetStopsRetries) {
  ManualClock clock;
  Random rng = seeded_random();
  RetryBudgetOptions bo;
  bo.ratio = 0.5;
  bo.min_per_second = 0;
  RetryBudget budget(bo);
  RetryPolicy policy(exact(10));
  auto a = policy.start(clock.now(), Deadline::never(), &budget);  // 1 request
  auto b = policy.start(clock.now(), Deadline::never(), &budget);  // 2 requests -> 1 retry
  EXPECT_EQ(a.on_outcome(Outcome::retryable_failure, clock.now(), rng).action, RetryAction::retry);
  const auto d = b.on_outcome(Outcome::retryable_failure, clock.now(), rng);
  EXPECT_EQ(d.action, RetryAction::stop);
  EXPECT_EQ(d.reason, errc::budget_exhausted);
  EXPECT_EQ(budget.exhausted_total(), 1u);
}

TEST(RetryPolicyTest, BudgetIsNotSpentOnRetriesThatWouldNotHappen) {
  ManualClock clock;
  Random rng = seeded_random();
  RetryBudget budget;
  RetryPolicy policy(exact(1));
  auto a = policy.start(clock.now(), Deadline::never(), &budget);
  EXPECT_EQ(a.on_outcome(Outcome::retryable_failure, clock.now(), rng).reason,
            errc::retries_exhausted);
  RetryPolicy three(exact(3));
  auto b = three.start(clock.now(), Deadline::after(clock.now(), 1ms), &budget);
  EXPECT_EQ(b.on_outcome(Outcome::retryable_failure, clock.now(), rng).reason,
            errc::deadline_exceeded);
  EXPECT_EQ(budget.snapshot(clock.now()).retries, 0u);
  EXPECT_EQ(budget.exhausted_total(), 0u);
}

TEST(RetryPolicyTest, FinishedCallRepeatsItsDecision) {
  ManualClock clock;
  Random rng = seeded_random();
  RetryBudget budget;
  RetryPolicy policy(exact(2));
  auto a = policy.start(clock.now(), Deadline::never(), &budget);
  ASSERT_EQ(a.on_outcome(Outcome::retryable_failure, clock.now(), rng).action, RetryAction::retry);
  ASSERT_EQ(a.on_outcome(Outcome::retryable_failure, clock.now(), rng).reason,
            errc::retries_exhausted);
  const auto again = a.on_outcome(Outcome::retryable_failure, clock.now(), rng);
  EXPECT_EQ(again.action, RetryAction::stop);
  EXPECT_EQ(again.reason, errc::retries_exhausted);
  EXPECT_EQ(a.attempt(), 2u);
  EXPECT_EQ(budget.snapshot(clock.now()).retries, 1u);
}

// A synchronous loop as an adapter would write it: the ManualClock's sleep_for advances time,
// so the test knows exactly how long the loop waited.
TEST(RetryPolicyTest, SynchronousLoopWaitsTheDecidedDelays) {
  ManualClock clock;
  Random rng = seeded_random();
  RetryPolicy policy(exact(4));
  const TimePoint start = clock.now();
  int calls = 0;
  auto flaky = [&] { return ++calls < 3 ? Outcome::retryable_failure : Outcome::success; };

  auto a = policy.start(clock.now(), Deadline::after(clock.now(), 1s));
  RetryDecision d{};
  while (a.may_start(clock.now())) {
    d = a.on_outcome(flaky(), clock.now(), rng);
    if (d.action != RetryAction::retry) break;
    clock.sleep_for(d.delay);
  }
  EXPECT_EQ(d.action, RetryAction::done);
  EXPECT_EQ(calls, 3);
  EXPECT_EQ(clock.now() - start, 25ms + 50ms);
}

TEST(RetryPolicyTest, RejectsInvalidOptions) {
  auto make = [](auto mutate) {
    RetryOptions o;
    mutate(o);
    return RetryPolicy(o);
  };
  EXPECT_THROW(make([](RetryOptions& o) { o.max_attempts = 0; }), std::invalid_argument);
  EXPECT_THROW(make([](RetryOptions& o) { o.per_try_timeout = 0ms; }), std::invalid_argument);
  EXPECT_THROW(make([](RetryOptions& o) { o.min_per_try = -1ms; }), std::invalid_argument);
  EXPECT_THROW(make([](RetryOptions& o) { o.max_retry_after = -1s; }), std::invalid_argument);
  EXPECT_THROW(make([](RetryOptions& o) { o.backoff.base = 0ms; }), std::invalid_argument);
  EXPECT_NO_THROW(make([](RetryOptions& o) { o.min_per_try = 0ms; }));
}

TEST(RetryPolicyTest, DefaultsMatchTheDocumentation) {
  RetryPolicy policy;
  const RetryOptions& o = policy.options();
  EXPECT_EQ(o.max_attempts, 3u);
  EXPECT_EQ(o.per_try_timeout, Duration::max());
  EXPECT_EQ(o.min_per_try, 1ms);
  EXPECT_TRUE(o.honour_retry_after);
  EXPECT_EQ(o.max_retry_after, 30s);
  EXPECT_EQ(o.backoff.base, 25ms);
  EXPECT_EQ(to_string(RetryAction::stop), "stop");
}

}  // namespace
}  // namespace bulwark::retry
