// Micro-benchmarks of the circuit breaker, each next to a naive baseline:
//   CircuitBreaker closed try_acquire + on_success (count window of 100)
//       vs NaiveBreaker: one std::mutex around admission and recording over the same window
//   ... the same with ->Threads(2) on one shared breaker (items/s is the total of both threads,
//       measured on wall-clock time)
//   ... with 1 call in 16 failing (the window always holds failures: no fast path)
//   CircuitBreaker closed, time window of 60 s   vs the same behind one std::mutex
//   CircuitBreaker rejecting while open          vs a std::mutex-guarded check
// Time is synthetic (a fixed TimePoint), so the numbers measure the breaker, not clock reads.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "bulwark/circuit/circuit_breaker.h"

namespace {

using bulwark::Duration;
using bulwark::TimePoint;
using bulwark::circuit::BreakerOptions;
using bulwark::circuit::CircuitBreaker;

const TimePoint kNow = TimePoint(std::chrono::hours(24));

// The straightforward design: state, generation and the count window behind one mutex.
class NaiveBreaker {
 public:
  struct Permit {
    uint64_t generation = 0;
    TimePoint start{};
  };

  explicit NaiveBreaker(const BreakerOptions& o)
      : options_(o), ring_(o.window_size, 0), open_until_(TimePoint::min()) {}

  bool try_acquire(TimePoint now, Permit& p) {
    std::lock_guard lock(mu_);
    if (open_ && now < open_until_) return false;
    p = {generation_, now};
    return true;
  }

  void on_success(const Permit& p, TimePoint now) { record(p, false, now); }
  void on_failure(const Permit& p, TimePoint now) { record(p, true, now); }
  void open_until(TimePoint until) {
    std::lock_guard lock(mu_);
    open_ = true;
    open_until_ = until;
  }

 private:
  void record(const Permit& p, bool failure, TimePoint now) {
    std::lock_guard lock(mu_);
    if (p.generation != generation_) return;
    // ring_ holds 0 (empty), 1 (success) or 2 (failure).
    uint8_t& slot = ring_[next_];
    next_ = (next_ + 1) % ring_.size();
    if (slot == 0) ++calls_;
    if (slot == 2) --failures_;
    slot = failure ? 2 : 1;
    if (failure) ++failures_;
    if (failure && calls_ >= options_.min_calls &&
        static_cast<double>(failures_) / calls_ >= options_.failure_rate) {
      open_ = true;
      open_until_ = now + options_.open_duration;
      ++generation_;
      std::fill(ring_.begin(), ring_.end(), 0);
      calls_ = failures_ = 0;
    }
  }

  const BreakerOptions options_;
  std::mutex mu_;
  std::vector<uint8_t> ring_;
  size_t next_ = 0;
  uint32_t calls_ = 0;
  uint32_t failures_ = 0;
  uint64_t generation_ = 1;
  bool open_ = false;
  TimePoint open_until_;
};

// The straightforward time window: per-second buckets behind one mutex.
class NaiveTimeBreaker {
 public:
  explicit NaiveTimeBreaker(const BreakerOptions& o) : options_(o), buckets_(o.window_size) {}

  bool try_acquire(TimePoint now, NaiveBreaker::Permit& p) {
    std::lock_guard lock(mu_);
    p = {generation_, now};
    return true;
  }

  void on_success(const NaiveBreaker::Permit& p, TimePoint now) {
    std::lock_guard lock(mu_);
    if (p.generation != generation_) return;
    const int64_t sec = now.time_since_epoch().count() / 1'000'000'000;
    Bucket& b = buckets_[static_cast<size_t>(sec) % buckets_.size()];
    if (b.second != sec) b = {sec, 0, 0};
    ++b.calls;
  }

