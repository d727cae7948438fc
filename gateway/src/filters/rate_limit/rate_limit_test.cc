#include "filters/rate_limit/rate_limit.h"

#include <gtest/gtest.h>

#include <string>

#include "bulwark/observe/registry.h"
#include "bulwark/testing/manual_clock.h"
#include "filter/reasons.h"

namespace bulwark::gateway::filters {
namespace {

std::string_view header(const filter::LocalReply& reply, std::string_view name) {
  for (std::size_t i = 0; i < reply.extra_count; ++i) {
    if (reply.extra[i].name == name) return reply.extra[i].value;
  }
  return {};
}

TEST(RateLimitKey, ClientIpRouteOrAHeaderWhichFallsBackToTheClientIp) {
  const std::array<filter::HeaderLine, 1> lines{{{"X-Api-Key", "k-123"}}};
  filter::RequestInfo request;
  request.client_ip = "127.0.0.9";
  request.headers = lines;
  using Key = config::RateLimitKey;
  EXPECT_EQ(rate_limit_key(Key::client_ip, "", "r", 256, request).key, "127.0.0.9");
  EXPECT_EQ(rate_limit_key(Key::route, "", "r", 256, request).key, "r");
  EXPECT_EQ(rate_limit_key(Key::header, "x-api-key", "r", 256, request).key, "k-123");
  EXPECT_EQ(rate_limit_key(Key::header, "x-other", "r", 256, request).key, "127.0.0.9");
  EXPECT_TRUE(rate_limit_key(Key::header, "x-api-key", "r", 4, request).bad);  // too long
  const std::array<filter::HeaderLine, 1> spaced{{{"x-api-key", "a b"}}};
  request.headers = spaced;
  EXPECT_TRUE(rate_limit_key(Key::header, "x-api-key", "r", 256, request).bad);
}

struct RateLimitTest : ::testing::Test {
  testing::ManualClock clock;
  bulwark::observe::Registry registry;
  route::PolicyStore store{clock, registry};
};

TEST_F(RateLimitTest, RefusesPastTheBurstWith429AndTheRateLimitFields) {
  RateLimitFilter filter(store.limiter("public/per_client", {.per_second = 5, .burst = 5}), {});
  filter::RequestInfo request;
  request.client_ip = "127.0.0.1";
  request.now = clock.now();
  filter::FilterState state;
  for (int i = 0; i < 5; ++i) EXPECT_FALSE(filter.on_request(request, state)) << i;
  const filter::LocalReply reply = filter.on_request(request, state);
  EXPECT_EQ(reply.status, 429);
  EXPECT_EQ(reply.reason, reason::kRateLimited);
  EXPECT_EQ(reply.retry_after_seconds, 1u);  // 200 ms rounded up
  EXPECT_EQ(header(reply, "RateLimit-Limit"), "5");
  EXPECT_EQ(header(reply, "RateLimit-Remaining"), "0");
  EXPECT_EQ(header(reply, "RateLimit-Reset"), "1");
  // Another client has its own allowance.
  filter::RequestInfo other = request;
  other.client_ip = "127.0.0.2";
  EXPECT_FALSE(filter.on_request(other, state));
  // One permit comes back every 200 ms.
  clock.advance(std::chrono::milliseconds(200));
  request.now = clock.now();
  EXPECT_FALSE(filter.on_request(request, state));
  EXPECT_EQ(filter.on_request(request, state).status, 429);
}

TEST_F(RateLimitTest, DryRunRefusesNothingButCountsTheDecision) {
  auto limiter = store.limiter("r", {.per_second = 1, .burst = 1});
  RateLimitFilter filter(limiter, {.dry_run = true});
  filter::RequestInfo request;
  request.client_ip = "127.0.0.1";
  request.now = clock.now();
  filter::FilterState state;
  for (int i = 0; i < 3; ++i) EXPECT_FALSE(filter.on_request(request, state));
  EXPECT_EQ(limiter->limiter->stats().rejected, 2u);
}

TEST_F(RateLimitTest, ABadHeaderKeyIs400) {
  config::Route route;
  route.name = "keys";
  route.rate_limit = config::RouteRateLimit{};
  route.rate_limit->key = config::RateLimitKey::header;
  route.rate_limit->header = "X-Api-Key";
  route.rate_limit->rate = {.per_second = 10, .burst = 0};
  route.rate_limit->max_key_bytes = 8;
  auto filter = bind_route_rate_limit(route, store);
  ASSERT_NE(filter, nullptr);
  const std::array<filter::HeaderLine, 1> lines{{{"x-api-key", "much-too-long-key"}}};
  filter::RequestInfo request;
  request.headers = lines;
  request.has_body = true;
  filter::FilterState state;
  const filter::LocalReply reply = filter->on_request(request, state);
  EXPECT_EQ(reply.status, 400);
  EXPECT_EQ(reply.reason, reason::kBadClientKey);
  EXPECT_TRUE(reply.close);
}

}  // namespace
}  // namespace bulwark::gateway::filters
