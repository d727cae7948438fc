#include "upstream/exchange_rules.h"

#include <gtest/gtest.h>

#include <array>

#include "bulwark/testing/manual_clock.h"

namespace bulwark::gateway::upstream {
namespace {

using namespace std::chrono_literals;

const auto kAll = [](std::size_t) { return true; };

TEST(PickEndpoint, RoundRobinFollowsTheCursor) {
  const auto none = [](std::size_t) { return 0u; };
  EXPECT_EQ(pick_endpoint(config::LoadBalancing::round_robin, 0, 3, none, kAll), 0u);
  EXPECT_EQ(pick_endpoint(config::LoadBalancing::round_robin, 4, 3, none, kAll), 1u);
}

TEST(PickEndpoint, LeastRequestTakesTheQuietestWithTiesInCursorOrder) {
  const std::array<uint32_t, 3> active{2, 1, 1};
  const auto of = [&](std::size_t i) { return active[i]; };
  EXPECT_EQ(pick_endpoint(config::LoadBalancing::least_request, 0, 3, of, kAll), 1u);
  EXPECT_EQ(pick_endpoint(config::LoadBalancing::least_request, 2, 3, of, kAll), 2u);
}

TEST(PickEndpoint, SkipsUnusableEndpointsAndAnswersNoneWhenAllAre) {
  const auto none = [](std::size_t) { return 0u; };
  const std::array<bool, 3> usable{true, false, true};
  const auto is_usable = [&](std::size_t i) { return usable[i]; };
  for (auto lb : {config::LoadBalancing::round_robin, config::LoadBalancing::least_request}) {
    EXPECT_EQ(pick_endpoint(lb, 1, 3, none, is_usable), 2u);
    EXPECT_EQ(pick_endpoint(lb, 0, 3, none, [](std::size_t) { return false; }), std::nullopt);
  }
  EXPECT_EQ(pick_endpoint(config::LoadBalancing::round_robin, 0, 0, none, kAll), std::nullopt);
}

TEST(PickEndpoint, ARetryAvoidsThePreviousEndpointUnlessItIsTheOnlyOne) {
  const auto none = [](std::size_t) { return 0u; };
  EXPECT_EQ(pick_endpoint(config::LoadBalancing::round_robin, 0, 3, none, kAll, 0), 1u);
  const std::array<uint32_t, 3> active{0, 5, 9};
  const auto of = [&](std::size_t i) { return active[i]; };
  // The quietest is the one to avoid: the next quietest is taken.
  EXPECT_EQ(pick_endpoint(config::LoadBalancing::least_request, 0, 3, of, kAll, 0), 1u);
  const auto only_first = [](std::size_t i) { return i == 0; };
  EXPECT_EQ(pick_endpoint(config::LoadBalancing::round_robin, 2, 3, none, only_first, 0), 0u);
  EXPECT_EQ(pick_endpoint(config::LoadBalancing::least_request, 2, 3, of, only_first, 0), 0u);
}

TEST(Fallback, FailedCallsThatMaySafelyBeSentAgainMoveOn) {
  const FallbackFacts open{
      .failed_locally = true, .reply_status = 503, .reply_reason = reason::kCircuitOpen};
  EXPECT_TRUE(should_fall_back(open));
  EXPECT_TRUE(should_fall_back({.upstream_status = 503}));
  EXPECT_FALSE(should_fall_back({.upstream_status = 500}));
  EXPECT_FALSE(should_fall_back({.upstream_status = 200}));
  EXPECT_FALSE(should_fall_back({.upstream_status = 404}));
  EXPECT_TRUE(should_fall_back(
      {.failed_locally = true, .reply_status = 504, .reply_reason = reason::kFirstByteTimeout}));
  // The route's deadline has passed: nothing is left for another cluster.
  EXPECT_FALSE(should_fall_back(
      {.failed_locally = true, .reply_status = 504, .reply_reason = reason::kRequestTimeout}));
  EXPECT_FALSE(should_fall_back({.failed_locally = true, .reply_status = 413}));
  FallbackFacts post = open;
  post.idempotent = false;
  post.sent = true;
  EXPECT_FALSE(should_fall_back(post));
  post.non_idempotent_allowed = true;
  EXPECT_TRUE(should_fall_back(post));
  post.replayable = false;
  EXPECT_FALSE(should_fall_back(post));
}

TEST(StaleConnection, ReplacedOnlyWhenNothingCanHaveBeenProcessedTwice) {
  EXPECT_TRUE(may_replace_stale({.reused = true, .idempotent = true}));
  EXPECT_FALSE(may_replace_stale({.reused = false, .idempotent = true}));
  EXPECT_FALSE(may_replace_stale({.reused = true, .has_body = true, .idempotent = true}));
  EXPECT_FALSE(may_replace_stale({.reused = true, .idempotent = false}));
  EXPECT_FALSE(may_replace_stale({.reused = true, .idempotent = true, .nothing_received = false}));
  EXPECT_FALSE(may_replace_stale({.reused = true, .idempotent = true, .timed_out = true}));
  EXPECT_TRUE(is_idempotent("PUT"));
  EXPECT_FALSE(is_idempotent("POST"));
}

TEST(Pooling, OnlyCleanKeptAliveAnswersWithoutStrayBytes) {
  EXPECT_TRUE(can_pool({.clean = true}));
  EXPECT_FALSE(can_pool({.clean = false}));
  EXPECT_FALSE(can_pool({.clean = true, .reusable_framing = false}));
  EXPECT_FALSE(can_pool({.clean = true, .upstream_keep_alive = false}));
  EXPECT_FALSE(can_pool({.clean = true, .unread_bytes = true}));
  EXPECT_FALSE(can_pool({.clean = true, .draining = true}));
}

TEST(Deadlines, TheEarlierDeadlineBindsWithItsOwnReason) {
  testing::ManualClock clock;
  const TimePoint t = clock.now();
  clock.advance(1s);
  const TimePoint now = clock.now();

  auto c = connect_deadline(now, 1s, now + 30s);
  EXPECT_EQ(c.at, now + 1s);
  EXPECT_EQ(c.reason, reason::kConnectTimeout);
  c = connect_deadline(now, 1s, now + 500ms);
  EXPECT_EQ(c.at, now + 500ms);
  EXPECT_EQ(c.reason, reason::kRequestTimeout);

  auto f = first_byte_deadline(now, 2s, now + 30s);
  EXPECT_EQ(f.at, now + 2s);
  EXPECT_EQ(f.reason, reason::kFirstByteTimeout);
  f = first_byte_deadline(now, std::nullopt, now + 30s);
  EXPECT_EQ(f.reason, reason::kRequestTimeout);
  f = first_byte_deadline(now, 40s, now + 30s);
  EXPECT_EQ(f.at, now + 30s);

  auto b = body_read_deadline(t + 30s, t + 10s);
  EXPECT_EQ(b.status, 408);
  EXPECT_EQ(b.reason, reason::kBodyTimeout);
  b = body_read_deadline(t + 5s, t + 10s);
  EXPECT_EQ(b.status, 504);
  EXPECT_EQ(b.reason, reason::kRequestTimeout);

  auto s = stream_read_deadline(now, 30s, now + 10min);
  EXPECT_EQ(s.at, now + 30s);
  EXPECT_EQ(s.reason, reason::kStreamIdleTimeout);
  s = stream_read_deadline(now, 30s, now + 10s);
  EXPECT_EQ(s.at, now + 10s);
  EXPECT_EQ(s.reason, reason::kStreamTotalTimeout);
}

}  // namespace
}  // namespace bulwark::gateway::upstream
