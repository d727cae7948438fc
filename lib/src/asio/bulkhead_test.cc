// async_acquire on a real io_context with real (short) timers. Assertions are on outcomes and
// counts, never on how long something took.
#include "bulwark/asio/bulkhead.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <optional>
#include <string>
#include <thread>
#include <variant>
#include <vector>

#include "bulwark/asio/pipeline.h"
#include "bulwark/limit/bulkhead_stage.h"

namespace bulwark {
namespace {

namespace net = boost::asio;
using namespace std::chrono_literals;
using limit::Bulkhead;
using limit::Permit;

net::awaitable<void> sleep_for(Duration d) {
  net::steady_timer t(co_await net::this_coro::executor, d);
  co_await t.async_wait(net::use_awaitable);
}

// Lets every handler already queued on this single-threaded io_context run before we resume:
// the deterministic way to let another coroutine reach its next wait.
net::awaitable<void> yield_once() {
  co_await net::post(co_await net::this_coro::executor, net::use_awaitable);
}

Deadline in(Duration d) { return Deadline::after(SystemClock::instance().now(), d); }

TEST(AsioBulkhead, GrantedAtOnceWhenAPermitIsFree) {
  Bulkhead b("db", {.max_concurrent = 1});
  net::io_context io;
  std::optional<Result<Permit>> got;
  net::co_spawn(
      io, [&]() -> net::awaitable<void> { got.emplace(co_await asio::async_acquire(b)); },
      net::detached);
  io.run();
  ASSERT_TRUE(got.has_value());
  ASSERT_TRUE(*got);
  EXPECT_EQ(b.in_flight(), 1u);
  got.reset();
  EXPECT_EQ(b.in_flight(), 0u);
}

TEST(AsioBulkhead, RefusedAtOnceWhenFullWithoutAQueue) {
  Bulkhead b("db", {.max_concurrent = 1});
  Permit held = std::move(*b.try_acquire_now(SystemClock::instance().now()));
  net::io_context io;
  std::optional<Result<Permit>> got;
  net::co_spawn(
      io, [&]() -> net::awaitable<void> { got.emplace(co_await asio::async_acquire(b)); },
      net::detached);
  io.run();
  ASSERT_TRUE(got.has_value());
  ASSERT_FALSE(*got);
  EXPECT_EQ(got->error(), errc::queue_full);
}

TEST(AsioBulkhead, GrantedAfterAnotherCoroutineReleases) {
  Bulkhead b("db", {.max_concurrent = 1, .max_queue = 4, .max_wait = 30s});
  net::io_context io;
  std::vector<std::string> events;
  std::optional<Result<Permit>> second;
  net::co_spawn(
      io,
      [&]() -> net::awaitable<void> {
        Result<Permit> p = co_await asio::async_acquire(b);
        EXPECT_TRUE(p);
        events.push_back("first got");
        co_await yield_once();  // the second coroutine queues meanwhile
        events.push_back("first releases");
        p->release();
      },
      net::detached);
  net::co_spawn(
      io,
      [&]() -> net::awaitable<void> {
        second.emplace(co_await asio::async_acquire(b, 0, in(30s)));
        events.push_back("second got");
      },
      net::detached);
  io.run();
  ASSERT_TRUE(second.has_value());
  ASSERT_TRUE(*second) << second->error().message();
  EXPECT_EQ(events, (std::vector<std::string>{"first got", "first releases", "second got"}));
  EXPECT_EQ(b.stats().granted_after_wait, 1u);
}

TEST(AsioBulkhead, GrantFromAnotherThreadIsDeliveredOnTheWaitersExecutor) {
  Bulkhead b("db", {.max_concurrent = 1, .max_queue = 4, .max_wait = Duration::max()});
  Permit held = std::move(*b.try_acquire_now(SystemClock::instance().now()));
  net::io_context io;
  std::optional<Result<Permit>> got;
  std::thread::id completed_on;
  net::co_spawn(
      io,
      [&]() -> net::awaitable<void> {
        got.emplace(co_await asio::async_acquire(b));
        completed_on = std::this_thread::get_id();
      },
      net::detached);
  std::thread releaser([&] {
    while (b.queued() < 1) std::this_thread::yield();
    held.release();
  });
  // The pending wait keeps run() going (outstanding work) until the grant arrives.
  io.run();
  releaser.join();
  ASSERT_TRUE(got.has_value());
  ASSERT_TRUE(*got);
  EXPECT_EQ(completed_on, std::this_thread::get_id());
}

TEST(AsioBulkhead, WaitTimesOutAtTheDeadline) {
  Bulkhead b("db", {.max_concurrent = 1, .max_queue = 4, .max_wait = 30s});
  Permit held = std::move(*b.try_acquire_now(SystemClock::instance().now()));
  net::io_context io;
  std::optional<Result<Permit>> by_deadline, by_max_wait;
  net::co_spawn(
      io,
      [&]() -> net::awaitable<void> {
        by_deadline.emplace(co_await asio::async_acquire(b, 0, in(20ms)));
      },
      net::detached);
  Bulkhead short_wait("db2", {.max_concurrent = 1, .max_queue = 4, .max_wait = 20ms});
  Permit held2 = std::move(*short_wait.try_acquire_now(SystemClock::instance().now()));
  net::co_spawn(
      io,
      [&]() -> net::awaitable<void> {
        by_max_wait.emplace(co_await asio::async_acquire(short_wait));
      },
      net::detached);
  io.run();
  ASSERT_TRUE(by_deadline.has_value());
  ASSERT_FALSE(*by_deadline);
  EXPECT_EQ(by_deadline->error(), errc::wait_timeout);
  ASSERT_TRUE(by_max_wait.has_value());
  ASSERT_FALSE(*by_max_wait);
  EXPECT_EQ(by_max_wait->error(), errc::wait_timeout);
  EXPECT_EQ(b.queued(), 0u);
  EXPECT_EQ(b.stats().timed_out, 1u);  // the bulkhead's own timeout, not a withdrawal
  EXPECT_EQ(short_wait.stats().timed_out, 1u);
}

TEST(AsioBulkhead, CallerCancellationWithdrawsTheWaiterAndFreesItsSlot) {
  // max_queue 1: the cancelled waiter's slot must be free for the next one.
  Bulkhead b("db", {.max_concurrent = 1, .max_queue = 1, .max_wait = 30s});
  net::io_context io;
  std::optional<Result<Permit>> third;
  bool cancelled_branch_lost = false;
  net::co_spawn(
      io,
      [&]() -> net::awaitable<void> {
        using namespace net::experimental::awaitable_operators;
        Result<Permit> held = co_await asio::async_acquire(b);
        EXPECT_TRUE(held);
        // The acquisition loses the race against a short timer and is cancelled.
        auto first = co_await (asio::async_acquire(b) || sleep_for(10ms));
        cancelled_branch_lost = first.index() == 1;
        EXPECT_EQ(b.queued(), 0u);
        EXPECT_EQ(b.stats().withdrawn, 1u);
        // The slot is free: another caller queues and gets the permit once it is released.
        net::co_spawn(
            co_await net::this_coro::executor,
            [&]() -> net::awaitable<void> { third.emplace(co_await asio::async_acquire(b)); },
            net::detached);
        co_await yield_once();  // the spawned caller queues meanwhile
        EXPECT_EQ(b.queued(), 1u);
        held->release();
      },
      net::detached);
  io.run();
  EXPECT_TRUE(cancelled_branch_lost);
  ASSERT_TRUE(third.has_value());
  ASSERT_TRUE(*third) << third->error().message();
  EXPECT_EQ(b.in_flight(), 1u);
  third.reset();
  EXPECT_EQ(b.in_flight(), 0u);
}

TEST(AsioBulkhead, CancellationSignalEndsTheWaitWithCancelled) {
  Bulkhead b("db", {.max_concurrent = 1, .max_queue = 1, .max_wait = 30s});
  Permit held = std::move(*b.try_acquire_now(SystemClock::instance().now()));
  net::io_context io;
  net::cancellation_signal signal;
  std::optional<Result<Permit>> got;
  net::co_spawn(
      io, [&]() -> net::awaitable<void> { got.emplace(co_await asio::async_acquire(b)); },
      net::bind_cancellation_slot(signal.slot(), net::detached));
  net::post(io, [&] { signal.emit(net::cancellation_type::terminal); });
  io.run();
  ASSERT_TRUE(got.has_value());
  ASSERT_FALSE(*got);
  EXPECT_EQ(got->error(), errc::cancelled);
  EXPECT_EQ(b.queued(), 0u);
  EXPECT_EQ(b.in_flight(), 1u);
}

// A release on another thread races with the waiter's cancellation, many times. Whatever wins,
// exactly one thing happens per round: the waiter gets the permit (and returns it), or the
// permit goes back to the bulkhead. Nothing may leak or be returned twice.
TEST(AsioBulkhead, GrantRacingWithCancellationNeverLeaksOrDoubleReleases) {
  constexpr int kRounds = 300;
  Bulkhead b("db", {.max_concurrent = 1, .max_queue = 1, .max_wait = 30s});
  int got_permit = 0, got_cancelled = 0;
  for (int round = 0; round < kRounds; ++round) {
    Permit held = std::move(*b.try_acquire_now(SystemClock::instance().now()));
    net::io_context io;
    net::cancellation_signal signal;
    std::optional<Result<Permit>> got;
    net::co_spawn(
        io, [&]() -> net::awaitable<void> { got.emplace(co_await asio::async_acquire(b)); },
        net::bind_cancellation_slot(signal.slot(), net::detached));
    std::atomic<bool> go{false};
    std::thread releaser([&] {
      while (!go.load()) std::this_thread::yield();
      held.release();
    });
    net::post(io, [&] {
      go.store(true);
      signal.emit(net::cancellation_type::terminal);
    });
    io.run();
    releaser.join();
    ASSERT_TRUE(got.has_value());
    if (*got) {
      ++got_permit;
    } else {
      EXPECT_EQ(got->error(), errc::cancelled);
      ++got_cancelled;
    }
    got.reset();
    ASSERT_EQ(b.in_flight(), 0u) << "round " << round;
    ASSERT_EQ(b.queued(), 0u) << "round " << round;
  }
  EXPECT_EQ(got_permit + got_cancelled, kRounds);
  // Exactly one permit is available: nothing leaked, nothing returned twice.
  Result<Permit> one = b.try_acquire_now(SystemClock::instance().now());
  EXPECT_TRUE(one);
  EXPECT_FALSE(b.try_acquire_now(SystemClock::instance().now()));
}

TEST(AsioBulkhead, ThrottledPermitIsDeliveredAtItsStart) {
  Bulkhead b("api", {.max_concurrent = 10, .max_wait = 1s, .starts_per_second = 100});
  net::io_context io;
  std::vector<TimePoint> starts;
  std::vector<TimePoint> delivered;
  for (int i = 0; i < 3; ++i) {
    net::co_spawn(
        io,
        [&]() -> net::awaitable<void> {
          Result<Permit> p = co_await asio::async_acquire(b);
          EXPECT_TRUE(p);
          if (!p) co_return;
          starts.push_back(p->start_at());
          delivered.push_back(SystemClock::instance().now());
        },
        net::detached);
  }
  io.run();
  ASSERT_EQ(starts.size(), 3u);
  // Starts are 10 ms apart, and none was handed over before its start instant.
  std::sort(starts.begin(), starts.end());
  EXPECT_EQ(starts[1] - starts[0], 10ms);
  EXPECT_EQ(starts[2] - starts[1], 10ms);
  std::sort(delivered.begin(), delivered.end());
  for (int i = 0; i < 3; ++i) EXPECT_GE(delivered[i], starts[i]);
}

// BulkheadStage under the Asio executor: the second call waits (suspended) for the first one's
// permit, and a call that cannot get one in time ends with wait_timeout without being made.
TEST(AsioBulkhead, StageQueuesCoroutinesInAPipeline) {
  Bulkhead b("db", {.max_concurrent = 1, .max_queue = 2, .max_wait = 30s});
  auto p = Pipeline::Builder().stage(std::make_shared<limit::BulkheadStage>(b)).build();
  net::io_context io;
  std::vector<std::string> events;
  std::optional<Result<int>> first, second, third;
  // The first call holds its permit until the third has given up: the order is decided by
  // the calls themselves, not by which real-time timer fires first.
  net::steady_timer third_done(io, std::chrono::steady_clock::time_point::max());
  net::co_spawn(
      io,
      [&]() -> net::awaitable<void> {
        first.emplace(co_await asio::run(p, [&]() -> net::awaitable<int> {
          events.push_back("first starts");
          co_await third_done.async_wait(net::as_tuple(net::use_awaitable));
          events.push_back("first ends");
          co_return 1;
        }));
      },
      net::detached);
  net::co_spawn(
      io,
      [&]() -> net::awaitable<void> {
        second.emplace(co_await asio::run(p, [&]() -> net::awaitable<int> {
          events.push_back("second starts");
          co_return 2;
        }));
      },
      net::detached);
  net::co_spawn(
      io,
      [&]() -> net::awaitable<void> {
        // Only 5 ms to wait: it times out while the first call still holds the permit.
        third.emplace(co_await asio::run(p,
                                         [&]() -> net::awaitable<int> {
                                           events.push_back("third starts");
                                           co_return 3;
                                         },
                                         {.deadline = in(5ms)}));
        third_done.cancel();
      },
      net::detached);
  io.run();
  ASSERT_TRUE(first && *first);
  ASSERT_TRUE(second && *second);
  EXPECT_EQ(**second, 2);
  ASSERT_TRUE(third.has_value());
  ASSERT_FALSE(*third);
  EXPECT_EQ(third->error(), errc::wait_timeout);
  EXPECT_EQ(events, (std::vector<std::string>{"first starts", "first ends", "second starts"}));
  EXPECT_EQ(b.in_flight(), 0u);
  EXPECT_EQ(b.queued(), 0u);
}

}  // namespace
}  // namespace bulwark
