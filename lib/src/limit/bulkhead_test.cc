// Bulkhead (the thread-safe facade) on a ManualClock: permits, tickets, notifications, the
// switch between lock-free and queued operation, stats and the blocking acquire().
#include "bulwark/limit/bulkhead.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <stop_token>
#include <thread>
#include <vector>

#include "bulwark/testing/manual_clock.h"

namespace bulwark::limit {
namespace {

using namespace std::chrono_literals;
using State = Ticket::State;
using Status = Bulkhead::Status;

class BulkheadTest : public ::testing::Test {
 protected:
  TimePoint now() const { return clock_.now(); }
  Permit grant(Bulkhead& b, int priority = 0) {
    auto a = b.try_acquire(now(), priority);
    EXPECT_EQ(a.status, Status::granted);
    return std::move(a.permit);
  }
  Ticket queue(Bulkhead& b, int priority = 0, Deadline deadline = Deadline::never()) {
    auto a = b.try_acquire(now(), priority, deadline);
    EXPECT_EQ(a.status, Status::queued);
    return a.ticket;
  }
  // Waits (spinning, no sleep) until another thread has queued `n` calls.
  static void await_queued(const Bulkhead& b, std::size_t n) {
    while (b.queued() < n) std::this_thread::yield();
  }

  testing::ManualClock clock_;
};

TEST_F(BulkheadTest, GrantsUpToTheLimitAndRefusesWithAReason) {
  Bulkhead b("db", {.max_concurrent = 2}, clock_);
  Permit p1 = grant(b);
  Permit p2 = grant(b);
  EXPECT_TRUE(p1);
  EXPECT_EQ(p1.in_flight_at_start(), 1u);
  EXPECT_EQ(p2.in_flight_at_start(), 2u);
  EXPECT_EQ(p1.start_at(), now());
  EXPECT_EQ(p1.bulkhead(), &b);
  EXPECT_EQ(b.in_flight(), 2u);

  auto full = b.try_acquire(now());
  EXPECT_EQ(full.status, Status::rejected);
  EXPECT_EQ(full.reason, errc::queue_full);
  auto now_only = b.try_acquire_now(now());
  ASSERT_FALSE(now_only);
  EXPECT_EQ(now_only.error(), errc::queue_full);

  b.set_limit(0);
  p1.release(now());
  auto closed = b.try_acquire_now(now());
  ASSERT_FALSE(closed);
  EXPECT_EQ(closed.error(), errc::rejected);
  EXPECT_EQ(b.try_acquire(now()).reason, errc::rejected);

  const auto s = b.stats();
  EXPECT_EQ(s.granted, 2u);
  EXPECT_EQ(s.rejected_queue_full, 2u);
  EXPECT_EQ(s.rejected_closed, 2u);
  EXPECT_EQ(s.rejected(), 4u);
}

TEST_F(BulkheadTest, PermitsReleaseThemselvesOnceAndMoveOwnership) {
  Bulkhead b("db", {.max_concurrent = 2}, clock_);
  {
    Permit p = grant(b);
    EXPECT_EQ(b.in_flight(), 1u);
  }
  EXPECT_EQ(b.in_flight(), 0u);

  Permit a = grant(b);
  Permit moved = std::move(a);
  EXPECT_FALSE(a);  // NOLINT(bugprone-use-after-move): moved-from holds nothing
  EXPECT_TRUE(moved);
  a.release();  // nothing to release
  EXPECT_EQ(b.in_flight(), 1u);

  moved.release(now());
  moved.release(now());  // idempotent
  moved.release();
  EXPECT_EQ(b.in_flight(), 0u);

  // Move-assigning over a held permit returns the old one.
  Permit x = grant(b);
  Permit y = grant(b);
  x = std::move(y);
  EXPECT_EQ(b.in_flight(), 1u);
  x = Permit();
  EXPECT_EQ(b.in_flight(), 0u);
}

TEST_F(BulkheadTest, HoldTimesFeedTheEstimate) {
  Bulkhead b("db", {.max_concurrent = 1, .max_queue = 4, .hold_time_alpha = 1.0}, clock_);
  Permit p = grant(b);
  clock_.advance(40ms);
  p.release(now());
  EXPECT_EQ(b.hold_estimate(), 40ms);
  {
    Permit q = grant(b);
    clock_.advance(60ms);
  }  // the destructor reads the clock
  EXPECT_EQ(b.hold_estimate(), 60ms);

  Permit held = grant(b);
  EXPECT_EQ(b.estimated_wait(now()), 60ms);  // lock-free mode: the next free permit
  Ticket t = queue(b);
  EXPECT_EQ(b.estimated_wait(now()), 120ms);  // behind one waiter
}

TEST_F(BulkheadTest, AQueuedTicketIsGrantedOnReleaseAndNotifiedOnce) {
  Bulkhead b("db", {.max_concurrent = 1, .max_queue = 4, .max_wait = 1s}, clock_);
  Permit held = grant(b);
  auto a = b.try_acquire(now());
  ASSERT_EQ(a.status, Status::queued);
  Ticket t = a.ticket;
  EXPECT_EQ(t.state(), State::waiting);
  EXPECT_EQ(t.deadline(), Deadline::after(now(), 1s));
  EXPECT_EQ(b.queued(), 1u);

  int woken = 0;
  t.on_resolved([&] { ++woken; });
  clock_.advance(30ms);
  held.release(now());
  EXPECT_EQ(woken, 1);
  EXPECT_EQ(t.state(), State::granted);
  EXPECT_EQ(t.start_at(), now());
  EXPECT_EQ(b.in_flight(), 1u);
  EXPECT_EQ(b.queued(), 0u);

  Result<Permit> p = t.take();
  ASSERT_TRUE(p);
  EXPECT_EQ(p->start_at(), now());
  EXPECT_EQ(t.state(), State::taken);
  Result<Permit> again = t.take();
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error(), errc::cancelled);
  EXPECT_FALSE(t.cancel());  // taken: nothing to give back
  EXPECT_EQ(woken, 1);

