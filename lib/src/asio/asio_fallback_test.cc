// Sequential, parallel and hedged calls through the Asio adapter, on a real io_context with
// short real timers. Calls that should lose hang for 30 s unless cancelled, so a test that
// passes proves the cancellation happened; every assertion is on outcomes and counters, never
// on how long something took (beyond a generous upper bound).
#include "bulwark/asio/fallback.h"

#include <gtest/gtest.h>

#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <mutex>
#include <span>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace bulwark {
namespace {

namespace net = boost::asio;
using namespace std::chrono_literals;
using fallback::FallbackInfo;
using fallback::HedgePolicy;

const boost::system::error_code kErrA = make_error_code(std::errc::connection_refused);
const boost::system::error_code kErrB = make_error_code(std::errc::connection_reset);
const boost::system::error_code kErrC = make_error_code(std::errc::host_unreachable);

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

// What happened to the simulated calls of one test.
struct Tally {
  int started = 0;    // calls that began
  int cancelled = 0;  // calls whose wait ended with operation_aborted
  int ended = 0;      // calls whose coroutine has fully unwound (answered, failed or cancelled)
};

// Counts the end of a call's coroutine however it ends.
struct EndGuard {
  Tally* tally;
  ~EndGuard() { ++tally->ended; }
};

// A call that answers `value` after `d` (or fails with `error` if set), unless cancelled.
net::awaitable<Result<int>> call(Tally& tally, Duration d, int value,
                                 boost::system::error_code error = {}) {
  EndGuard guard{&tally};
  ++tally.started;
  net::steady_timer t(co_await net::this_coro::executor, d);
  try {
    co_await t.async_wait(net::use_awaitable);
  } catch (const boost::system::system_error& e) {
    if (e.code() == net::error::operation_aborted) ++tally.cancelled;
    throw;
  }
  if (error) co_return error;
  co_return value;
}

// --- sequential ------------------------------------------------------------------------------

TEST(AsioSequential, TriesInOrderUntilOneAnswers) {
  Tally tally;
  std::vector<int> order;
  FallbackInfo info;
  auto r = run_coro(asio::sequential(
      {.info = &info},
      [&] {
        order.push_back(0);
        return call(tally, 1ms, 0, kErrA);
      },
      [&]() -> net::awaitable<int> {
        order.push_back(1);
        throw std::runtime_error("boom");
        co_return 0;
      },
      [&] {
        order.push_back(2);
        return call(tally, 1ms, 22);
      },
      [&] {
        order.push_back(3);
        return call(tally, 1ms, 33);
      }));
  ASSERT_TRUE(r);
  EXPECT_EQ(*r, 22);
  EXPECT_EQ(order, (std::vector<int>{0, 1, 2}));
  EXPECT_EQ(info.answered_by, 2u);
  EXPECT_EQ(info.started, 3u);
}

TEST(AsioSequential, AllFailedReturnsTheLastFailureAndKeepsTheException) {
  FallbackInfo info;
  Tally tally;
  auto r = run_coro(asio::sequential(
      {.info = &info}, [&] { return call(tally, 0ms, 0, kErrA); },
      []() -> net::awaitable<int> {
        throw std::runtime_error("last");
        co_return 0;
      }));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), errc::call_failed);
  EXPECT_EQ(info.answered_by, 1u);
  EXPECT_TRUE(info.exception);
}

TEST(AsioSequential, RunTimeList) {
  Tally tally;
  std::vector<std::function<net::awaitable<Result<int>>()>> alts = {
      [&] { return call(tally, 0ms, 0, kErrA); }, [&] { return call(tally, 0ms, 5); }};
  FallbackInfo info;
  auto r = run_coro(asio::sequential_range(std::span(alts), {.info = &info}));
  ASSERT_TRUE(r);
  EXPECT_EQ(*r, 5);
  EXPECT_EQ(info.answered_by, 1u);
}

