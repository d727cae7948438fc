// bulwark::asio::get_or_fill on a real io_context. Nothing here waits on real time: fills
// block on a "gate" (a timer that never expires until the test cancels it), the io_context is
// driven with poll() until every coroutine is parked, and the cache's time is a ManualClock.
#include "bulwark/asio/cache.h"

#include <gtest/gtest.h>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "bulwark/testing/manual_clock.h"

namespace bulwark {
namespace {

namespace net = boost::asio;
using namespace std::chrono_literals;
using cache::Cache;
using cache::CacheOptions;
using StringCache = Cache<int, std::string>;
using Outcome = StringCache::Outcome;

CacheOptions options() {
  CacheOptions o;
  o.max_entries = 100;
  o.shards = 2;
  o.ttl = 10s;
  o.stale_if_error = 10s;
  return o;
}

// What one spawned caller ended with.
struct Ending {
  std::optional<Outcome> outcome;
  bool aborted = false;  // completed with system_error(operation_aborted)
  bool done = false;
};

// A fill that waits until the gate is opened (cancelled), then yields what `make` gives.
template <class Make>
auto gated_fill(net::steady_timer& gate, int& runs, Make make) {
  return [&gate, &runs, make]() -> net::awaitable<decltype(make())> {
    ++runs;
    boost::system::error_code ec;
    co_await gate.async_wait(net::redirect_error(net::use_awaitable, ec));
    co_return make();
  };
}

template <class Fill>
void spawn_caller(net::io_context& io, StringCache& c, testing::ManualClock& clock, int key,
                  Fill fill, Ending& end, net::cancellation_signal* cancel = nullptr) {
  auto handler = [&end](std::exception_ptr e, Outcome o) {
    end.done = true;
    if (e) {
      try {
        std::rethrow_exception(e);
      } catch (const boost::system::system_error& se) {
        end.aborted = se.code() == net::error::operation_aborted;
      }
      return;
    }
    end.outcome.emplace(std::move(o));
  };
  auto coro = asio::get_or_fill(c, key, clock, fill);
  if (cancel != nullptr) {
    net::co_spawn(io, std::move(coro), net::bind_cancellation_slot(cancel->slot(), handler));
  } else {
    net::co_spawn(io, std::move(coro), handler);
  }
}

net::steady_timer make_gate(net::io_context& io) {
  net::steady_timer gate(io);
  gate.expires_at(net::steady_timer::time_point::max());
  return gate;
}

TEST(AsioCache, HitCompletesWithoutAFill) {
  net::io_context io;
  testing::ManualClock clock;
  StringCache c(options());
  c.put(1, "cached", clock.now());
  auto gate = make_gate(io);
  int runs = 0;
  Ending end;
  spawn_caller(io, c, clock, 1, gated_fill(gate, runs, [] { return std::string("x"); }), end);
  io.run();
  ASSERT_TRUE(end.outcome && *end.outcome);
  EXPECT_EQ(***end.outcome, "cached");
  EXPECT_EQ(runs, 0);
}

TEST(AsioCache, ConcurrentMissesShareOneFill) {
  net::io_context io;
  testing::ManualClock clock;
  StringCache c(options());
  auto gate = make_gate(io);
  int runs = 0;
  std::vector<Ending> ends(20);
  for (auto& e : ends) {
    spawn_caller(io, c, clock, 1, gated_fill(gate, runs, [] { return std::string("v"); }), e);
  }
  io.poll();  // everyone parked: one fill waiting at the gate, 19 waiting for it
  EXPECT_EQ(runs, 1);
  EXPECT_EQ(c.stats().fills, 1u);
  EXPECT_EQ(c.stats().fill_waits, 19u);
  for (auto& e : ends) EXPECT_FALSE(e.done);
  gate.cancel();
  io.run();
  for (auto& e : ends) {
    ASSERT_TRUE(e.outcome && *e.outcome);
    EXPECT_EQ(***e.outcome, "v");
  }
  EXPECT_EQ(*c.get(1, clock.now()), "v");
}

TEST(AsioCache, FailedFillGivesEveryoneTheStaleValue) {
  net::io_context io;
  testing::ManualClock clock;
  StringCache c(options());
  c.put(1, "old", clock.now());
  clock.advance(12s);
  auto gate = make_gate(io);
  int runs = 0;
  std::vector<Ending> ends(5);
  for (auto& e : ends) {
    spawn_caller(
        io, c, clock, 1,
        gated_fill(gate, runs,
                   [] { return Result<std::string>(make_error_code(errc::circuit_open)); }),
        e);
  }
  io.poll();
  gate.cancel();
  io.run();
  EXPECT_EQ(runs, 1);
  for (auto& e : ends) {
    ASSERT_TRUE(e.outcome && *e.outcome);
    EXPECT_EQ(***e.outcome, "old");
    EXPECT_TRUE((*e.outcome)->stale);
  }
  EXPECT_EQ(c.stats().stale_served, 5u);
}

TEST(AsioCache, ThrowingFillIsAFailedFill) {
  net::io_context io;
  testing::ManualClock clock;
  StringCache c(options());
  auto gate = make_gate(io);
  int runs = 0;
  std::vector<Ending> ends(3);
  for (auto& e : ends) {
    spawn_caller(io, c, clock, 1,
                 gated_fill(gate, runs, []() -> std::string { throw std::runtime_error("boom"); }),
                 e);
  }
  io.poll();
  gate.cancel();
  io.run();
  for (auto& e : ends) {
    ASSERT_TRUE(e.outcome);
    ASSERT_FALSE(*e.outcome);
    EXPECT_EQ(e.outcome->error(), make_error_code(errc::call_failed));
  }
  EXPECT_EQ(c.stats().fill_failures, 1u);
}

TEST(AsioCache, CancellingAWaiterAbandonsOnlyItsWait) {
  net::io_context io;
  testing::ManualClock clock;
  StringCache c(options());
  auto gate = make_gate(io);
  int runs = 0;
  Ending leader, cancelled_waiter, waiter;
  net::cancellation_signal cancel;
  auto fill = gated_fill(gate, runs, [] { return std::string("v"); });
  spawn_caller(io, c, clock, 1, fill, leader);
  spawn_caller(io, c, clock, 1, fill, cancelled_waiter, &cancel);
  spawn_caller(io, c, clock, 1, fill, waiter);
  io.poll();
  cancel.emit(net::cancellation_type::terminal);
  io.poll();
  EXPECT_TRUE(cancelled_waiter.done);
  EXPECT_TRUE(cancelled_waiter.aborted);
  EXPECT_FALSE(leader.done);
  EXPECT_FALSE(waiter.done);
  gate.cancel();
  io.run();
  ASSERT_TRUE(leader.outcome && *leader.outcome);
  ASSERT_TRUE(waiter.outcome && *waiter.outcome);
  EXPECT_EQ(***waiter.outcome, "v");
  EXPECT_EQ(runs, 1);
}

TEST(AsioCache, CancellingTheFirstCallerDoesNotCancelTheFill) {
  net::io_context io;
  testing::ManualClock clock;
  StringCache c(options());
  auto gate = make_gate(io);
  int runs = 0;
  Ending leader, waiter;
  net::cancellation_signal cancel;
  auto fill = gated_fill(gate, runs, [] { return std::string("v"); });
  spawn_caller(io, c, clock, 1, fill, leader, &cancel);
  spawn_caller(io, c, clock, 1, fill, waiter);
  io.poll();
  cancel.emit(net::cancellation_type::terminal);
  io.poll();
  EXPECT_TRUE(leader.aborted);
  EXPECT_FALSE(waiter.done);
  gate.cancel();
  io.run();
  ASSERT_TRUE(waiter.outcome && *waiter.outcome);
  EXPECT_EQ(***waiter.outcome, "v");
  EXPECT_EQ(*c.get(1, clock.now()), "v") << "the fill completed and stored its value";
}

// A coroutine waits for a fill led by a plain thread through the blocking API.
TEST(AsioCache, CoroutineWaitsForAFillRunningOnAnotherThread) {
  net::io_context io;
  testing::ManualClock clock;
  StringCache c(options());
  auto start = c.begin_fill(1, clock.now());
  ASSERT_TRUE(start.lead);
  auto gate = make_gate(io);
  int runs = 0;
  Ending waiter;
  spawn_caller(io, c, clock, 1, gated_fill(gate, runs, [] { return std::string("x"); }), waiter);
  io.poll();
  EXPECT_FALSE(waiter.done);
  std::thread filler([&] { start.lead->complete(std::string("from-thread"), clock.now()); });
  filler.join();
  io.run();  // the waiter's completion was posted to its executor
  ASSERT_TRUE(waiter.outcome && *waiter.outcome);
  EXPECT_EQ(***waiter.outcome, "from-thread");
  EXPECT_EQ(runs, 0);
}

}  // namespace
}  // namespace bulwark
