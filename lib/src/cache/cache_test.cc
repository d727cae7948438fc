// Single-threaded semantics of bulwark::cache::Cache, all on a ManualClock: recency order,
// TTL boundaries, entry and byte bounds, stale-if-error windows, invalidation against fills in
// flight, statistics, and a randomised comparison with a reference model of the CLOCK policy.
#include "bulwark/cache/cache.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <deque>
#include <map>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "bulwark/core/random.h"
#include "bulwark/testing/manual_clock.h"

namespace bulwark::cache {
namespace {

using namespace std::chrono_literals;
using testing::ManualClock;

using IntCache = Cache<int, int>;

// Every entry costs exactly its value in bytes: byte-bound tests can count precisely.
std::size_t value_as_size(const int&, const int& v) { return static_cast<std::size_t>(v); }

CacheOptions one_shard(std::size_t max_entries, std::size_t max_bytes = 1 << 20) {
  CacheOptions o;
  o.shards = 1;
  o.max_entries = max_entries;
  o.max_bytes = max_bytes;
  o.ttl = 1h;
  return o;
}

bool has(IntCache& c, int k, TimePoint now) { return c.get(k, now) != nullptr; }

// Checks the quiescent bookkeeping invariants every test can rely on.
void expect_consistent(const CacheStats& s) {
  EXPECT_EQ(s.inserts, s.entries + s.evictions + s.invalidations + s.expired_removed);
  EXPECT_LE(s.expirations, s.misses);
}

TEST(CacheOptions, ValidateNamesTheField) {
  const auto message = [](CacheOptions o) -> std::string {
    try {
      IntCache c(o);
    } catch (const std::invalid_argument& e) {
      return e.what();
    }
    return "";
  };
  CacheOptions o;
  o.max_entries = 0;
  EXPECT_EQ(message(o).rfind("CacheOptions.max_entries:", 0), 0u);
  o = {};
  o.max_bytes = 0;
  EXPECT_EQ(message(o).rfind("CacheOptions.max_bytes:", 0), 0u);
  o = {};
  o.shards = 0;
  EXPECT_EQ(message(o).rfind("CacheOptions.shards:", 0), 0u);
  o = {};
  o.ttl = 0ns;
  EXPECT_EQ(message(o).rfind("CacheOptions.ttl:", 0), 0u);
  o = {};
  o.stale_if_error = -1ns;
  EXPECT_EQ(message(o).rfind("CacheOptions.stale_if_error:", 0), 0u);
  EXPECT_EQ(message(CacheOptions{}), "");
  EXPECT_THROW(IntCache(CacheOptions{}, IntCache::SizeFn{}), std::invalid_argument);
}

TEST(CacheOptions, ShardsRoundDownToPowerOfTwoAndToMaxEntries) {
  CacheOptions o;
  o.shards = 12;
  EXPECT_EQ(IntCache(o).shard_count(), 8u);
  o.max_entries = 3;
  EXPECT_EQ(IntCache(o).shard_count(), 2u);
  o.max_entries = 1;
  EXPECT_EQ(IntCache(o).shard_count(), 1u);
  o.max_entries = std::size_t{1} << 30;
  o.shards = std::size_t{1} << 20;
  EXPECT_EQ(IntCache(o).shard_count(), std::size_t{1} << 16);
}

TEST(CacheOptions, MaxEntryBytesIsCappedByTheShardBudget) {
  CacheOptions o;
  o.shards = 4;
  o.max_bytes = 1003;
  EXPECT_EQ(IntCache(o).max_entry_bytes(), 250u);  // floor(1003 / 4)
  o.max_entry_bytes = 100;
  EXPECT_EQ(IntCache(o).max_entry_bytes(), 100u);
  o.max_entry_bytes = 10'000;
  EXPECT_EQ(IntCache(o).max_entry_bytes(), 250u);
}

TEST(Cache, PutGetAndCounters) {
  ManualClock clock;
  IntCache c(one_shard(10));
  EXPECT_EQ(c.get(1, clock.now()), nullptr);
  EXPECT_TRUE(c.put(1, 100, clock.now()));
  auto v = c.get(1, clock.now());
  ASSERT_NE(v, nullptr);
  EXPECT_EQ(*v, 100);
  EXPECT_TRUE(c.put(1, 200, clock.now()));  // replaces
  EXPECT_EQ(*c.get(1, clock.now()), 200);
  EXPECT_EQ(*v, 100) << "a reader keeps the value it got, whatever happens to the entry";
  const CacheStats s = c.stats();
  EXPECT_EQ(s.hits, 2u);
  EXPECT_EQ(s.misses, 1u);
  EXPECT_EQ(s.inserts, 1u);
  EXPECT_EQ(s.updates, 1u);
  EXPECT_EQ(s.entries, 1u);
  EXPECT_EQ(s.bytes, 2 * sizeof(int));  // DefaultSize: sizeof(key) + sizeof(value)
  EXPECT_EQ(c.size(), 1u);
  expect_consistent(s);
}

TEST(Cache, PutSharedPointerIsNotCopied) {
  ManualClock clock;
  Cache<int, std::string> c(one_shard(10));
  auto value = std::make_shared<const std::string>("payload");
  EXPECT_TRUE(c.put(1, value, clock.now()));
  EXPECT_EQ(c.get(1, clock.now()).get(), value.get());
  EXPECT_FALSE(c.put(1, std::shared_ptr<const std::string>{}, clock.now()));
  EXPECT_EQ(c.get(1, clock.now()), nullptr) << "a null put removes the entry";
}

TEST(DefaultSize, CountsOwningContiguousContainersAndSizeofOtherwise) {
  EXPECT_EQ(DefaultSize::of(std::string(100, 'x')), sizeof(std::string) + 100);
  EXPECT_EQ(DefaultSize::of(std::vector<uint32_t>(10)), sizeof(std::vector<uint32_t>) + 40);
  EXPECT_EQ(DefaultSize::of(uint64_t{1}), 8u);
  EXPECT_EQ((DefaultSize::of(std::array<int, 4>{})), sizeof(std::array<int, 4>));
  EXPECT_EQ(DefaultSize{}(std::string("ab"), 7), sizeof(std::string) + 2 + sizeof(int));
}

// A value whose destructor calls back into its cache. The cache drops values only after
// releasing the shard mutex, so none of these removals deadlocks.
struct Reentrant {
  Cache<int, Reentrant>* cache = nullptr;
  int* destructor_calls = nullptr;
  Reentrant(Cache<int, Reentrant>* c, int* calls) : cache(c), destructor_calls(calls) {}
  Reentrant(Reentrant&& o) noexcept
      : cache(std::exchange(o.cache, nullptr)), destructor_calls(o.destructor_calls) {}
  ~Reentrant() {
    if (cache == nullptr) return;
    (void)cache->get(0, TimePoint(std::chrono::hours(24)));
    ++*destructor_calls;
  }
};

TEST(Cache, ValuesAreDestroyedOutsideTheShardLock) {
  ManualClock clock;
  int calls = 0;
  Cache<int, Reentrant> c(one_shard(2));
  c.put(1, Reentrant(&c, &calls), clock.now());
  c.put(2, Reentrant(&c, &calls), clock.now());
  c.put(3, Reentrant(&c, &calls), clock.now());  // evicts 1
  EXPECT_EQ(calls, 1);
  c.put(2, Reentrant(&c, &calls), clock.now());  // replaces 2
  EXPECT_EQ(calls, 2);
  c.invalidate(3);
  EXPECT_EQ(calls, 3);
  c.clear();
  EXPECT_EQ(calls, 4);
}

// ---- Recency: CLOCK / second chance (the documented semantics, pinned) ---------------------

TEST(CacheRecency, UnreadEntriesAreEvictedInInsertionOrder) {
  ManualClock clock;
  IntCache c(one_shard(3));
  for (int k = 1; k <= 3; ++k) c.put(k, k, clock.now());
  c.put(4, 4, clock.now());
  EXPECT_FALSE(has(c, 1, clock.now()));
  c.put(5, 5, clock.now());
  EXPECT_FALSE(has(c, 2, clock.now()));
  EXPECT_TRUE(has(c, 3, clock.now()));
  EXPECT_EQ(c.stats().evictions, 2u);
}

TEST(CacheRecency, AHitGivesOneMorePass) {
  ManualClock clock;
  IntCache c(one_shard(3));
  for (int k = 1; k <= 3; ++k) c.put(k, k, clock.now());
  ASSERT_TRUE(has(c, 1, clock.now()));  // marks 1
  c.put(4, 4, clock.now());             // 1 is passed over (mark cleared), 2 is evicted
  EXPECT_FALSE(c.get_stale(2, clock.now()));
  c.put(5, 5, clock.now());  // 3 is evicted
  EXPECT_FALSE(c.get_stale(3, clock.now()));
  // 1 is now the oldest, unmarked since it was passed: next to go, before 4 and 5.
  c.put(6, 6, clock.now());
  EXPECT_FALSE(c.get_stale(1, clock.now()));
  EXPECT_TRUE(c.get_stale(4, clock.now()));
  EXPECT_TRUE(c.get_stale(5, clock.now()));
  EXPECT_TRUE(c.get_stale(6, clock.now()));
}

TEST(CacheRecency, SeveralHitsCountAsOne) {
  ManualClock clock;
  IntCache c(one_shard(2));
  c.put(1, 1, clock.now());
  c.put(2, 2, clock.now());
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(has(c, 1, clock.now()));
  c.put(3, 3, clock.now());  // 1 passed over, 2 evicted
  c.put(4, 4, clock.now());  // 1 evicted: five hits bought one pass, not five
  EXPECT_FALSE(c.get_stale(1, clock.now()));
  EXPECT_TRUE(c.get_stale(3, clock.now()));
  EXPECT_TRUE(c.get_stale(4, clock.now()));
}

TEST(CacheRecency, MarkedEntriesKeepInsertionOrderNotHitOrder) {
  // The one difference from exact LRU: 2 was hit before 1, but both are marked in the same
  // pass, so after the pass they are ordered as inserted (1 before 2) and 1 goes first.
  ManualClock clock;
  IntCache c(one_shard(3));
  for (int k = 1; k <= 3; ++k) c.put(k, k, clock.now());
  ASSERT_TRUE(has(c, 2, clock.now()));
  ASSERT_TRUE(has(c, 1, clock.now()));
  c.put(4, 4, clock.now());  // 1 and 2 passed over, 3 evicted
  EXPECT_FALSE(c.get_stale(3, clock.now()));
  c.put(5, 5, clock.now());  // exact LRU would evict 2 here; CLOCK evicts 1
  EXPECT_FALSE(c.get_stale(1, clock.now()));
  EXPECT_TRUE(c.get_stale(2, clock.now()));
}

TEST(CacheRecency, ReplacingAValueMakesItTheNewestUnmarked) {
  ManualClock clock;
  IntCache c(one_shard(3));
  for (int k = 1; k <= 3; ++k) c.put(k, k, clock.now());
  ASSERT_TRUE(has(c, 1, clock.now()));
  c.put(1, 10, clock.now());  // 1 moves behind 3, mark cleared
  c.put(4, 4, clock.now());   // 2 evicted
  c.put(5, 5, clock.now());   // 3 evicted
  c.put(6, 6, clock.now());   // 1 evicted: the replacement did not keep the old mark
  EXPECT_FALSE(c.get_stale(1, clock.now()));
  EXPECT_EQ(c.stats().evictions, 3u);
}

TEST(CacheRecency, AllMarkedEvictsTheOldestAfterOneFullPass) {
  ManualClock clock;
  IntCache c(one_shard(3));
  for (int k = 1; k <= 3; ++k) c.put(k, k, clock.now());
  for (int k = 1; k <= 3; ++k) ASSERT_TRUE(has(c, k, clock.now()));
  c.put(4, 4, clock.now());
  EXPECT_FALSE(c.get_stale(1, clock.now()));
  EXPECT_TRUE(c.get_stale(2, clock.now()));
}

TEST(CacheRecency, ExpiredEntriesGetNoSecondChance) {
  ManualClock clock;
  CacheOptions o = one_shard(3);
  o.stale_if_error = 1h;  // keep expired entries around
  IntCache c(o);
  c.put(1, 1, clock.now(), 1s);
  c.put(2, 2, clock.now());
  c.put(3, 3, clock.now());
  for (int k = 1; k <= 3; ++k) ASSERT_TRUE(has(c, k, clock.now()));
  clock.advance(1s);  // 1 expires, still marked
  c.put(4, 4, clock.now());
  EXPECT_FALSE(c.get_stale(1, clock.now())) << "expired 1 evicted despite its mark";
  EXPECT_TRUE(c.get_stale(2, clock.now()));
  EXPECT_TRUE(c.get_stale(3, clock.now()));
}

TEST(CacheRecency, ExpiredLookupsDoNotMark) {
  ManualClock clock;
  CacheOptions o = one_shard(2);
  o.stale_if_error = 1h;
  IntCache c(o);
  c.put(1, 1, clock.now(), 1s);
  c.put(2, 2, clock.now(), 1h);
  clock.advance(1s);
  EXPECT_FALSE(has(c, 1, clock.now()));
  c.put(3, 3, clock.now());
  EXPECT_FALSE(c.get_stale(1, clock.now()));
  EXPECT_TRUE(c.get_stale(2, clock.now()));
}

// ---- TTL ------------------------------------------------------------------------------------

TEST(CacheTtl, FreshUntilJustBeforeExpiryExpiredExactlyAtIt) {
  ManualClock clock;
  CacheOptions o = one_shard(10);
  o.ttl = 10s;
  IntCache c(o);
  c.put(1, 1, clock.now());
  clock.advance(10s - 1ns);
  EXPECT_TRUE(has(c, 1, clock.now()));
  clock.advance(1ns);
  EXPECT_FALSE(has(c, 1, clock.now()));
  const CacheStats s = c.stats();
  EXPECT_EQ(s.hits, 1u);
  EXPECT_EQ(s.misses, 1u);
  EXPECT_EQ(s.expirations, 1u);
  // stale_if_error is 0: the expired entry is dead at once and removed by the lookup.
  EXPECT_EQ(s.expired_removed, 1u);
  EXPECT_EQ(s.entries, 0u);
  expect_consistent(s);
}

TEST(CacheTtl, PerCallTtlAndNeverExpiring) {
  ManualClock clock;
  IntCache c(one_shard(10));
  c.put(1, 1, clock.now(), 2s);
  c.put(2, 2, clock.now(), Duration::max());
  clock.advance(2s);
  EXPECT_FALSE(has(c, 1, clock.now()));
  clock.advance(24h * 365 * 100);
  EXPECT_TRUE(has(c, 2, clock.now()));
}

TEST(CacheTtl, NonPositiveTtlStoresNothingAndRemovesTheOldEntry) {
  ManualClock clock;
  IntCache c(one_shard(10));
  c.put(1, 1, clock.now());
  EXPECT_FALSE(c.put(1, 2, clock.now(), 0ns));
  EXPECT_FALSE(has(c, 1, clock.now()));
  EXPECT_EQ(c.stats().rejected, 1u);
  expect_consistent(c.stats());
}

TEST(CacheTtl, ExpiredEntriesAreKeptDuringTheStaleWindowThenDropped) {
  ManualClock clock;
  CacheOptions o = one_shard(10);
  o.ttl = 10s;
  o.stale_if_error = 5s;
  IntCache c(o);
  c.put(1, 1, clock.now());
  clock.advance(12s);
  EXPECT_FALSE(has(c, 1, clock.now()));
  EXPECT_EQ(c.stats().entries, 1u) << "kept for stale-if-error";
  EXPECT_EQ(c.stats().stale_served, 0u) << "get() never serves stale";
  clock.advance(3s);  // exactly expiry + stale_if_error: dead
  EXPECT_FALSE(has(c, 1, clock.now()));
  EXPECT_EQ(c.stats().entries, 0u);
  EXPECT_EQ(c.stats().expirations, 2u);
  EXPECT_EQ(c.stats().expired_removed, 1u);
}

// ---- Bounds ---------------------------------------------------------------------------------

TEST(CacheBounds, EntryBound) {
  ManualClock clock;
  IntCache c(one_shard(5));
  for (int k = 0; k < 50; ++k) {
    c.put(k, k, clock.now());
    EXPECT_LE(c.stats().entries, 5u);
  }
  EXPECT_EQ(c.stats().entries, 5u);
  EXPECT_EQ(c.stats().evictions, 45u);
  for (int k = 45; k < 50; ++k) EXPECT_TRUE(has(c, k, clock.now()));
}

TEST(CacheBounds, ByteBoundEvictsUntilTheNewEntryFits) {
  ManualClock clock;
  IntCache c(one_shard(100, 100), value_as_size);
  c.put(1, 40, clock.now());
  c.put(2, 40, clock.now());
  c.put(3, 20, clock.now());
  EXPECT_EQ(c.stats().bytes, 100u);
  EXPECT_EQ(c.stats().evictions, 0u);
  c.put(4, 50, clock.now());  // needs 50: evicts 1 (40) and 2 (40)
  EXPECT_FALSE(has(c, 1, clock.now()));
  EXPECT_FALSE(has(c, 2, clock.now()));
  EXPECT_TRUE(has(c, 3, clock.now()));
  EXPECT_TRUE(has(c, 4, clock.now()));
  EXPECT_EQ(c.stats().bytes, 70u);
  EXPECT_EQ(c.stats().evictions, 2u);
  c.put(3, 50, clock.now());  // growing a value in place may evict others but not itself
  EXPECT_TRUE(has(c, 3, clock.now()));
  EXPECT_TRUE(has(c, 4, clock.now()));
  EXPECT_EQ(c.stats().bytes, 100u);
  expect_consistent(c.stats());
}

TEST(CacheBounds, ValueLargerThanMaxEntryBytesIsRefusedAndCounted) {
  ManualClock clock;
  CacheOptions o = one_shard(100, 1000);
  o.max_entry_bytes = 100;
  IntCache c(o, value_as_size);
  EXPECT_TRUE(c.put(1, 100, clock.now()));  // exactly the limit is accepted
  EXPECT_TRUE(c.put(2, 10, clock.now()));
  EXPECT_FALSE(c.put(2, 101, clock.now()));
  EXPECT_FALSE(has(c, 2, clock.now())) << "the old value of a refused put is not served";
  EXPECT_TRUE(has(c, 1, clock.now())) << "nothing else is evicted for a refused value";
  const CacheStats s = c.stats();
  EXPECT_EQ(s.rejected, 1u);
  EXPECT_EQ(s.evictions, 0u);
  EXPECT_EQ(s.invalidations, 1u);
  EXPECT_EQ(s.bytes, 100u);
  expect_consistent(s);
}

TEST(CacheBounds, ValueLargerThanAShardBudgetIsRefused) {
  ManualClock clock;
  CacheOptions o;
  o.shards = 4;
  o.max_bytes = 400;  // 100 per shard
  IntCache c(o, value_as_size);
  EXPECT_TRUE(c.put(1, 100, clock.now()));
  EXPECT_FALSE(c.put(2, 101, clock.now()));
  EXPECT_EQ(c.stats().rejected, 1u);
  EXPECT_EQ(c.stats().bytes, 100u);
}

TEST(CacheBounds, BudgetsSplitExactlyAcrossShards) {
  ManualClock clock;
  CacheOptions o;
  o.shards = 4;
  o.max_entries = 10;  // 3 + 3 + 2 + 2
  o.max_bytes = 1003;  // 251 + 251 + 251 + 250
  o.ttl = 1h;
  IntCache c(o, value_as_size);
  Random rng = testing::seeded_random(7);
  for (int i = 0; i < 2000; ++i) {
    c.put(static_cast<int>(rng.below(64)), static_cast<int>(1 + rng.below(250)), clock.now());
    const CacheStats s = c.stats();
    ASSERT_LE(s.entries, 10u);
    ASSERT_LE(s.bytes, 1003u);
  }
  // Fill every shard to its entry budget with tiny values: exactly 10 fit.
  c.clear();
  for (int k = 0; k < 1000; ++k) c.put(k, 1, clock.now());
  EXPECT_EQ(c.stats().entries, 10u);
  expect_consistent(c.stats());
}

// ---- Invalidation ---------------------------------------------------------------------------

TEST(CacheInvalidation, ByKeyAndClear) {
  ManualClock clock;
  Cache<int, int> c(CacheOptions{.max_entries = 100, .shards = 4});
  for (int k = 0; k < 20; ++k) c.put(k, k, clock.now());
  EXPECT_TRUE(c.invalidate(3));
  EXPECT_FALSE(c.invalidate(3));
  EXPECT_FALSE(has(c, 3, clock.now()));
  EXPECT_TRUE(has(c, 4, clock.now()));
  c.clear();
  for (int k = 0; k < 20; ++k) EXPECT_FALSE(has(c, k, clock.now()));
  const CacheStats s = c.stats();
  EXPECT_EQ(s.invalidations, 20u);
  EXPECT_EQ(s.entries, 0u);
  EXPECT_EQ(s.bytes, 0u);
  expect_consistent(s);
  c.put(1, 1, clock.now());  // usable after clear
  EXPECT_TRUE(has(c, 1, clock.now()));
}

TEST(CacheInvalidation, InvalidationDuringAFillKeepsTheOldValueOut) {
  ManualClock clock;
  IntCache c(one_shard(10));
  auto r = c.get_or_fill(1, clock.now(), [&]() -> Result<int> {
    c.invalidate(1);  // the data changed while the fill was computing from the old data
    return 42;
  });
  ASSERT_TRUE(r);
  EXPECT_EQ(**r, 42) << "the caller that asked before the invalidation gets its value";
  EXPECT_FALSE(has(c, 1, clock.now())) << "but it is not inserted";
  int fills = 0;
  r = c.get_or_fill(1, clock.now(), [&] {
    ++fills;
    return 43;
  });
  EXPECT_EQ(fills, 1) << "the next caller fills again";
  EXPECT_EQ(**r, 43);
  EXPECT_TRUE(has(c, 1, clock.now()));
}

TEST(CacheInvalidation, ClearDuringAFillKeepsTheOldValueOut) {
  ManualClock clock;
  IntCache c(one_shard(10));
  auto r = c.get_or_fill(1, clock.now(), [&] {
    c.clear();
    return 42;
  });
  EXPECT_EQ(**r, 42);
  EXPECT_FALSE(has(c, 1, clock.now()));
}

TEST(CacheInvalidation, APutDuringAFillWinsOverTheFill) {
  ManualClock clock;
  IntCache c(one_shard(10));
  auto r = c.get_or_fill(1, clock.now(), [&] {
    c.put(1, 7, clock.now());
    return 42;
  });
  EXPECT_EQ(**r, 42);
  EXPECT_EQ(*c.get(1, clock.now()), 7);
}

TEST(CacheInvalidation, CallersAfterAnInvalidationDoNotJoinTheOldFill) {
  ManualClock clock;
  IntCache c(one_shard(10));
  auto first = c.begin_fill(1, clock.now());
  ASSERT_TRUE(first.lead);
  auto joined = c.begin_fill(1, clock.now());
  ASSERT_TRUE(joined.follow);
  c.invalidate(1);
  auto second = c.begin_fill(1, clock.now());
  ASSERT_TRUE(second.lead) << "a new fill, not the detached one";
  EXPECT_NE(second.lead->flight(), first.lead->flight());
  // The old fill completes last: its value goes to its own waiter, the cache keeps the new one.
  EXPECT_EQ(**second.lead->complete(std::make_shared<const int>(2), clock.now()), 2);
  EXPECT_EQ(**first.lead->complete(std::make_shared<const int>(1), clock.now()), 1);
  EXPECT_EQ(**joined.follow->wait(), 1);
  EXPECT_EQ(*c.get(1, clock.now()), 2);
  EXPECT_EQ(c.stats().fills, 2u);
  EXPECT_EQ(c.stats().fill_waits, 1u);
}

// ---- Fills and stale-if-error ---------------------------------------------------------------

TEST(CacheFill, MissFillsHitDoesNot) {
  ManualClock clock;
  IntCache c(one_shard(10));
  int fills = 0;
  const auto fill = [&]() -> Result<int> {
    ++fills;
    return 5;
  };
  auto r = c.get_or_fill(1, clock.now(), fill);
  ASSERT_TRUE(r);
  EXPECT_EQ(**r, 5);
  EXPECT_FALSE(r->stale);
  EXPECT_EQ(r->expires_at, clock.now() + 1h);
  r = c.get_or_fill(1, clock.now(), fill);
  EXPECT_EQ(fills, 1);
  const CacheStats s = c.stats();
  EXPECT_EQ(s.fills, 1u);
  EXPECT_EQ(s.misses, 1u);
  EXPECT_EQ(s.hits, 1u);
  EXPECT_EQ(s.inserts, 1u);
}

TEST(CacheFill, AcceptsEveryFillReturnShape) {
  ManualClock clock;
  Cache<int, std::string> c(one_shard(10));
  const TimePoint now = clock.now();
  EXPECT_EQ(**c.get_or_fill(1, now, [] { return std::string("plain"); }), "plain");
  EXPECT_EQ(**c.get_or_fill(2, now, [] { return Result<std::string>("result"); }), "result");
  EXPECT_EQ(**c.get_or_fill(3, now, [] { return std::make_shared<const std::string>("sp"); }),
            "sp");
  EXPECT_EQ(**c.get_or_fill(4, now,
                            [] {
                              return Result<std::shared_ptr<const std::string>>(
                                  std::make_shared<const std::string>("rsp"));
                            }),
            "rsp");
  auto null = c.get_or_fill(5, now, [] { return std::shared_ptr<const std::string>{}; });
  ASSERT_FALSE(null);
  EXPECT_EQ(null.error(), make_error_code(errc::call_failed));
  EXPECT_EQ(c.stats().entries, 4u);
}

TEST(CacheFill, PerCallTtl) {
  ManualClock clock;
  IntCache c(one_shard(10));
  FillOptions fo;
  fo.ttl = 3s;
  ASSERT_TRUE(c.get_or_fill(
      1, clock.now(), [] { return 1; }, fo));
  clock.advance(3s - 1ns);
  EXPECT_TRUE(has(c, 1, clock.now()));
  clock.advance(1ns);
  EXPECT_FALSE(has(c, 1, clock.now()));
}

TEST(CacheFill, NonPositiveTtlReturnsTheValueWithoutStoringIt) {
  ManualClock clock;
  IntCache c(one_shard(10));
  FillOptions fo;
  fo.ttl = 0ns;
  auto r = c.get_or_fill(
      1, clock.now(), [] { return 5; }, fo);
  ASSERT_TRUE(r);
  EXPECT_EQ(**r, 5);
  EXPECT_FALSE(has(c, 1, clock.now()));
  EXPECT_EQ(c.stats().rejected, 1u);
}

TEST(CacheFill, TooLargeFilledValueIsReturnedButNotStored) {
  ManualClock clock;
  CacheOptions o = one_shard(10, 1000);
  o.max_entry_bytes = 50;
  IntCache c(o, value_as_size);
  auto r = c.get_or_fill(1, clock.now(), [] { return 60; });
  ASSERT_TRUE(r);
  EXPECT_EQ(**r, 60);
  EXPECT_FALSE(has(c, 1, clock.now()));
  EXPECT_EQ(c.stats().rejected, 1u);
  EXPECT_EQ(c.stats().bytes, 0u);
}

TEST(CacheFill, FailureWithoutStaleEntryReturnsTheFillError) {
  ManualClock clock;
  IntCache c(one_shard(10));
  auto r =
      c.get_or_fill(1, clock.now(), [] { return Result<int>(make_error_code(errc::timeout)); });
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), make_error_code(errc::timeout));
  EXPECT_EQ(c.stats().fill_failures, 1u);
  EXPECT_EQ(c.stats().entries, 0u);
}

