#include "bulwark/limit/keyed_limiter.h"

#include <gtest/gtest.h>

#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <unordered_set>
#include <vector>

#include "bulwark/core/random.h"
#include "bulwark/limit/gcra.h"
#include "bulwark/limit/sliding_window.h"
#include "bulwark/limit/token_bucket.h"
#include "bulwark/testing/manual_clock.h"

namespace bulwark::limit {
namespace {

using namespace std::chrono_literals;
using bulwark::testing::ManualClock;

constexpr uint64_t kSeed = 0x5eed;

// Sanitizers keep shadow memory proportional to what the program touches, so RSS says
// little about the limiter there.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool kSanitized = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
constexpr bool kSanitized = true;
#else
constexpr bool kSanitized = false;
#endif
#else
constexpr bool kSanitized = false;
#endif

KeyedLimiterOptions keyed(RateAlgorithm a, Rate rate, uint64_t burst,
                          std::size_t max_bytes = std::size_t{64} << 20, uint32_t shards = 64) {
  KeyedLimiterOptions o;
  o.algorithm = a;
  o.rate = rate;
  o.burst = burst;
  o.max_bytes = max_bytes;
  o.shards = shards;
  o.hash_seed = kSeed;
  return o;
}

std::unique_ptr<RateLimiter> single(RateAlgorithm a, Rate rate, uint64_t burst) {
  switch (a) {
    case RateAlgorithm::token_bucket:
      return std::make_unique<TokenBucket>(TokenBucketOptions{rate, burst});
    case RateAlgorithm::gcra:
      return std::make_unique<Gcra>(GcraOptions{rate, burst});
    case RateAlgorithm::sliding_window:
      break;
  }
  return std::make_unique<SlidingWindow>(
      SlidingWindowOptions{static_cast<uint64_t>(rate.count), rate.period});
}

// "k<n>" without allocating.
struct KeyName {
  char buf[24];
  std::string_view operator()(uint64_t n) {
    const int len = std::snprintf(buf, sizeof buf, "k%llu", static_cast<unsigned long long>(n));
    return {buf, static_cast<std::size_t>(len)};
  }
};

std::size_t rss_bytes() {
  std::ifstream statm("/proc/self/statm");
  std::size_t pages = 0, resident = 0;
  statm >> pages >> resident;
  return resident * static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
}

const RateAlgorithm kAlgorithms[] = {RateAlgorithm::token_bucket, RateAlgorithm::gcra,
                                     RateAlgorithm::sliding_window};

TEST(KeyedLimiter, EachKeyDecidesExactlyLikeItsOwnLimiter) {
  for (RateAlgorithm a : kAlgorithms) {
    SCOPED_TRACE(std::string(to_string(a)));
    ManualClock clock;
    Random rng(11);
    const Rate rate = a == RateAlgorithm::sliding_window ? Rate{20, 1s} : Rate::per_second(20);
    KeyedLimiter limiter(keyed(a, rate, 6));
    std::vector<std::unique_ptr<RateLimiter>> reference;
    for (int i = 0; i < 16; ++i) reference.push_back(single(a, rate, 6));
    KeyName name;
    for (int i = 0; i < 20'000; ++i) {
      if (rng.below(3) == 0) clock.advance(rng.uniform(0ns, Duration(30ms)));
      const uint64_t key = rng.below(16);
      const uint64_t n = rng.below(4);  // 0 (a query) .. 3
      const RateDecision got = limiter.try_acquire(name(key), clock.now(), n);
      const RateDecision want = reference[key]->try_acquire(clock.now(), n);
      ASSERT_EQ(got.allowed, want.allowed) << i;
      ASSERT_EQ(got.limit, want.limit) << i;
      ASSERT_EQ(got.remaining, want.remaining) << i;
      ASSERT_EQ(got.reset, want.reset) << i;
      ASSERT_EQ(got.retry_after, want.retry_after) << i;
      if (rng.below(8) == 0) {
        const RateDecision p = limiter.peek(name(key), clock.now());
        const RateDecision q = reference[key]->peek(clock.now());
        ASSERT_EQ(p.allowed, q.allowed);
        ASSERT_EQ(p.remaining, q.remaining);
        ASSERT_EQ(p.retry_after, q.retry_after);
      }
      // Evicting idle keys is invisible.
      if (rng.below(500) == 0) limiter.sweep(clock.now());
    }
    const auto st = limiter.stats();
    EXPECT_EQ(st.evictions_forced, 0u);
    EXPECT_LE(st.keys, 16u);
  }
}

TEST(KeyedLimiter, QueriesAndImpossibleRequestsCreateNoState) {
  ManualClock clock;
  KeyedLimiter limiter(keyed(RateAlgorithm::gcra, Rate::per_second(10), 5));
  EXPECT_TRUE(limiter.try_acquire("a", clock.now(), 0).allowed);
  RateDecision d = limiter.try_acquire("a", clock.now(), 6);
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(d.retry_after, Duration::max());
  EXPECT_TRUE(limiter.peek("a", clock.now()).allowed);
  EXPECT_FALSE(limiter.contains("a"));
  EXPECT_EQ(limiter.stats().keys, 0u);

  EXPECT_TRUE(limiter.try_acquire("a", clock.now()).allowed);
  EXPECT_TRUE(limiter.contains("a"));
  EXPECT_FALSE(limiter.contains("b"));
  const auto st = limiter.stats();
  EXPECT_EQ(st.keys, 1u);
  EXPECT_EQ(st.admitted, 2u);  // the query and the permit
  EXPECT_EQ(st.rejected, 1u);
}

TEST(KeyedLimiter, EraseUnblocksAKey) {
  ManualClock clock;
  KeyedLimiter limiter(keyed(RateAlgorithm::token_bucket, Rate::per_hour(1), 2));
  EXPECT_TRUE(limiter.try_acquire("client", clock.now()).allowed);
  EXPECT_TRUE(limiter.try_acquire("client", clock.now()).allowed);
  EXPECT_FALSE(limiter.try_acquire("client", clock.now()).allowed);
  EXPECT_TRUE(limiter.erase("client"));
  EXPECT_FALSE(limiter.erase("client"));
  EXPECT_TRUE(limiter.try_acquire("client", clock.now()).allowed);
}

TEST(KeyedLimiter, KeysSharingAHashShareALimit) {
  ManualClock clock;
  KeyedLimiter limiter(keyed(RateAlgorithm::gcra, Rate::per_minute(1), 3));
  // Two different keys that collide look like one key to the limiter.
  const uint64_t h = 0x1234'5678'9abc'def0ULL;
  EXPECT_TRUE(limiter.try_acquire_hash(h, clock.now(), 2).allowed);   // "alice"
  EXPECT_TRUE(limiter.try_acquire_hash(h, clock.now(), 1).allowed);   // "bob"
  EXPECT_FALSE(limiter.try_acquire_hash(h, clock.now(), 1).allowed);  // both limited
  EXPECT_EQ(limiter.stats().keys, 1u);
  // Hash 0 is reserved for empty slots and shares the state of hash 1.
  EXPECT_TRUE(limiter.try_acquire_hash(0, clock.now(), 3).allowed);
  EXPECT_FALSE(limiter.try_acquire_hash(1, clock.now(), 1).allowed);
}

TEST(KeyedLimiter, HashIsSeededStableAndSpreads) {
  EXPECT_EQ(hash_key("203.0.113.7", 1), hash_key("203.0.113.7", 1));
  EXPECT_NE(hash_key("203.0.113.7", 1), hash_key("203.0.113.7", 2));
  EXPECT_NE(hash_key("", 1), 0u);
  // Lengths 0..64 of one repeated byte, and prefixes, are all distinct.
  std::unordered_set<uint64_t> seen;
  const std::string text(64, 'a');
  for (std::size_t n = 0; n <= text.size(); ++n) {
    EXPECT_TRUE(seen.insert(hash_key(std::string_view(text).substr(0, n), 9)).second) << n;
  }
  const std::string zeros(40, '\0');
  for (std::size_t n = 1; n <= zeros.size(); ++n) {
    EXPECT_TRUE(seen.insert(hash_key(std::string_view(zeros).substr(0, n), 9)).second) << n;
  }
  // A million distinct keys: no 64-bit collision (expected ~3e-8), and every bit is set
  // in about half of the hashes.
  seen.clear();
  std::array<uint64_t, 64> ones{};
  KeyName name;
  for (uint64_t i = 0; i < 1'000'000; ++i) {
    const uint64_t h = hash_key(name(i), 42);
    ASSERT_TRUE(seen.insert(h).second) << i;
    for (int b = 0; b < 64; ++b) ones[b] += (h >> b) & 1;
  }
  for (int b = 0; b < 64; ++b) {
    EXPECT_NEAR(static_cast<double>(ones[b]), 500'000.0, 5'000.0) << "bit " << b;
  }
}

TEST(KeyedLimiter, MillionKeysStayUnderTheMemoryBound) {
  constexpr std::size_t kMaxBytes = std::size_t{4} << 20;
  const std::size_t rss_before = rss_bytes();
  ManualClock clock;
  KeyedLimiter limiter(keyed(RateAlgorithm::gcra, Rate::per_second(10), 5, kMaxBytes));
  EXPECT_LE(limiter.stats().memory_bytes, 64u * 1024);  // tables are allocated on demand
  KeyName name;
  constexpr uint64_t kKeys = 1'000'000;
  for (uint64_t i = 0; i < kKeys; ++i) {
    // 1 us apart: a key used once recovers 100 ms (100,000 keys) later.
    clock.advance(1us);
    ASSERT_TRUE(limiter.try_acquire(name(i), clock.now()).allowed) << i;
    if (i % 50'000 == 0) {
      const auto st = limiter.stats();
      ASSERT_LE(st.memory_bytes, kMaxBytes) << i;
      ASSERT_LE(st.keys, st.max_keys) << i;
    }
  }
  const auto st = limiter.stats();
  EXPECT_LE(st.memory_bytes, kMaxBytes);
  EXPECT_LE(st.peak_memory_bytes, kMaxBytes);
  EXPECT_GT(st.memory_bytes, kMaxBytes / 2);  // it did grow to use the budget
  EXPECT_EQ(st.max_bytes, kMaxBytes);
  EXPECT_EQ(st.admitted, kKeys);
  EXPECT_EQ(st.rejected, 0u);
  // The table holds ~170,000 keys; at most ~100,000 are still recovering at any moment, so
  // every eviction took an idle key.
  EXPECT_GT(st.evictions_idle, 0u);
  EXPECT_EQ(st.evictions_forced, 0u);
  EXPECT_EQ(st.keys + st.evictions_idle + st.evictions_forced, kKeys);
  EXPECT_GE(st.keys, 50'000u);
  // Bytes per key held at the bound.
  EXPECT_LE(static_cast<double>(st.memory_bytes) / static_cast<double>(st.max_keys), 32.0);
  // The process grew by about the bound, not by the number of keys (a million keys in a
  // std::unordered_map<std::string, ...> take ~80 MB).
  const std::size_t rss_after = rss_bytes();
  const std::size_t growth = rss_after > rss_before ? rss_after - rss_before : 0;
  if (!kSanitized) {
    EXPECT_LT(growth, 2 * kMaxBytes + (std::size_t{4} << 20)) << growth;
  }
  limiter.clear();
  EXPECT_EQ(limiter.stats().keys, 0u);
  EXPECT_LT(limiter.stats().memory_bytes, 64u * 1024);
}

// A client being limited is not reset by a flood of a million new keys.
//
// At one instant: none of the flood's keys ever becomes idle, so the shards must force
// evictions; they take flood keys (one permit owed) and never the limited client (all owed).
TEST(KeyedLimiter, LimitedKeySurvivesAFloodOfAMillionNewKeysAtOneInstant) {
  for (RateAlgorithm a : kAlgorithms) {
    SCOPED_TRACE(std::string(to_string(a)));
    ManualClock clock;
    const Rate rate = a == RateAlgorithm::sliding_window ? Rate{5, 1min} : Rate::per_minute(5);
    KeyedLimiter limiter(keyed(a, rate, 5, std::size_t{2} << 20));
    const TimePoint t0 = clock.now();
    for (int i = 0; i < 5; ++i) ASSERT_TRUE(limiter.try_acquire("attacker", t0).allowed);
    const RateDecision limited = limiter.try_acquire("attacker", t0);
    ASSERT_FALSE(limited.allowed);

    KeyName name;
    for (uint64_t i = 0; i < 1'000'000; ++i) {
      ASSERT_TRUE(limiter.try_acquire(name(i), t0).allowed) << i;
    }
    const auto st = limiter.stats();
    EXPECT_LE(st.peak_memory_bytes, st.max_bytes);
    EXPECT_GT(st.evictions_forced, 900'000u);
    EXPECT_EQ(st.evictions_limited, 0u);  // a flood key owes one permit of five
    EXPECT_EQ(st.evictions_idle, 0u);
    EXPECT_TRUE(limiter.contains("attacker"));
    const RateDecision after = limiter.try_acquire("attacker", t0);
    EXPECT_FALSE(after.allowed);
    EXPECT_EQ(after.retry_after, limited.retry_after);
    EXPECT_EQ(after.reset, limited.reset);
  }
}

// With time moving (1 us per new key) the flood's keys become idle and are evicted as such,
// while the client keeps asking every millisecond. Had it been evicted, it would have got a
// fresh state and more permits than its limit allows over the whole run.
TEST(KeyedLimiter, LimitedKeySurvivesAFloodOfAMillionNewKeysOverTime) {
  for (RateAlgorithm a : kAlgorithms) {
    SCOPED_TRACE(std::string(to_string(a)));
    ManualClock clock;
    const bool window = a == RateAlgorithm::sliding_window;
    // Token bucket / GCRA: 5 at once, then one per 10 ms. Sliding window: 5 per 50 ms.
    const Rate rate = window ? Rate{5, 50ms} : Rate::per_second(100);
    KeyedLimiter limiter(keyed(a, rate, 5, std::size_t{4} << 20));
    const TimePoint t0 = clock.now();
    std::vector<TimePoint> granted;
    auto attack = [&] {
      while (limiter.try_acquire("attacker", clock.now()).allowed) granted.push_back(clock.now());
    };
    attack();
    ASSERT_EQ(granted.size(), 5u);
    KeyName name;
    for (uint64_t i = 0; i < 1'000'000; ++i) {
      clock.advance(1us);
      ASSERT_TRUE(limiter.try_acquire(name(i), clock.now()).allowed) << i;
      if (i % 1000 == 999) attack();
    }
    const auto st = limiter.stats();
    EXPECT_LE(st.peak_memory_bytes, st.max_bytes);
    EXPECT_GT(st.evictions_idle, 500'000u);
    EXPECT_EQ(st.evictions_limited, 0u);
    EXPECT_TRUE(limiter.contains("attacker"));
    EXPECT_FALSE(limiter.try_acquire("attacker", clock.now()).allowed);
    if (window) {
      // Never more than the limit within one fixed window.
      std::map<int64_t, int> per_window;
      for (TimePoint t : granted) ++per_window[(t - t0) / 50ms];
      for (const auto& [w, count] : per_window) EXPECT_LE(count, 5) << "window " << w;
    } else {
      // burst + elapsed / interval: 5 + 1 s / 10 ms.
      EXPECT_EQ(granted.size(), 5u + 100u);
    }
  }
}

// When every key in a full shard is limited, the one closest to recovery is evicted (and
// counted as a limited eviction); the new key is still admitted.
TEST(KeyedLimiter, WhenOnlyLimitedKeysRemainTheClosestToRecoveryIsEvicted) {
  ManualClock clock;
  KeyedLimiter limiter(
      keyed(RateAlgorithm::token_bucket, Rate::per_hour(1), 2, KeyedLimiter::min_bytes(1), 1));
  const auto cap = limiter.stats().max_keys;
  ASSERT_EQ(cap, 12u);  // 16 slots, 3/4 full
  // "early" is exhausted first; the others 59 minutes later. At that point all are limited
  // (none has a whole token back), but "early" recovers an hour sooner.
  ASSERT_TRUE(limiter.try_acquire("early", clock.now(), 2).allowed);
  clock.advance(59min);
  KeyName name;
  for (uint64_t i = 1; i < cap; ++i)
    ASSERT_TRUE(limiter.try_acquire(name(i), clock.now(), 2).allowed);
  ASSERT_FALSE(limiter.try_acquire("early", clock.now()).allowed);
  EXPECT_EQ(limiter.stats().keys, cap);

  EXPECT_TRUE(limiter.try_acquire("newcomer", clock.now()).allowed);
  const auto st = limiter.stats();
  EXPECT_EQ(st.evictions_forced, 1u);
  EXPECT_EQ(st.evictions_limited, 1u);
  EXPECT_EQ(st.evictions_idle, 0u);
  EXPECT_EQ(st.keys, cap);
  EXPECT_FALSE(limiter.contains("early"));
  for (uint64_t i = 1; i < cap; ++i) EXPECT_TRUE(limiter.contains(name(i))) << i;
  EXPECT_TRUE(limiter.contains("newcomer"));
  // The evicted key starts over with a fresh state.
  EXPECT_TRUE(limiter.try_acquire("early", clock.now()).allowed);
}

TEST(KeyedLimiter, IdleKeysGoFirstAndSweepCountsThem) {
  ManualClock clock;
  KeyedLimiter limiter(
      keyed(RateAlgorithm::sliding_window, Rate{3, 1s}, 0, KeyedLimiter::min_bytes(1), 1));
  KeyName name;
  for (uint64_t i = 0; i < 6; ++i) ASSERT_TRUE(limiter.try_acquire(name(i), clock.now()).allowed);
  clock.advance(1s);  // still in the previous window's weight: not idle
  EXPECT_EQ(limiter.sweep(clock.now()), 0u);
  clock.advance(1s);  // two windows later: idle
  for (uint64_t i = 6; i < 9; ++i) ASSERT_TRUE(limiter.try_acquire(name(i), clock.now()).allowed);
  EXPECT_EQ(limiter.sweep(clock.now()), 6u);
  const auto st = limiter.stats();
  EXPECT_EQ(st.keys, 3u);
  EXPECT_EQ(st.evictions_idle, 6u);
  EXPECT_EQ(st.evictions_forced, 0u);

  // A full shard of idle and busy keys evicts the idle ones and keeps the busy ones.
  limiter.clear();
  for (uint64_t i = 0; i < 8; ++i) ASSERT_TRUE(limiter.try_acquire(name(i), clock.now()).allowed);
  clock.advance(2s);
  for (uint64_t i = 100; i < 104; ++i)
    ASSERT_TRUE(limiter.try_acquire(name(i), clock.now()).allowed);
  ASSERT_EQ(limiter.stats().keys, 12u);
  ASSERT_TRUE(limiter.try_acquire("one more", clock.now()).allowed);
  for (uint64_t i = 100; i < 104; ++i) EXPECT_TRUE(limiter.contains(name(i))) << i;
  EXPECT_EQ(limiter.stats().keys, 5u);
  EXPECT_EQ(limiter.stats().evictions_idle, 6u + 8u);
}

TEST(KeyedLimiter, GrowsThroughItsRungsWithinTheBound) {
  ManualClock clock;
  const std::size_t max_bytes = KeyedLimiter::min_bytes(4) + (std::size_t{1} << 20);
  KeyedLimiter limiter(keyed(RateAlgorithm::token_bucket, Rate::per_hour(1), 1, max_bytes, 4));
  KeyName name;
  uint64_t last_capacity = 0;
  int growths = 0;
  for (uint64_t i = 0; i < 60'000; ++i) {
    limiter.try_acquire(name(i), clock.now());
    const auto st = limiter.stats();
    if (st.capacity_slots != last_capacity) {
      ++growths;
      last_capacity = st.capacity_slots;
    }
    ASSERT_LE(st.memory_bytes, max_bytes);
  }
  EXPECT_GT(growths, 8);
  const auto st = limiter.stats();
  EXPECT_LE(st.peak_memory_bytes, max_bytes);
  EXPECT_EQ(st.keys + st.evictions_forced, 60'000u);
  EXPECT_GT(st.evictions_forced, 0u);  // none ever became idle (1 per hour)
  // The largest tables use at least 3/4 of the per-shard budget.
  EXPECT_GE(st.capacity_slots * KeyedLimiter::kSlotBytes, (max_bytes - 64 * 1024) * 3 / 4);
}

TEST(KeyedLimiter, InvalidOptionsThrowNamingTheOption) {
  auto message = [](KeyedLimiterOptions o) {
    try {
      KeyedLimiter k(o);
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string("no exception");
  };
  KeyedLimiterOptions o = keyed(RateAlgorithm::gcra, Rate::per_second(10), 5);
  o.shards = 3;
  EXPECT_EQ(message(o).rfind("KeyedLimiterOptions.shards", 0), 0u);
  o.shards = 0;
  EXPECT_EQ(message(o).rfind("KeyedLimiterOptions.shards", 0), 0u);
  o.shards = 64;
  o.max_bytes = KeyedLimiter::min_bytes(64) - 1;
  EXPECT_EQ(message(o).rfind("KeyedLimiterOptions.max_bytes", 0), 0u);
  o.max_bytes = KeyedLimiter::min_bytes(64);
  EXPECT_EQ(message(o), "no exception");
  o.burst = 0;
  EXPECT_EQ(message(o).rfind("KeyedLimiterOptions.burst", 0), 0u);
  o.burst = 5;
  o.rate = Rate::per_second(5'000'000);  // GCRA interval below 1 us
  EXPECT_EQ(message(o).rfind("KeyedLimiterOptions.rate", 0), 0u);
  o.algorithm = RateAlgorithm::token_bucket;
  EXPECT_EQ(message(o), "no exception");
  o.algorithm = RateAlgorithm::sliding_window;
  o.rate = Rate{2.5, 1s};
  EXPECT_EQ(message(o).rfind("KeyedLimiterOptions.rate", 0), 0u);
  o.rate = Rate{100, 1min};
  o.burst = 0;  // ignored by the sliding window
  EXPECT_EQ(message(o), "no exception");
  EXPECT_EQ(KeyedLimiter(o).limit(), 100u);
}

}  // namespace
}  // namespace bulwark::limit
