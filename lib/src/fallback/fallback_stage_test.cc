#include "bulwark/fallback/fallback_stage.h"

#include <gtest/gtest.h>

#include <stdexcept>
#include <string>

#include "bulwark/pipeline/pipeline.h"
#include "bulwark/testing/manual_clock.h"

namespace bulwark::fallback {
namespace {

using namespace std::chrono_literals;
using bulwark::testing::ManualClock;

retry::RetryOptions two_attempts() {
  retry::RetryOptions o;
  o.max_attempts = 2;
  o.backoff.base = 1ms;
  o.backoff.max = 1ms;
  o.backoff.jitter = retry::Jitter::none;
  return o;
}

Result<int> failed() { return make_error_code(errc::call_failed); }

TEST(FallbackStage, AnswersWhatThePoliciesInsideCouldNotSave) {
  ManualClock clock;
  std::optional<AttemptResult> seen;
  auto p = Pipeline::Builder(clock)
               .fallback([&](const AttemptResult& failure) {
                 seen = failure;
                 return 42;
               })
               .retry(two_attempts())
               .build();
  ASSERT_EQ(p.stages()[0]->kind(), "fallback");
  int calls = 0;
  ExecutionInfo info;
  auto r = p.execute(
      [&] {
        ++calls;
        return failed();
      },
      {.info = &info});
  ASSERT_TRUE(r);
  EXPECT_EQ(*r, 42);
  EXPECT_EQ(calls, 2);  // retried first: the fallback only answers for the final failure
  EXPECT_TRUE(info.fallback);
  EXPECT_EQ(info.outcome, Outcome::success);
  EXPECT_EQ(info.attempts, 2u);
  ASSERT_TRUE(seen);
  EXPECT_EQ(seen->error, errc::call_failed);
  EXPECT_EQ(seen->policy_reason, errc::retries_exhausted);
  const auto& stage = dynamic_cast<const FallbackStage<int>&>(*p.stages()[0]);
  EXPECT_EQ(stage.stats().calls, 1u);
  EXPECT_EQ(stage.stats().answered, 1u);
  EXPECT_EQ(stage.stats().failed, 0u);
}

TEST(FallbackStage, ASuccessOrACallerErrorPassesThrough) {
  ManualClock clock;
  int fallbacks = 0;
  auto p = Pipeline::Builder(clock)
               .fallback([&] {
                 ++fallbacks;
                 return 0;
               })
               .build();
  ExecutionInfo info;
  EXPECT_EQ(*p.execute([] { return 7; }, {.info = &info}), 7);
  EXPECT_FALSE(info.fallback);
  auto r = p.execute_classified([] { return 404; },
                                [](const Result<int>&) { return Outcome::caller_error; });
  EXPECT_EQ(*r, 404);
  EXPECT_EQ(fallbacks, 0);
}

TEST(FallbackStage, AnswersPolicyRefusalsToo) {
  ManualClock clock;
  circuit::CircuitBreaker breaker("b", {}, clock);
  breaker.force_open();
  auto p = Pipeline::Builder(clock)
               .fallback([](const AttemptResult& f, const CallContext& ctx) -> Result<std::string> {
                 EXPECT_EQ(ctx.key, "k");
                 return "cached:" + std::string(to_string(static_cast<errc>(f.error.value())));
               })
               .circuit_breaker(breaker)
               .build();
  auto r = p.execute([] { return std::string("live"); }, {.key = "k"});
  ASSERT_TRUE(r);
  EXPECT_EQ(*r, "cached:circuit_open");
}

TEST(FallbackStage, HandleChoosesWhatItAnswersFor) {
  ManualClock clock;
  circuit::CircuitBreaker breaker("b", {}, clock);
  auto only_open = [](const AttemptResult& r) { return r.error == errc::circuit_open; };
  auto p = Pipeline::Builder(clock)
               .fallback([] { return -1; }, {.handle = only_open})
               .circuit_breaker(breaker)
               .build();
  auto r = p.execute([] { return failed(); });
  ASSERT_FALSE(r);  // a call failure is not handled: it passes through
  EXPECT_EQ(r.error(), errc::call_failed);
  breaker.force_open();
  EXPECT_EQ(*p.execute([] { return failed(); }), -1);
}

TEST(FallbackStage, ACancelledCallIsNotAnswered) {
  ManualClock clock;
  auto p = Pipeline::Builder(clock).fallback([] { return 1; }).build();
  std::stop_source stop;
  stop.request_stop();
  auto r = p.execute([] { return 2; }, {.stop = stop.get_token()});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), errc::cancelled);
}

TEST(FallbackStage, AFailingOrThrowingFallbackIsAFinalFailure) {
  ManualClock clock;
  auto erring = Pipeline::Builder(clock)
                    .fallback([]() -> Result<int> { return make_error_code(errc::rejected); })
                    .build();
  ExecutionInfo info;
  auto r = erring.execute([] { return failed(); }, {.info = &info});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), errc::rejected);
  EXPECT_TRUE(info.fallback);
  EXPECT_EQ(info.outcome, Outcome::final_failure);

  auto throwing = Pipeline::Builder(clock)
                      .fallback([]() -> int { throw std::runtime_error("no cache"); })
                      .build();
  r = throwing.execute([] { return failed(); }, {.info = &info});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), errc::call_failed);
  ASSERT_TRUE(info.exception);
  EXPECT_THROW(std::rethrow_exception(info.exception), std::runtime_error);
  EXPECT_EQ(dynamic_cast<const FallbackStage<int>&>(*throwing.stages()[0]).stats().failed, 1u);
}

TEST(FallbackStage, InsideARetryStageItAnswersEveryAttempt) {
  ManualClock clock;
  auto p = Pipeline::Builder(clock).retry(two_attempts()).fallback([] { return 5; }).build();
  int calls = 0;
  auto r = p.execute([&] {
    ++calls;
    return failed();
  });
  EXPECT_EQ(*r, 5);
  EXPECT_EQ(calls, 1);  // answered at once: nothing left to retry
}

TEST(FallbackStage, AValueTypeMismatchIsAProgrammingError) {
  ManualClock clock;
  auto p = Pipeline::Builder(clock).fallback([] { return 1; }).build();
  EXPECT_THROW((void)p.execute([] { return Result<std::string>(make_error_code(errc::rejected)); }),
               std::logic_error);
  // Untyped runs have no value to replace.
  EXPECT_THROW((void)p.run({},
                           [](CallContext&) {
                             return AttemptResult::from_policy(errc::rejected,
                                                               Outcome::final_failure);
                           }),
               std::logic_error);
  // A success needs no fallback, so a mismatch is not even noticed.
  EXPECT_TRUE(p.execute([] { return std::string("ok"); }));
}

TEST(FallbackStage, AVoidCallCanFallBackToNothing) {
  ManualClock clock;
  int fallbacks = 0;
  auto p = Pipeline::Builder(clock).fallback([&] { ++fallbacks; }).build();
  ExecutionInfo info;
  Result<void> r =
      p.execute([]() -> Result<void> { return make_error_code(errc::rejected); }, {.info = &info});
  EXPECT_TRUE(r);
  EXPECT_TRUE(info.fallback);
  EXPECT_EQ(fallbacks, 1);
}

TEST(FallbackStage, AnEmptyFunctionIsRejected) {
  EXPECT_THROW(FallbackStage<int>(FallbackStage<int>::Function{}), std::invalid_argument);
}

}  // namespace
}  // namespace bulwark::fallback