TEST(CacheFill, ThrowingFillPropagatesAndReleasesTheKey) {
  ManualClock clock;
  IntCache c(one_shard(10));
  EXPECT_THROW(c.get_or_fill(1, clock.now(), []() -> int { throw std::runtime_error("boom"); }),
               std::runtime_error);
  EXPECT_EQ(c.stats().fill_failures, 1u);
  // The key is not stuck in flight: the next caller fills.
  auto r = c.get_or_fill(1, clock.now(), [] { return 9; });
  ASSERT_TRUE(r);
  EXPECT_EQ(**r, 9);
}

TEST(CacheFill, AbandonedLeaseCompletesWaitersWithCancelled) {
  ManualClock clock;
  IntCache c(one_shard(10));
  std::shared_ptr<Flight<int>> follow;
  {
    auto lead = c.begin_fill(1, clock.now());
    ASSERT_TRUE(lead.lead);
    follow = c.begin_fill(1, clock.now()).follow;
    ASSERT_TRUE(follow);
    EXPECT_FALSE(follow->done());
  }
  ASSERT_TRUE(follow->done());
  auto r = follow->wait();
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), make_error_code(errc::cancelled));
  EXPECT_EQ(c.stats().fill_failures, 1u);
}

TEST(CacheFill, OnCompleteRunsOnceBeforeOrAfterCompletion) {
  ManualClock clock;
  IntCache c(one_shard(10));
  auto lead = c.begin_fill(1, clock.now());
  auto follow = c.begin_fill(1, clock.now()).follow;
  int before = 0;
  int after = 0;
  follow->on_complete([&](const Flight<int>::Outcome& o) { before += o ? **o : -1000; });
  EXPECT_EQ(before, 0);
  lead.lead->complete(std::make_shared<const int>(4), clock.now());
  EXPECT_EQ(before, 4);
  follow->on_complete([&](const Flight<int>::Outcome& o) { after += o ? **o : -1000; });
  EXPECT_EQ(after, 4);
  EXPECT_EQ(before, 4);
}

