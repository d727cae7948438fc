// Heap allocations per call through the pipeline adapters, counted by bulwark_alloc_counter
// (the replacement of the global operator new; this file is built into its own binary,
// bulwark_alloc_test).
//
// The bounds pinned here (docs/BENCHMARKS.md has the measurements):
//   - Pipeline::execute through built-in stages: 0 allocations per call;
//   - bulwark::asio::run through built-in stages: at most 1 per call in steady state (it makes
//     0 today; the bound leaves room for one), beyond the caller's own coroutine;
//   - a stage that only implements Stage::start() costs its one run per call, as documented.
// The sanitizers bring their own allocator and change what allocates, so under them the
// counts are not asserted.
#include <gtest/gtest.h>

#include <cstdint>

#include "bulwark/limit/token_bucket.h"
#include "bulwark/pipeline/pipeline.h"
#include "bulwark/testing/alloc_counter.h"
#include "bulwark/testing/manual_clock.h"

#if defined(BULWARK_TEST_ASIO)
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>

#include "bulwark/asio/pipeline.h"
#endif

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define BULWARK_ALLOC_TEST_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || \
    __has_feature(memory_sanitizer)
#define BULWARK_ALLOC_TEST_SANITIZED 1
#endif
#endif

namespace bulwark {
namespace {

using namespace std::chrono_literals;
using testing::ManualClock;

constexpr int kCalls = 100;

// Under sanitizers the calls still run (for the sanitizers' sake); only the counts are not
// asserted.
#if defined(BULWARK_ALLOC_TEST_SANITIZED)
constexpr bool kExactCounts = false;
#else
constexpr bool kExactCounts = true;
#endif
// The measured expression runs either way.
#define EXPECT_ALLOCS_EQ(value, expected) \
  do {                                    \
    const auto measured_ = (value);       \
    if (kExactCounts) {                   \
      EXPECT_EQ(measured_, expected);     \
    }                                     \
  } while (0)
#define EXPECT_ALLOCS_LE(value, bound) \
  do {                                 \
    const auto measured_ = (value);    \
    if (kExactCounts) {                \
      EXPECT_LE(measured_, bound);     \
    }                                  \
  } while (0)

// Allocations per call of `kCalls` calls of `one_call`, after one warm-up call (first-use
// initialisation: the thread's random source, lazily created tables).
template <class F>
double allocations_per_call(F&& one_call) {
  one_call();
  const uint64_t before = testing::thread_allocations();
  for (int i = 0; i < kCalls; ++i) one_call();
  return static_cast<double>(testing::thread_allocations() - before) / kCalls;
}

retry::RetryOptions retry_options() {
  retry::RetryOptions o;
  o.max_attempts = 3;
  o.per_try_timeout = 500ms;
  o.backoff.base = 1ms;
  o.backoff.max = 1ms;
  return o;
}

TEST(PipelineAllocations, CountingWorks) {
  const uint64_t before = testing::thread_allocations();
  // Kept in a volatile pointer: a new/delete pair the compiler can see whole may be elided.
  int* volatile kept = new int(1);
  delete kept;
  EXPECT_ALLOCS_EQ(testing::thread_allocations() - before, 1u);
}

TEST(PipelineAllocations, SyncTimeoutRetryBreakerAllocatesNothing) {
  ManualClock clock;
  circuit::CircuitBreaker breaker("b", {}, clock);
  auto p =
      Pipeline::Builder(clock).timeout(2s).retry(retry_options()).circuit_breaker(breaker).build();
  EXPECT_LE(p.call_storage_size(), Pipeline::kInlineCallStorage);
  int v = 0;
  EXPECT_ALLOCS_EQ(allocations_per_call([&] { ASSERT_TRUE(p.execute([&] { return ++v; })); }), 0.0);
}

TEST(PipelineAllocations, SyncRetriedCallsAllocateNothing) {
  ManualClock clock;
  circuit::CircuitBreaker breaker("b", {.failure_rate = 1.1}, clock);
  auto p =
      Pipeline::Builder(clock).timeout(2s).retry(retry_options()).circuit_breaker(breaker).build();
  int v = 0;
  // Two failures, then a success: two backoff sleeps and three breaker runs per call.
  EXPECT_ALLOCS_EQ(allocations_per_call([&] {
                     ExecutionInfo info;
                     auto r = p.execute(
                         [&]() -> Result<int> {
                           if (++v % 3 != 0) return make_error_code(errc::call_failed);
                           return v;
                         },
                         {.info = &info});
                     ASSERT_TRUE(r);
                     ASSERT_EQ(info.attempts, 3u);
                   }),
                   0.0);
}

TEST(PipelineAllocations, SyncEachBuiltInStageAloneAllocatesNothing) {
  ManualClock clock;
  circuit::CircuitBreaker breaker("b", {}, clock);
  std::vector<Pipeline> pipelines;
  pipelines.push_back(Pipeline::Builder(clock).timeout(1s).build());
  pipelines.push_back(Pipeline::Builder(clock).retry(retry_options()).build());
  pipelines.push_back(Pipeline::Builder(clock).circuit_breaker(breaker).build());
  for (const Pipeline& p : pipelines) {
    SCOPED_TRACE(p.stages()[0]->kind());
    EXPECT_ALLOCS_EQ(allocations_per_call([&] { ASSERT_TRUE(p.execute([] { return 1; })); }), 0.0);
  }
}

TEST(PipelineAllocations, SyncKeyedRateLimitAllocatesNothingOnceTheKeyExists) {
  ManualClock clock;
  limit::KeyedLimiter limiter({.rate = limit::Rate::per_second(1e6), .burst = 1000000});
  auto p = Pipeline::Builder(clock).keyed_rate_limit(limiter).retry(retry_options()).build();
  EXPECT_ALLOCS_EQ(allocations_per_call([&] {
                     clock.advance(1ms);
                     ASSERT_TRUE(p.execute([] { return 1; }, {.key = "client-1"}));
                   }),
                   0.0);
}

TEST(PipelineAllocations, SyncEveryBuiltInStageTogetherAllocatesNothing) {
  ManualClock clock;
  circuit::CircuitBreaker breaker("b", {}, clock);
  limit::Bulkhead bulkhead("db", {.max_concurrent = 8}, clock);
  limit::TokenBucket bucket({.rate = limit::Rate::per_second(1e6), .burst = 1000000});
  limit::KeyedLimiter keyed({.rate = limit::Rate::per_second(1e6), .burst = 1000000});
  auto p = Pipeline::Builder(clock)
               .fallback([] { return -1; })
               .keyed_rate_limit(keyed)
               .rate_limit(bucket)
               .timeout(2s)
               .bulkhead(bulkhead)
               .retry(retry_options())
               .circuit_breaker(breaker)
               .build();
  EXPECT_LE(p.call_storage_size(), Pipeline::kInlineCallStorage);
  int v = 0;
  // Every third call fails: the retry stage retries it, and so the fallback has nothing to do;
  // the answer is the call's own.
  EXPECT_ALLOCS_EQ(allocations_per_call([&] {
                     clock.advance(1ms);
                     auto r = p.execute(
                         [&]() -> Result<int> {
                           if (++v % 3 == 0) return make_error_code(errc::call_failed);
                           return v;
                         },
                         {.key = "client"});
                     ASSERT_TRUE(r);
                     ASSERT_NE(*r, -1);
                   }),
                   0.0);
  // The fallback answering costs nothing either.
  EXPECT_ALLOCS_EQ(allocations_per_call([&] {
                     auto r =
                         p.execute([]() -> Result<int> { return make_error_code(errc::rejected); },
                                   {.key = "client"});
                     ASSERT_EQ(*r, -1);
                   }),
                   0.0);
}

// Counts events; allocates nothing itself.
class CountingListener final : public EventListener {
 public:
  void on_retry(const RetryEvent&) noexcept override { ++retries; }
  void on_rejected(const RejectionEvent&) noexcept override { ++rejections; }
  void on_fallback(const FallbackEvent&) noexcept override { ++fallbacks; }
  int retries = 0, rejections = 0, fallbacks = 0;
};

TEST(PipelineAllocations, SyncEventsAllocateNothing) {
  ManualClock clock;
  CountingListener events;
  circuit::CircuitBreaker breaker("b", {.failure_rate = 1.1}, clock);
  limit::TokenBucket bucket({.rate = limit::Rate::per_second(1000), .burst = 1});
  auto p = Pipeline::Builder(clock)
               .listener(events)
               .fallback([] { return -1; }, {.name = "fallback"})
               .rate_limit(bucket, {.name = "a rate limit with a long name"})
               .retry(retry_options(), {.name = "a retry stage with a long name"})
               .circuit_breaker(breaker)
               .build();
  int v = 0;
  // Each call: a retry (first attempt fails), then an answer; then a refused call that the
  // fallback answers (the bucket holds one permit per millisecond).
  EXPECT_ALLOCS_EQ(allocations_per_call([&] {
                     clock.advance(1ms);
                     auto r = p.execute([&]() -> Result<int> {
                       if (++v % 2 == 1) return make_error_code(errc::call_failed);
                       return v;
                     });
                     ASSERT_NE(*r, -1);
                     ASSERT_EQ(*p.execute([] { return 1; }), -1);
                   }),
                   0.0);
  EXPECT_GT(events.retries, kCalls);
  EXPECT_GT(events.rejections, kCalls);
  EXPECT_GT(events.fallbacks, kCalls);
}

// A stage written against start() only keeps working; each of its runs is one allocation.
class HeapStage final : public Stage {
  class Run final : public StageRun {
    Step enter(CallContext&, TimePoint) override { return Step::proceed(); }
    Step leave(CallContext&, AttemptResult r, TimePoint) override { return Step::finish(r); }
  };

