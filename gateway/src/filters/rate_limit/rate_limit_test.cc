#include "filters/rate_limit/rate_limit.h"

#include <gtest/gtest.h>

#include <string>

#include "bulwark/observe/prometheus.h"
#include "bulwark/observe/registry.h"
#include "bulwark/testing/manual_clock.h"
#include "filter/chain.h"
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
  observe::GatewayMetrics metrics{registry};
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
  auto filter = bind_route_rate_limit(route, std::nullopt, store, metrics);
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

// The store of global limits, answered by the test.
class FakeRemote final : public filter::RemoteRateLimiter {
 public:
  uint64_t start(std::string_view key, const filter::RemoteRate& rate,
                 const filter::WakeToken& wake) override {
    if (down) return 0;
    keys.emplace_back(key);
    last_rate = rate;
    wakes.push_back(wake);
    outcome = Status::pending;
    return ++ticket;
  }
  Status take(uint64_t t, filter::RemoteDecision& out) override {
    taken.push_back(t);
    if (outcome == Status::answered) out = answer;
    return outcome;
  }
  void forget(uint64_t t) noexcept override { forgotten.push_back(t); }

  bool down = false;
  uint64_t ticket = 0;
  Status outcome = Status::pending;
  filter::RemoteDecision answer;
  filter::RemoteRate last_rate;
  std::vector<std::string> keys;
  std::vector<filter::WakeToken> wakes;
  std::vector<uint64_t> taken, forgotten;
};

struct GlobalRateLimitTest : RateLimitTest {
  std::unique_ptr<filter::RequestFilter> build(config::RedisFailureMode mode) {
    config::Route route;
    route.name = "api";
    route.rate_limit = config::RouteRateLimit{};
    route.rate_limit->rate = {.per_second = 10, .burst = 20};
    route.rate_limit->scope = config::RateLimitScope::global;
    config::RedisSpec redis;
    redis.timeout = std::chrono::milliseconds(5);
    redis.on_failure = mode;
    redis.circuit_breaker.consecutive_failures = 2;
    redis.circuit_breaker.open_duration = std::chrono::seconds(1);
    return bind_route_rate_limit(route, redis, store, metrics);
  }
  filter::RequestInfo request() {
    filter::RequestInfo r;
    r.client_ip = "127.0.0.1";
    r.now = clock.now();
    r.wake = &token;
    r.remote = &remote;
    return r;
  }
  double counter(std::string_view series) {
    std::string text = bulwark::observe::to_prometheus_text(registry);
    for (std::size_t at = 0; (at = text.find(series, at)) != std::string::npos; ++at) {
      if (at == 0 || text[at - 1] == '\n') {
        return std::stod(text.substr(text.find(' ', at) + 1));
      }
    }
    return -1;
  }

  FakeRemote remote;
  filter::WakeToken token;
  filter::FilterState state;
};

TEST_F(GlobalRateLimitTest, RedisDecidesWithTheLocalLimitersFields) {
  auto filter = build(config::RedisFailureMode::deny);
  const filter::RequestInfo r = request();
  const filter::LocalReply waiting = filter->on_request(r, state);
  EXPECT_FALSE(waiting);
  ASSERT_TRUE(waiting.wait);
  EXPECT_EQ(waiting.wait_until, clock.now() + std::chrono::milliseconds(5));  // redis.timeout
  EXPECT_EQ(remote.keys, std::vector<std::string>{"bulwark:rl:{api|127.0.0.1}"});
  EXPECT_EQ(remote.last_rate.interval_us, 100000);  // 10/s
  EXPECT_EQ(remote.last_rate.burst, 20u);

  remote.outcome = filter::RemoteRateLimiter::Status::answered;
  remote.answer = {false, 0, std::chrono::seconds(2), std::chrono::milliseconds(100)};
  const filter::LocalReply refused = filter->on_request(r, state);
  EXPECT_EQ(refused.status, 429);
  EXPECT_EQ(refused.retry_after_seconds, 1u);
  EXPECT_EQ(header(refused, "RateLimit-Limit"), "20");
  EXPECT_EQ(header(refused, "RateLimit-Remaining"), "0");
  EXPECT_EQ(header(refused, "RateLimit-Reset"), "2");
  EXPECT_EQ(counter("bulwark_global_rate_limit_decisions_total{limit=\"api\",result=\"limited\"}"),
            1);

  filter::FilterState next;
  ASSERT_TRUE(filter->on_request(r, next).wait);
  remote.outcome = filter::RemoteRateLimiter::Status::answered;
  remote.answer = {true, 19, std::chrono::milliseconds(100), {}};
  EXPECT_FALSE(filter->on_request(r, next));
  EXPECT_EQ(counter("bulwark_global_rate_limit_decisions_total{limit=\"api\",result=\"allowed\"}"),
            1);
}

TEST_F(GlobalRateLimitTest, NoAnswerInTimeFallsBackToTheLocalLimiterAndTheBreakerOpens) {
  auto filter = build(config::RedisFailureMode::local);
  for (int i = 0; i < 2; ++i) {
    filter::FilterState s;
    const filter::RequestInfo r = request();
    ASSERT_TRUE(filter->on_request(r, s).wait);
    clock.advance(std::chrono::milliseconds(5));  // the wait ran out: still pending
    EXPECT_FALSE(filter->on_request(request(), s));  // the local limiter allowed it
  }
  EXPECT_EQ(remote.forgotten, (std::vector<uint64_t>{1, 2}));  // late answers are dropped
  EXPECT_EQ(counter("bulwark_global_rate_limit_fallbacks_total{limit=\"api\",mode=\"local\"}"),
            2);
  // Two failures in a row opened the breaker: Redis is not asked, the local limiter decides.
  const std::size_t asked = remote.keys.size();
  filter::FilterState s;
  EXPECT_FALSE(filter->on_request(request(), s).wait);
  EXPECT_EQ(remote.keys.size(), asked);
  // After the open time one probe goes to Redis again.
  clock.advance(std::chrono::seconds(1));
  filter::FilterState probe;
  EXPECT_TRUE(filter->on_request(request(), probe).wait);
  EXPECT_EQ(remote.keys.size(), asked + 1);
}

TEST_F(GlobalRateLimitTest, WithoutRedisDenyAnswers503AndAllowLetsThrough) {
  remote.down = true;  // no connection up
  auto deny = build(config::RedisFailureMode::deny);
  const filter::LocalReply refused = deny->on_request(request(), state);
  EXPECT_EQ(refused.status, 503);
  EXPECT_EQ(refused.reason, reason::kLimiterUnavailable);
  auto allow = build(config::RedisFailureMode::allow);
  filter::FilterState other;
  EXPECT_FALSE(allow->on_request(request(), other));
  EXPECT_FALSE(allow->on_request(request(), other).wait);
}

TEST_F(GlobalRateLimitTest, ARequestAbandonedWhileWaitingForgetsItsDecision) {
  auto filter = build(config::RedisFailureMode::local);
  filter::FilterChain chain;
  chain.add(std::move(filter));
  {
    filter::ChainRun run;
    run.begin(nullptr, &chain);
    ASSERT_TRUE(run.on_request(request()).wait);
  }  // the client left
  EXPECT_EQ(remote.forgotten, std::vector<uint64_t>{1});
}

}  // namespace
}  // namespace bulwark::gateway::filters