TEST(CacheFill, WaiterGivesUpWhenStopped) {
  ManualClock clock;
  IntCache c(one_shard(10));
  auto lead = c.begin_fill(1, clock.now());
  std::stop_source stop;
  stop.request_stop();
  FillOptions fo;
  fo.stop = stop.get_token();
  auto r = c.get_or_fill(
      1, clock.now(), [] { return 1; }, fo);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), make_error_code(errc::cancelled));
  EXPECT_FALSE(lead.lead->flight()->done()) << "the fill itself goes on";
}

TEST(CacheStale, FailedFillServesStaleInsideTheWindowOnly) {
  ManualClock clock;
  CacheOptions o = one_shard(10);
  o.ttl = 10s;
  o.stale_if_error = 5s;
  IntCache c(o);
  const TimePoint t0 = clock.now();
  c.put(1, 11, t0);
  const auto failing = [] { return Result<int>(make_error_code(errc::circuit_open)); };

  clock.advance_to(t0 + 10s);  // expired at exactly ttl: a miss, fill fails, stale served
  auto r = c.get_or_fill(1, clock.now(), failing);
  ASSERT_TRUE(r);
  EXPECT_EQ(**r, 11);
  EXPECT_TRUE(r->stale);
  EXPECT_EQ(r->expires_at, t0 + 10s);

  clock.advance_to(t0 + 15s - 1ns);  // last instant of the window
  r = c.get_or_fill(1, clock.now(), failing);
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->stale);

  clock.advance_to(t0 + 15s);  // window over: the error, and the dead entry is gone
  r = c.get_or_fill(1, clock.now(), failing);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), make_error_code(errc::circuit_open));

  const CacheStats s = c.stats();
  EXPECT_EQ(s.stale_served, 2u);
  EXPECT_EQ(s.fill_failures, 3u);
  EXPECT_EQ(s.misses, 3u);
  EXPECT_EQ(s.expirations, 3u);
  EXPECT_EQ(s.expired_removed, 1u);
  EXPECT_EQ(s.entries, 0u);
  expect_consistent(s);
}