TEST(AsioSequential, CallerCancellationStopsTheRunningAlternativeAndStartsNoOther) {
  auto outer = Pipeline::Builder().timeout(20ms).build();
  Tally tally;
  int fallbacks = 0;
  auto r = run_coro(asio::run(outer, [&] {
    return asio::sequential([&] { return call(tally, 30s, 1); },
                            [&] {
                              ++fallbacks;
                              return call(tally, 0ms, 2);
                            });
  }));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), errc::timeout);
  EXPECT_EQ(tally.cancelled, 1);
  EXPECT_EQ(fallbacks, 0);
}

// --- parallel --------------------------------------------------------------------------------

TEST(AsioParallel, FirstAnswerWinsAndTheLoserIsCancelledBeforeReturning) {
  Tally tally;
  FallbackInfo info;
  int ended_at_return = -1;
  auto coro = [&]() -> net::awaitable<Result<int>> {
    auto r = co_await asio::parallel(
        {.info = &info}, [&] { return call(tally, 30s, 1); }, [&] { return call(tally, 5ms, 2); });
    ended_at_return = tally.ended;  // before anything else could run
    co_return r;
  };
  const auto start = SystemClock::instance().now();
  auto r = run_coro(coro());
  ASSERT_TRUE(r);
  EXPECT_EQ(*r, 2);
  EXPECT_EQ(tally.cancelled, 1);  // the slow one saw operation_aborted
  EXPECT_EQ(ended_at_return, 2);  // ... and had finished before the race returned
  EXPECT_EQ(info.answered_by, 1u);
  EXPECT_EQ(info.started, 2u);
  EXPECT_EQ(info.cancelled, 1u);
  EXPECT_LT(SystemClock::instance().now() - start, 10s);
}

TEST(AsioParallel, AFastFailureDoesNotWin) {
  Tally tally;
  FallbackInfo info;
  auto r = run_coro(asio::parallel(
      {.info = &info}, [&] { return call(tally, 0ms, 0, kErrA); },
      [&] { return call(tally, 5ms, 7); }));
  ASSERT_TRUE(r);
  EXPECT_EQ(*r, 7);
  EXPECT_EQ(info.answered_by, 1u);
  EXPECT_EQ(tally.cancelled, 0);
}

TEST(AsioParallel, AllFailedReturnsAFailure) {
  Tally tally;
  FallbackInfo info;
  // Failures arrive in the order C (index 2), A (0), B (1).
  auto r = run_coro(asio::parallel(
      {.info = &info}, [&] { return call(tally, 10ms, 0, kErrA); },
      [&] { return call(tally, 20ms, 0, kErrB); }, [&] { return call(tally, 0ms, 0, kErrC); }));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), kErrB);  // the last to fail
  EXPECT_EQ(info.answered_by, 1u);
  EXPECT_EQ(info.cancelled, 0u);

  auto primary = run_coro(asio::parallel(
      {.report = fallback::FailureChoice::lowest_index},
      [&] { return call(tally, 10ms, 0, kErrA); }, [&] { return call(tally, 0ms, 0, kErrC); }));
  ASSERT_FALSE(primary);
  EXPECT_EQ(primary.error(), kErrA);
}

TEST(AsioParallel, ExceptionIsAFailureNotAnAnswer) {
  Tally tally;
  auto r = run_coro(asio::parallel(
      []() -> net::awaitable<int> {
        throw std::runtime_error("x");
        co_return 0;
      },
      [&]() -> net::awaitable<int> {
        auto v = co_await call(tally, 2ms, 9);
        co_return *v;
      }));
  ASSERT_TRUE(r);
  EXPECT_EQ(*r, 9);
}

