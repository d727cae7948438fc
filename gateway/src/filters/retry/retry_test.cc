#include "filters/retry/retry.h"

#include <gtest/gtest.h>

#include "bulwark/observe/registry.h"
#include "bulwark/testing/manual_clock.h"

namespace bulwark::gateway::filters {
namespace {

using Kind = filter::AttemptOutcome::Kind;
using std::chrono::milliseconds;

filter::AttemptOutcome answered(int status, TimePoint now, Random& random) {
  filter::AttemptOutcome o;
  o.kind = Kind::response;
  o.status = status;
  o.request_sent = true;
  o.replayable = true;
  o.idempotent = true;
  o.now = now;
  o.random = &random;
  return o;
}

struct RetryTest : ::testing::Test {
  testing::ManualClock clock;
  Random random{42};
  bulwark::observe::Registry registry;
  observe::GatewayMetrics metrics{registry};
  observe::RouteMetrics& route = metrics.route("api");
  config::RetrySpec spec;
  std::shared_ptr<retry::RetryBudget> budget = std::make_shared<retry::RetryBudget>();

  RetryTest() {
    spec.attempts = 3;
    spec.backoff.base = milliseconds(10);
    spec.backoff.max = milliseconds(100);
  }
  double denied(RetryDenial d) const {
    return route.retries_denied[static_cast<std::size_t>(d)]->value();
  }
};

TEST(RetrySafety, OnlyReplayableRequestsAndNonIdempotentOnesThatNeverLeft) {
  filter::AttemptOutcome o;
  o.replayable = false;
  EXPECT_EQ(may_send_again(o, true), RetryDenial::not_replayable);
  o.replayable = true;
  o.idempotent = false;
  o.request_sent = true;
  EXPECT_EQ(may_send_again(o, false), RetryDenial::not_idempotent);
  EXPECT_EQ(may_send_again(o, true), RetryDenial::none);  // the route opted in
  o.request_sent = false;  // a connect failure: nothing can have been processed
  EXPECT_EQ(may_send_again(o, false), RetryDenial::none);
}

TEST(RetrySafety, ClassifiesAttemptsWithTheLibrary) {
  const retry::HttpClassifier classifier;  // the default set
  Random random{1};
  EXPECT_EQ(classify_attempt(classifier, answered(503, {}, random)), Outcome::retryable_failure);
  EXPECT_EQ(classify_attempt(classifier, answered(500, {}, random)), Outcome::final_failure);
  EXPECT_EQ(classify_attempt(classifier, answered(404, {}, random)), Outcome::caller_error);
  EXPECT_EQ(classify_attempt(classifier, answered(200, {}, random)), Outcome::success);
  filter::AttemptOutcome o;
  o.kind = Kind::connect_failure;
  EXPECT_EQ(classify_attempt(classifier, o), Outcome::retryable_failure);
  o.kind = Kind::timeout;
  EXPECT_EQ(classify_attempt(classifier, o), Outcome::retryable_failure);
  o.kind = Kind::bad_response;
  EXPECT_EQ(classify_attempt(classifier, o), Outcome::final_failure);
}

TEST_F(RetryTest, RetriesA503UntilTheAttemptsAreSpent) {
  Retry policy(spec, std::chrono::seconds(30), budget, route);
  filter::FilterState state;
  for (int attempt = 1; attempt <= 3; ++attempt) {
    EXPECT_FALSE(policy.before_attempt({clock.now()}, state));
    const filter::RetryAdvice advice = policy.retry(answered(503, clock.now(), random), state);
    if (attempt < 3) {
      EXPECT_TRUE(advice.again) << attempt;
      EXPECT_LE(advice.delay, milliseconds(100));
      clock.advance(advice.delay);
    } else {
      EXPECT_FALSE(advice.again);
    }
  }
  EXPECT_EQ(route.retries->value(), 2);
  EXPECT_EQ(denied(RetryDenial::retries_exhausted), 1);
}

TEST_F(RetryTest, SuccessAndCallerErrorsAreNotRetried) {
  Retry policy(spec, std::chrono::seconds(30), budget, route);
  filter::FilterState state;
  policy.before_attempt({clock.now()}, state);
  EXPECT_FALSE(policy.retry(answered(200, clock.now(), random), state).again);
  filter::FilterState other;
  policy.before_attempt({clock.now()}, other);
  EXPECT_FALSE(policy.retry(answered(404, clock.now(), random), other).again);
  EXPECT_EQ(route.retries->value(), 0);
}

TEST_F(RetryTest, HonoursRetryAfterUpToTheCap) {
  spec.max_retry_after = std::chrono::seconds(2);
  Retry policy(spec, std::chrono::seconds(30), budget, route);
  filter::FilterState state;
  policy.before_attempt({clock.now()}, state);
  filter::AttemptOutcome o = answered(503, clock.now(), random);
  o.retry_after = std::chrono::seconds(1);
  EXPECT_EQ(policy.retry(o, state).delay, std::chrono::seconds(1));
  policy.before_attempt({clock.now()}, state);
  o.retry_after = std::chrono::seconds(60);
  EXPECT_EQ(policy.retry(o, state).delay, std::chrono::seconds(2));
}

TEST_F(RetryTest, ABodyThatWasNotKeptAndASentPostAreNotRetried) {
  Retry policy(spec, std::chrono::seconds(30), budget, route);
  filter::FilterState state;
  policy.before_attempt({clock.now()}, state);
  filter::AttemptOutcome o = answered(503, clock.now(), random);
  o.replayable = false;
  EXPECT_FALSE(policy.retry(o, state).again);
  o.replayable = true;
  o.idempotent = false;
  EXPECT_FALSE(policy.retry(o, state).again);
  EXPECT_EQ(denied(RetryDenial::not_replayable), 1);
  EXPECT_EQ(denied(RetryDenial::not_idempotent), 1);
  o.request_sent = false;
  o.kind = Kind::connect_failure;
  EXPECT_TRUE(policy.retry(o, state).again);
}

TEST_F(RetryTest, TheBudgetAndTheDeadlineBoundRetries) {
  auto empty = std::make_shared<retry::RetryBudget>(
      retry::RetryBudgetOptions{.ratio = 0, .min_per_second = 0});
  Retry starved(spec, std::chrono::seconds(30), empty, route);
  filter::FilterState state;
  starved.before_attempt({clock.now()}, state);
  EXPECT_FALSE(starved.retry(answered(503, clock.now(), random), state).again);
  EXPECT_EQ(denied(RetryDenial::budget_exhausted), 1);

  spec.backoff.base = std::chrono::seconds(1);
  spec.backoff.max = std::chrono::seconds(1);
  spec.backoff.jitter = retry::Jitter::none;
  Retry late(spec, milliseconds(500), budget, route);
  filter::FilterState late_state;
  late.before_attempt({clock.now()}, late_state);
  EXPECT_FALSE(late.retry(answered(503, clock.now(), random), late_state).again);
  EXPECT_EQ(denied(RetryDenial::deadline_exceeded), 1);
}

}  // namespace
}  // namespace bulwark::gateway::filters
