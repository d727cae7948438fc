// Bulkhead under real threads (run under ThreadSanitizer too): never more than the limit in
// flight, every attempt accounted for exactly, nothing left held or queued at the end. The
// in-flight high-water mark is measured by the callers themselves with an atomic, between
// getting a permit and giving it back. No sleeps: threads only spin, block on the bulkhead
// or yield.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <thread>
#include <vector>

#include "bulwark/core/random.h"
#include "bulwark/limit/bulkhead.h"

namespace bulwark::limit {
namespace {

using namespace std::chrono_literals;

constexpr int kThreads = 4;

// Counts callers inside the guarded section and records the most seen at once.
struct HighWater {
  std::atomic<int> inside{0};
  std::atomic<int> most{0};
  void enter() {
    const int now = inside.fetch_add(1, std::memory_order_acq_rel) + 1;
    int seen = most.load(std::memory_order_relaxed);
    while (now > seen && !most.compare_exchange_weak(seen, now, std::memory_order_relaxed)) {
    }
  }
  void leave() { inside.fetch_sub(1, std::memory_order_acq_rel); }
};

template <class F>
void run_threads(F body) {
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) threads.emplace_back(body, t);
  for (auto& th : threads) th.join();
}

TEST(BulkheadConcurrency, LockFreePathNeverExceedsTheLimitAndCountsAddUp) {
  constexpr uint32_t kLimit = 3;
  constexpr int kAttempts = 20000;
  Bulkhead b("hot", {.max_concurrent = kLimit});
  HighWater hw;
  std::atomic<uint64_t> granted{0}, rejected{0};
  run_threads([&](int t) {
    Random rng(100 + t);
    for (int i = 0; i < kAttempts; ++i) {
      Result<Permit> p = b.try_acquire_now(SystemClock::instance().now());
      if (!p) {
        EXPECT_EQ(p.error(), errc::queue_full);
        rejected.fetch_add(1, std::memory_order_relaxed);
        continue;
      }
      granted.fetch_add(1, std::memory_order_relaxed);
      hw.enter();
      for (uint64_t spin = rng.below(64); spin > 0; --spin)
        std::atomic_signal_fence(std::memory_order_seq_cst);
      hw.leave();
      p->release(SystemClock::instance().now());
    }
  });
  EXPECT_LE(hw.most.load(), static_cast<int>(kLimit));
  EXPECT_GE(hw.most.load(), 1);
  EXPECT_EQ(granted + rejected, static_cast<uint64_t>(kThreads) * kAttempts);
  const auto s = b.stats();
  EXPECT_EQ(s.granted, granted.load());
  EXPECT_EQ(s.rejected(), rejected.load());
  EXPECT_EQ(b.in_flight(), 0u);
}

TEST(BulkheadConcurrency, QueuedWaitersAreAllServedWithinTheLimit) {
  constexpr uint32_t kLimit = 2;
  constexpr int kAttempts = 3000;
  // Room in the queue for every thread: nobody is refused, everybody waits their turn.
  Bulkhead b("queue",
             {.max_concurrent = kLimit, .max_queue = kThreads, .max_wait = Duration::max()});
  HighWater hw;
  std::atomic<uint64_t> granted{0};
  run_threads([&](int t) {
    Random rng(200 + t);
    for (int i = 0; i < kAttempts; ++i) {
      Result<Permit> p = b.acquire(static_cast<int>(rng.below(3)), Deadline::never());
      ASSERT_TRUE(p) << p.error().message();
      granted.fetch_add(1, std::memory_order_relaxed);
      hw.enter();
      if (rng.below(4) == 0) std::this_thread::yield();  // let others pile up in the queue
      hw.leave();
    }  // released by the destructor
  });
  EXPECT_LE(hw.most.load(), static_cast<int>(kLimit));
  EXPECT_EQ(granted.load(), static_cast<uint64_t>(kThreads) * kAttempts);
  const auto s = b.stats();
  EXPECT_EQ(s.granted + s.granted_after_wait, granted.load());
  EXPECT_EQ(s.queued, s.granted_after_wait);
  EXPECT_EQ(s.rejected(), 0u);
  EXPECT_EQ(b.in_flight(), 0u);
  EXPECT_EQ(b.queued(), 0u);
}

TEST(BulkheadConcurrency, TicketsRacingGrantsWithCancellationsLoseNothing) {
  constexpr uint32_t kLimit = 2;
  constexpr int kAttempts = 4000;
  Bulkhead b("race", {.max_concurrent = kLimit, .max_queue = 2, .max_wait = Duration::max()});
  HighWater hw;
  std::atomic<uint64_t> attempts{0}, used{0}, gave_up{0}, refused{0};
  run_threads([&](int t) {
    Random rng(300 + t);
    for (int i = 0; i < kAttempts; ++i) {
      attempts.fetch_add(1, std::memory_order_relaxed);
      Bulkhead::Acquisition a = b.try_acquire(SystemClock::instance().now());
      Permit permit;
      if (a.status == Bulkhead::Status::rejected) {
        refused.fetch_add(1, std::memory_order_relaxed);
        continue;
      }
      if (a.status == Bulkhead::Status::granted) {
        permit = std::move(a.permit);
      } else if (rng.below(2) == 0) {
        // Give up at once: races with a release granting this very ticket. Either it was
        // withdrawn or the permit it got is passed back; both leave nothing held.
        a.ticket.cancel();
        gave_up.fetch_add(1, std::memory_order_relaxed);
        continue;
      } else {
        // Wait for the grant by spinning on the state (the ticket cannot time out).
        while (a.ticket.state() == Ticket::State::waiting) std::this_thread::yield();
        Result<Permit> r = a.ticket.take();
        ASSERT_TRUE(r) << r.error().message();
        permit = std::move(*r);
      }
      used.fetch_add(1, std::memory_order_relaxed);
      hw.enter();
      hw.leave();
    }
  });
  EXPECT_LE(hw.most.load(), static_cast<int>(kLimit));
  EXPECT_EQ(used + gave_up + refused, attempts.load());
  const auto s = b.stats();
  EXPECT_EQ(s.granted + s.queued + s.rejected(), attempts.load());
  EXPECT_EQ(s.granted_after_wait + s.withdrawn + s.timed_out + s.displaced, s.queued);
  EXPECT_EQ(b.in_flight(), 0u);
  EXPECT_EQ(b.queued(), 0u);
  // Exactly kLimit permits are available again: nothing leaked, nothing released twice.
  Result<Permit> p1 = b.try_acquire_now(SystemClock::instance().now());
  Result<Permit> p2 = b.try_acquire_now(SystemClock::instance().now());
  Result<Permit> p3 = b.try_acquire_now(SystemClock::instance().now());
  EXPECT_TRUE(p1 && p2);
  EXPECT_FALSE(p3);
}

TEST(BulkheadConcurrency, LimitChangesRacingWithCallersStayWithinTheLargestLimit) {
  constexpr int kAttempts = 5000;
  Bulkhead b("adaptive", {.max_concurrent = 2, .max_queue = kThreads, .max_wait = Duration::max()});
  HighWater hw;
  std::atomic<bool> done{false};
  std::thread tuner([&] {
    uint32_t limit = 2;
    while (!done.load(std::memory_order_relaxed)) {
      limit = limit == 2 ? 4 : (limit == 4 ? 1 : 2);
      b.set_limit(limit);
      std::this_thread::yield();
    }
    b.set_limit(4);  // let everyone still queued through
  });
  std::atomic<int> finished{0};
  run_threads([&](int t) {
    Random rng(400 + t);
    for (int i = 0; i < kAttempts; ++i) {
      Result<Permit> p = b.acquire(0, Deadline::never());
      ASSERT_TRUE(p);
      hw.enter();
      if (rng.below(8) == 0) std::this_thread::yield();
      hw.leave();
    }
    if (finished.fetch_add(1) + 1 == kThreads) done.store(true);
  });
  tuner.join();
  EXPECT_LE(hw.most.load(), 4);
  EXPECT_EQ(b.in_flight(), 0u);
  EXPECT_EQ(b.queued(), 0u);
  const auto s = b.stats();
  EXPECT_EQ(s.granted + s.granted_after_wait, static_cast<uint64_t>(kThreads) * kAttempts);
}

TEST(BulkheadConcurrency, ThrottledBulkheadCountsEveryAttempt) {
  // Every operation of a throttled bulkhead takes the lock; a high rate keeps threads busy
  // without waiting long (refusals are expected when the reserved starts run ahead).
  constexpr int kAttempts = 3000;
  Bulkhead b("throttled", {.max_concurrent = 3,
                           .max_queue = 0,
                           .max_wait = 0ms,
                           .starts_per_second = 1e8,
                           .throttle_burst = 16});
  HighWater hw;
  std::atomic<uint64_t> granted{0}, rejected{0};
  run_threads([&](int) {
    for (int i = 0; i < kAttempts; ++i) {
      Result<Permit> p = b.try_acquire_now(SystemClock::instance().now());
      if (!p) {
        rejected.fetch_add(1, std::memory_order_relaxed);
        continue;
      }
      granted.fetch_add(1, std::memory_order_relaxed);
      hw.enter();
      hw.leave();
    }
  });
  EXPECT_LE(hw.most.load(), 3);
  EXPECT_EQ(granted + rejected, static_cast<uint64_t>(kThreads) * kAttempts);
  const auto s = b.stats();
  EXPECT_EQ(s.granted, granted.load());
  EXPECT_EQ(s.rejected(), rejected.load());
  EXPECT_EQ(b.in_flight(), 0u);
}

}  // namespace
}  // namespace bulwark::limit