TEST(AsioParallel, RunTimeList) {
  Tally tally;
  std::vector<std::function<net::awaitable<Result<int>>()>> alts = {
      [&] { return call(tally, 30s, 1); }, [&] { return call(tally, 2ms, 2); },
      [&] { return call(tally, 0ms, 0, kErrA); }};
  FallbackInfo info;
  auto r = run_coro(asio::parallel_range(std::span(alts), {.info = &info}));
  ASSERT_TRUE(r);
  EXPECT_EQ(*r, 2);
  EXPECT_EQ(info.answered_by, 1u);
  EXPECT_EQ(tally.cancelled, 1);

  std::vector<std::function<net::awaitable<Result<int>>()>> too_many(65, alts[1]);
  EXPECT_THROW(run_coro(asio::parallel_range(std::span(too_many))), std::invalid_argument);
  EXPECT_EQ(tally.started, 3);  // nothing of the rejected list started
}

TEST(AsioParallel, DeadlineCancelsEverythingAndTimesOut) {
  Tally tally;
  FallbackInfo info;
  auto r = run_coro(asio::parallel(
      {.deadline = Deadline::after(SystemClock::instance().now(), 20ms), .info = &info},
      [&] { return call(tally, 30s, 1); }, [&] { return call(tally, 30s, 2); }));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), errc::timeout);
  EXPECT_EQ(tally.cancelled, 2);
  EXPECT_EQ(tally.ended, 2);
  EXPECT_EQ(info.cancelled, 2u);
  EXPECT_FALSE(info.answered_by.has_value());
}

TEST(AsioParallel, ExpiredDeadlineStartsNothing) {
  Tally tally;
  auto r = run_coro(asio::parallel({.deadline = Deadline::at(SystemClock::instance().now())},
                                   [&] { return call(tally, 0ms, 1); }));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), errc::deadline_exceeded);
  EXPECT_EQ(tally.started, 0);
}

// Counters shared by the races of OnAThreadPool.
struct PoolTally {
  std::atomic<int> answered{0};
  std::atomic<int> cancelled{0};
};

net::awaitable<int> pool_call(PoolTally* tally, Duration d, int value) {
  net::steady_timer t(co_await net::this_coro::executor, d);
  try {
    co_await t.async_wait(net::use_awaitable);
  } catch (const boost::system::system_error&) {
    tally->cancelled.fetch_add(1);
    throw;
  }
  co_return value;
}

// A coroutine function, not a capturing lambda: its state lives in its own frame.
net::awaitable<void> pool_race(PoolTally* tally) {
  auto r = co_await asio::parallel([tally] { return pool_call(tally, 30s, 0); },
                                   [tally] { return pool_call(tally, 1ms, 1); },
                                   [tally] { return pool_call(tally, 30s, 0); });
  if (r && *r == 1) tally->answered.fetch_add(1);
}

TEST(AsioParallel, OnAThreadPool) {
  // The race's bookkeeping runs on a strand; with several threads this is what TSan checks.
  net::thread_pool pool(4);
  PoolTally tally;
  std::atomic<int> done{0};
  constexpr int kRaces = 20;
  for (int i = 0; i < kRaces; ++i) {
    net::co_spawn(pool, pool_race(&tally), [&](std::exception_ptr) { done.fetch_add(1); });
  }
  pool.join();
  EXPECT_EQ(done.load(), kRaces);
  EXPECT_EQ(tally.answered.load(), kRaces);
  EXPECT_EQ(tally.cancelled.load(), 2 * kRaces);
}

// A hedge of stuck attempts under an outer 20 ms timeout: the caller's cancellation arrives
// from whichever pool thread runs the timer.
net::awaitable<void> pool_hedge_timeout(PoolTally* tally, const Pipeline* outer,
                                        const HedgePolicy* policy) {
  auto r = co_await asio::run(*outer, [tally, policy] {
    return asio::hedge(*policy, [tally] { return pool_call(tally, 30s, 0); });
  });
  if (!r && r.error() == errc::timeout) tally->answered.fetch_add(1);
}

