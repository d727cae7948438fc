// BulkheadStage: first driven step by step through its StageRun on a ManualClock (the stage
// protocol itself), then inside a Pipeline with the synchronous executor (real threads for the
// waits; a wait that must time out is given a few milliseconds, and only outcomes are checked).
#include "bulwark/limit/bulkhead_stage.h"

#include <gtest/gtest.h>

#include <thread>

#include "bulwark/pipeline/pipeline.h"
#include "bulwark/testing/manual_clock.h"

namespace bulwark::limit {
namespace {

using namespace std::chrono_literals;

AttemptResult success() { return AttemptResult{}; }
AttemptResult failure(Outcome o) {
  AttemptResult r;
  r.outcome = o;
  r.error = make_error_code(errc::call_failed);
  return r;
}

class BulkheadStageTest : public ::testing::Test {
 protected:
  TimePoint now() const { return clock_.now(); }
  testing::ManualClock clock_;
};

TEST_F(BulkheadStageTest, GrantedCallProceedsAndLeaveReleases) {
  Bulkhead b("db", {.max_concurrent = 1}, clock_);
  BulkheadStage stage(b);
  EXPECT_EQ(stage.kind(), "bulkhead");
  auto run = stage.start();
  CallContext ctx;
  EXPECT_EQ(run->enter(ctx, now()).kind, Step::Kind::proceed);
  EXPECT_EQ(b.in_flight(), 1u);
  Step done = run->leave(ctx, success(), now());
  EXPECT_EQ(done.kind, Step::Kind::finish);
  EXPECT_EQ(done.result.outcome, Outcome::success);
  EXPECT_EQ(b.in_flight(), 0u);
}

TEST_F(BulkheadStageTest, RefusalFinishesWithTheReasonAndAHint) {
  Bulkhead b("db", {.max_concurrent = 1, .initial_hold_time = 30ms}, clock_);
  Permit held = std::move(*b.try_acquire_now(now()));
  BulkheadStage stage(b);
  auto run = stage.start();
  CallContext ctx;
  Step s = run->enter(ctx, now());
  ASSERT_EQ(s.kind, Step::Kind::finish);
  EXPECT_EQ(s.result.error, errc::queue_full);
  EXPECT_EQ(s.result.outcome, Outcome::final_failure);
  EXPECT_FALSE(s.result.from_call);
  ASSERT_TRUE(s.result.retry_after.has_value());
  EXPECT_EQ(*s.result.retry_after, 30ms);
}

TEST_F(BulkheadStageTest, QueuedCallWaitsOnItsTicketAndProceedsWhenGranted) {
  Bulkhead b("db", {.max_concurrent = 1, .max_queue = 4, .max_wait = 100ms}, clock_);
  Permit held = std::move(*b.try_acquire_now(now()));
  BulkheadStage stage(b, {.priority = 2});
  auto run = stage.start();
  CallContext ctx;
  Step s = run->enter(ctx, now());
  ASSERT_EQ(s.kind, Step::Kind::wait);
  ASSERT_NE(s.waiter, nullptr);
  EXPECT_EQ(s.wait_deadline, Deadline::after(now(), 100ms));
  EXPECT_EQ(b.queued(), 1u);

  int calls = 0;
  bool granted = false;
  s.waiter->start([&](bool g) {
    ++calls;
    granted = g;
  });
  EXPECT_EQ(calls, 0);
  clock_.advance(10ms);
  held.release(now());
  EXPECT_EQ(calls, 1);
  EXPECT_TRUE(granted);
  EXPECT_FALSE(s.waiter->cancel());  // too late: ready was called

  EXPECT_EQ(run->enter(ctx, now()).kind, Step::Kind::proceed);
  EXPECT_EQ(b.in_flight(), 1u);
  run->leave(ctx, success(), now());
  EXPECT_EQ(b.in_flight(), 0u);
}

TEST_F(BulkheadStageTest, WaitEndedByTheDeadlineFinishesWithWaitTimeout) {
  Bulkhead b("db", {.max_concurrent = 1, .max_queue = 4, .max_wait = 100ms}, clock_);
  Permit held = std::move(*b.try_acquire_now(now()));
  BulkheadStage stage(b);
  auto run = stage.start();
  CallContext ctx;
  Step s = run->enter(ctx, now());
  ASSERT_EQ(s.kind, Step::Kind::wait);
  bool called = false;
  s.waiter->start([&](bool) { called = true; });
  // The executor reaches the wait deadline and withdraws the waiter...
  clock_.advance(100ms);
  EXPECT_TRUE(s.waiter->cancel());
  EXPECT_EQ(b.queued(), 0u);
  // ...then enters again: the stage reports the timeout.
  Step t = run->enter(ctx, now());
  ASSERT_EQ(t.kind, Step::Kind::finish);
  EXPECT_EQ(t.result.error, errc::wait_timeout);
  EXPECT_EQ(t.result.outcome, Outcome::final_failure);
  held.release(now());
  EXPECT_FALSE(called);
  EXPECT_EQ(b.in_flight(), 0u);
}

TEST_F(BulkheadStageTest, RefusedTicketFinishesWithItsReason) {
  Bulkhead b("db", {.max_concurrent = 1, .max_queue = 4, .max_wait = 100ms}, clock_);
  Permit held = std::move(*b.try_acquire_now(now()));
  BulkheadStage stage(b);
  auto run = stage.start();
  CallContext ctx;
  Step s = run->enter(ctx, now());
  ASSERT_EQ(s.kind, Step::Kind::wait);
  bool result = true;
  s.waiter->start([&](bool g) { result = g; });
  clock_.advance(100ms);
  b.expire(now());  // the bulkhead times the ticket out first
  EXPECT_FALSE(result);
  Step t = run->enter(ctx, now());
  ASSERT_EQ(t.kind, Step::Kind::finish);
  EXPECT_EQ(t.result.error, errc::wait_timeout);
}

TEST_F(BulkheadStageTest, AbandonGivesBackATicketOrAPermit) {
  Bulkhead b("db", {.max_concurrent = 1, .max_queue = 4, .max_wait = 1s}, clock_);
  Permit held = std::move(*b.try_acquire_now(now()));
  {
    BulkheadStage stage(b);
    auto run = stage.start();
    CallContext ctx;
    ASSERT_EQ(run->enter(ctx, now()).kind, Step::Kind::wait);
    run->abandon();  // caller cancelled while queued
    EXPECT_EQ(b.queued(), 0u);
  }
  {
    // A grant that arrived just before the abandon is passed back, not leaked.
    BulkheadStage stage(b);
    auto run = stage.start();
    CallContext ctx;
    ASSERT_EQ(run->enter(ctx, now()).kind, Step::Kind::wait);
    held.release(now());
    EXPECT_EQ(b.in_flight(), 1u);  // granted to the waiting run
    run->abandon();
    EXPECT_EQ(b.in_flight(), 0u);
  }
  {
    // A run destroyed while holding a permit releases it.
    BulkheadStage stage(b);
    auto run = stage.start();
    CallContext ctx;
    ASSERT_EQ(run->enter(ctx, now()).kind, Step::Kind::proceed);
    EXPECT_EQ(b.in_flight(), 1u);
  }
  EXPECT_EQ(b.in_flight(), 0u);
}

TEST_F(BulkheadStageTest, ThrottledStartIsAWaitUntilTheStartInstant) {
  Bulkhead b("api", {.max_concurrent = 10, .max_wait = 1s, .starts_per_second = 10}, clock_);
  BulkheadStage stage(b);
  auto first = stage.start();
  auto second = stage.start();
  CallContext ctx;
  EXPECT_EQ(first->enter(ctx, now()).kind, Step::Kind::proceed);
  Step s = second->enter(ctx, now());
  ASSERT_EQ(s.kind, Step::Kind::wait);
  EXPECT_EQ(s.wait_deadline, Deadline::at(now() + 100ms));
  // Nothing grants a pure delay: the executor ends it at the deadline by cancelling it.
  bool called = false;
  s.waiter->start([&](bool) { called = true; });
  clock_.advance(100ms);
  EXPECT_TRUE(s.waiter->cancel());
  EXPECT_FALSE(called);
  EXPECT_EQ(second->enter(ctx, now()).kind, Step::Kind::proceed);
  EXPECT_EQ(b.in_flight(), 2u);
  second->abandon();
  first->leave(ctx, success(), now());
  EXPECT_EQ(b.in_flight(), 0u);
}

TEST_F(BulkheadStageTest, LeaveFeedsTheAdaptiveLimit) {
  Bulkhead b("db", {.max_concurrent = 10}, clock_);
  AdaptiveConcurrency adaptive(
      std::make_unique<AimdLimit>(
          AimdOptions{.initial_limit = 4, .min_limit = 1, .max_limit = 10, .backoff_ratio = 0.5}),
      [&](uint32_t limit, TimePoint at) { b.set_limit(limit, at); }, now());
  EXPECT_EQ(b.limit(), 4u);
  BulkheadStage stage(b, {.adaptive = &adaptive});
  CallContext ctx;

  // Two calls in flight at the limit of 4 (2 * 2 >= 4): each success adds one.
  auto r1 = stage.start();
  auto r2 = stage.start();
  ASSERT_EQ(r1->enter(ctx, now()).kind, Step::Kind::proceed);
  ASSERT_EQ(r2->enter(ctx, now()).kind, Step::Kind::proceed);
  clock_.advance(5ms);
  r1->leave(ctx, success(), now());
  EXPECT_EQ(b.limit(), 4u);  // r1 started with 1 in flight: 1 * 2 < 4, no growth
  r2->leave(ctx, success(), now());
  EXPECT_EQ(b.limit(), 5u);  // r2 started with 2 in flight

  // A final failure says nothing about load; a retryable one (overload) halves the limit.
  auto r3 = stage.start();
  ASSERT_EQ(r3->enter(ctx, now()).kind, Step::Kind::proceed);
  r3->leave(ctx, failure(Outcome::final_failure), now());
  EXPECT_EQ(b.limit(), 5u);
  EXPECT_EQ(adaptive.samples(), 2u);
  auto r4 = stage.start();
  ASSERT_EQ(r4->enter(ctx, now()).kind, Step::Kind::proceed);
  r4->leave(ctx, failure(Outcome::retryable_failure), now());
  EXPECT_EQ(b.limit(), 2u);
  EXPECT_EQ(b.in_flight(), 0u);
}

// --- In a Pipeline with the synchronous executor ---

TEST(BulkheadStagePipeline, RejectsWithoutCallingWhenFull) {
  testing::ManualClock clock;
  Bulkhead b("db", {.max_concurrent = 1}, clock);
  auto p = Pipeline::Builder(clock).stage(std::make_shared<BulkheadStage>(b)).build();
  Permit held = std::move(*b.try_acquire_now(clock.now()));
  int calls = 0;
  auto r = p.execute([&] { return ++calls; });
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), errc::queue_full);
  EXPECT_EQ(calls, 0);
  held.release();
  auto ok = p.execute([&] { return ++calls; });
  ASSERT_TRUE(ok);
  EXPECT_EQ(*ok, 1);
  EXPECT_EQ(b.in_flight(), 0u);
}