  // A function installed after the grant runs at once.
  int late = 0;
  t.on_resolved([&] { ++late; });
  EXPECT_EQ(late, 1);

  p->release(now());
  EXPECT_EQ(b.in_flight(), 0u);
  // Back in lock-free mode: acquisitions work without a queue in the way.
  Permit q = grant(b);
  EXPECT_EQ(b.in_flight(), 1u);
}

TEST_F(BulkheadTest, PrioritiesDecideWhoIsGrantedFirst) {
  Bulkhead b("db", {.max_concurrent = 1, .max_queue = 8, .max_wait = 1s}, clock_);
  Permit held = grant(b);
  std::vector<int> order;
  std::vector<Ticket> tickets;
  const int priorities[] = {0, 2, 0, 1, 2};
  for (int i = 0; i < 5; ++i) {
    tickets.push_back(queue(b, priorities[i]));
    tickets.back().on_resolved([&order, i] { order.push_back(i); });
  }
  for (int round = 0; round < 5; ++round) {
    held.release(now());
    auto granted = std::find_if(tickets.begin(), tickets.end(),
                                [](const Ticket& t) { return t.state() == State::granted; });
    ASSERT_NE(granted, tickets.end());
    held = std::move(*granted->take());
  }
  EXPECT_THAT(order, ::testing::ElementsAre(1, 4, 3, 0, 2));
}

TEST_F(BulkheadTest, WaitTimesOutAtTheDeadlineThroughExpire) {
  Bulkhead b("db", {.max_concurrent = 1, .max_queue = 4, .max_wait = 100ms}, clock_);
  Permit held = grant(b);
  Ticket t = queue(b);
  int woken = 0;
  t.on_resolved([&] { ++woken; });

  clock_.advance(100ms - 1ns);
  EXPECT_EQ(b.expire(now()), 0u);
  EXPECT_EQ(t.state(), State::waiting);
  clock_.advance(1ns);
  EXPECT_EQ(b.expire(now()), 1u);
  EXPECT_EQ(woken, 1);
  EXPECT_EQ(t.state(), State::refused);
  EXPECT_EQ(t.reason(), errc::wait_timeout);
  Result<Permit> r = t.take();
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), errc::wait_timeout);
  EXPECT_EQ(b.queued(), 0u);
  EXPECT_EQ(b.stats().timed_out, 1u);
}

