// Concurrency: many threads on one limiter at one instant never get more than the limit in
// total, and get exactly the limit (no permit is lost to a race either). Built and run under
// ThreadSanitizer too.
#include <gtest/gtest.h>

#include <atomic>
#include <barrier>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "bulwark/core/random.h"
#include "bulwark/limit/gcra.h"
#include "bulwark/limit/keyed_limiter.h"
#include "bulwark/limit/sliding_window.h"
#include "bulwark/limit/token_bucket.h"

namespace bulwark::limit {
namespace {

using namespace std::chrono_literals;

const TimePoint kNow = TimePoint(std::chrono::hours(24));
constexpr int kThreads = 4;

// Runs fn(thread_index) on kThreads threads started together.
template <class F>
void run_threads(F fn) {
  std::barrier start(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      start.arrive_and_wait();
      fn(t);
    });
  }
  for (auto& th : threads) th.join();
}

uint64_t hammer(RateLimiter& limiter, int attempts_per_thread) {
  std::atomic<uint64_t> admitted{0};
  run_threads([&](int) {
    uint64_t mine = 0;
    for (int i = 0; i < attempts_per_thread; ++i) {
      if (limiter.try_acquire(kNow).allowed) ++mine;
    }
    admitted.fetch_add(mine);
  });
  return admitted.load();
}

TEST(RateLimiterThreads, TokenBucketAdmitsExactlyTheBurstAtOneInstant) {
  TokenBucket bucket({.rate = Rate::per_second(10), .burst = 5000});
  EXPECT_EQ(hammer(bucket, 4000), 5000u);
}

TEST(RateLimiterThreads, GcraAdmitsExactlyTheBurstAtOneInstant) {
  Gcra gcra({.rate = Rate::per_second(10), .burst = 5000});
  EXPECT_EQ(hammer(gcra, 4000), 5000u);
}

TEST(RateLimiterThreads, SlidingWindowAdmitsExactlyTheLimitAtOneInstant) {
  SlidingWindow window({.limit = 5000, .window = 1s});
  EXPECT_EQ(hammer(window, 4000), 5000u);
}

TEST(RateLimiterThreads, MultiPermitRequestsNeverExceedTheBurst) {
  TokenBucket bucket({.rate = Rate::per_second(10), .burst = 3001});
  std::atomic<uint64_t> permits{0};
  run_threads([&](int t) {
    Random rng(100 + t);
    uint64_t mine = 0;
    for (int i = 0; i < 3000; ++i) {
      const uint64_t n = 1 + rng.below(3);
      if (bucket.try_acquire(kNow, n).allowed) mine += n;
    }
    permits.fetch_add(mine);
  });
  EXPECT_LE(permits.load(), 3001u);
  EXPECT_GE(permits.load(), 2999u);  // what is left is less than the largest request
}

// Each thread reads its own, advancing `now`: over the run no more than burst + rate * elapsed.
TEST(RateLimiterThreads, AdvancingClocksStayWithinBurstPlusRate) {
  TokenBucket bucket({.rate = Rate::per_second(1000), .burst = 100});  // 1 ms interval
  std::atomic<uint64_t> admitted{0};
  run_threads([&](int t) {
    uint64_t mine = 0;
    for (int i = 0; i < 20'000; ++i) {
      const TimePoint now = kNow + std::chrono::microseconds(i * 10 + t);  // up to 200 ms
      if (bucket.try_acquire(now).allowed) ++mine;
    }
    admitted.fetch_add(mine);
  });
  EXPECT_LE(admitted.load(), 100u + 200u);
  EXPECT_GE(admitted.load(), 100u + 199u);
}

TEST(KeyedLimiterThreads, OneKeyAdmitsExactlyTheBurstAtOneInstant) {
  for (RateAlgorithm a :
       {RateAlgorithm::token_bucket, RateAlgorithm::gcra, RateAlgorithm::sliding_window}) {
    SCOPED_TRACE(std::string(to_string(a)));
    KeyedLimiter limiter({.algorithm = a, .rate = {3000, 1s}, .burst = 3000, .hash_seed = 1});
    std::atomic<uint64_t> admitted{0};
    run_threads([&](int) {
      uint64_t mine = 0;
      for (int i = 0; i < 2000; ++i) mine += limiter.try_acquire("k", kNow).allowed ? 1 : 0;
      admitted.fetch_add(mine);
    });
    EXPECT_EQ(admitted.load(), 3000u);
  }
}

TEST(KeyedLimiterThreads, ManyKeysEachAdmitExactlyTheBurst) {
  constexpr int kKeys = 256;
  constexpr uint64_t kBurst = 20;
  KeyedLimiter limiter({.algorithm = RateAlgorithm::gcra,
                        .rate = Rate::per_minute(1),
                        .burst = kBurst,
                        .shards = 8,
                        .hash_seed = 2});
  std::vector<std::atomic<uint64_t>> admitted(kKeys);
  run_threads([&](int t) {
    char key[16];
    for (int round = 0; round < 40; ++round) {
      for (int k = 0; k < kKeys; ++k) {
        const int kk = (k + t * 61) % kKeys;  // threads walk the keys in different orders
        const int len = std::snprintf(key, sizeof key, "key%d", kk);
        if (limiter.try_acquire(std::string_view(key, len), kNow).allowed) {
          admitted[kk].fetch_add(1);
        }
      }
    }
  });
  for (int k = 0; k < kKeys; ++k) EXPECT_EQ(admitted[k].load(), kBurst) << k;
  const auto st = limiter.stats();
  EXPECT_EQ(st.keys, static_cast<uint64_t>(kKeys));
  EXPECT_EQ(st.admitted, kKeys * kBurst);
  EXPECT_EQ(st.admitted + st.rejected, uint64_t{kThreads} * 40 * kKeys);
}

// Inserts, growth and evictions racing with each other and with stats(): the bound holds.
TEST(KeyedLimiterThreads, ConcurrentFloodStaysWithinTheMemoryBound) {
  constexpr std::size_t kMaxBytes = std::size_t{1} << 20;
  KeyedLimiter limiter({.algorithm = RateAlgorithm::token_bucket,
                        .rate = Rate::per_second(100),
                        .burst = 5,
                        .max_bytes = kMaxBytes,
                        .shards = 16,
                        .hash_seed = 3});
  std::atomic<bool> done{false};
  std::thread observer([&] {
    while (!done.load()) {
      const auto st = limiter.stats();
      ASSERT_LE(st.memory_bytes, kMaxBytes);
      ASSERT_LE(st.keys, st.max_keys);
    }
  });
  run_threads([&](int t) {
    char key[24];
    for (int i = 0; i < 50'000; ++i) {
      const int len = std::snprintf(key, sizeof key, "t%d-%d", t, i);
      limiter.try_acquire(std::string_view(key, len), kNow + std::chrono::microseconds(i));
    }
  });
  done.store(true);
  observer.join();
  const auto st = limiter.stats();
  EXPECT_LE(st.peak_memory_bytes, kMaxBytes);
  EXPECT_EQ(st.admitted, uint64_t{kThreads} * 50'000);
  EXPECT_EQ(st.keys + st.evictions_idle + st.evictions_forced, uint64_t{kThreads} * 50'000);
}

}  // namespace
}  // namespace bulwark::limit
