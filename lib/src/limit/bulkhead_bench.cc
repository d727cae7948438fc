// Micro-benchmarks of the bulkhead, each next to a naive baseline:
//   Bulkhead try_acquire_now + release (lock-free path: nobody queued, no throttle)
//       vs NaiveBulkhead: a counter behind std::mutex + std::condition_variable
//   ... the same with ->Threads(2) on one shared bulkhead (items/s is the total of both
//       threads, on wall-clock time)
//   Bulkhead try_acquire (the full Acquisition, ticket-capable API) + release
//   Bulkhead with a throttle (every operation takes the internal mutex)
//   Adaptive limits: one AIMD / Gradient2 sample
// Time is synthetic (a fixed TimePoint), so the numbers measure the bulkhead, not clock reads.
#include <benchmark/benchmark.h>

#include <condition_variable>
#include <cstdint>
#include <mutex>

#include "bulwark/limit/adaptive_limit.h"
#include "bulwark/limit/bulkhead.h"

namespace {

using bulwark::Duration;
using bulwark::TimePoint;
using bulwark::limit::Bulkhead;
using bulwark::limit::BulkheadOptions;

const TimePoint kNow = TimePoint(std::chrono::hours(24));

// The textbook semaphore: a counter, a mutex and a condition variable.
class NaiveBulkhead {
 public:
  explicit NaiveBulkhead(uint32_t limit) : limit_(limit) {}

  bool try_acquire() {
    std::lock_guard lock(mu_);
    if (in_flight_ >= limit_) return false;
    ++in_flight_;
    return true;
  }
  void acquire() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return in_flight_ < limit_; });
    ++in_flight_;
  }
  void release() {
    {
      std::lock_guard lock(mu_);
      --in_flight_;
    }
    cv_.notify_one();
  }

 private:
  const uint32_t limit_;
  std::mutex mu_;
  std::condition_variable cv_;
  uint32_t in_flight_ = 0;
};

// One instance per benchmark, shared by its threads; every iteration returns what it took, so
// the same instance serves every run and repetition.
Bulkhead& shared_bulkhead() {
  static Bulkhead b("bench", BulkheadOptions{.max_concurrent = 64});
  return b;
}

void BM_Bulkhead_AcquireRelease(benchmark::State& state) {
  Bulkhead& b = shared_bulkhead();
  // Hold times vary from call to call, so every release really updates the hold-time EWMA.
  TimePoint now = kNow;
  int64_t i = 0;
  for (auto _ : state) {
    bulwark::Result<bulwark::limit::Permit> p = b.try_acquire_now(now);
    benchmark::DoNotOptimize(p.has_value());
    now += Duration(1 + (++i & 255));
    p->release(now);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_Bulkhead_AcquireRelease)->UseRealTime()->Threads(1)->Threads(2);

void BM_NaiveBulkhead_AcquireRelease(benchmark::State& state) {
  static NaiveBulkhead b(64);
  for (auto _ : state) {
    b.acquire();
    b.release();
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_NaiveBulkhead_AcquireRelease)->UseRealTime()->Threads(1)->Threads(2);

void BM_NaiveBulkhead_TryAcquireRelease(benchmark::State& state) {
  static NaiveBulkhead b(64);
  for (auto _ : state) {
    const bool ok = b.try_acquire();
    benchmark::DoNotOptimize(ok);
    if (ok) b.release();
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_NaiveBulkhead_TryAcquireRelease)->UseRealTime()->Threads(1)->Threads(2);

void BM_Bulkhead_TryAcquireAcquisitionRelease(benchmark::State& state) {
  Bulkhead& b = shared_bulkhead();
  for (auto _ : state) {
    Bulkhead::Acquisition a = b.try_acquire(kNow);
    benchmark::DoNotOptimize(a.status);
    a.permit.release(kNow);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_Bulkhead_TryAcquireAcquisitionRelease)->UseRealTime()->Threads(1);

void BM_Bulkhead_ThrottledAcquireRelease(benchmark::State& state) {
  // A rate no synthetic clock can exceed: every start is admitted, through the locked path.
  static Bulkhead b(
      "throttled",
      BulkheadOptions{.max_concurrent = 64, .starts_per_second = 1e9, .throttle_burst = 1u << 20});
  TimePoint now = kNow;
  for (auto _ : state) {
    now += Duration(1);
    bulwark::Result<bulwark::limit::Permit> p = b.try_acquire_now(now);
    benchmark::DoNotOptimize(p.has_value());
    if (p) p->release(now);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_Bulkhead_ThrottledAcquireRelease)->UseRealTime()->Threads(1);

void BM_Aimd_Sample(benchmark::State& state) {
  bulwark::limit::AimdLimit aimd({.initial_limit = 20, .min_limit = 1, .max_limit = 1000});
  uint32_t i = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(
        aimd.on_sample(kNow, std::chrono::milliseconds(10), aimd.limit(), (++i & 63) == 0));
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_Aimd_Sample);

void BM_Gradient2_Sample(benchmark::State& state) {
  bulwark::limit::Gradient2Limit g({.initial_limit = 20, .min_limit = 1, .max_limit = 1000});
  int64_t i = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(
        g.on_sample(kNow, std::chrono::microseconds(10'000 + (++i & 1023)), g.limit(), false));
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_Gradient2_Sample);

}  // namespace
