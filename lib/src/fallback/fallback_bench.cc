// Micro-benchmarks of the fallback area, each next to a naive baseline:
//   fallback::sequential (primary answers / falls back once)   vs the same written by hand
//                                                                 (call, test, call again)
//   HedgeRun decisions for one hedged call, with a RetryBudget  vs a straightforward version:
//                                                                 std::vector of attempt states
//                                                                 and a std::mutex + std::deque
//                                                                 budget
// Time is synthetic (see tick()) so the numbers measure the decisions, not clock reads.
#include <benchmark/benchmark.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <mutex>
#include <vector>

#include "bulwark/fallback/fallback.h"
#include "bulwark/fallback/hedge.h"
#include "bulwark/retry/retry_budget.h"

namespace {

using namespace std::chrono_literals;
using bulwark::Duration;
using bulwark::Outcome;
using bulwark::Result;
using bulwark::TimePoint;

const boost::system::error_code kDown = make_error_code(std::errc::connection_refused);

// --- sequential ------------------------------------------------------------------------------

Result<int> primary_ok(int x) { return x; }
Result<int> primary_down(int) { return kDown; }
int backup(int x) { return -x; }

void BM_Sequential_PrimaryAnswers(benchmark::State& state) {
  int x = 0;
  for (auto _ : state) {
    ++x;
    auto r =
        bulwark::fallback::sequential([&] { return primary_ok(x); }, [&] { return backup(x); });
    benchmark::DoNotOptimize(r);
  }
}
BENCHMARK(BM_Sequential_PrimaryAnswers);

void BM_Sequential_PrimaryAnswers_HandWrittenBaseline(benchmark::State& state) {
  int x = 0;
  for (auto _ : state) {
    ++x;
    Result<int> r = primary_ok(x);
    if (!r) r = backup(x);
    benchmark::DoNotOptimize(r);
  }
}
BENCHMARK(BM_Sequential_PrimaryAnswers_HandWrittenBaseline);

void BM_Sequential_FallsBackOnce(benchmark::State& state) {
  int x = 0;
  for (auto _ : state) {
    ++x;
    auto r =
        bulwark::fallback::sequential([&] { return primary_down(x); }, [&] { return backup(x); });
    benchmark::DoNotOptimize(r);
  }
}
BENCHMARK(BM_Sequential_FallsBackOnce);

void BM_Sequential_FallsBackOnce_HandWrittenBaseline(benchmark::State& state) {
  int x = 0;
  for (auto _ : state) {
    ++x;
    Result<int> r = primary_down(x);
    if (!r) r = backup(x);
    benchmark::DoNotOptimize(r);
  }
}
BENCHMARK(BM_Sequential_FallsBackOnce_HandWrittenBaseline);

// --- hedge decisions -------------------------------------------------------------------------

// Synthetic time shared by every run, repetition and thread: 1 ms per call, never going back,
// so the budgets' windows slide the same way for the library and the baseline.
std::atomic<int64_t> g_synthetic_ns{std::chrono::nanoseconds(std::chrono::hours(1)).count()};
TimePoint tick() {
  constexpr int64_t kStep = std::chrono::nanoseconds(1ms).count();
  return TimePoint(Duration(g_synthetic_ns.fetch_add(kStep, std::memory_order_relaxed) + kStep));
}

// One call per iteration: start, the delay passes, the hedge starts, the hedge answers. The
// policy and its budget are shared by all benchmark threads, as they are by a target's callers.
void BM_HedgeRun_HedgedCall(benchmark::State& state) {
  // Budget defaults (20 % + 10/s): about one hedge in five is granted, as in the baseline.
  static bulwark::retry::RetryBudget budget;
  static bulwark::fallback::HedgePolicy policy({.delay = 10ms, .max_attempts = 2}, &budget);
  for (auto _ : state) {
    const TimePoint now = tick();
    bulwark::fallback::HedgeRun run = policy.start();
    benchmark::DoNotOptimize(run.on_start(now));
    benchmark::DoNotOptimize(run.on_timer(now + 10ms));
    benchmark::DoNotOptimize(run.on_result(1, Outcome::success, now + 11ms));
    benchmark::DoNotOptimize(run.on_result(0, Outcome::success, now + 12ms));  // late, ignored
  }
}
BENCHMARK(BM_HedgeRun_HedgedCall)->Threads(1)->Threads(2);

// The obvious design: attempt states in a vector, the budget as a locked deque of timestamps.
class NaiveHedge {
 public:
  struct Budget {
    std::mutex mu;
    std::deque<TimePoint> requests, retries;
    void trim(TimePoint now) {
      while (!requests.empty() && now - requests.front() > 10s) requests.pop_front();
      while (!retries.empty() && now - retries.front() > 10s) retries.pop_front();
    }
    void record(TimePoint now) {
      std::lock_guard lock(mu);
      trim(now);
      requests.push_back(now);
    }
    bool withdraw(TimePoint now) {
      std::lock_guard lock(mu);
      trim(now);
      if (retries.size() + 1 > 0.2 * requests.size() + 100) return false;
      retries.push_back(now);
      return true;
    }
  };
  enum class S { idle, running, failed, won };