 public:
  std::unique_ptr<StageRun> start() const override { return std::make_unique<Run>(); }
  std::string_view kind() const noexcept override { return "heap"; }
};

TEST(PipelineAllocations, StageWithoutInPlaceRunsCostsOneAllocationPerRun) {
  ManualClock clock;
  auto p = Pipeline::Builder(clock).timeout(1s).stage(std::make_shared<HeapStage>()).build();
  EXPECT_ALLOCS_EQ(allocations_per_call([&] { ASSERT_TRUE(p.execute([] { return 1; })); }), 1.0);
}

#if defined(BULWARK_TEST_ASIO)
namespace net = boost::asio;

net::awaitable<int> answer(int v) { co_return v; }

// Allocations per asio::run call in steady state, measured inside one long-lived coroutine
// (the caller's own frame is not counted) after warming Asio's per-thread caches.
double asio_allocations_per_call(const Pipeline& p) {
  net::io_context io;
  uint64_t counted = 0;
  bool ok = true;
  net::co_spawn(
      io,
      [&]() -> net::awaitable<void> {
        int v = 0;
        for (int i = 0; i < 64; ++i) (void)co_await asio::run(p, [&] { return answer(++v); });
        const uint64_t before = testing::thread_allocations();
        for (int i = 0; i < kCalls; ++i) {
          Result<int> r = co_await asio::run(p, [&] { return answer(++v); });
          ok = ok && r.has_value();
        }
        counted = testing::thread_allocations() - before;
      },
      net::detached);
  io.run();
  EXPECT_TRUE(ok);
  return static_cast<double>(counted) / kCalls;
}

TEST(PipelineAllocations, AsioTimeoutRetryBreakerAllocatesAtMostOnce) {
  circuit::CircuitBreaker breaker("b", {}, SystemClock::instance());
  auto p = Pipeline::Builder().timeout(2s).retry(retry_options()).circuit_breaker(breaker).build();
  EXPECT_ALLOCS_LE(asio_allocations_per_call(p), 1.0);
}

TEST(PipelineAllocations, AsioRetriedCallsAllocateAtMostOnce) {
  circuit::CircuitBreaker breaker("b", {.failure_rate = 1.1}, SystemClock::instance());
  auto p = Pipeline::Builder().timeout(2s).retry(retry_options()).circuit_breaker(breaker).build();
  net::io_context io;
  uint64_t counted = 0;
  uint32_t attempts = 0;
  net::co_spawn(
      io,
      [&]() -> net::awaitable<void> {
        int v = 0;
        auto call = [&]() -> net::awaitable<Result<int>> {
          if (++v % 3 != 0) co_return make_error_code(errc::call_failed);
          co_return v;
        };
        for (int i = 0; i < 16; ++i) (void)co_await asio::run(p, call);
        const uint64_t before = testing::thread_allocations();
        for (int i = 0; i < kCalls; ++i) {
          ExecutionInfo info;
          (void)co_await asio::run(p, call, {.info = &info});
          attempts += info.attempts;
        }
        counted = testing::thread_allocations() - before;
      },
      net::detached);
  io.run();
  EXPECT_EQ(attempts, 3u * kCalls);  // two failures and their backoffs, then a success
  EXPECT_ALLOCS_LE(static_cast<double>(counted) / kCalls, 1.0);
}

TEST(PipelineAllocations, AsioEachBuiltInStageAloneAllocatesAtMostOnce) {
  circuit::CircuitBreaker breaker("b", {}, SystemClock::instance());
  for (const Pipeline& p :
       {Pipeline::Builder().timeout(1s).build(), Pipeline::Builder().retry(retry_options()).build(),
        Pipeline::Builder().circuit_breaker(breaker).build()}) {
    SCOPED_TRACE(p.stages()[0]->kind());
    EXPECT_ALLOCS_LE(asio_allocations_per_call(p), 1.0);
  }
}
#endif

}  // namespace
}  // namespace bulwark