TEST(CacheStale, SuccessfulFillReplacesTheStaleEntry) {
  ManualClock clock;
  CacheOptions o = one_shard(10);
  o.ttl = 10s;
  o.stale_if_error = 5s;
  IntCache c(o);
  c.put(1, 11, clock.now());
  clock.advance(11s);
  auto r = c.get_or_fill(1, clock.now(), [] { return 12; });
  ASSERT_TRUE(r);
  EXPECT_FALSE(r->stale);
  EXPECT_EQ(**r, 12);
  EXPECT_EQ(*c.get(1, clock.now()), 12);
  EXPECT_EQ(c.stats().updates, 1u);
}

TEST(CacheStale, GetStaleForAKnownUnavailableUpstream) {
  ManualClock clock;
  CacheOptions o = one_shard(10);
  o.ttl = 10s;
  o.stale_if_error = 5s;
  IntCache c(o);
  const TimePoint t0 = clock.now();
  c.put(1, 11, t0);
  Cached<int> v = c.get_stale(1, clock.now());
  ASSERT_TRUE(v);
  EXPECT_FALSE(v.stale);
  clock.advance_to(t0 + 10s);
  v = c.get_stale(1, clock.now());
  ASSERT_TRUE(v);
  EXPECT_TRUE(v.stale);
  EXPECT_EQ(*v, 11);
  clock.advance_to(t0 + 15s);
  EXPECT_FALSE(c.get_stale(1, clock.now()));
  const CacheStats s = c.stats();
  EXPECT_EQ(s.hits, 1u);
  EXPECT_EQ(s.misses, 2u);
  EXPECT_EQ(s.stale_served, 1u);
  EXPECT_EQ(s.entries, 0u);
}

