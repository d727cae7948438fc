#include "filters/hedge/hedge.h"

#include <gtest/gtest.h>

#include "bulwark/observe/registry.h"
#include "bulwark/testing/manual_clock.h"

namespace bulwark::gateway::filters {
namespace {

using namespace std::chrono_literals;
using fallback::RaceAction;

TEST(HedgeRules, OnlyIdempotentReplayableRequestsWhoseAnswerHasNotBegunAreHedged) {
  HedgeFacts f;
  f.idempotent = true;
  f.replayable = true;
  EXPECT_TRUE(may_hedge(f));
  HedgeFacts post = f;
  post.idempotent = false;
  EXPECT_FALSE(may_hedge(post));
  HedgeFacts long_body = f;
  long_body.replayable = false;
  EXPECT_FALSE(may_hedge(long_body));
  HedgeFacts answering = f;
  answering.answer_started = true;
  EXPECT_FALSE(may_hedge(answering));
  HedgeFacts fallback = f;
  fallback.on_fallback = true;
  EXPECT_FALSE(may_hedge(fallback));
}

TEST(HedgeRules, AStatusBelow500AnswersAndEverythingElseFails) {
  using Kind = filter::AttemptOutcome::Kind;
  filter::AttemptOutcome o;
  o.kind = Kind::response;
  for (int status : {200, 204, 304, 404, 429, 499}) {
    o.status = status;
    EXPECT_TRUE(answers(o)) << status;
  }
  for (int status : {500, 502, 503, 504}) {
    o.status = status;
    EXPECT_FALSE(answers(o)) << status;
  }
  for (Kind k : {Kind::connect_failure, Kind::reset, Kind::timeout, Kind::bad_response}) {
    o.kind = k;
    o.status = 0;
    EXPECT_FALSE(answers(o));
  }
}

struct HedgeBinding : ::testing::Test {
  testing::ManualClock clock;
  bulwark::observe::Registry registry;
  observe::GatewayMetrics metrics{registry};
  observe::RouteMetrics& route_metrics = metrics.route("api");
};

TEST_F(HedgeBinding, NoHedgeWithoutTheSection) {
  config::Route route;
  EXPECT_EQ(bind_hedge(route, std::make_shared<retry::RetryBudget>(), clock, route_metrics),
            nullptr);
}

TEST_F(HedgeBinding, TheNextAttemptIsDueAfterTheDelayAndDrawsOnTheBudget) {
  config::Route route;
  route.hedge = config::HedgeSpec{.delay = 50ms, .max_attempts = 3};
  // No ratio and no floor: the budget grants nothing beyond its requests' share.
  auto budget = std::make_shared<retry::RetryBudget>(
      retry::RetryBudgetOptions{.ratio = 1.0, .min_per_second = 0});
  auto hedge = bind_hedge(route, budget, clock, route_metrics);
  ASSERT_NE(hedge, nullptr);
  EXPECT_EQ(hedge->max_attempts(), 3u);

  fallback::HedgeRun run = hedge->start(clock.now() + 10s);
  EXPECT_EQ(run.on_start(clock.now()), RaceAction::start(0));  // records one request
  ASSERT_TRUE(run.next_hedge_at().has_value());
  EXPECT_EQ(*run.next_hedge_at(), clock.now() + 50ms);
  EXPECT_EQ(run.on_timer(clock.now() + 49ms), RaceAction::none());
  clock.advance(50ms);
  EXPECT_EQ(run.on_timer(clock.now()), RaceAction::start(1));  // ratio 1: one retry per request
  clock.advance(50ms);
  EXPECT_EQ(run.on_timer(clock.now()), RaceAction::none());  // the budget is spent
  // The hedge answers: the race is over, and attempt 0 is to be cancelled.
  EXPECT_EQ(run.on_result(1, Outcome::success, clock.now()), RaceAction::finish(1));
  EXPECT_TRUE(run.answered());
}

TEST_F(HedgeBinding, AFailureLeavesTheRaceToTheOthersAndTheLastFailureEndsIt) {
  config::Route route;
  route.hedge = config::HedgeSpec{.delay = 10ms, .max_attempts = 2};
  auto hedge = bind_hedge(route, std::make_shared<retry::RetryBudget>(), clock, route_metrics);
  fallback::HedgeRun run = hedge->start(clock.now() + 10s);
  run.on_start(clock.now());
  clock.advance(10ms);
  ASSERT_EQ(run.on_timer(clock.now()), RaceAction::start(1));
  // The hedge fails fast: no new attempt for it (failures are retry's), attempt 0 runs on.
  EXPECT_EQ(run.on_result(1, Outcome::retryable_failure, clock.now()), RaceAction::none());
  EXPECT_EQ(run.on_result(0, Outcome::retryable_failure, clock.now()), RaceAction::finish(0));
  EXPECT_FALSE(run.answered());
}

TEST_F(HedgeBinding, CountsHedgesAndWins) {
  config::Route route;
  route.hedge = config::HedgeSpec{};
  auto hedge = bind_hedge(route, std::make_shared<retry::RetryBudget>(), clock, route_metrics);
  hedge->count_hedge();
  hedge->count_hedge();
  hedge->count_win();
  EXPECT_EQ(route_metrics.hedges->value(), 2);
  EXPECT_EQ(route_metrics.hedge_wins->value(), 1);
}

}  // namespace
}  // namespace bulwark::gateway::filters
