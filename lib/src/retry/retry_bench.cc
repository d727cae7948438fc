// Micro-benchmarks of the retry area, each next to a naive baseline:
//   Backoff::delay (exponential, full jitter)   vs std::pow + std::mt19937 +
//                                                  std::uniform_int_distribution per call
//   RetryBudget record_request + try_withdraw   vs std::mutex + std::deque<TimePoint>
// Time is synthetic (see tick()) so the numbers measure the data structures, not clock reads.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <deque>
#include <mutex>
#include <random>

#include "bulwark/core/random.h"
#include "bulwark/retry/backoff.h"
#include "bulwark/retry/retry_budget.h"

namespace {

using namespace std::chrono_literals;
using bulwark::Duration;
using bulwark::TimePoint;

// --- backoff ---------------------------------------------------------------------------------

void BM_Backoff_ExponentialFullJitter(benchmark::State& state) {
  const bulwark::retry::Backoff backoff;  // exponential 25ms x2 up to 250ms, full jitter
  bulwark::Random rng(42);
  uint32_t retry = 0;
  for (auto _ : state) {
    retry = retry % 8 + 1;  // retries 1..8: below and at the cap
    benchmark::DoNotOptimize(backoff.delay(retry, Duration::zero(), rng));
  }
}
BENCHMARK(BM_Backoff_ExponentialFullJitter);

// What a straightforward implementation does: pow() and a fresh distribution on every call.
void BM_Backoff_NaiveBaseline(benchmark::State& state) {
  const double base = 25e6, cap = 250e6, multiplier = 2.0;
  std::mt19937 gen(42);
  uint32_t retry = 0;
  for (auto _ : state) {
    retry = retry % 8 + 1;
    const double raw = std::min(cap, base * std::pow(multiplier, retry - 1));
    std::uniform_int_distribution<int64_t> dist(0, static_cast<int64_t>(raw));
    benchmark::DoNotOptimize(Duration(dist(gen)));
  }
}
BENCHMARK(BM_Backoff_NaiveBaseline);

// --- retry budget ----------------------------------------------------------------------------

// The obvious locked design: every request and retry timestamp in a deque, trimmed on use.
class MutexDequeBudget {
 public:
  bool try_withdraw(TimePoint now) {
    std::lock_guard lock(mu_);
    trim(now);
    const double allowed = 0.2 * static_cast<double>(requests_.size()) + 10.0 * 10.0;
    if (static_cast<double>(retries_.size() + 1) > allowed) return false;
    retries_.push_back(now);
    return true;
  }
  void record_request(TimePoint now) {
    std::lock_guard lock(mu_);
    trim(now);
    requests_.push_back(now);
  }

 private:
  void trim(TimePoint now) {
    while (!requests_.empty() && requests_.front() <= now - 10s) requests_.pop_front();
    while (!retries_.empty() && retries_.front() <= now - 10s) retries_.pop_front();
  }
  std::mutex mu_;
  std::deque<TimePoint> requests_;
  std::deque<TimePoint> retries_;
};

// Synthetic shared time: thread 0 advances it by 16 ms every 16 of its iterations (1000 requests
// per second of simulated time); every thread reads it, so all threads agree on `now` as they
// would reading one steady clock.
std::atomic<int64_t> g_now_ns{0};

TimePoint bench_start() { return TimePoint(std::chrono::hours(24)); }

void reset_time(benchmark::State& state) {
  if (state.thread_index() == 0) g_now_ns.store(bench_start().time_since_epoch().count());
}

TimePoint tick(benchmark::State& state, uint64_t& i) {
  if (state.thread_index() == 0 && (++i & 15) == 0) {
    g_now_ns.store(g_now_ns.load(std::memory_order_relaxed) + Duration(16ms).count(),
                   std::memory_order_relaxed);
  }
  return TimePoint(Duration(g_now_ns.load(std::memory_order_relaxed)));
}

// One original request and one retry attempt per iteration: the budget grants 20 % of them
// (plus the floor), so both the granting and the denying paths are exercised.
void BM_RetryBudget_RecordAndWithdraw(benchmark::State& state) {
  static bulwark::retry::RetryBudget* budget = nullptr;
  if (state.thread_index() == 0) budget = new bulwark::retry::RetryBudget();
  reset_time(state);
  uint64_t i = 0;
  for (auto _ : state) {
    const TimePoint now = tick(state, i);
    budget->record_request(now);
    benchmark::DoNotOptimize(budget->try_withdraw(now));
  }
  if (state.thread_index() == 0) {
    state.counters["exhausted"] = static_cast<double>(budget->exhausted_total());
    delete budget;
  }
}
BENCHMARK(BM_RetryBudget_RecordAndWithdraw);
BENCHMARK(BM_RetryBudget_RecordAndWithdraw)->Threads(2);

void BM_RetryBudget_MutexDequeBaseline(benchmark::State& state) {
  static MutexDequeBudget* budget = nullptr;
  if (state.thread_index() == 0) budget = new MutexDequeBudget();
  reset_time(state);
  uint64_t i = 0;
  for (auto _ : state) {
    const TimePoint now = tick(state, i);
    budget->record_request(now);
    benchmark::DoNotOptimize(budget->try_withdraw(now));
  }
  if (state.thread_index() == 0) delete budget;
}
BENCHMARK(BM_RetryBudget_MutexDequeBaseline);
BENCHMARK(BM_RetryBudget_MutexDequeBaseline)->Threads(2);

// try_withdraw alone on an exhausted budget: the cost every retry pays under overload.
void BM_RetryBudget_WithdrawExhausted(benchmark::State& state) {
  bulwark::retry::RetryBudget budget;
  const TimePoint now = bench_start();
  while (budget.try_withdraw(now)) {
  }
  for (auto _ : state) benchmark::DoNotOptimize(budget.try_withdraw(now));
}
BENCHMARK(BM_RetryBudget_WithdrawExhausted);

}  // namespace
