// The synchronous sequential fallback: order, what falls back, what is returned and reported.
#include "bulwark/fallback/fallback.h"

#include <gtest/gtest.h>

#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "bulwark/circuit/circuit_breaker.h"
#include "bulwark/pipeline/pipeline.h"
#include "bulwark/testing/manual_clock.h"

namespace bulwark::fallback {
namespace {

using namespace std::chrono_literals;
using testing::ManualClock;

// Distinct errors to tell the alternatives' failures apart.
const boost::system::error_code kErrA = make_error_code(std::errc::connection_refused);
const boost::system::error_code kErrB = make_error_code(std::errc::connection_reset);
const boost::system::error_code kErrC = make_error_code(std::errc::host_unreachable);

TEST(Sequential, PrimaryAnswerSkipsTheFallbacks) {
  std::vector<int> order;
  FallbackInfo info;
  Result<int> r = sequential(
      {.info = &info},
      [&] {
        order.push_back(0);
        return 1;
      },
      [&] {
        order.push_back(1);
        return 2;
      });
  ASSERT_TRUE(r);
  EXPECT_EQ(*r, 1);
  EXPECT_EQ(order, (std::vector<int>{0}));
  EXPECT_EQ(info.answered_by, 0u);
  EXPECT_EQ(info.started, 1u);
  EXPECT_EQ(info.outcome, Outcome::success);
}

TEST(Sequential, FallsBackInOrderUntilOneAnswers) {
  std::vector<int> order;
  FallbackInfo info;
  Result<std::string> r = sequential(
      {.info = &info},
      [&]() -> Result<std::string> {
        order.push_back(0);
        return kErrA;
      },
      [&]() -> std::string {
        order.push_back(1);
        throw std::runtime_error("cache down");
      },
      [&] {
        order.push_back(2);
        return std::string("default");
      },
      [&] {
        order.push_back(3);
        return std::string("never");
      });
  ASSERT_TRUE(r);
  EXPECT_EQ(*r, "default");
  EXPECT_EQ(order, (std::vector<int>{0, 1, 2}));
  EXPECT_EQ(info.answered_by, 2u);
  EXPECT_EQ(info.started, 3u);
  EXPECT_FALSE(info.exception);  // the answer did not throw
}

TEST(Sequential, AllFailedReturnsTheLastFailureByDefault) {
  FallbackInfo info;
  Result<int> r = sequential(
      {.info = &info}, []() -> Result<int> { return kErrA; }, []() -> Result<int> { return kErrB; },
      []() -> Result<int> { return kErrC; });
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), kErrC);
  EXPECT_EQ(info.answered_by, 2u);
  EXPECT_EQ(info.outcome, Outcome::retryable_failure);
  EXPECT_EQ(info.started, 3u);
}

TEST(Sequential, ReportCanChooseThePrimaryFailure) {
  for (FailureChoice choice : {FailureChoice::first_to_fail, FailureChoice::lowest_index}) {
    FallbackInfo info;
    Result<int> r = sequential(
        {.report = choice, .info = &info}, []() -> Result<int> { return kErrA; },
        []() -> Result<int> { return kErrB; });
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error(), kErrA) << to_string(choice);
    EXPECT_EQ(info.answered_by, 0u);
    EXPECT_EQ(info.started, 2u);
  }
}

TEST(Sequential, ExceptionBecomesCallFailedAndIsKept) {
  FallbackInfo info;
  Result<int> r = sequential({.info = &info}, []() -> int { throw std::runtime_error("boom"); });
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), errc::call_failed);
  ASSERT_TRUE(info.exception);
  EXPECT_THROW(std::rethrow_exception(info.exception), std::runtime_error);
  EXPECT_EQ(info.answered_by, 0u);
}

TEST(Sequential, ExceptionFromTheLastAlternativeIsKeptNotAnEarlierOne) {
  FallbackInfo info;
  Result<int> r = sequential(
      {.info = &info}, []() -> int { throw std::runtime_error("first"); },
      []() -> Result<int> { return kErrB; });
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), kErrB);
  EXPECT_FALSE(info.exception);
}

TEST(Sequential, CallerErrorIsAnAnswerAndDoesNotFallBack) {
  int fallbacks = 0;
  auto classify = [](const Result<int>& r) {
    if (r) return Outcome::success;
    return r.error() == kErrA ? Outcome::caller_error : Outcome::retryable_failure;
  };
  FallbackInfo info;
  Result<int> r = sequential_classified(
      {.info = &info}, classify, []() -> Result<int> { return kErrA; },
      [&] {
        ++fallbacks;
        return 7;
      });
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), kErrA);
  EXPECT_EQ(fallbacks, 0);
  EXPECT_EQ(info.outcome, Outcome::caller_error);
}

TEST(Sequential, ClassifierDecidesThatAValueFallsBack) {
  // An empty answer counts as a failure of that source.
  auto classify = [](const Result<std::string>& r) {
    return r && !r->empty() ? Outcome::success : Outcome::final_failure;
  };
  Result<std::string> r = sequential_classified(
      {}, classify, [] { return std::string(); }, [] { return std::string("from backup"); });
  ASSERT_TRUE(r);
  EXPECT_EQ(*r, "from backup");
}

