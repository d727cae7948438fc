#include "bulwark/limit/rate_limit_stage.h"

#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <stdexcept>

#include "bulwark/limit/gcra.h"
#include "bulwark/limit/token_bucket.h"
#include "bulwark/pipeline/pipeline.h"
#include "bulwark/testing/manual_clock.h"

namespace bulwark::limit {
namespace {

using namespace std::chrono_literals;
using bulwark::testing::ManualClock;

retry::RetryOptions three_attempts() {
  retry::RetryOptions o;
  o.max_attempts = 3;
  o.backoff.base = 10ms;
  o.backoff.max = 10ms;
  o.backoff.jitter = retry::Jitter::none;
  return o;
}

TEST(RateLimitStage, AdmitsWithinTheLimitAndRefusesBeyondWithRetryAfter) {
  ManualClock clock;
  TokenBucket bucket({.rate = Rate::per_second(10), .burst = 2});
  auto stage = std::make_shared<RateLimitStage>(bucket);
  auto pipeline = Pipeline::Builder(clock).stage(stage).build();
  int calls = 0;
  auto call = [&] { return ++calls; };
  EXPECT_EQ(*pipeline.execute(call), 1);
  EXPECT_EQ(*pipeline.execute(call), 2);

  ExecutionInfo info;
  auto r = pipeline.execute(call, {.info = &info});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), errc::rate_limited);
  EXPECT_EQ(calls, 2);  // the call did not run
  EXPECT_EQ(info.attempts, 0u);
  EXPECT_EQ(info.outcome, Outcome::final_failure);

  // The policy result carries the limiter's exact retry_after.
  clock.advance(30ms);
  const AttemptResult refused = pipeline.run({}, [&](CallContext&) {
    ++calls;
    return AttemptResult{};
  });
  EXPECT_FALSE(refused.from_call);
  EXPECT_EQ(refused.error, errc::rate_limited);
  EXPECT_EQ(refused.outcome, Outcome::final_failure);
  ASSERT_TRUE(refused.retry_after);
  EXPECT_EQ(*refused.retry_after, 70ms);

  clock.advance(70ms);
  EXPECT_EQ(*pipeline.execute(call), 3);
  const auto st = stage->stats();
  EXPECT_EQ(st.calls, 5u);
  EXPECT_EQ(st.admitted, 3u);
  EXPECT_EQ(st.rejected, 2u);
  EXPECT_EQ(stage->kind(), "rate_limit");
}

TEST(RateLimitStage, ARefusalIsNotRetriedByAnOuterRetryStage) {
  ManualClock clock;
  Gcra gcra({.rate = Rate::per_minute(1), .burst = 1});
  auto stage = std::make_shared<RateLimitStage>(gcra);
  auto pipeline = Pipeline::Builder(clock).retry(three_attempts()).stage(stage).build();
  int calls = 0;
  EXPECT_TRUE(pipeline.execute([&] { return ++calls; }));
  const TimePoint before = clock.now();
  ExecutionInfo info;
  auto r = pipeline.execute([&] { return ++calls; }, {.info = &info});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), errc::rate_limited);
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(clock.now(), before);  // no backoff slept: no retry was attempted
  EXPECT_EQ(stage->stats().rejected, 1u);
}

TEST(RateLimitStage, InsideRetryEveryAttemptNeedsAPermit) {
  ManualClock clock;
  TokenBucket bucket({.rate = Rate::per_hour(1), .burst = 2});
  auto stage = std::make_shared<RateLimitStage>(bucket);
  auto pipeline = Pipeline::Builder(clock).retry(three_attempts()).stage(stage).build();
  int calls = 0;
  // The call fails retryably each time: attempt 1 and 2 take the two permits, attempt 3 is
  // refused by the limiter, which ends the retries with rate_limited.
  auto r = pipeline.execute([&]() -> Result<int> {
    ++calls;
    return make_error_code(errc::call_failed);
  });
  ASSERT_FALSE(r);
  EXPECT_EQ(calls, 2);
  EXPECT_EQ(stage->stats().admitted, 2u);
  EXPECT_EQ(stage->stats().rejected, 1u);
}

TEST(RateLimitStage, PermitsPerCallAreValidatedAgainstTheLimit) {
  TokenBucket bucket({.rate = Rate::per_second(10), .burst = 4});
  EXPECT_THROW(RateLimitStage(bucket, 0), std::invalid_argument);
  EXPECT_THROW(RateLimitStage(bucket, 5), std::invalid_argument);
  ManualClock clock;
  auto stage = std::make_shared<RateLimitStage>(bucket, 4);
  EXPECT_EQ(stage->permits(), 4u);
  auto pipeline = Pipeline::Builder(clock).stage(stage).build();
  EXPECT_TRUE(pipeline.execute([] { return 1; }));
  EXPECT_FALSE(pipeline.execute([] { return 1; }));
  EXPECT_EQ(&stage->limiter(), &bucket);
}

TEST(RateLimitStage, BuilderRateLimitTakesItsPermitsAndRefusesBeyond) {
  ManualClock clock;
  TokenBucket bucket({.rate = Rate::per_second(10), .burst = 4});
  auto p = Pipeline::Builder(clock).rate_limit(bucket, {.permits = 2}).build();
  const auto& stage = dynamic_cast<const RateLimitStage&>(*p.stages()[0]);
  EXPECT_EQ(stage.permits(), 2u);
  EXPECT_TRUE(p.execute([] { return 1; }));
  EXPECT_TRUE(p.execute([] { return 1; }));
  auto r = p.execute([] { return 1; });
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), errc::rate_limited);
  EXPECT_EQ(stage.stats().rejected, 1u);
  EXPECT_THROW(RateLimitStage(bucket, RateLimitStageOptions{.permits = 5}), std::invalid_argument);
}

}  // namespace
}  // namespace bulwark::limit
