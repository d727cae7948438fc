#include "filters/concurrency_limit/concurrency_limit.h"

#include <gtest/gtest.h>

#include "bulwark/observe/registry.h"
#include "filter/chain.h"
#include "filter/reasons.h"

namespace bulwark::gateway::filters {
namespace {

TEST(ConcurrencyLimit, AdmitsUpToTheLimitAndReleasesOnCompletion) {
  std::atomic<uint32_t> in_flight{0};
  EXPECT_TRUE(try_admit(in_flight, 2));
  EXPECT_TRUE(try_admit(in_flight, 2));
  EXPECT_FALSE(try_admit(in_flight, 2));
  EXPECT_EQ(in_flight.load(), 2u);  // a refusal takes nothing
  release(in_flight);
  EXPECT_TRUE(try_admit(in_flight, 2));
}

TEST(ConcurrencyLimit, AsAListenerFilterAnswers503AndTracksTheGauge) {
  bulwark::observe::Registry registry;
  observe::GatewayMetrics metrics(registry);
  observe::ListenerMetrics& lm = metrics.listener("public");
  config::Listener listener;
  listener.limits.max_concurrent_requests = 1;
  std::atomic<uint32_t> in_flight{0};
  filter::FilterChain chain;
  chain.add(bind_concurrency_limit(listener, in_flight, lm));

  filter::ChainRun first;
  first.begin(&chain, nullptr);
  EXPECT_FALSE(first.on_request({}));
  EXPECT_EQ(lm.requests_active->value(), 1);

  filter::ChainRun second;
  second.begin(&chain, nullptr);
  filter::RequestInfo with_body;
  with_body.has_body = true;
  const filter::LocalReply reply = second.on_request(with_body);
  EXPECT_EQ(reply.status, 503);
  EXPECT_EQ(reply.reason, reason::kConcurrencyLimit);
  EXPECT_TRUE(reply.close);  // its body was not read
  second.complete({503, reply.reason, {}});
  EXPECT_EQ(in_flight.load(), 1u);  // the refused request gave back nothing it did not take

  first.complete({200, {}, {}});
  EXPECT_EQ(in_flight.load(), 0u);
  EXPECT_EQ(lm.requests_active->value(), 0);
}

}  // namespace
}  // namespace bulwark::gateway::filters