TEST(AsioHedge, CallerCancellationOnAThreadPool) {
  net::thread_pool pool(4);
  PoolTally tally;
  HedgePolicy policy({.delay = 1ms, .max_attempts = 2});
  auto outer = Pipeline::Builder().timeout(20ms).build();
  constexpr int kCalls = 10;
  for (int i = 0; i < kCalls; ++i) {
    net::co_spawn(pool, pool_hedge_timeout(&tally, &outer, &policy), net::detached);
  }
  pool.join();
  EXPECT_EQ(tally.answered.load(), kCalls);       // every call timed out
  EXPECT_EQ(tally.cancelled.load(), 2 * kCalls);  // and both attempts of each were cancelled
}

// --- hedge -----------------------------------------------------------------------------------

TEST(AsioHedge, HedgeOvertakesASlowAttemptWhichIsCancelled) {
  HedgePolicy policy({.delay = 10ms, .max_attempts = 3});
  Tally tally;
  FallbackInfo info;
  std::vector<uint32_t> attempts;
  int ended_at_return = -1;
  auto coro = [&]() -> net::awaitable<Result<int>> {
    auto r =
        co_await asio::hedge(policy,
                             [&](const CallContext& ctx) {
                               attempts.push_back(ctx.attempt);
                               // The first attempt is stuck; the hedge answers quickly.
                               return ctx.attempt == 1 ? call(tally, 30s, 1) : call(tally, 1ms, 2);
                             },
                             {.info = &info});
    ended_at_return = tally.ended;
    co_return r;
  };
  auto r = run_coro(coro());
  ASSERT_TRUE(r);
  EXPECT_EQ(*r, 2);
  EXPECT_EQ(attempts, (std::vector<uint32_t>{1, 2}));
  EXPECT_EQ(tally.cancelled, 1);
  EXPECT_EQ(ended_at_return, 2);
  EXPECT_EQ(info.answered_by, 1u);
  EXPECT_EQ(info.cancelled, 1u);
  EXPECT_EQ(policy.stats().hedges, 1u);
  EXPECT_EQ(policy.stats().hedge_wins, 1u);
}

TEST(AsioHedge, FastAnswerStartsNoHedge) {
  HedgePolicy policy({.delay = 30s, .max_attempts = 3});
  Tally tally;
  FallbackInfo info;
  auto r = run_coro(asio::hedge(policy, [&] { return call(tally, 1ms, 5); }, {.info = &info}));
  ASSERT_TRUE(r);
  EXPECT_EQ(*r, 5);
  EXPECT_EQ(tally.started, 1);
  EXPECT_EQ(info.started, 1u);
  EXPECT_EQ(policy.stats().hedges, 0u);
}

TEST(AsioHedge, EmptyBudgetStartsNoHedge) {
  retry::RetryBudget budget({.ratio = 0, .min_per_second = 0});
  HedgePolicy policy({.delay = 2ms, .max_attempts = 3}, &budget);
  Tally tally;
  FallbackInfo info;
  auto r = run_coro(asio::hedge(policy, [&] { return call(tally, 30ms, 8); }, {.info = &info}));
  ASSERT_TRUE(r);
  EXPECT_EQ(*r, 8);
  EXPECT_EQ(tally.started, 1);
  EXPECT_EQ(info.policy_reason, errc::budget_exhausted);
  EXPECT_EQ(policy.stats().budget_refused, 1u);
}

TEST(AsioHedge, FailuresStartTheNextAttemptAndTheLastFailureIsReturned) {
  HedgePolicy policy({.delay = 30s, .max_attempts = 3});
  Tally tally;
  FallbackInfo info;
  const boost::system::error_code errors[] = {kErrA, kErrB, kErrC};
  auto r = run_coro(asio::hedge(
      policy, [&](const CallContext& ctx) { return call(tally, 0ms, 0, errors[ctx.attempt - 1]); },
      {.info = &info}));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), kErrC);
  EXPECT_EQ(tally.started, 3);  // each failure started the next at once, not after 30 s
  EXPECT_EQ(info.answered_by, 2u);
  EXPECT_EQ(info.outcome, Outcome::retryable_failure);
}

