// The Asio adapter runs real coroutines on a real io_context; its waits are real timers, so
// these tests use short timeouts against calls that would otherwise hang for many seconds.
// Every assertion is on outcomes and counts, never on how long something took beyond a
// generous upper bound, so the tests are not timing-sensitive.
#include "bulwark/asio/pipeline.h"

#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <stdexcept>
#include <string>
#include <thread>

#include "bulwark/testing/gate_stage.h"
#include "bulwark/testing/manual_clock.h"

namespace bulwark {
namespace {

namespace net = boost::asio;
using namespace std::chrono_literals;
using circuit::CircuitBreaker;
using circuit::State;

// Runs a coroutine to completion on a fresh io_context and returns its value.
template <class T>
T run_coro(net::awaitable<T> coro) {
  net::io_context io;
  std::optional<T> out;
  std::exception_ptr error;
  net::co_spawn(io, std::move(coro), [&](std::exception_ptr e, T v) {
    error = e;
    if (!e) out.emplace(std::move(v));
  });
  io.run();
  if (error) std::rethrow_exception(error);
  return std::move(*out);
}

// A call that completes after `d` unless cancelled; counts cancellations.
net::awaitable<int> answer_after(Duration d, int value, int* cancelled) {
  net::steady_timer t(co_await net::this_coro::executor, d);
  try {
    co_await t.async_wait(net::use_awaitable);
  } catch (const boost::system::system_error& e) {
    if (e.code() == net::error::operation_aborted && cancelled) ++*cancelled;
    throw;
  }
  co_return value;
}

retry::RetryOptions fast_retry(uint32_t attempts, Duration per_try = Duration::max()) {
  retry::RetryOptions o;
  o.max_attempts = attempts;
  o.backoff.base = 1ms;
  o.backoff.max = 2ms;
  o.per_try_timeout = per_try;
  return o;
}

TEST(AsioPipeline, PassesValueThrough) {
  auto p = Pipeline::Builder().retry(fast_retry(2)).build();
  auto r = run_coro(asio::run(p, [] { return answer_after(0ms, 5, nullptr); }));
  ASSERT_TRUE(r);
  EXPECT_EQ(*r, 5);
}

TEST(AsioPipeline, PerTryTimeoutCancelsTheHangingCallAndRetries) {
  CircuitBreaker breaker("b", {}, SystemClock::instance());
  auto p =
      Pipeline::Builder().timeout(30s).retry(fast_retry(3, 50ms)).circuit_breaker(breaker).build();
  int cancelled = 0;
  int calls = 0;
  ExecutionInfo info;
  const auto start = SystemClock::instance().now();
  auto r = run_coro(asio::AsyncPipeline(p).run(
      [&](const CallContext&) { return answer_after(++calls == 1 ? 30s : 1ms, 7, &cancelled); },
      {.info = &info}));
  const auto took = SystemClock::instance().now() - start;
  ASSERT_TRUE(r);
  EXPECT_EQ(*r, 7);
  EXPECT_EQ(info.attempts, 2u);
  EXPECT_EQ(cancelled, 1);  // the first call really was cancelled, not abandoned
  EXPECT_LT(took, 10s);     // and nobody waited for its 30 s
  auto s = breaker.stats();
  EXPECT_EQ(s.failures, 1u);  // the timeout counted against the breaker
  EXPECT_EQ(s.successes, 1u);
}

TEST(AsioPipeline, TotalTimeoutEndsTheCallWithTimeout) {
  auto p = Pipeline::Builder().timeout(20ms).build();
  int cancelled = 0;
  auto r = run_coro(asio::run(p, [&] { return answer_after(30s, 1, &cancelled); }));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), errc::timeout);
  EXPECT_EQ(cancelled, 1);
}

TEST(AsioPipeline, ExceptionBecomesCallFailed) {
  auto p = Pipeline::Builder().retry(fast_retry(2)).build();
  int calls = 0;
  ExecutionInfo info;
  auto r = run_coro(asio::run(p,
                              [&]() -> net::awaitable<int> {
                                ++calls;
                                throw std::runtime_error("boom");
                                co_return 0;
                              },
                              {.info = &info}));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), errc::call_failed);
  EXPECT_EQ(calls, 2);
  EXPECT_TRUE(info.exception);
}