TEST_F(BulkheadTest, ExpiredWaitersAreRefusedLazilyByTheNextAcquisition) {
  Bulkhead b("db", {.max_concurrent = 1, .max_queue = 1, .max_wait = 50ms}, clock_);
  Permit held = grant(b);
  Ticket stale = queue(b);
  clock_.advance(50ms);
  // The queue's only slot belongs to a waiter whose deadline has passed: the newcomer gets it.
  Ticket fresh = queue(b);
  EXPECT_EQ(stale.state(), State::refused);
  EXPECT_EQ(fresh.state(), State::waiting);
}

TEST_F(BulkheadTest, WithdrawingFreesTheSlotAndTheNextWaiterGetsThePermit) {
  Bulkhead b("db", {.max_concurrent = 1, .max_queue = 2, .max_wait = 1s}, clock_);
  Permit held = grant(b);
  Ticket first = queue(b);
  Ticket second = queue(b);
  EXPECT_EQ(b.try_acquire(now()).reason, errc::queue_full);

  bool first_woken = false;
  first.on_resolved([&] { first_woken = true; });
  EXPECT_TRUE(first.withdraw());
  EXPECT_FALSE(first.withdraw());
  EXPECT_EQ(first.state(), State::withdrawn);
  Ticket third = queue(b);  // the freed slot

  held.release(now());
  EXPECT_FALSE(first_woken);  // never called for a withdrawn ticket
  EXPECT_EQ(second.state(), State::granted);
  EXPECT_EQ(third.state(), State::waiting);
  Result<Permit> r = first.take();
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), errc::wait_timeout);
  EXPECT_EQ(b.stats().withdrawn, 1u);
}

TEST_F(BulkheadTest, CancellingAGrantedTicketPassesThePermitOn) {
  Bulkhead b("db", {.max_concurrent = 1, .max_queue = 2, .max_wait = 1s}, clock_);
  Permit held = grant(b);
  Ticket a = queue(b);
  Ticket c = queue(b);
  held.release(now());
  ASSERT_EQ(a.state(), State::granted);

  EXPECT_TRUE(a.cancel());  // its owner went away before taking it
  EXPECT_EQ(a.state(), State::released);
  EXPECT_FALSE(a.take());
  EXPECT_EQ(c.state(), State::granted);
  EXPECT_EQ(b.in_flight(), 1u);

  EXPECT_TRUE(c.cancel());
  EXPECT_EQ(b.in_flight(), 0u);
  EXPECT_FALSE(c.cancel());
  EXPECT_FALSE(Ticket().cancel());
}

TEST_F(BulkheadTest, TakeOnAWaitingTicketWithdrawsItAsATimeout) {
  Bulkhead b("db", {.max_concurrent = 1, .max_queue = 2, .max_wait = 1s}, clock_);
  Permit held = grant(b);
  Ticket t = queue(b);
  Result<Permit> r = t.take();
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), errc::wait_timeout);
  EXPECT_EQ(t.state(), State::withdrawn);
  EXPECT_EQ(b.queued(), 0u);
}