TEST(CacheStale, DisabledByDefault) {
  ManualClock clock;
  CacheOptions o = one_shard(10);
  o.ttl = 10s;
  IntCache c(o);
  c.put(1, 11, clock.now());
  clock.advance(10s);
  auto r =
      c.get_or_fill(1, clock.now(), [] { return Result<int>(make_error_code(errc::timeout)); });
  EXPECT_FALSE(r);
  EXPECT_EQ(c.stats().stale_served, 0u);
}

TEST(CacheStale, FailedFillServesAFreshValuePutMeanwhile) {
  ManualClock clock;
  IntCache c(one_shard(10));
  auto r = c.get_or_fill(1, clock.now(), [&] {
    c.put(1, 3, clock.now());
    return Result<int>(make_error_code(errc::timeout));
  });
  ASSERT_TRUE(r);
  EXPECT_EQ(**r, 3);
  EXPECT_FALSE(r->stale);
}

// ---- Model check: the index and the CLOCK ring against a straightforward reference ---------

// The documented policy written the obvious way: a deque in ring order, front = hand.
class ModelCache {
 public:
  ModelCache(std::size_t max_entries, Duration stale) : max_(max_entries), stale_(stale) {}

  bool get(int k, TimePoint now) {
    auto it = find(k);
    if (it == q_.end()) return false;
    if (now < it->expires) {
      it->marked = true;
      return true;
    }
    if (now >= saturating_add(it->expires, stale_)) q_.erase(it);
    return false;
  }
  void put(int k, int v, TimePoint now, Duration ttl) {
    if (auto it = find(k); it != q_.end()) q_.erase(it);
    while (q_.size() + 1 > max_) {
      Item front = q_.front();
      q_.pop_front();
      if (front.marked && now < front.expires) {
        front.marked = false;
        q_.push_back(front);
      }
    }
    q_.push_back({k, v, saturating_add(now, ttl), false});
  }
  void erase(int k) {
    if (auto it = find(k); it != q_.end()) q_.erase(it);
  }
  // key -> (value, end of its stale window)
  std::map<int, std::pair<int, TimePoint>> contents() const {
    std::map<int, std::pair<int, TimePoint>> out;
    for (const Item& i : q_) out[i.key] = {i.value, saturating_add(i.expires, stale_)};
    return out;
  }