  NaiveHedge(Budget& b, Duration delay, uint32_t max) : b_(b), delay_(delay), states_(max) {}
  void start(TimePoint now) {
    b_.record(now);
    states_[0] = S::running;
    last_ = now;
  }
  int timer(TimePoint now) {
    if (done_ || now < last_ + delay_) return -1;
    for (std::size_t i = 0; i < states_.size(); ++i) {
      if (states_[i] == S::idle) {
        if (!b_.withdraw(now)) return -1;
        states_[i] = S::running;
        last_ = now;
        return static_cast<int>(i);
      }
    }
    return -1;
  }
  bool result(std::size_t i, Outcome o) {
    if (done_ || states_[i] != S::running) return false;
    states_[i] = bulwark::is_breaker_failure(o) ? S::failed : S::won;
    done_ = states_[i] == S::won;
    return done_;
  }

 private:
  Budget& b_;
  Duration delay_;
  std::vector<S> states_;
  TimePoint last_{};
  bool done_ = false;
};

void BM_HedgeRun_HedgedCall_NaiveBaseline(benchmark::State& state) {
  static NaiveHedge::Budget budget;
  for (auto _ : state) {
    const TimePoint now = tick();
    NaiveHedge run(budget, 10ms, 2);
    run.start(now);
    benchmark::DoNotOptimize(run.timer(now + 10ms));
    benchmark::DoNotOptimize(run.result(1, Outcome::success));
    benchmark::DoNotOptimize(run.result(0, Outcome::success));
  }
}
BENCHMARK(BM_HedgeRun_HedgedCall_NaiveBaseline)->Threads(1)->Threads(2);

// The common case: the first attempt answers before the delay; no hedge, no withdrawal.
void BM_HedgeRun_AnsweredBeforeDelay(benchmark::State& state) {
  bulwark::retry::RetryBudget budget;
  bulwark::fallback::HedgePolicy policy({.delay = 10ms, .max_attempts = 2}, &budget);
  for (auto _ : state) {
    const TimePoint now = tick();
    bulwark::fallback::HedgeRun run = policy.start();
    benchmark::DoNotOptimize(run.on_start(now));
    benchmark::DoNotOptimize(run.on_result(0, Outcome::success, now + 1ms));
  }
}
BENCHMARK(BM_HedgeRun_AnsweredBeforeDelay);

void BM_HedgeRun_AnsweredBeforeDelay_NaiveBaseline(benchmark::State& state) {
  NaiveHedge::Budget budget;
  for (auto _ : state) {
    const TimePoint now = tick();
    NaiveHedge run(budget, 10ms, 2);
    run.start(now);
    benchmark::DoNotOptimize(run.result(0, Outcome::success));
  }
}
BENCHMARK(BM_HedgeRun_AnsweredBeforeDelay_NaiveBaseline);

}  // namespace