TEST(Sequential, ContextCarriesPositionDeadlineAndStop) {
  ManualClock clock;
  const Deadline dl = Deadline::after(clock.now(), 5s);
  std::stop_source stop;
  std::vector<uint32_t> attempts;
  Result<int> r = sequential(
      {.deadline = dl, .stop = stop.get_token(), .clock = &clock},
      [&](const CallContext& ctx) -> Result<int> {
        attempts.push_back(ctx.attempt);
        EXPECT_EQ(ctx.deadline, dl);
        EXPECT_TRUE(ctx.stop.stop_possible());
        return kErrA;
      },
      [&](const CallContext& ctx) {
        attempts.push_back(ctx.attempt);
        return 3;
      });
  ASSERT_TRUE(r);
  EXPECT_EQ(attempts, (std::vector<uint32_t>{1, 2}));
}

TEST(Sequential, NoFallbackStartsAfterTheDeadline) {
  ManualClock clock;
  int fallbacks = 0;
  FallbackInfo info;
  Result<int> r = sequential(
      {.deadline = Deadline::after(clock.now(), 100ms), .info = &info, .clock = &clock},
      [&]() -> Result<int> {
        clock.advance(100ms);  // the primary used up all the time
        return kErrA;
      },
      [&] {
        ++fallbacks;
        return 1;
      });
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), kErrA);  // the primary's own failure, not a policy error
  EXPECT_EQ(fallbacks, 0);
  EXPECT_EQ(info.policy_reason, errc::deadline_exceeded);
  EXPECT_EQ(info.answered_by, 0u);
}

TEST(Sequential, ExpiredDeadlineRunsNothing) {
  ManualClock clock;
  int calls = 0;
  FallbackInfo info;
  Result<int> r =
      sequential({.deadline = Deadline::at(clock.now()), .info = &info, .clock = &clock},
                 [&] { return ++calls; });
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), errc::deadline_exceeded);
  EXPECT_EQ(calls, 0);
  EXPECT_FALSE(info.answered_by.has_value());
  EXPECT_EQ(info.started, 0u);
}

TEST(Sequential, StopRequestedBetweenAlternativesCancels) {
  std::stop_source stop;
  int fallbacks = 0;
  FallbackInfo info;
  Result<int> r = sequential(
      {.stop = stop.get_token(), .info = &info},
      [&]() -> Result<int> {
        stop.request_stop();
        return kErrA;
      },
      [&] {
        ++fallbacks;
        return 1;
      });
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), errc::cancelled);
  EXPECT_EQ(fallbacks, 0);
  EXPECT_FALSE(info.answered_by.has_value());
}

TEST(Sequential, VoidAlternatives) {
  int ran = 0;
  Result<void> r = sequential([&] { throw std::runtime_error("x"); }, [&] { ++ran; });
  EXPECT_TRUE(r);
  EXPECT_EQ(ran, 1);
}

TEST(SequentialRange, RunTimeListInOrder) {
  std::vector<int> order;
  std::vector<std::function<Result<int>(const CallContext&)>> alts;
  for (int i = 0; i < 4; ++i) {
    alts.push_back([&order, i](const CallContext&) -> Result<int> {
      order.push_back(i);
      if (i < 2) return kErrA;
      return i * 10;
    });
  }
  FallbackInfo info;
  Result<int> r = sequential_range(alts, {.info = &info});
  ASSERT_TRUE(r);
  EXPECT_EQ(*r, 20);
  EXPECT_EQ(order, (std::vector<int>{0, 1, 2}));
  EXPECT_EQ(info.answered_by, 2u);
}

TEST(SequentialRange, EmptyListIsCallFailed) {
  std::vector<std::function<int()>> none;
  FallbackInfo info;
  Result<int> r = sequential_range(none, {.info = &info});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), errc::call_failed);
  EXPECT_EQ(info.started, 0u);
}

// Fallback outside, a pipeline inside the primary: only what is still a failure after the
// pipeline's retries (and its breaker) moves on to the fallback.
TEST(Sequential, ComposesWithAPipelineOnTheInside) {
  ManualClock clock;
  retry::RetryOptions ro;
  ro.max_attempts = 3;
  ro.backoff.base = 10ms;
  ro.backoff.max = 10ms;
  auto primary = Pipeline::Builder(clock).retry(ro, nullptr, 1).build();
  int upstream_calls = 0;
  FallbackInfo info;
  Result<int> r = sequential(
      {.info = &info},
      [&] {
        return primary.execute([&]() -> Result<int> {
          ++upstream_calls;
          return kErrA;
        });
      },
      [] { return 42; });
  ASSERT_TRUE(r);
  EXPECT_EQ(*r, 42);
  EXPECT_EQ(upstream_calls, 3);  // retried inside before falling back
  EXPECT_EQ(info.answered_by, 1u);
}

TEST(Sequential, OpenBreakerFallsBackAtOnce) {
  ManualClock clock;
  circuit::CircuitBreaker breaker("b", {}, clock);
  breaker.force_open();
  auto primary = Pipeline::Builder(clock).circuit_breaker(breaker).build();
  int upstream_calls = 0;
  FallbackInfo info;
  Result<int> r = sequential(
      {.info = &info}, [&] { return primary.execute([&] { return ++upstream_calls; }); },
      [] { return -1; });
  ASSERT_TRUE(r);
  EXPECT_EQ(*r, -1);
  EXPECT_EQ(upstream_calls, 0);
  EXPECT_EQ(info.answered_by, 1u);
}

}  // namespace
}  // namespace bulwark::fallback