 private:
  struct Item {
    int key;
    int value;
    TimePoint expires;
    bool marked;
  };
  std::deque<Item>::iterator find(int k) {
    return std::find_if(q_.begin(), q_.end(), [&](const Item& i) { return i.key == k; });
  }
  std::size_t max_;
  Duration stale_;
  std::deque<Item> q_;
};

TEST(CacheModel, RandomOperationsMatchTheReferenceExactly) {
  for (uint64_t seed : {1u, 2u, 3u}) {
    SCOPED_TRACE(seed);
    ManualClock clock;
    CacheOptions o = one_shard(64);
    o.stale_if_error = 2s;
    IntCache c(o);
    ModelCache m(64, 2s);
    Random rng = testing::seeded_random(seed);
    for (int i = 0; i < 40'000; ++i) {
      const int k = static_cast<int>(rng.below(200));
      switch (rng.below(10)) {
        case 0:
        case 1:
        case 2: {
          const Duration ttl = std::chrono::milliseconds(1 + rng.below(5000));
          c.put(k, i, clock.now(), ttl);
          m.put(k, i, clock.now(), ttl);
          break;
        }
        case 3:
          c.invalidate(k);
          m.erase(k);
          break;
        case 4:
          clock.advance(std::chrono::milliseconds(rng.below(100)));
          break;
        default:
          ASSERT_EQ(has(c, k, clock.now()), m.get(k, clock.now())) << "op " << i;
      }
    }
    // Same contents: as many entries, and every model entry that is not dead is in the cache
    // with the same value (dead ones are held by both until found, and get_stale drops them).
    const auto expected = m.contents();
    EXPECT_EQ(c.stats().entries, expected.size());
    for (const auto& [k, entry] : expected) {
      const Cached<int> got = c.get_stale(k, clock.now());
      if (clock.now() < entry.second) {
        ASSERT_TRUE(got) << k;
        EXPECT_EQ(*got, entry.first) << k;
      } else {
        EXPECT_FALSE(got) << k;
      }
    }
    expect_consistent(c.stats());
  }
}

}  // namespace
}  // namespace bulwark::cache