TEST(AsioHedge, OuterTimeoutCancelsEveryAttempt) {
  // Hedge inside an asio::run with a total timeout: the caller's cancellation reaches every
  // attempt, and all of them have ended before the outer call returns.
  HedgePolicy policy({.delay = 2ms, .max_attempts = 3});
  auto outer = Pipeline::Builder().timeout(40ms).build();
  Tally tally;
  int ended_at_return = -1;
  auto coro = [&]() -> net::awaitable<Result<int>> {
    auto r = co_await asio::run(
        outer, [&] { return asio::hedge(policy, [&] { return call(tally, 30s, 1); }); });
    ended_at_return = tally.ended;
    co_return r;
  };
  auto r = run_coro(coro());
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), errc::timeout);
  EXPECT_EQ(tally.started, 3);
  EXPECT_EQ(tally.cancelled, 3);
  EXPECT_EQ(ended_at_return, 3);
}

TEST(AsioHedge, PerAttemptPipelineInside) {
  // Each attempt runs through its own pipeline with a per-try timeout: the stuck first attempt
  // times out inside its pipeline, which is a retryable failure, so the next attempt starts at
  // once and answers.
  HedgePolicy policy({.delay = 30s, .max_attempts = 2});
  auto per_attempt = Pipeline::Builder().timeout(20ms).build();
  Tally tally;
  FallbackInfo info;
  auto r = run_coro(asio::hedge(policy,
                                [&](const CallContext& ctx) {
                                  return asio::run(per_attempt,
                                                   [&, attempt = ctx.attempt] {
                                                     return attempt == 1 ? call(tally, 30s, 1)
                                                                         : call(tally, 1ms, 2);
                                                   },
                                                   {.deadline = ctx.deadline});
                                },
                                {.info = &info}));
  ASSERT_TRUE(r);
  EXPECT_EQ(*r, 2);
  EXPECT_EQ(tally.cancelled, 1);
  EXPECT_EQ(info.answered_by, 1u);
}

TEST(AsioRunHedged, EachAttemptRunsThePipelineAndTheLoserReleasesItsPermit) {
  HedgePolicy policy({.delay = 10ms, .max_attempts = 2});
  circuit::CircuitBreaker breaker("b", {}, SystemClock::instance());
  auto per_attempt =
      Pipeline::Builder().retry({.max_attempts = 2}).circuit_breaker(breaker).build();
  Tally tally;
  FallbackInfo info;
  int starts = 0;
  auto r = run_coro(asio::run_hedged(
      policy, per_attempt,
      [&](const CallContext&) { return ++starts == 1 ? call(tally, 30s, 1) : call(tally, 1ms, 2); },
      {.info = &info}));
  ASSERT_TRUE(r);
  EXPECT_EQ(*r, 2);
  EXPECT_EQ(starts, 2);
  EXPECT_EQ(tally.cancelled, 1);
  EXPECT_EQ(info.answered_by, 1u);
  const circuit::BreakerStats s = breaker.stats();
  EXPECT_EQ(s.successes, 1u);
  EXPECT_EQ(s.released, 1u);  // the cancelled first attempt gave its permit back
  EXPECT_EQ(policy.stats().hedge_wins, 1u);
}

TEST(AsioRunHedged, TheKeyReachesEveryAttempt) {
  HedgePolicy policy({.delay = 30s, .max_attempts = 1});
  limit::KeyedLimiter limiter({.rate = limit::Rate::per_minute(1), .burst = 1});
  auto per_attempt = Pipeline::Builder().keyed_rate_limit(limiter).build();
  Tally tally;
  std::string seen;
  auto fn = [&](const CallContext& ctx) {
    seen = ctx.key;
    return call(tally, 0ms, 3);
  };
  EXPECT_TRUE(run_coro(asio::run_hedged(policy, per_attempt, fn, {.key = "alice"})));
  EXPECT_EQ(seen, "alice");
  auto r = run_coro(asio::run_hedged(policy, per_attempt, fn, {.key = "alice"}));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), errc::rate_limited);
}

