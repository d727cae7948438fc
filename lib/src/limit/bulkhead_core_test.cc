// The bulkhead's decision core on a ManualClock: every rule, with exact times.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <stdexcept>
#include <vector>

#include "bulwark/limit/bulkhead.h"
#include "bulwark/testing/manual_clock.h"

namespace bulwark::limit {
namespace {

using namespace std::chrono_literals;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using Kind = BulkheadCore::Kind;
using TicketId = BulkheadCore::TicketId;

std::vector<TicketId> granted_ids(const BulkheadCore::Changes& c) {
  std::vector<TicketId> ids;
  for (const auto& g : c.granted) ids.push_back(g.ticket);
  return ids;
}

class BulkheadCoreTest : public ::testing::Test {
 protected:
  TimePoint t0() const { return start_; }
  testing::ManualClock clock_;
  const TimePoint start_ = clock_.now();
};

TEST_F(BulkheadCoreTest, GrantsUpToTheLimitThenQueuesThenHandsOver) {
  BulkheadCore core({.max_concurrent = 2, .max_queue = 4, .max_wait = 1s});
  auto a = core.try_acquire(t0());
  auto b = core.try_acquire(t0());
  ASSERT_EQ(a.kind, Kind::granted);
  ASSERT_EQ(b.kind, Kind::granted);
  EXPECT_EQ(a.start_at, t0());
  EXPECT_EQ(a.in_flight, 1u);
  EXPECT_EQ(b.in_flight, 2u);

  auto c = core.try_acquire(t0());
  ASSERT_EQ(c.kind, Kind::queued);
  EXPECT_EQ(c.deadline, Deadline::after(t0(), 1s));
  EXPECT_EQ(core.in_flight(), 2u);
  EXPECT_EQ(core.queued(), 1u);

  const auto changes = core.release(t0() + 5ms);
  ASSERT_EQ(changes.granted.size(), 1u);
  EXPECT_EQ(changes.granted[0].ticket, c.ticket);
  EXPECT_EQ(changes.granted[0].start_at, t0() + 5ms);
  EXPECT_EQ(changes.granted[0].in_flight, 2u);
  EXPECT_TRUE(changes.refused.empty());
  EXPECT_EQ(core.in_flight(), 2u);  // handed over, not freed
  EXPECT_EQ(core.queued(), 0u);

  EXPECT_TRUE(core.release(t0() + 6ms).empty());
  EXPECT_EQ(core.in_flight(), 1u);
}

TEST_F(BulkheadCoreTest, HigherPriorityFirstAndFifoWithinAPriority) {
  BulkheadCore core({.max_concurrent = 1, .max_queue = 10, .max_wait = Duration::max()});
  ASSERT_EQ(core.try_acquire(t0()).kind, Kind::granted);
  const TicketId a = core.try_acquire(t0(), 0).ticket;
  const TicketId b = core.try_acquire(t0(), 5).ticket;
  const TicketId c = core.try_acquire(t0(), 0).ticket;
  const TicketId d = core.try_acquire(t0(), 5).ticket;
  const TicketId e = core.try_acquire(t0(), 1).ticket;
  const TicketId f = core.try_acquire(t0(), -3).ticket;
  ASSERT_EQ(core.queued(), 6u);

  std::vector<TicketId> order;
  for (int i = 0; i < 6; ++i) {
    auto changes = core.release(t0() + 1ms * (i + 1));
    ASSERT_EQ(changes.granted.size(), 1u);
    order.push_back(changes.granted[0].ticket);
  }
  EXPECT_THAT(order, ElementsAre(b, d, e, a, c, f));
  EXPECT_EQ(core.queued(), 0u);
  EXPECT_EQ(core.in_flight(), 1u);
}

TEST_F(BulkheadCoreTest, FullQueueRejectsWithQueueFull) {
  BulkheadCore core({.max_concurrent = 1, .max_queue = 2});
  ASSERT_EQ(core.try_acquire(t0()).kind, Kind::granted);
  ASSERT_EQ(core.try_acquire(t0()).kind, Kind::queued);
  ASSERT_EQ(core.try_acquire(t0(), 100).kind, Kind::queued);
  auto r = core.try_acquire(t0(), 1000);  // priority does not make room by default
  EXPECT_EQ(r.kind, Kind::rejected);
  EXPECT_EQ(r.reason, errc::queue_full);
  EXPECT_EQ(core.queued(), 2u);
}

TEST_F(BulkheadCoreTest, NoQueueMeansQueueFullAtOnce) {
  BulkheadCore core({.max_concurrent = 1, .max_queue = 0});
  ASSERT_EQ(core.try_acquire(t0()).kind, Kind::granted);
  auto r = core.try_acquire(t0());
  EXPECT_EQ(r.kind, Kind::rejected);
  EXPECT_EQ(r.reason, errc::queue_full);
}

TEST_F(BulkheadCoreTest, MayQueueFalseNeverWaits) {
  BulkheadCore core({.max_concurrent = 1, .max_queue = 5});
  ASSERT_EQ(core.try_acquire(t0(), 0, Deadline::never(), false).kind, Kind::granted);
  auto r = core.try_acquire(t0(), 0, Deadline::never(), false);
  EXPECT_EQ(r.kind, Kind::rejected);
  EXPECT_EQ(r.reason, errc::queue_full);
  EXPECT_EQ(core.queued(), 0u);
}

TEST_F(BulkheadCoreTest, LimitZeroRejectsEverything) {
  BulkheadCore core({.max_concurrent = 0, .max_queue = 10});
  auto r = core.try_acquire(t0());
  EXPECT_EQ(r.kind, Kind::rejected);
  EXPECT_EQ(r.reason, errc::rejected);
  EXPECT_EQ(core.queued(), 0u);
}

TEST_F(BulkheadCoreTest, WaitTimesOutExactlyAtTheDeadline) {
  BulkheadCore core({.max_concurrent = 1, .max_queue = 4, .max_wait = 100ms});
  ASSERT_EQ(core.try_acquire(t0()).kind, Kind::granted);
  auto q = core.try_acquire(t0());
  ASSERT_EQ(q.kind, Kind::queued);
  EXPECT_EQ(core.next_deadline(), t0() + 100ms);

  EXPECT_TRUE(core.expire(t0() + 100ms - 1ns).empty());
  EXPECT_EQ(core.queued(), 1u);

  auto changes = core.expire(t0() + 100ms);
  ASSERT_EQ(changes.refused.size(), 1u);
  EXPECT_EQ(changes.refused[0].ticket, q.ticket);
  EXPECT_EQ(changes.refused[0].reason, errc::wait_timeout);
  EXPECT_EQ(core.queued(), 0u);
  EXPECT_FALSE(core.next_deadline().has_value());
}

TEST_F(BulkheadCoreTest, AReleaseAtTheDeadlineTimesTheWaiterOutInsteadOfGrantingIt) {
  BulkheadCore core({.max_concurrent = 1, .max_queue = 4, .max_wait = 100ms});
  ASSERT_EQ(core.try_acquire(t0()).kind, Kind::granted);
  auto late = core.try_acquire(t0());
  auto later = core.try_acquire(t0() + 50ms);
  auto changes = core.release(t0() + 100ms);
  ASSERT_EQ(changes.refused.size(), 1u);
  EXPECT_EQ(changes.refused[0].ticket, late.ticket);
  EXPECT_THAT(granted_ids(changes), ElementsAre(later.ticket));
}

TEST_F(BulkheadCoreTest, CallerDeadlineShortensTheWait) {
  BulkheadCore core({.max_concurrent = 1, .max_queue = 4, .max_wait = 1s});
  ASSERT_EQ(core.try_acquire(t0()).kind, Kind::granted);
  auto q = core.try_acquire(t0(), 0, Deadline::after(t0(), 30ms));
  ASSERT_EQ(q.kind, Kind::queued);
  EXPECT_EQ(q.deadline, Deadline::after(t0(), 30ms));
  EXPECT_TRUE(core.expire(t0() + 29ms).empty());
  EXPECT_EQ(core.expire(t0() + 30ms).refused.size(), 1u);
}

TEST_F(BulkheadCoreTest, NoTimeLeftToWaitIsWaitTimeoutOnArrival) {
  BulkheadCore core({.max_concurrent = 1, .max_queue = 4, .max_wait = 1s});
  ASSERT_EQ(core.try_acquire(t0()).kind, Kind::granted);
  auto r = core.try_acquire(t0(), 0, Deadline::at(t0()));
  EXPECT_EQ(r.kind, Kind::rejected);
  EXPECT_EQ(r.reason, errc::wait_timeout);

  BulkheadCore no_wait({.max_concurrent = 1, .max_queue = 4, .max_wait = 0ms});
  ASSERT_EQ(no_wait.try_acquire(t0()).kind, Kind::granted);
  EXPECT_EQ(no_wait.try_acquire(t0()).reason, errc::wait_timeout);
  EXPECT_EQ(no_wait.queued(), 0u);
}

TEST_F(BulkheadCoreTest, UnboundedMaxWaitHasNoDeadline) {
  BulkheadCore core({.max_concurrent = 1, .max_queue = 4, .max_wait = Duration::max()});
  ASSERT_EQ(core.try_acquire(t0()).kind, Kind::granted);
  auto q = core.try_acquire(t0());
  ASSERT_EQ(q.kind, Kind::queued);
  EXPECT_TRUE(q.deadline.is_never());
  EXPECT_TRUE(core.expire(t0() + 24h).empty());
}

TEST_F(BulkheadCoreTest, CancelFreesTheQueueSlotForTheNextWaiter) {
  BulkheadCore core({.max_concurrent = 1, .max_queue = 1, .max_wait = 1s});
  ASSERT_EQ(core.try_acquire(t0()).kind, Kind::granted);
  auto a = core.try_acquire(t0());
  ASSERT_EQ(a.kind, Kind::queued);
  EXPECT_EQ(core.try_acquire(t0()).reason, errc::queue_full);

  EXPECT_TRUE(core.cancel(a.ticket));
  EXPECT_FALSE(core.cancel(a.ticket));  // once
  EXPECT_FALSE(core.is_queued(a.ticket));
  auto b = core.try_acquire(t0());
  ASSERT_EQ(b.kind, Kind::queued);

  EXPECT_THAT(granted_ids(core.release(t0() + 1ms)), ElementsAre(b.ticket));
  EXPECT_FALSE(core.cancel(b.ticket));  // granted: no longer queued
}

TEST_F(BulkheadCoreTest, DisplacesTheNewestLowestPriorityWaiterWhenEnabled) {
  BulkheadCore core(
      {.max_concurrent = 1, .max_queue = 3, .max_wait = 1s, .displace_lower_priority = true});
  ASSERT_EQ(core.try_acquire(t0()).kind, Kind::granted);
  const TicketId low_old = core.try_acquire(t0(), 0).ticket;
  const TicketId low_new = core.try_acquire(t0(), 0).ticket;
  const TicketId high = core.try_acquire(t0(), 5).ticket;

  auto same = core.try_acquire(t0(), 0);  // not higher than the lowest: refused
  EXPECT_EQ(same.reason, errc::queue_full);

  auto urgent = core.try_acquire(t0(), 9);
  ASSERT_EQ(urgent.kind, Kind::queued);
  ASSERT_EQ(urgent.changes.refused.size(), 1u);
  EXPECT_EQ(urgent.changes.refused[0].ticket, low_new);
  EXPECT_EQ(urgent.changes.refused[0].reason, errc::queue_full);
  EXPECT_TRUE(core.is_queued(low_old));
  EXPECT_TRUE(core.is_queued(high));
  EXPECT_EQ(core.queued(), 3u);
}

TEST_F(BulkheadCoreTest, ThrottleSpacesStartsExactly) {
  // 10 starts per second: one every 100 ms; a call may wait up to max_wait for its start.
  BulkheadCore core({.max_concurrent = 100, .max_wait = 350ms, .starts_per_second = 10});
  std::vector<TimePoint> starts;
  for (int i = 0; i < 4; ++i) {
    auto d = core.try_acquire(t0());
    ASSERT_EQ(d.kind, Kind::granted) << i;
    starts.push_back(d.start_at);
  }
  EXPECT_THAT(starts, ElementsAre(t0(), t0() + 100ms, t0() + 200ms, t0() + 300ms));

  // The next start would be at +400ms, beyond the 350 ms this call may wait.
  auto refused = core.try_acquire(t0());
  EXPECT_EQ(refused.kind, Kind::rejected);
  EXPECT_EQ(refused.reason, errc::throttled);
  EXPECT_EQ(refused.retry_after, 400ms);
  EXPECT_EQ(core.in_flight(), 4u);  // a refusal reserves nothing

  // A call that may not wait at all is throttled unless a start is free right now.
  EXPECT_EQ(core.try_acquire(t0() + 399ms, 0, Deadline::never(), false).reason, errc::throttled);
  auto now_free = core.try_acquire(t0() + 400ms, 0, Deadline::never(), false);
  ASSERT_EQ(now_free.kind, Kind::granted);
  EXPECT_EQ(now_free.start_at, t0() + 400ms);

  // After a quiet period the throttle does not bank more than the burst (1 here).
  auto later1 = core.try_acquire(t0() + 10s);
  auto later2 = core.try_acquire(t0() + 10s);
  EXPECT_EQ(later1.start_at, t0() + 10s);
  EXPECT_EQ(later2.start_at, t0() + 10s + 100ms);
}

TEST_F(BulkheadCoreTest, ThrottleBurstAllowsBackToBackStarts) {
  BulkheadCore core({.max_concurrent = 100,
                     .max_wait = 1s,
                     .starts_per_second = 4,  // 250 ms apart
                     .throttle_burst = 3});
  std::vector<TimePoint> starts;
  for (int i = 0; i < 5; ++i) starts.push_back(core.try_acquire(t0()).start_at);
  EXPECT_THAT(starts, ElementsAre(t0(), t0(), t0(), t0() + 250ms, t0() + 500ms));
}

TEST_F(BulkheadCoreTest, ThrottledHandOverSpacesWaitersAndTimesOutThoseItCannotStartInTime) {
  BulkheadCore core(
      {.max_concurrent = 1, .max_queue = 4, .max_wait = 150ms, .starts_per_second = 10});
  auto first = core.try_acquire(t0());
  ASSERT_EQ(first.start_at, t0());
  auto a = core.try_acquire(t0());         // deadline t0 + 150ms
  auto b = core.try_acquire(t0() + 40ms);  // deadline t0 + 190ms
  ASSERT_EQ(a.kind, Kind::queued);
  ASSERT_EQ(b.kind, Kind::queued);

  auto c1 = core.release(t0() + 10ms);  // next start allowed at +100ms
  ASSERT_EQ(c1.granted.size(), 1u);
  EXPECT_EQ(c1.granted[0].ticket, a.ticket);
  EXPECT_EQ(c1.granted[0].start_at, t0() + 100ms);

  // b's start could come at +200ms at the earliest, after its deadline (+190ms).
  auto c2 = core.release(t0() + 20ms);
  EXPECT_TRUE(c2.granted.empty());
  ASSERT_EQ(c2.refused.size(), 1u);
  EXPECT_EQ(c2.refused[0].ticket, b.ticket);
  EXPECT_EQ(c2.refused[0].reason, errc::wait_timeout);
  EXPECT_EQ(core.in_flight(), 0u);
}

TEST_F(BulkheadCoreTest, RaisingTheLimitGrantsWaitersLoweringItRevokesNothing) {
  BulkheadCore core({.max_concurrent = 2, .max_queue = 10, .max_wait = 1s});
  ASSERT_EQ(core.try_acquire(t0()).kind, Kind::granted);
  ASSERT_EQ(core.try_acquire(t0()).kind, Kind::granted);
  const TicketId a = core.try_acquire(t0()).ticket;
  const TicketId b = core.try_acquire(t0()).ticket;
  const TicketId c = core.try_acquire(t0()).ticket;

  EXPECT_THAT(granted_ids(core.set_limit(t0(), 4)), ElementsAre(a, b));
  EXPECT_EQ(core.in_flight(), 4u);

  EXPECT_TRUE(core.set_limit(t0(), 1).empty());
  EXPECT_EQ(core.in_flight(), 4u);  // nothing revoked
  EXPECT_TRUE(core.release(t0()).empty());
  EXPECT_TRUE(core.release(t0()).empty());
  EXPECT_TRUE(core.release(t0()).empty());
  EXPECT_EQ(core.in_flight(), 1u);
  EXPECT_THAT(granted_ids(core.release(t0())), ElementsAre(c));

  // Limit 0: everything is refused with errc::rejected, queued calls wait on.
  EXPECT_TRUE(core.set_limit(t0(), 0).empty());
  EXPECT_EQ(core.try_acquire(t0()).reason, errc::rejected);
}

TEST_F(BulkheadCoreTest, EstimatedWaitFollowsQueuePositionAndHoldTimes) {
  BulkheadCore core(
      {.max_concurrent = 4, .max_queue = 10, .max_wait = 10s, .hold_time_alpha = 0.5});
  EXPECT_EQ(core.estimated_wait(t0()), 0ms);  // free permits
  for (int i = 0; i < 4; ++i) ASSERT_EQ(core.try_acquire(t0()).kind, Kind::granted);
  EXPECT_EQ(core.estimated_wait(t0()), 0ms);  // no hold time known yet

  core.observe_hold(100ms);
  EXPECT_EQ(core.hold_estimate(), 100ms);
  core.observe_hold(200ms);
  EXPECT_EQ(core.hold_estimate(), 150ms);  // EWMA with weight 0.5
  core.observe_hold(100ms);
  EXPECT_EQ(core.hold_estimate(), 125ms);

  // Four permits held ~125 ms each: one frees up about every 31.25 ms.
  EXPECT_EQ(core.estimated_wait(t0()), 31250us);
  auto q1 = core.try_acquire(t0());
  auto q2 = core.try_acquire(t0());
  auto q3 = core.try_acquire(t0(), 7);
  EXPECT_EQ(q1.estimated_wait, 31250us);                        // position 1
  EXPECT_EQ(q2.estimated_wait, 62500us);                        // position 2
  EXPECT_EQ(q3.estimated_wait, 31250us);                        // jumps the queue: position 1
  EXPECT_EQ(core.estimated_wait(t0()), 125ms);                  // would be 4th
  EXPECT_EQ(core.estimated_wait(t0(), 7), 62500us);             // behind q3 only
  EXPECT_EQ(core.estimated_wait_of(t0(), q2.ticket), 93750us);  // now 3rd
  EXPECT_EQ(core.estimated_wait_of(t0(), 999), 0ms);

  // A full-queue refusal carries the estimate for the next free permit as retry_after.
  BulkheadCore full({.max_concurrent = 2, .max_queue = 0, .initial_hold_time = 80ms});
  ASSERT_EQ(full.try_acquire(t0()).kind, Kind::granted);
  ASSERT_EQ(full.try_acquire(t0()).kind, Kind::granted);
  EXPECT_EQ(full.try_acquire(t0()).retry_after, 40ms);
}

TEST_F(BulkheadCoreTest, EstimateIncludesTheThrottle) {
  BulkheadCore core({.max_concurrent = 1,
                     .max_queue = 10,
                     .max_wait = 10s,
                     .starts_per_second = 10,
                     .initial_hold_time = 1ms});
  ASSERT_EQ(core.try_acquire(t0()).kind, Kind::granted);  // next start at +100ms
  // Position 1: max(hold 1ms, throttle 100ms); position 2: 200 ms of throttle spacing.
  EXPECT_EQ(core.try_acquire(t0()).estimated_wait, 100ms);
  EXPECT_EQ(core.try_acquire(t0()).estimated_wait, 200ms);
}

TEST(BulkheadOptionsTest, InvalidOptionsNameTheField) {
  auto message = [](BulkheadOptions o) -> std::string {
    try {
      BulkheadCore core(o);
    } catch (const std::invalid_argument& e) {
      return e.what();
    }
    return "";
  };
  EXPECT_THAT(message({.max_concurrent = kMaxBulkheadLimit + 1}), HasSubstr("max_concurrent"));
  EXPECT_THAT(message({.max_queue = kMaxBulkheadQueue + 1}), HasSubstr("max_queue"));
  EXPECT_THAT(message({.max_wait = -1ms}), HasSubstr("max_wait"));
  EXPECT_THAT(message({.starts_per_second = -1}), HasSubstr("starts_per_second"));
  EXPECT_THAT(message({.starts_per_second = 10, .throttle_burst = 0}), HasSubstr("throttle_burst"));
  EXPECT_THAT(message({.hold_time_alpha = 0}), HasSubstr("hold_time_alpha"));
  EXPECT_THAT(message({.hold_time_alpha = 1.5}), HasSubstr("hold_time_alpha"));
  EXPECT_THAT(message({.initial_hold_time = -1ns}), HasSubstr("initial_hold_time"));
  EXPECT_EQ(message({}), "");
}

}  // namespace
}  // namespace bulwark::limit
