// Several threads on one breaker. These tests also run under ThreadSanitizer; they use a
// ManualClock advanced by a controller thread, never sleep, and check exact totals.
#include <gtest/gtest.h>

#include <atomic>
#include <barrier>
#include <mutex>
#include <thread>
#include <vector>

#include "bulwark/circuit/circuit_breaker.h"
#include "bulwark/testing/manual_clock.h"

namespace bulwark::circuit {
namespace {

using namespace std::chrono_literals;

constexpr int kThreads = 3;
#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define BULWARK_TSAN 1
#endif
#endif
#if defined(__SANITIZE_THREAD__) || defined(BULWARK_TSAN)
constexpr int kCallsPerThread = 60'000;
#else
constexpr int kCallsPerThread = 200'000;
#endif

struct Totals {
  std::atomic<uint64_t> calls{0};
  std::atomic<uint64_t> admitted{0};
  std::atomic<uint64_t> probes{0};
};

TEST(BreakerConcurrency, ClosedCountWindowStaysExact) {
  testing::ManualClock clock;
  BreakerOptions o;
  o.window_size = 64;
  o.min_calls = 1;
  o.failure_rate = 2.0;  // never trips: every result goes into the window
  o.slow_call_duration = 1ms;
  o.slow_call_rate = 2.0;
  auto b = std::make_unique<CircuitBreaker>("hammer", o, clock);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      Random rng = testing::seeded_random(100 + t);
      for (int i = 0; i < kCallsPerThread; ++i) {
        const TimePoint now = clock.now();
        const Admission a = b->try_acquire(now);
        ASSERT_TRUE(a.allowed);
        const TimePoint end = now + (rng.below(2) == 0 ? 0ms : 2ms);  // half of them slow
        if (rng.below(2) == 0) {
          b->on_failure(a.permit, end);
        } else {
          b->on_success(a.permit, end);
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  const BreakerStats s = b->stats();
  EXPECT_EQ(s.successes + s.failures, uint64_t{kThreads} * kCallsPerThread);
  EXPECT_EQ(s.state, State::closed);
  EXPECT_EQ(s.transitions, 0u);
  WindowSnapshot w = b->window(clock.now());
  EXPECT_EQ(w.calls, 64u);
  // The running counters must agree with the ring once writers are quiescent: push the whole
  // window out with fast successes and the counters must come back to exactly zero.
  for (int i = 0; i < 64; ++i) b->on_success(b->try_acquire(clock.now()).permit, clock.now());
  w = b->window(clock.now());
  EXPECT_EQ(w.calls, 64u);
  EXPECT_EQ(w.failures, 0u);
  EXPECT_EQ(w.slow_calls, 0u);
  for (int i = 0; i < 5; ++i) b->on_failure(b->try_acquire(clock.now()).permit, clock.now());
  EXPECT_EQ(b->window(clock.now()).failures, 5u);
}

TEST(BreakerConcurrency, TimeWindowStaysExact) {
  testing::ManualClock clock;
  BreakerOptions o;
  o.window_type = WindowType::time;
  o.window_size = 5;
  o.min_calls = 1;
  o.failure_rate = 2.0;
  auto b = std::make_unique<CircuitBreaker>("hammer", o, clock);
  std::atomic<bool> done{false};
  std::thread ticker([&] {
    while (!done.load()) clock.advance(1ms);
  });
  std::vector<std::thread> threads;
  std::atomic<uint64_t> failures{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      Random rng = testing::seeded_random(200 + t);
      for (int i = 0; i < kCallsPerThread; ++i) {
        const Admission a = b->try_acquire();
        if (rng.below(3) == 0) {
          b->on_failure(a.permit, a.permit.start);
          failures.fetch_add(1);
        } else {
          b->on_success(a.permit, a.permit.start);
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  done.store(true);
  ticker.join();
  const BreakerStats s = b->stats();
  EXPECT_EQ(s.successes + s.failures, uint64_t{kThreads} * kCallsPerThread);
  EXPECT_EQ(s.failures, failures.load());
  // Everything expires after a full window; then the window counts exactly what is added.
  clock.advance(5s);
  EXPECT_EQ(b->window(clock.now()).calls, 0u);
  for (int i = 0; i < 7; ++i) b->on_failure(b->try_acquire().permit, clock.now());
  EXPECT_EQ(b->window(clock.now()).calls, 7u);
  EXPECT_EQ(b->window(clock.now()).failures, 7u);
}

// Trips, probes, closes and operator actions racing with traffic: every call is accounted for
// exactly once, listeners see one consistent chain of transitions, and nothing deadlocks even
// though the listener calls back into the breaker.
TEST(BreakerConcurrency, TransitionsUnderLoadAccountForEveryCall) {
  testing::ManualClock clock;
  BreakerOptions o;
  o.window_size = 20;
  o.min_calls = 10;
  o.failure_rate = 0.5;
  o.consecutive_failures = 6;
  o.slow_call_duration = 3ms;
  o.slow_call_rate = 0.8;
  o.open_duration = 2ms;
  o.open_multiplier = 2.0;
  o.max_open_duration = 8ms;
  o.half_open_probes = 2;
  o.success_threshold = 2;
  o.half_open_max_wait = 5ms;
  auto b = std::make_unique<CircuitBreaker>("hammer", o, clock);

  std::mutex mu;
  std::vector<TransitionEvent> events;
  std::atomic<uint64_t> reentrant_calls{0};
  b->add_listener([&](const TransitionEvent& e) {
    // Re-entrant reads and admissions from inside a listener must not deadlock.
    (void)b->state();
    const Admission a = b->try_acquire(e.at);
    if (a.allowed) b->release(a.permit);
    reentrant_calls.fetch_add(1);
    std::lock_guard lock(mu);
    events.push_back(e);
  });

  Totals totals;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      Random rng = testing::seeded_random(300 + t);
      std::vector<Permit> held;
      for (int i = 0; i < kCallsPerThread / 4; ++i) {
        totals.calls.fetch_add(1);
        const Admission a = b->try_acquire();
        if (a.allowed) {
          totals.admitted.fetch_add(1);
          if (a.permit.probe) totals.probes.fetch_add(1);
          held.push_back(a.permit);
        }
        // Keep a few calls in flight so that results cross transitions.
        if (held.size() > 3 || (!held.empty() && rng.below(2) == 0)) {
          const size_t k = rng.below(held.size());
          const Permit p = held[k];
          held[k] = held.back();
          held.pop_back();
          const TimePoint now = clock.now();
          switch (rng.below(8)) {
            case 0:
              b->release(p);
              break;
            case 1:
            case 2:
            case 3:
              b->on_failure(p, now);
              break;
            case 4:
              b->on_success(p, now + 4ms);
              break;  // slow
            default:
              b->on_success(p, now);
              break;
          }
        }
        // Time moves with the traffic, and every thread takes turns at being the operator.
        if (rng.below(4) == 0) clock.advance(250us);
        if (rng.below(50) == 0) b->poll(clock.now());
        switch (rng.below(5000)) {
          case 0:
            b->force_open();
            break;
          case 1:
            b->disable();
            break;
          case 2:
            b->metrics_only();
            break;
          case 3:
          case 4:
          case 5:
            b->reset();
            break;
          default:
            break;
        }
      }
      for (const Permit& p : held) b->release(p);
    });
  }
  for (auto& th : threads) th.join();
  b->reset();  // delivers anything still pending and makes the final state known

  // The listener's own try_acquire calls are counted in stats too: each either was rejected or
  // released. Both kinds of re-entrant calls are part of `reentrant_calls`.
  const BreakerStats s = b->stats();
  const uint64_t total = totals.calls.load() + reentrant_calls.load();
  EXPECT_EQ(s.successes + s.failures + s.dropped_stale + s.released + s.rejected, total);
  EXPECT_GT(s.transitions, 10u);
  EXPECT_GT(s.dropped_stale, 0u);
  EXPECT_GT(totals.probes.load(), 0u);

  std::lock_guard lock(mu);
  uint64_t transitions = 0;
  const TransitionEvent* prev = nullptr;
  for (const TransitionEvent& e : events) {
    if (e.cause == kCauseThresholdExceeded) {
      ASSERT_NE(prev, nullptr);
      EXPECT_EQ(e.from, State::metrics_only);
      EXPECT_EQ(e.generation, prev->generation);
      continue;
    }
    ++transitions;
    if (prev != nullptr) {
      EXPECT_EQ(e.from, prev->to) << "generation " << e.generation;
      EXPECT_EQ(e.generation, prev->generation + 1);
    }
    prev = &e;
  }
  EXPECT_EQ(transitions, s.transitions);
  ASSERT_NE(prev, nullptr);
  EXPECT_EQ(prev->to, State::closed);
  EXPECT_EQ(prev->generation, b->generation());
}

}  // namespace
}  // namespace bulwark::circuit