// Hears hedge and fallback events (the hedge's attempts all run on the race's strand).
class HedgeRecorder final : public EventListener {
 public:
  void on_hedge(const HedgeEvent& e) noexcept override {
    std::lock_guard lock(mu);
    hedges.push_back({std::string(e.name), e.attempt, e.on_failure});
  }
  void on_fallback(const FallbackEvent& e) noexcept override {
    std::lock_guard lock(mu);
    fallbacks.push_back(e.alternative);
  }
  struct Hedge {
    std::string name;
    uint32_t attempt;
    bool on_failure;
    bool operator==(const Hedge&) const = default;
  };
  std::mutex mu;
  std::vector<Hedge> hedges;
  std::vector<std::size_t> fallbacks;
};

TEST(AsioHedgeEvents, EachHedgeIsReportedWithWhyItStarted) {
  HedgeRecorder events;
  HedgePolicy policy({.delay = 10ms, .max_attempts = 3}, nullptr, SystemClock::instance(), &events,
                     "search");
  Tally tally;
  // Attempt 1 hangs; attempt 2 (started by the delay) fails at once, which starts attempt 3
  // at once; attempt 3 answers.
  auto r = run_coro(asio::hedge(policy, [&](const CallContext& ctx) {
    if (ctx.attempt == 1) return call(tally, 30s, 1);
    if (ctx.attempt == 2) return call(tally, 0ms, 0, kErrA);
    return call(tally, 1ms, 3);
  }));
  ASSERT_TRUE(r);
  EXPECT_EQ(*r, 3);
  EXPECT_EQ(events.hedges,
            (std::vector<HedgeRecorder::Hedge>{{"search", 2, false}, {"search", 3, true}}));
  // A hedge-less call reports nothing.
  HedgePolicy quiet({.delay = 30s, .max_attempts = 2}, nullptr, SystemClock::instance(), &events);
  (void)run_coro(asio::hedge(quiet, [&] { return call(tally, 0ms, 1); }));
  EXPECT_EQ(events.hedges.size(), 2u);
}

TEST(AsioHedgeEvents, AsioSequentialReportsItsFallbacks) {
  HedgeRecorder events;
  Tally tally;
  auto r = run_coro(asio::sequential(
      {.listener = &events}, [&] { return call(tally, 0ms, 0, kErrA); },
      [&] { return call(tally, 0ms, 2); }));
  EXPECT_EQ(*r, 2);
  EXPECT_EQ(events.fallbacks, (std::vector<std::size_t>{1}));
}

// --- the fallback stage through the Asio adapter ---------------------------------------------

TEST(AsioFallbackStage, AnswersAFailedCoroutineCall) {
  auto p = Pipeline::Builder()
               .fallback([](const AttemptResult& failure) {
                 return failure.error == errc::timeout ? -1 : -2;
               })
               .timeout(20ms)
               .build();
  Tally tally;
  ExecutionInfo info;
  auto r = run_coro(asio::run(p, [&] { return call(tally, 30s, 1); }, {.info = &info}));
  ASSERT_TRUE(r);
  EXPECT_EQ(*r, -1);  // the timeout was answered by the fallback
  EXPECT_TRUE(info.fallback);
  EXPECT_EQ(tally.cancelled, 1);
  // A success passes through.
  r = run_coro(asio::run(p, [&] { return call(tally, 0ms, 9); }, {.info = &info}));
  EXPECT_EQ(*r, 9);
  EXPECT_FALSE(info.fallback);
}

}  // namespace
}  // namespace bulwark
