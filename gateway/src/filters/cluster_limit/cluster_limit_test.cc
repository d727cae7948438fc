#include "filters/cluster_limit/cluster_limit.h"

#include <gtest/gtest.h>

#include <vector>

#include "bulwark/observe/registry.h"
#include "bulwark/testing/manual_clock.h"
#include "filter/chain.h"
#include "filter/reasons.h"

namespace bulwark::gateway::filters {
namespace {

using namespace std::chrono_literals;

// Records the waits it was asked to wake.
class RecordingWake final : public filter::WakeTarget {
 public:
  void wake(uint64_t wait) noexcept override { woken.push_back(wait); }
  std::vector<uint64_t> woken;
};

// One request through a chain holding only the cluster limit.
struct Request {
  Request(const filter::FilterChain& chain, testing::ManualClock& clock, int priority,
          std::shared_ptr<RecordingWake> wake, uint64_t wait_number)
      : clock_(clock) {
    token.target = std::move(wake);
    token.wait = wait_number;
    info.now = clock.now();
    info.wake = &token;
    info.deadline = clock.now() + 30s;
    info.priority = priority;
    run.begin(nullptr, &chain);
  }
  filter::LocalReply start() { return run.on_request(info); }
  filter::LocalReply resume() {
    info.now = clock_.now();
    return run.resume(info);
  }
  void finish(int status = 200) { run.complete({status, {}, clock_.now()}); }

  testing::ManualClock& clock_;
  filter::WakeToken token;
  filter::RequestInfo info;
  filter::ChainRun run;
};

struct ClusterLimitTest : ::testing::Test {
  void build(uint32_t limit, std::optional<config::QueueSpec> queue) {
    config::Cluster cluster;
    cluster.name = "backend";
    cluster.max_concurrent_requests = limit;
    cluster.queue = queue;
    bulkhead = std::make_shared<limit::Bulkhead>("backend", bulkhead_options(cluster), clock);
    chain.add(bind_cluster_limit(bulkhead, metrics.cluster("backend")));
  }
  double active() { return metrics.cluster("backend").requests_active->value(); }

