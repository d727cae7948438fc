// Several threads on one cache; these tests also run under ThreadSanitizer. Threads block on
// futures and wait for observable states (stats counters) instead of sleeping; time is a
// ManualClock.
#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <latch>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "bulwark/cache/cache.h"
#include "bulwark/testing/manual_clock.h"

namespace bulwark::cache {
namespace {

using namespace std::chrono_literals;
using testing::ManualClock;

#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define BULWARK_CACHE_TSAN 1
#endif
#endif
#if defined(__SANITIZE_THREAD__) || defined(BULWARK_CACHE_TSAN)
constexpr int kOpsPerThread = 40'000;
#else
constexpr int kOpsPerThread = 300'000;
#endif

using StringCache = Cache<int, std::string>;
using Outcome = StringCache::Outcome;

// Spins (yielding) until `done()` holds. Used to wait until every thread has reached the
// state under test, which the cache exposes through its counters; no sleeping, no timing.
template <class Pred>
void wait_until(Pred done) {
  while (!done()) std::this_thread::yield();
}

// Runs `callers` threads that all call get_or_fill(key) at once; the fill blocks until every
// other caller is waiting for it, then returns what `result` gives. Returns the outcomes.
template <class MakeResult>
std::vector<Outcome> concurrent_misses(StringCache& cache, TimePoint now, int callers,
                                       MakeResult result, std::atomic<int>& fill_runs) {
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  std::vector<std::optional<Outcome>> outcomes(callers);
  std::latch start(callers);
  std::vector<std::thread> threads;
  const uint64_t waits_before = cache.stats().fill_waits;
  for (int i = 0; i < callers; ++i) {
    threads.emplace_back([&, i] {
      start.arrive_and_wait();
      outcomes[i] = cache.get_or_fill(7, now, [&] {
        fill_runs.fetch_add(1);
        released.wait();
        return result();
      });
    });
  }
  wait_until([&] { return cache.stats().fill_waits - waits_before == uint64_t(callers) - 1; });
  release.set_value();
  for (auto& t : threads) t.join();
  std::vector<Outcome> out;
  for (auto& o : outcomes) out.push_back(std::move(*o));
  return out;
}

CacheOptions options() {
  CacheOptions o;
  o.max_entries = 1000;
  o.shards = 4;
  o.ttl = 10s;
  o.stale_if_error = 10s;
  return o;
}

TEST(CacheSingleFlight, HundredConcurrentMissesRunOneFill) {
  ManualClock clock;
  StringCache cache(options());
  std::atomic<int> runs{0};
  const auto outcomes = concurrent_misses(
      cache, clock.now(), 100, [] { return Result<std::string>("v"); }, runs);
  EXPECT_EQ(runs.load(), 1);
  const void* first = nullptr;
  for (const Outcome& o : outcomes) {
    ASSERT_TRUE(o);
    EXPECT_EQ(**o, "v");
    EXPECT_FALSE(o->stale);
    if (first == nullptr) first = o->value.get();
    EXPECT_EQ(o->value.get(), first) << "everyone shares the one filled value";
  }
  const CacheStats s = cache.stats();
  EXPECT_EQ(s.fills, 1u);
  EXPECT_EQ(s.fill_waits, 99u);
  EXPECT_EQ(s.misses, 100u);
  EXPECT_EQ(s.inserts, 1u);
  EXPECT_EQ(*cache.get(7, clock.now()), "v");
}

TEST(CacheSingleFlight, WaitersReceiveTheFillError) {
  ManualClock clock;
  StringCache cache(options());
  std::atomic<int> runs{0};
  const auto outcomes = concurrent_misses(
      cache, clock.now(), 100, [] { return Result<std::string>(make_error_code(errc::timeout)); },
      runs);
  EXPECT_EQ(runs.load(), 1);
  for (const Outcome& o : outcomes) {
    ASSERT_FALSE(o);
    EXPECT_EQ(o.error(), make_error_code(errc::timeout));
  }
  EXPECT_EQ(cache.stats().fill_failures, 1u);
  EXPECT_EQ(cache.stats().entries, 0u);
}

TEST(CacheSingleFlight, WaitersReceiveTheStaleValueWhenTheFillFails) {
  ManualClock clock;
  StringCache cache(options());
  cache.put(7, "old", clock.now());
  clock.advance(15s);  // expired 5 s ago, inside the 10 s stale window
  std::atomic<int> runs{0};
  const auto outcomes = concurrent_misses(
      cache, clock.now(), 50,
      [] { return Result<std::string>(make_error_code(errc::circuit_open)); }, runs);
  EXPECT_EQ(runs.load(), 1);
  for (const Outcome& o : outcomes) {
    ASSERT_TRUE(o);
    EXPECT_EQ(**o, "old");
    EXPECT_TRUE(o->stale);
  }
  EXPECT_EQ(cache.stats().stale_served, 50u);
  EXPECT_EQ(cache.stats().expirations, 50u);
}

TEST(CacheSingleFlight, ThrowingFillFailsTheWaitersAndPropagatesToTheFiller) {
  ManualClock clock;
  StringCache cache(options());
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  std::atomic<bool> threw{false};
  std::thread filler([&] {
    try {
      cache.get_or_fill(1, clock.now(), [&]() -> std::string {
        released.wait();
        throw std::runtime_error("boom");
      });
    } catch (const std::runtime_error&) {
      threw = true;
    }
  });
  wait_until([&] { return cache.stats().fills == 1; });
  std::optional<Outcome> waiter_outcome;
  std::thread waiter(
      [&] { waiter_outcome = cache.get_or_fill(1, clock.now(), [] { return "x"; }); });
  wait_until([&] { return cache.stats().fill_waits == 1; });
  release.set_value();
  filler.join();
  waiter.join();
  EXPECT_TRUE(threw.load());
  ASSERT_TRUE(waiter_outcome.has_value());
  ASSERT_FALSE(*waiter_outcome);
  EXPECT_EQ(waiter_outcome->error(), make_error_code(errc::call_failed));
}

// The fill is in flight on one thread while another invalidates: the value computed before
// the invalidation reaches the callers that were waiting, but never the cache; a caller
// arriving after the invalidation runs a fill of its own.
TEST(CacheSingleFlight, InvalidationDuringAnInFlightFill) {
  ManualClock clock;
  StringCache cache(options());
  std::promise<void> release_old;
  std::shared_future<void> old_released = release_old.get_future().share();
  std::optional<Outcome> old_leader, old_waiter, new_leader;
  std::thread leader([&] {
    old_leader = cache.get_or_fill(1, clock.now(), [&] {
      old_released.wait();
      return std::string("computed-before-invalidation");
    });
  });
  wait_until([&] { return cache.stats().fills == 1; });
  std::thread waiter([&] { old_waiter = cache.get_or_fill(1, clock.now(), [] { return "x"; }); });
  wait_until([&] { return cache.stats().fill_waits == 1; });

  cache.invalidate(1);
  std::thread fresh(
      [&] { new_leader = cache.get_or_fill(1, clock.now(), [] { return std::string("after"); }); });
  fresh.join();  // does not wait for the old fill: it started its own
  EXPECT_EQ(cache.stats().fills, 2u);
  ASSERT_TRUE(new_leader.has_value() && *new_leader);
  EXPECT_EQ(***new_leader, "after");

  release_old.set_value();
  leader.join();
  waiter.join();
  EXPECT_EQ(***old_leader, "computed-before-invalidation");
  EXPECT_EQ(***old_waiter, "computed-before-invalidation");
  EXPECT_EQ(*cache.get(1, clock.now()), "after") << "the old fill did not overwrite";
}

// Many threads hammer a small cache with every operation while time moves. Checked during the
// run: the bounds are never exceeded (stats are read without the shard locks, and each shard's
// own counters never exceed its budget, so the sum never exceeds the bound). Checked after:
// the counters balance exactly, and every value read was one that was written for its key.
TEST(CacheConcurrency, HammerKeepsBoundsAndCounts) {
  ManualClock clock;
  CacheOptions o;
  o.max_entries = 200;
  o.max_bytes = 200 * 48;
  o.shards = 8;
  o.ttl = 40ms;
  o.stale_if_error = 20ms;
  // Values are "<key>:<n>" padded to a random length; size = key + value length.
  Cache<int, std::string> cache(o, [](const int&, const std::string& v) { return 4 + v.size(); });
  constexpr int kThreads = 4;
  constexpr int kKeys = 600;
  std::atomic<bool> done{false};
  std::atomic<uint64_t> bad_values{0}, bound_violations{0}, fill_calls{0}, lookups{0};

  std::thread monitor([&] {
    while (!done.load()) {
      const CacheStats s = cache.stats();
      if (s.bytes > o.max_bytes || s.entries > o.max_entries) bound_violations.fetch_add(1);
      std::this_thread::yield();
    }
  });
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      Random rng = testing::seeded_random(1000 + t);
      const auto check = [&](int key, const std::string& v) {
        if (v.rfind(std::to_string(key) + ":", 0) != 0) bad_values.fetch_add(1);
      };
      for (int i = 0; i < kOpsPerThread; ++i) {
        const int key = static_cast<int>(rng.below(kKeys));
        const TimePoint now = clock.now();
        const auto make_value = [&] {
          return std::to_string(key) + ":" + std::string(rng.below(60), 'x');
        };
        switch (rng.below(16)) {
          case 0:
          case 1:
          case 2:
            cache.put(key, make_value(), now, std::chrono::milliseconds(1 + rng.below(60)));
            break;
          case 3:
            cache.invalidate(key);
            break;
          case 4: {
            lookups.fetch_add(1);
            auto r = cache.get_or_fill(key, now, [&]() -> Result<std::string> {
              fill_calls.fetch_add(1);
              if (rng.below(4) == 0) return make_error_code(errc::timeout);
              return make_value();
            });
            if (r) check(key, **r);
            break;
          }
          case 5: {
            lookups.fetch_add(1);
            if (Cached<std::string> s = cache.get_stale(key, now)) check(key, *s);
            break;
          }
          case 6:
            if (rng.below(512) == 0) cache.clear();
            if (rng.below(8) == 0) clock.advance(1ms);
            break;
          default: {
            lookups.fetch_add(1);
            if (auto v = cache.get(key, now)) check(key, *v);
          }
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  done = true;
  monitor.join();

  EXPECT_EQ(bad_values.load(), 0u);
  EXPECT_EQ(bound_violations.load(), 0u);
  const CacheStats s = cache.stats();
  EXPECT_EQ(s.inserts, s.entries + s.evictions + s.invalidations + s.expired_removed);
  EXPECT_EQ(s.hits + s.misses, lookups.load());
  EXPECT_EQ(s.fills, fill_calls.load()) << "every fill started was run exactly once";
  EXPECT_LE(s.bytes, o.max_bytes);
  EXPECT_LE(s.entries, o.max_entries);
  EXPECT_GT(s.evictions, 0u);
  EXPECT_GT(s.hits, 0u);
  EXPECT_GT(s.expirations, 0u);
  // The gauges agree with the contents: removing every entry brings both to zero.
  cache.clear();
  EXPECT_EQ(cache.stats().entries, 0u);
  EXPECT_EQ(cache.stats().bytes, 0u);
}

}  // namespace
}  // namespace bulwark::cache