 private:
  struct Bucket {
    int64_t second = -1;
    uint32_t calls = 0;
    uint32_t failures = 0;
  };
  const BreakerOptions options_;
  std::mutex mu_;
  std::vector<Bucket> buckets_;
  uint64_t generation_ = 1;
};

// Shared by the threads of one benchmark run; created by thread 0 before the others start.
template <class T>
std::unique_ptr<T>& shared_instance() {
  static std::unique_ptr<T> instance;
  return instance;
}

void BM_Breaker_ClosedAcquireSuccess(benchmark::State& state) {
  auto& b = shared_instance<CircuitBreaker>();
  if (state.thread_index() == 0) {
    b = std::make_unique<CircuitBreaker>("bench", BreakerOptions{},
                                         bulwark::SystemClock::instance());
  }
  // Google Benchmark starts every thread's timed loop together, after this setup.
  for (auto _ : state) {
    const bulwark::circuit::Admission a = b->try_acquire(kNow);
    benchmark::DoNotOptimize(a.allowed);
    b->on_success(a.permit, kNow);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_Breaker_ClosedAcquireSuccess)->UseRealTime()->Threads(1)->Threads(2);

void BM_Breaker_NaiveMutexBaseline(benchmark::State& state) {
  auto& b = shared_instance<NaiveBreaker>();
  if (state.thread_index() == 0) b = std::make_unique<NaiveBreaker>(BreakerOptions{});
  for (auto _ : state) {
    NaiveBreaker::Permit p{};
    const bool allowed = b->try_acquire(kNow, p);
    benchmark::DoNotOptimize(allowed);
    b->on_success(p, kNow);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_Breaker_NaiveMutexBaseline)->UseRealTime()->Threads(1)->Threads(2);

// 1 in 16 calls fails (below the 50 % threshold): exercises the rule evaluation path.
void BM_Breaker_ClosedMixedFailures(benchmark::State& state) {
  auto& b = shared_instance<CircuitBreaker>();
  if (state.thread_index() == 0) {
    b = std::make_unique<CircuitBreaker>("bench", BreakerOptions{},
                                         bulwark::SystemClock::instance());
  }
  uint32_t i = 0;
  for (auto _ : state) {
    const bulwark::circuit::Admission a = b->try_acquire(kNow);
    if ((++i & 15) == 0) {
      b->on_failure(a.permit, kNow);
    } else {
      b->on_success(a.permit, kNow);
    }
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_Breaker_ClosedMixedFailures)->UseRealTime()->Threads(1)->Threads(2);

void BM_Breaker_NaiveMixedFailuresBaseline(benchmark::State& state) {
  auto& b = shared_instance<NaiveBreaker>();
  if (state.thread_index() == 0) b = std::make_unique<NaiveBreaker>(BreakerOptions{});
  uint32_t i = 0;
  for (auto _ : state) {
    NaiveBreaker::Permit p{};
    benchmark::DoNotOptimize(b->try_acquire(kNow, p));
    if ((++i & 15) == 0) {
      b->on_failure(p, kNow);
    } else {
      b->on_success(p, kNow);
    }
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_Breaker_NaiveMixedFailuresBaseline)->UseRealTime()->Threads(1)->Threads(2);

void BM_Breaker_ClosedTimeWindow(benchmark::State& state) {
  auto& b = shared_instance<CircuitBreaker>();
  if (state.thread_index() == 0) {
    BreakerOptions o;
    o.window_type = bulwark::circuit::WindowType::time;
    o.window_size = 60;
    b = std::make_unique<CircuitBreaker>("bench", o, bulwark::SystemClock::instance());
  }
  for (auto _ : state) {
    const bulwark::circuit::Admission a = b->try_acquire(kNow);
    benchmark::DoNotOptimize(a.allowed);
    b->on_success(a.permit, kNow);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_Breaker_ClosedTimeWindow)->UseRealTime()->Threads(1)->Threads(2);

void BM_Breaker_NaiveTimeWindowBaseline(benchmark::State& state) {
  auto& b = shared_instance<NaiveTimeBreaker>();
  if (state.thread_index() == 0) {
    BreakerOptions o;
    o.window_type = bulwark::circuit::WindowType::time;
    o.window_size = 60;
    b = std::make_unique<NaiveTimeBreaker>(o);
  }
  for (auto _ : state) {
    NaiveBreaker::Permit p{};
    benchmark::DoNotOptimize(b->try_acquire(kNow, p));
    b->on_success(p, kNow);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_Breaker_NaiveTimeWindowBaseline)->UseRealTime()->Threads(1)->Threads(2);

// Rejection while open: one atomic load of the state word, one of open_until, a striped count.
void BM_Breaker_OpenReject(benchmark::State& state) {
  auto& b = shared_instance<CircuitBreaker>();
  if (state.thread_index() == 0) {
    BreakerOptions o;
    o.open_duration = std::chrono::hours(1);
    o.max_open_duration = o.open_duration;
    b = std::make_unique<CircuitBreaker>("bench", o, bulwark::SystemClock::instance());
    for (int i = 0; i < 20; ++i) b->on_failure(b->try_acquire(kNow).permit, kNow);
  }
  for (auto _ : state) benchmark::DoNotOptimize(b->try_acquire(kNow).allowed);
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_Breaker_OpenReject)->UseRealTime()->Threads(1)->Threads(2);

void BM_Breaker_NaiveOpenRejectBaseline(benchmark::State& state) {
  auto& b = shared_instance<NaiveBreaker>();
  if (state.thread_index() == 0) {
    b = std::make_unique<NaiveBreaker>(BreakerOptions{});
    b->open_until(kNow + std::chrono::hours(1));
  }
  for (auto _ : state) {
    NaiveBreaker::Permit p{};
    benchmark::DoNotOptimize(b->try_acquire(kNow, p));
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_Breaker_NaiveOpenRejectBaseline)->UseRealTime()->Threads(1)->Threads(2);

}  // namespace