  testing::ManualClock clock;
  bulwark::observe::Registry registry;
  observe::GatewayMetrics metrics{registry};
  std::shared_ptr<limit::Bulkhead> bulkhead;
  filter::FilterChain chain;
  std::shared_ptr<RecordingWake> wake = std::make_shared<RecordingWake>();
};

TEST(ClusterLimitDecisions, ReasonsAndRetryAfter) {
  EXPECT_EQ(cluster_limit_reason(errc::queue_full), reason::kClusterConcurrencyLimit);
  EXPECT_EQ(cluster_limit_reason(errc::wait_timeout), reason::kQueueTimeout);
  EXPECT_EQ(estimated_wait_seconds(Duration::zero()), 1u);
  EXPECT_EQ(estimated_wait_seconds(1ms), 1u);
  EXPECT_EQ(estimated_wait_seconds(1s), 1u);
  EXPECT_EQ(estimated_wait_seconds(1001ms), 2u);
  config::Cluster no_queue;
  no_queue.max_concurrent_requests = 7;
  EXPECT_EQ(bulkhead_options(no_queue).max_concurrent, 7u);
  EXPECT_EQ(bulkhead_options(no_queue).max_queue, 0u);
}

TEST_F(ClusterLimitTest, WithoutAQueueTheNextRequestIsRefusedAtOnce) {
  build(1, std::nullopt);
  Request first(chain, clock, 1, wake, 1);
  EXPECT_FALSE(first.start());
  EXPECT_EQ(active(), 1);
  Request second(chain, clock, 1, wake, 1);
  second.info.has_body = true;
  const filter::LocalReply refused = second.start();
  EXPECT_EQ(refused.status, 503);
  EXPECT_EQ(refused.reason, reason::kClusterConcurrencyLimit);
  EXPECT_TRUE(refused.close);  // its body was not read
  EXPECT_GE(refused.retry_after_seconds, 1u);
  second.finish(503);
  EXPECT_EQ(bulkhead->in_flight(), 1u);  // the refusal took nothing
  first.finish();
  EXPECT_EQ(bulkhead->in_flight(), 0u);
  EXPECT_EQ(active(), 0);
}

TEST_F(ClusterLimitTest, AQueuedRequestWaitsAndIsWokenWhenASlotIsReleased) {
  build(1, config::QueueSpec{.max_size = 4, .max_wait = 500ms});
  Request first(chain, clock, 1, wake, 1);
  ASSERT_FALSE(first.start());
  Request second(chain, clock, 1, wake, 7);
  const filter::LocalReply waiting = second.start();
  EXPECT_FALSE(waiting);
  ASSERT_TRUE(waiting.wait);
  EXPECT_EQ(waiting.wait_until, clock.now() + 500ms);  // max_wait, within the route's deadline
  EXPECT_EQ(bulkhead->queued(), 1u);
  EXPECT_TRUE(wake->woken.empty());

  clock.advance(20ms);
  first.finish();  // the slot goes to the waiting request, which is woken
  ASSERT_EQ(wake->woken, std::vector<uint64_t>{7});
  EXPECT_FALSE(second.resume());
  EXPECT_EQ(bulkhead->in_flight(), 1u);
  EXPECT_EQ(active(), 1);
  second.finish();
  EXPECT_EQ(bulkhead->in_flight(), 0u);
  EXPECT_EQ(active(), 0);
}

TEST_F(ClusterLimitTest, AWaitThatRunsOutIsRefusedAsAQueueTimeout) {
  build(1, config::QueueSpec{.max_size = 4, .max_wait = 100ms});
  Request first(chain, clock, 1, wake, 1);
  ASSERT_FALSE(first.start());
  Request second(chain, clock, 1, wake, 2);
  ASSERT_TRUE(second.start().wait);
  clock.advance(100ms);  // the connection's timer ends the wait: the filter is asked again
  const filter::LocalReply refused = second.resume();
  EXPECT_EQ(refused.status, 503);
  EXPECT_EQ(refused.reason, reason::kQueueTimeout);
  EXPECT_EQ(bulkhead->queued(), 0u);  // its place was given back
  second.finish(503);
  first.finish();
  EXPECT_EQ(bulkhead->in_flight(), 0u);
  EXPECT_TRUE(wake->woken.empty());  // nobody was granted to a withdrawn ticket
}

TEST_F(ClusterLimitTest, TheQueueReleasesByPriorityThenInArrivalOrder) {
  build(1, config::QueueSpec{.max_size = 4, .max_wait = 10s});
  Request holder(chain, clock, 1, wake, 1);
  ASSERT_FALSE(holder.start());
  Request low(chain, clock, 0, wake, 10);
  Request normal_a(chain, clock, 1, wake, 20);
  Request normal_b(chain, clock, 1, wake, 30);
  Request high(chain, clock, 2, wake, 40);
  for (Request* r : {&low, &normal_a, &normal_b, &high}) ASSERT_TRUE(r->start().wait);

  auto release_next = [&](Request& current) {
    current.finish();
    ASSERT_FALSE(wake->woken.empty());
  };
  release_next(holder);
  EXPECT_EQ(wake->woken.back(), 40u);  // high first
  ASSERT_FALSE(high.resume());
  release_next(high);
  EXPECT_EQ(wake->woken.back(), 20u);  // then normal, first come first served
  ASSERT_FALSE(normal_a.resume());
  release_next(normal_a);
  EXPECT_EQ(wake->woken.back(), 30u);
  ASSERT_FALSE(normal_b.resume());
  release_next(normal_b);
  EXPECT_EQ(wake->woken.back(), 10u);  // low last
  ASSERT_FALSE(low.resume());
  low.finish();
  EXPECT_EQ(bulkhead->in_flight(), 0u);
}

TEST_F(ClusterLimitTest, AFullQueueRefusesAndAHigherPriorityDisplacesTheNewestLowest) {
  build(1, config::QueueSpec{.max_size = 1, .max_wait = 10s});
  Request holder(chain, clock, 1, wake, 1);
  ASSERT_FALSE(holder.start());
  Request queued(chain, clock, 1, wake, 2);
  ASSERT_TRUE(queued.start().wait);
  Request same(chain, clock, 1, wake, 3);
  const filter::LocalReply full = same.start();
  EXPECT_EQ(full.status, 503);
  EXPECT_EQ(full.reason, reason::kClusterConcurrencyLimit);
  same.finish(503);

  Request high(chain, clock, 2, wake, 4);
  ASSERT_TRUE(high.start().wait);
  ASSERT_EQ(wake->woken, std::vector<uint64_t>{2});  // the displaced one is woken...
  const filter::LocalReply displaced = queued.resume();
  EXPECT_EQ(displaced.status, 503);  // ...and refused
  EXPECT_EQ(displaced.reason, reason::kClusterConcurrencyLimit);
  queued.finish(503);
  holder.finish();
  EXPECT_EQ(wake->woken.back(), 4u);
  EXPECT_FALSE(high.resume());
  high.finish();
  EXPECT_EQ(bulkhead->in_flight(), 0u);
}

TEST_F(ClusterLimitTest, ARequestAbandonedWhileWaitingGivesItsPlaceBack) {
  build(1, config::QueueSpec{.max_size = 4, .max_wait = 10s});
  Request holder(chain, clock, 1, wake, 1);
  ASSERT_FALSE(holder.start());
  {
    Request gone(chain, clock, 1, wake, 2);
    ASSERT_TRUE(gone.start().wait);
    EXPECT_EQ(bulkhead->queued(), 1u);
  }  // destroyed mid-wait (its client left, or the worker stopped)
  EXPECT_EQ(bulkhead->queued(), 0u);
  holder.finish();
  EXPECT_TRUE(wake->woken.empty());
  EXPECT_EQ(bulkhead->in_flight(), 0u);
  EXPECT_EQ(active(), 0);
}

}  // namespace
}  // namespace bulwark::gateway::filters
