// Micro-benchmarks of the pipeline adapters: the cost of running a call through
// timeout -> retry -> circuit breaker (and through each stage alone), synchronously
// (Pipeline::execute) and in a coroutine (bulwark::asio::run).
//
// Besides time, every benchmark reports `allocs_per_call`: heap allocations (any form of
// operator new) made on the benchmark's thread per call, counted by bulwark_alloc_counter
// (bulwark/testing/alloc_counter.h), the replacement of the global operator new linked into
// this binary. The wrapped call itself allocates nothing (it returns an int, or
// an awaitable whose frame Asio recycles), so the counter is the adapter's own cost. The Asio
// benchmarks run every call from one long-lived coroutine, so the caller's own coroutine frame
// is not counted either; they measure the steady state (the first run warms Asio's
// per-thread frame caches).
//
// Time is real (SystemClock): the adapters read the clock the way production calls do.
#include <benchmark/benchmark.h>

#include <cstdint>

#include "bulwark/pipeline/pipeline.h"
#include "bulwark/testing/alloc_counter.h"

#if defined(BULWARK_BENCH_ASIO)
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>

#include "bulwark/asio/pipeline.h"
#endif

namespace {

using namespace std::chrono_literals;

enum class Shape { timeout_retry_breaker, timeout, retry, breaker };

// Policies shared by every call of one benchmark; the breaker never opens (every call succeeds).
struct Policies {
  bulwark::circuit::CircuitBreaker breaker{"bench", {}, bulwark::SystemClock::instance()};
  bulwark::Pipeline pipeline;

  explicit Policies(Shape shape) : pipeline(build(shape, breaker)) {}

  static bulwark::Pipeline build(Shape shape, bulwark::circuit::CircuitBreaker& breaker) {
    bulwark::Pipeline::Builder b;
    const bulwark::retry::RetryOptions retry{.max_attempts = 3, .per_try_timeout = 500ms};
    switch (shape) {
      case Shape::timeout_retry_breaker:
        b.timeout(2s).retry(retry).circuit_breaker(breaker);
        break;
      case Shape::timeout:
        b.timeout(2s);
        break;
      case Shape::retry:
        b.retry(retry);
        break;
      case Shape::breaker:
        b.circuit_breaker(breaker);
        break;
    }
    return b.build();
  }
};

void report_allocations(benchmark::State& state, uint64_t allocations) {
  state.counters["allocs_per_call"] =
      benchmark::Counter(static_cast<double>(allocations), benchmark::Counter::kAvgIterations);
}

void BM_Pipeline_Sync(benchmark::State& state, Shape shape) {
  Policies policies(shape);
  int value = 0;
  uint64_t allocations = 0;
  for (auto _ : state) {
    const uint64_t before = bulwark::testing::thread_allocations();
    bulwark::Result<int> r = policies.pipeline.execute([&] { return ++value; });
    allocations += bulwark::testing::thread_allocations() - before;
    benchmark::DoNotOptimize(r);
  }
  report_allocations(state, allocations);
}
BENCHMARK_CAPTURE(BM_Pipeline_Sync, TimeoutRetryBreaker, Shape::timeout_retry_breaker);
BENCHMARK_CAPTURE(BM_Pipeline_Sync, Timeout, Shape::timeout);
BENCHMARK_CAPTURE(BM_Pipeline_Sync, Retry, Shape::retry);
BENCHMARK_CAPTURE(BM_Pipeline_Sync, Breaker, Shape::breaker);

// The naive baseline: the same three policies written by hand around the call (no stage
// protocol, no type erasure): what the adapter's generality costs.
void BM_Pipeline_Sync_HandWrittenBaseline(benchmark::State& state) {
  bulwark::circuit::CircuitBreaker breaker("bench", {}, bulwark::SystemClock::instance());
  bulwark::Clock& clock = bulwark::SystemClock::instance();
  int value = 0;
  uint64_t allocations = 0;
  for (auto _ : state) {
    const uint64_t before = bulwark::testing::thread_allocations();
    const bulwark::Deadline total = bulwark::Deadline::after(clock.now(), 2s);
    bulwark::Result<int> r = bulwark::make_error_code(bulwark::errc::call_failed);
    for (int attempt = 1; attempt <= 3; ++attempt) {
      const auto admission = breaker.try_acquire(clock.now());
      if (!admission.allowed) break;
      r = ++value;
      const bulwark::TimePoint now = clock.now();
      const bool ok = r && !total.expired(now);
      breaker.record(admission.permit,
                     ok ? bulwark::Outcome::success : bulwark::Outcome::retryable_failure, now);
      if (ok) break;
    }
    allocations += bulwark::testing::thread_allocations() - before;
    benchmark::DoNotOptimize(r);
  }
  report_allocations(state, allocations);
}
BENCHMARK(BM_Pipeline_Sync_HandWrittenBaseline);

#if defined(BULWARK_BENCH_ASIO)
namespace net = boost::asio;

net::awaitable<int> answer(int v) { co_return v; }

void BM_Pipeline_Asio(benchmark::State& state, Shape shape) {
  Policies policies(shape);
  net::io_context io;
  uint64_t allocations = 0;
  net::co_spawn(
      io,
      [&]() -> net::awaitable<void> {
        int value = 0;
        // Warm Asio's per-thread caches (coroutine frames, operation states) before measuring.
        for (int i = 0; i < 64; ++i) {
          (void)co_await bulwark::asio::run(policies.pipeline, [&] { return answer(++value); });
        }
        for (auto _ : state) {
          const uint64_t before = bulwark::testing::thread_allocations();
          bulwark::Result<int> r =
              co_await bulwark::asio::run(policies.pipeline, [&] { return answer(++value); });
          allocations += bulwark::testing::thread_allocations() - before;
          benchmark::DoNotOptimize(r);
        }
      },
      net::detached);
  io.run();
  report_allocations(state, allocations);
}
BENCHMARK_CAPTURE(BM_Pipeline_Asio, TimeoutRetryBreaker, Shape::timeout_retry_breaker);
BENCHMARK_CAPTURE(BM_Pipeline_Asio, Timeout, Shape::timeout);
BENCHMARK_CAPTURE(BM_Pipeline_Asio, Retry, Shape::retry);
BENCHMARK_CAPTURE(BM_Pipeline_Asio, Breaker, Shape::breaker);
#endif

}  // namespace