TEST_F(BulkheadTest, DisplacedWaiterIsRefusedWithQueueFull) {
  Bulkhead b("db",
             {.max_concurrent = 1, .max_queue = 1, .max_wait = 1s, .displace_lower_priority = true},
             clock_);
  Permit held = grant(b);
  Ticket low = queue(b, 0);
  bool woken = false;
  low.on_resolved([&] { woken = true; });
  Ticket high = queue(b, 3);
  EXPECT_TRUE(woken);
  EXPECT_EQ(low.reason(), errc::queue_full);
  EXPECT_EQ(high.state(), State::waiting);
  EXPECT_EQ(b.stats().displaced, 1u);
}

TEST_F(BulkheadTest, RaisingTheLimitGrantsWaitersAndLoweringItHoldsNewOnesBack) {
  Bulkhead b("db", {.max_concurrent = 1, .max_queue = 4, .max_wait = 1s}, clock_);
  Permit held = grant(b);
  Ticket a = queue(b);
  Ticket c = queue(b);
  b.set_limit(3, now());
  EXPECT_EQ(b.limit(), 3u);
  EXPECT_EQ(a.state(), State::granted);
  EXPECT_EQ(c.state(), State::granted);
  EXPECT_EQ(b.in_flight(), 3u);

  b.set_limit(1, now());
  EXPECT_EQ(b.limit(), 1u);
  EXPECT_EQ(b.in_flight(), 3u);  // nothing revoked
  Permit pa = std::move(*a.take());
  Permit pc = std::move(*c.take());
  held.release(now());
  pa.release(now());
  EXPECT_EQ(b.in_flight(), 1u);
  Ticket d = queue(b);  // one in flight at the lowered limit of 1: must wait
  pc.release(now());
  EXPECT_EQ(d.state(), State::granted);
  EXPECT_EQ(b.in_flight(), 1u);

  // The limit is also honoured by the lock-free path once the queue is empty.
  ASSERT_TRUE(d.take());  // released at once (temporary)
  EXPECT_EQ(b.in_flight(), 0u);
  b.set_limit(2, now());
  Permit x = grant(b);
  Permit y = grant(b);
  EXPECT_EQ(b.try_acquire_now(now()).error(), errc::queue_full);
}

TEST_F(BulkheadTest, ThrottledPermitsCarryTheirStartInstant) {
  Bulkhead b("api", {.max_concurrent = 10, .max_wait = 1s, .starts_per_second = 20}, clock_);
  Permit p1 = grant(b);
  Permit p2 = grant(b);
  Permit p3 = grant(b);
  EXPECT_EQ(p1.start_at(), now());
  EXPECT_EQ(p2.start_at(), now() + 50ms);
  EXPECT_EQ(p3.start_at(), now() + 100ms);
  Result<Permit> no_wait = b.try_acquire_now(now());
  ASSERT_FALSE(no_wait);
  EXPECT_EQ(no_wait.error(), errc::throttled);
  EXPECT_EQ(b.stats().rejected_throttled, 1u);

  // The blocking acquire waits for the start with clock.sleep_for: on a ManualClock that
  // advances time to exactly the start instant.
  const TimePoint before = now();
  Result<Permit> p4 = b.acquire();
  ASSERT_TRUE(p4);
  EXPECT_EQ(p4->start_at(), before + 150ms);
  EXPECT_EQ(now(), before + 150ms);
}

TEST_F(BulkheadTest, StatsAddUp) {
  Bulkhead b("db", {.max_concurrent = 2, .max_queue = 2, .max_wait = 100ms}, clock_);
  Permit p1 = grant(b);
  Permit p2 = grant(b);
  Ticket w1 = queue(b);
  Ticket w2 = queue(b);
  EXPECT_EQ(b.try_acquire(now()).reason, errc::queue_full);
  EXPECT_EQ(b.try_acquire(now(), 0, Deadline::at(now())).reason, errc::wait_timeout);
  EXPECT_TRUE(w1.withdraw());
  p1.release(now());  // -> w2
  clock_.advance(100ms);
  Ticket w3 = queue(b);
  b.expire(now() + 100ms);

  const auto s = b.stats();
  EXPECT_EQ(s.granted, 2u);
  EXPECT_EQ(s.queued, 3u);
  EXPECT_EQ(s.granted_after_wait, 1u);
  EXPECT_EQ(s.withdrawn, 1u);
  EXPECT_EQ(s.timed_out, 1u);
  EXPECT_EQ(s.rejected_queue_full, 1u);
  EXPECT_EQ(s.rejected_no_time, 1u);
  const uint64_t attempts = 7;
  EXPECT_EQ(s.granted + s.queued + s.rejected(), attempts);
  EXPECT_EQ(s.granted_after_wait + s.timed_out + s.withdrawn + s.displaced + b.queued(), s.queued);
}