TEST(BulkheadStagePipeline, QueuedCallRunsWhenAnotherThreadReleases) {
  testing::ManualClock clock;
  Bulkhead b("db", {.max_concurrent = 1, .max_queue = 4, .max_wait = 60s}, clock);
  auto p = Pipeline::Builder(clock).stage(std::make_shared<BulkheadStage>(b)).build();
  Permit held = std::move(*b.try_acquire_now(clock.now()));
  std::thread releaser([&] {
    while (b.queued() < 1) std::this_thread::yield();
    held.release();
  });
  int in_call = -1;
  auto r = p.execute([&] {
    in_call = static_cast<int>(b.in_flight());
    return 5;
  });
  releaser.join();
  ASSERT_TRUE(r);
  EXPECT_EQ(*r, 5);
  EXPECT_EQ(in_call, 1);
  EXPECT_EQ(b.in_flight(), 0u);
  EXPECT_EQ(b.stats().granted_after_wait, 1u);
}

TEST(BulkheadStagePipeline, WaitTimeoutWithdrawsTheTicket) {
  testing::ManualClock clock;
  Bulkhead b("db", {.max_concurrent = 1, .max_queue = 4, .max_wait = 5ms}, clock);
  auto p = Pipeline::Builder(clock).stage(std::make_shared<BulkheadStage>(b)).build();
  Permit held = std::move(*b.try_acquire_now(clock.now()));
  int calls = 0;
  auto r = p.execute([&] { return ++calls; });
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), errc::wait_timeout);
  EXPECT_EQ(calls, 0);
  EXPECT_EQ(b.queued(), 0u);
  EXPECT_EQ(b.in_flight(), 1u);
}