TEST(AsioPipeline, CallerCancellationReleasesTheHalfOpenProbe) {
  // Decisions read a ManualClock (to put the breaker in half-open without waiting); the call
  // itself is cancelled by the caller with a real 20 ms timer.
  testing::ManualClock clock;
  circuit::BreakerOptions o;
  o.window_size = 2;
  o.min_calls = 2;
  o.open_duration = 5s;
  o.half_open_probes = 1;
  o.success_threshold = 1;
  CircuitBreaker breaker("b", o, clock);
  for (int i = 0; i < 2; ++i)
    breaker.on_failure(breaker.try_acquire(clock.now()).permit, clock.now());
  ASSERT_EQ(breaker.state(), State::open);
  clock.advance(5s);

  auto p = Pipeline::Builder(clock).circuit_breaker(breaker).build();
  int cancelled = 0;
  bool caller_timer_won = false;
  run_coro([&]() -> net::awaitable<int> {
    using namespace net::experimental::awaitable_operators;
    net::steady_timer caller(co_await net::this_coro::executor, 20ms);
    auto first = co_await (asio::run(p, [&] { return answer_after(30s, 1, &cancelled); }) ||
                           caller.async_wait(net::use_awaitable));
    caller_timer_won = first.index() == 1;
    co_return 0;
  }());
  EXPECT_TRUE(caller_timer_won);
  EXPECT_EQ(cancelled, 1);
  EXPECT_EQ(breaker.state(), State::half_open);
  EXPECT_EQ(breaker.stats().released, 1u);
  // The probe slot is free again: a new probe is admitted.
  EXPECT_TRUE(breaker.try_acquire(clock.now()).allowed);
}

TEST(AsioPipeline, OpenBreakerRejectsWithoutCalling) {
  testing::ManualClock clock;
  CircuitBreaker breaker("b", {}, clock);
  breaker.force_open();
  auto p = Pipeline::Builder(clock).circuit_breaker(breaker).build();
  int calls = 0;
  auto r = run_coro(asio::run(p, [&] {
    ++calls;
    return answer_after(0ms, 1, nullptr);
  }));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), errc::circuit_open);
  EXPECT_EQ(calls, 0);
}

TEST(AsioPipeline, KeyedRateLimitKeysByTheCallsKey) {
  limit::KeyedLimiter limiter({.rate = limit::Rate::per_minute(1), .burst = 1});
  auto p = Pipeline::Builder().keyed_rate_limit(limiter).build();
  std::string seen;
  auto call = [&](const CallContext& ctx) {
    seen = ctx.key;
    return answer_after(0ms, 1, nullptr);
  };
  std::string alice = "alice";
  EXPECT_TRUE(run_coro(asio::run(p, call, {.key = alice})));
  EXPECT_EQ(seen, "alice");
  auto r = run_coro(asio::run(p, call, {.key = alice}));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), errc::rate_limited);
  EXPECT_TRUE(run_coro(asio::run(p, call, {.key = "bob"})));
}

TEST(AsioPipelineWait, GrantFromAnotherThreadResumesTheCoroutine) {
  auto gate = std::make_shared<testing::GateStage>();
  auto p = Pipeline::Builder().stage(gate).build();
  // Nothing but the wait is pending while the coroutine waits: run() must still not return
  // before the grant from the other thread arrives.
  net::io_context io;
  std::optional<Result<int>> out;
  net::co_spawn(io, asio::run(p, [] { return answer_after(0ms, 4, nullptr); }),
                [&](std::exception_ptr e, Result<int> v) {
                  if (!e) out.emplace(v);
                });
  std::thread opener([&] {
    ASSERT_TRUE(gate->wait_for_waiters(1));
    gate->open_next(true);  // from a thread that is not running the io_context
  });
  io.run();
  opener.join();  // before io is destroyed: the opener may still be inside post()
  ASSERT_TRUE(out.has_value());
  const Result<int>& r = *out;
  ASSERT_TRUE(r);
  EXPECT_EQ(*r, 4);
  EXPECT_EQ(gate->passed.load(), 1);
}

TEST(AsioPipelineWait, WaitDeadlineWithdrawsTheWaiter) {
  auto gate = std::make_shared<testing::GateStage>(20ms);
  auto p = Pipeline::Builder().stage(gate).build();
  int calls = 0;
  auto r = run_coro(asio::run(p, [&] {
    ++calls;
    return answer_after(0ms, 1, nullptr);
  }));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), errc::wait_timeout);
  EXPECT_EQ(calls, 0);
  EXPECT_EQ(gate->cancelled.load(), 1);
}

TEST(AsioPipelineWait, CallerCancellationWithdrawsAndAbandons) {
  auto gate = std::make_shared<testing::GateStage>();
  auto p = Pipeline::Builder().stage(gate).build();
  bool caller_timer_won = false;
  run_coro([&]() -> net::awaitable<int> {
    using namespace net::experimental::awaitable_operators;
    net::steady_timer caller(co_await net::this_coro::executor, 20ms);
    auto first = co_await (asio::run(p, [] { return answer_after(0ms, 1, nullptr); }) ||
                           caller.async_wait(net::use_awaitable));
    caller_timer_won = first.index() == 1;
    co_return 0;
  }());
  EXPECT_TRUE(caller_timer_won);
  EXPECT_EQ(gate->cancelled.load(), 1);
  EXPECT_EQ(gate->abandoned.load(), 1);
  EXPECT_FALSE(gate->open_next());
}

}  // namespace
}  // namespace bulwark