TEST_F(BulkheadTest, DestroyingTheBulkheadRefusesItsWaiters) {
  Ticket orphan;
  bool woken = false;
  {
    Bulkhead b("db", {.max_concurrent = 1, .max_queue = 1, .max_wait = 1s}, clock_);
    Permit held = grant(b);
    orphan = queue(b);
    orphan.on_resolved([&] { woken = true; });
    // Closing the bulkhead (limit 0) and returning the permit leaves the waiter queued.
    b.set_limit(0, now());
    held.release(now());
    EXPECT_EQ(orphan.state(), State::waiting);
    EXPECT_FALSE(woken);
  }
  EXPECT_TRUE(woken);
  EXPECT_EQ(orphan.state(), State::refused);
  EXPECT_EQ(orphan.reason(), errc::rejected);
  Result<Permit> r = orphan.take();
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), errc::rejected);
}

// The blocking acquire() with a second thread doing the release. No sleeping: the releasing
// thread spins until the acquirer has queued.
TEST_F(BulkheadTest, BlockingAcquireIsWokenByAReleaseOnAnotherThread) {
  Bulkhead b("db", {.max_concurrent = 1, .max_queue = 4, .max_wait = Duration::max()}, clock_);
  Permit held = grant(b);
  std::thread releaser([&] {
    await_queued(b, 1);
    held.release(clock_.now());
  });
  Result<Permit> p = b.acquire(0, Deadline::never());
  releaser.join();
  ASSERT_TRUE(p);
  EXPECT_EQ(b.in_flight(), 1u);
  EXPECT_EQ(b.stats().granted_after_wait, 1u);
}

TEST_F(BulkheadTest, BlockingAcquireStopsWhenAskedAndFreesItsSlot) {
  Bulkhead b("db", {.max_concurrent = 1, .max_queue = 1, .max_wait = Duration::max()}, clock_);
  Permit held = grant(b);
  std::stop_source stop;
  std::thread stopper([&] {
    await_queued(b, 1);
    stop.request_stop();
  });
  Result<Permit> p = b.acquire(0, Deadline::never(), stop.get_token());
  stopper.join();
  ASSERT_FALSE(p);
  EXPECT_EQ(p.error(), errc::cancelled);
  EXPECT_EQ(b.queued(), 0u);
  EXPECT_EQ(b.in_flight(), 1u);
  // An already-stopped token does not even try.
  EXPECT_EQ(b.acquire(0, Deadline::never(), stop.get_token()).error(), errc::cancelled);
}

TEST_F(BulkheadTest, BlockingAcquireReturnsRefusalsAtOnce) {
  Bulkhead b("db", {.max_concurrent = 1, .max_queue = 0}, clock_);
  Result<Permit> p = b.acquire();
  ASSERT_TRUE(p);
  Result<Permit> refused = b.acquire();
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error(), errc::queue_full);
  // With no time left to wait the blocking call does not block either.
  Bulkhead q("db", {.max_concurrent = 1, .max_queue = 4}, clock_);
  Result<Permit> hold = q.acquire();
  ASSERT_TRUE(hold);
  EXPECT_EQ(q.acquire(0, Deadline::at(clock_.now())).error(), errc::wait_timeout);
}

}  // namespace
}  // namespace bulwark::limit