TEST(BulkheadStagePipeline, StopWhileQueuedAbandonsAndFreesTheSlot) {
  testing::ManualClock clock;
  Bulkhead b("db", {.max_concurrent = 1, .max_queue = 1, .max_wait = 60s}, clock);
  auto p = Pipeline::Builder(clock).stage(std::make_shared<BulkheadStage>(b)).build();
  Permit held = std::move(*b.try_acquire_now(clock.now()));
  std::stop_source stop;
  std::thread stopper([&] {
    while (b.queued() < 1) std::this_thread::yield();
    stop.request_stop();
  });
  auto r = p.execute([] { return 1; }, {.stop = stop.get_token()});
  stopper.join();
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), errc::cancelled);
  EXPECT_EQ(b.queued(), 0u);
  EXPECT_EQ(b.in_flight(), 1u);
}

TEST(BulkheadStagePipeline, ThrottleSpacesCallsOnTheClock) {
  // The synchronous executor waits the throttle delay in real time, so keep it short: 200/s
  // spaces starts by 5 ms of ManualClock time; what is checked is the start instants handed out.
  testing::ManualClock clock;
  Bulkhead b("api", {.max_concurrent = 4, .max_wait = 1s, .starts_per_second = 200}, clock);
  auto p = Pipeline::Builder(clock).stage(std::make_shared<BulkheadStage>(b)).build();
  const TimePoint t0 = clock.now();
  Permit first = std::move(*b.try_acquire_now(clock.now()));
  EXPECT_EQ(first.start_at(), t0);
  auto r = p.execute([&] { return 1; });
  ASSERT_TRUE(r);
  // The pipeline's call reserved the start at t0 + 5ms; the next free start is t0 + 10ms.
  EXPECT_EQ(b.estimated_wait(clock.now()), 10ms);
}

