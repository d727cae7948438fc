#include "bulwark/limit/keyed_rate_limit_stage.h"

#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>

#include "bulwark/pipeline/pipeline.h"
#include "bulwark/testing/manual_clock.h"

namespace bulwark::limit {
namespace {

using namespace std::chrono_literals;
using bulwark::testing::ManualClock;

KeyedLimiterOptions two_per_second() {
  return {.algorithm = RateAlgorithm::gcra,
          .rate = Rate::per_second(2),
          .burst = 2,
          .shards = 1,
          .hash_seed = 1};
}

const KeyedRateLimitStage& stage_of(const Pipeline& p) {
  return dynamic_cast<const KeyedRateLimitStage&>(*p.stages()[0]);
}

TEST(KeyedRateLimitStage, EachKeyHasItsOwnLimitAndARefusalCarriesRetryAfter) {
  ManualClock clock;
  KeyedLimiter limiter(two_per_second());
  auto p = Pipeline::Builder(clock).keyed_rate_limit(limiter).build();
  int calls = 0;
  auto call = [&] { return ++calls; };
  EXPECT_TRUE(p.execute(call, {.key = "alice"}));
  EXPECT_TRUE(p.execute(call, {.key = "alice"}));
  ExecutionInfo info;
  auto r = p.execute(call, {.info = &info, .key = "alice"});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), errc::rate_limited);
  EXPECT_EQ(info.outcome, Outcome::final_failure);
  EXPECT_EQ(info.attempts, 0u);
  EXPECT_EQ(calls, 2);
  // Another key is untouched by alice's limit.
  EXPECT_TRUE(p.execute(call, {.key = "bob"}));

  // The refusal's retry_after is the key's exact wait (GCRA, 2/s: one permit every 500 ms).
  std::string key = "alice";
  CallContext ctx;
  ctx.key = key;
  const AttemptResult refused = p.run(ctx, [](CallContext&) { return AttemptResult{}; });
  EXPECT_EQ(refused.error, errc::rate_limited);
  EXPECT_FALSE(refused.from_call);
  ASSERT_TRUE(refused.retry_after);
  EXPECT_EQ(*refused.retry_after, 500ms);
  clock.advance(500ms);
  EXPECT_TRUE(p.execute(call, {.key = key}));

  const auto st = stage_of(p).stats();
  EXPECT_EQ(st.calls, 6u);
  EXPECT_EQ(st.admitted, 4u);
  EXPECT_EQ(st.rejected, 2u);
  EXPECT_EQ(st.missing_key, 0u);
  EXPECT_EQ(stage_of(p).kind(), "keyed_rate_limit");
}

TEST(KeyedRateLimitStage, TheCallSeesItsKey) {
  ManualClock clock;
  KeyedLimiter limiter(two_per_second());
  auto p = Pipeline::Builder(clock).keyed_rate_limit(limiter).retry({.max_attempts = 2}).build();
  std::string seen;
  ASSERT_TRUE(p.execute([&](const CallContext& ctx) { seen = ctx.key; }, {.key = "tenant-7"}));
  EXPECT_EQ(seen, "tenant-7");
}

TEST(KeyedRateLimitStage, KeylessCallsShareOneLimitByDefault) {
  ManualClock clock;
  KeyedLimiter limiter(two_per_second());
  auto p = Pipeline::Builder(clock).keyed_rate_limit(limiter).build();
  EXPECT_TRUE(p.execute([] { return 1; }));
  EXPECT_TRUE(p.execute([] { return 1; }));
  auto r = p.execute([] { return 1; });
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), errc::rate_limited);
  EXPECT_TRUE(limiter.contains(""));  // the shared key: the empty one
  EXPECT_TRUE(p.execute([] { return 1; }, {.key = "someone"}));
  EXPECT_EQ(stage_of(p).stats().missing_key, 3u);
}

TEST(KeyedRateLimitStage, ASharedKeyCanBeNamed) {
  ManualClock clock;
  KeyedLimiter limiter(two_per_second());
  auto p = Pipeline::Builder(clock).keyed_rate_limit(limiter, {.shared_key = "anonymous"}).build();
  EXPECT_TRUE(p.execute([] { return 1; }));
  EXPECT_TRUE(limiter.contains("anonymous"));
  // A caller that really is "anonymous" shares that limit.
  EXPECT_TRUE(p.execute([] { return 1; }, {.key = "anonymous"}));
  EXPECT_FALSE(p.execute([] { return 1; }));
}

TEST(KeyedRateLimitStage, KeylessCallsCanBeRefused) {
  ManualClock clock;
  KeyedLimiter limiter(two_per_second());
  auto p = Pipeline::Builder(clock)
               .keyed_rate_limit(limiter, {.missing_key = MissingKey::refuse})
               .build();
  int calls = 0;
  ExecutionInfo info;
  auto r = p.execute([&] { return ++calls; }, {.info = &info});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), errc::rejected);
  EXPECT_EQ(info.outcome, Outcome::final_failure);
  EXPECT_EQ(calls, 0);
  EXPECT_EQ(limiter.stats().keys, 0u);
  const auto st = stage_of(p).stats();
  EXPECT_EQ(st.calls, 1u);
  EXPECT_EQ(st.refused_no_key, 1u);
  EXPECT_EQ(st.missing_key, 1u);
}

TEST(KeyedRateLimitStage, PermitsPerCallAreValidated) {
  KeyedLimiter limiter(two_per_second());
  EXPECT_THROW(KeyedRateLimitStage(limiter, {.permits = 0}), std::invalid_argument);
  EXPECT_THROW(KeyedRateLimitStage(limiter, {.permits = 3}), std::invalid_argument);
  ManualClock clock;
  auto p = Pipeline::Builder(clock).keyed_rate_limit(limiter, {.permits = 2}).build();
  EXPECT_TRUE(p.execute([] { return 1; }, {.key = "k"}));
  EXPECT_FALSE(p.execute([] { return 1; }, {.key = "k"}));
}

TEST(KeyedRateLimitStage, RefusalsAreNotRetriedByAnOuterRetryStage) {
  ManualClock clock;
  KeyedLimiter limiter(two_per_second());
  retry::RetryOptions ro;
  ro.max_attempts = 5;
  auto p = Pipeline::Builder(clock).retry(ro).keyed_rate_limit(limiter, {.permits = 2}).build();
  int calls = 0;
  auto call = [&]() -> Result<int> {
    ++calls;
    return make_error_code(errc::call_failed);
  };
  ExecutionInfo info;
  auto r = p.execute(call, {.info = &info, .key = "k"});
  // The first attempt took both permits and failed; the retry was refused and not retried.
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), errc::rate_limited);
  EXPECT_EQ(calls, 1);
}

}  // namespace
}  // namespace bulwark::limit