TEST_F(BulkheadStageTest, BuilderBulkheadLimitsConcurrentCallsAndReleasesAfterEach) {
  Bulkhead b("db", {.max_concurrent = 1, .initial_hold_time = 10ms}, clock_);
  auto p =
      Pipeline::Builder(clock_).bulkhead(b, {.priority = 3}).retry({.max_attempts = 2}).build();
  ASSERT_EQ(p.stages().size(), 2u);
  EXPECT_EQ(p.stages()[0]->kind(), "bulkhead");
  EXPECT_EQ(dynamic_cast<const BulkheadStage&>(*p.stages()[0]).options().priority, 3);
  uint32_t in_flight_during_call = 0;
  EXPECT_TRUE(p.execute([&] { in_flight_during_call = b.in_flight(); }));
  EXPECT_EQ(in_flight_during_call, 1u);
  EXPECT_EQ(b.in_flight(), 0u);
  // Full (no queue): refused at once, final, with the bulkhead's estimate.
  Permit held = std::move(*b.try_acquire_now(now()));
  int calls = 0;
  auto r = p.execute([&] { return ++calls; });
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), errc::queue_full);
  EXPECT_EQ(calls, 0);
  held.release(now());
  EXPECT_TRUE(p.execute([&] { return ++calls; }));
}

}  // namespace
}  // namespace bulwark::limit
