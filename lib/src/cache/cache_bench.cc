// Micro-benchmarks of bulwark::cache::Cache, each next to a naive baseline:
//   hit, 1M entries, keys uniformly random      Cache  vs NaiveLru (one std::mutex around a
//                                                          std::list + std::unordered_map LRU,
//                                                          moving the entry to the front on a hit)
//   hit, 1M entries, keys Zipf(0.99)            the same (a realistic skewed workload)
//   hit, 1M entries, 1,000 hot keys             the same (working set in the CPU caches)
//   ... each also with ->Threads(2) on one shared cache (items/s is the total of both threads,
//       on wall-clock time)
//   insert with eviction (every put evicts)     Cache  vs NaiveLru, 1 and 2 threads
// Both caches store std::shared_ptr<const uint64_t> values and check a TTL on every hit. Keys
// are precomputed (a 1M-key table walked in order), so the loop measures the cache, not the
// random number generator. Time is a fixed TimePoint.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "bulwark/cache/cache.h"
#include "bulwark/core/random.h"

namespace {

using bulwark::Duration;
using bulwark::TimePoint;
using bulwark::cache::Cache;
using bulwark::cache::CacheOptions;

const TimePoint kNow = TimePoint(std::chrono::hours(24));
constexpr Duration kTtl = std::chrono::hours(1);
constexpr std::size_t kPopulation = 1 << 20;  // 1M entries

// The textbook LRU: hash map to list iterators, list in recency order, one mutex.
class NaiveLru {
 public:
  explicit NaiveLru(std::size_t capacity) : capacity_(capacity) { map_.reserve(capacity); }

  std::shared_ptr<const uint64_t> get(uint64_t key, TimePoint now) {
    std::lock_guard lock(mu_);
    auto it = map_.find(key);
    if (it == map_.end()) return nullptr;
    if (now >= it->second->expires_at) return nullptr;
    list_.splice(list_.begin(), list_, it->second);
    return it->second->value;
  }

  void put(uint64_t key, std::shared_ptr<const uint64_t> value, TimePoint now) {
    std::lock_guard lock(mu_);
    if (auto it = map_.find(key); it != map_.end()) {
      it->second->value = std::move(value);
      it->second->expires_at = now + kTtl;
      list_.splice(list_.begin(), list_, it->second);
      return;
    }
    if (map_.size() >= capacity_) {
      map_.erase(list_.back().key);
      list_.pop_back();
    }
    list_.push_front({key, std::move(value), now + kTtl});
    map_.emplace(key, list_.begin());
  }

 private:
  struct Item {
    uint64_t key;
    std::shared_ptr<const uint64_t> value;
    TimePoint expires_at;
  };
  const std::size_t capacity_;
  std::mutex mu_;
  std::list<Item> list_;
  std::unordered_map<uint64_t, std::list<Item>::iterator> map_;
};

using BenchCache = Cache<uint64_t, uint64_t>;

CacheOptions big_options() {
  CacheOptions o;
  // Headroom over the population: shards are filled unevenly by the hash, and a "hit"
  // benchmark must not evict.
  o.max_entries = 2 * kPopulation;
  o.max_bytes = std::size_t{1} << 34;
  o.shards = 64;
  o.ttl = kTtl;
  return o;
}

// Shared by the threads of one benchmark run; created by thread 0 before the others start
// (Google Benchmark starts every thread's timed loop together, after this setup).
template <class T>
std::unique_ptr<T>& shared_instance() {
  static std::unique_ptr<T> instance;
  return instance;
}

// Populated once and shared by every benchmark that reads them (building 1M entries takes a
// noticeable fraction of a second).
BenchCache& populated_cache() {
  static BenchCache* cache = [] {
    auto* c = new BenchCache(big_options());
    for (uint64_t k = 0; k < kPopulation; ++k) c->put(k, k, kNow);
    return c;
  }();
  return *cache;
}

NaiveLru& populated_naive() {
  static NaiveLru* lru = [] {
    auto* l = new NaiveLru(2 * kPopulation);
    for (uint64_t k = 0; k < kPopulation; ++k) {
      l->put(k, std::make_shared<const uint64_t>(k), kNow);
    }
    return l;
  }();
  return *lru;
}

enum class Keys { uniform, zipf, hot1k };

// A table of kPopulation keys to walk:
//   uniform  every entry equally likely: nearly every hit misses the CPU caches (the worst case),
//   zipf     Zipf(s = 0.99) by inverse CDF, key rank r scattered over the key space so that the
//            popular keys do not share shards (a typical cache workload),
//   hot1k    1,000 keys, uniformly: the working set stays in the CPU caches, which shows the
//            cost of the code itself.
const std::vector<uint64_t>& key_table(Keys kind) {
  static const std::vector<uint64_t> uniform = [] {
    bulwark::Random rng(42);
    std::vector<uint64_t> keys(kPopulation);
    for (auto& k : keys) k = rng.below(kPopulation);
    return keys;
  }();
  static const std::vector<uint64_t> skewed = [] {
    std::vector<double> cdf(kPopulation);
    double sum = 0;
    for (std::size_t i = 0; i < kPopulation; ++i) {
      sum += 1.0 / std::pow(static_cast<double>(i + 1), 0.99);
      cdf[i] = sum;
    }
    bulwark::Random rng(43);
    std::vector<uint64_t> keys(kPopulation);
    for (auto& k : keys) {
      const double u = rng.uniform01() * sum;
      const std::size_t rank =
          static_cast<std::size_t>(std::lower_bound(cdf.begin(), cdf.end(), u) - cdf.begin());
      k = (rank * 0x9E3779B97F4A7C15ULL) % kPopulation;
    }
    return keys;
  }();
  static const std::vector<uint64_t> hot = [] {
    bulwark::Random rng(44);
    std::vector<uint64_t> keys(kPopulation);
    for (auto& k : keys) k = (rng.below(1000) * 0x9E3779B97F4A7C15ULL) % kPopulation;
    return keys;
  }();
  switch (kind) {
    case Keys::uniform:
      return uniform;
    case Keys::zipf:
      return skewed;
    case Keys::hot1k:
      break;
  }
  return hot;
}

template <class GetFn>
void run_hits(benchmark::State& state, Keys kind, GetFn get) {
  const std::vector<uint64_t>& keys = key_table(kind);
  // Each thread starts at a different point of the table.
  std::size_t i = static_cast<std::size_t>(state.thread_index()) * (kPopulation / 2);
  uint64_t found = 0;
  for (auto _ : state) {
    auto v = get(keys[i]);
    found += v != nullptr;
    benchmark::DoNotOptimize(v);
    i = (i + 1) & (kPopulation - 1);
  }
  if (found != static_cast<uint64_t>(state.iterations()))
    state.SkipWithError("a hit benchmark missed");
  state.SetItemsProcessed(state.iterations());
}

void BM_Cache_Hit1M_Uniform(benchmark::State& state) {
  BenchCache& c = populated_cache();
  run_hits(state, Keys::uniform, [&](uint64_t k) { return c.get(k, kNow); });
}
BENCHMARK(BM_Cache_Hit1M_Uniform)->UseRealTime()->Threads(1)->Threads(2);

void BM_Cache_NaiveLruHit1M_UniformBaseline(benchmark::State& state) {
  NaiveLru& l = populated_naive();
  run_hits(state, Keys::uniform, [&](uint64_t k) { return l.get(k, kNow); });
}
BENCHMARK(BM_Cache_NaiveLruHit1M_UniformBaseline)->UseRealTime()->Threads(1)->Threads(2);

void BM_Cache_Hit1M_Zipf(benchmark::State& state) {
  BenchCache& c = populated_cache();
  run_hits(state, Keys::zipf, [&](uint64_t k) { return c.get(k, kNow); });
}
BENCHMARK(BM_Cache_Hit1M_Zipf)->UseRealTime()->Threads(1)->Threads(2);

void BM_Cache_NaiveLruHit1M_ZipfBaseline(benchmark::State& state) {
  NaiveLru& l = populated_naive();
  run_hits(state, Keys::zipf, [&](uint64_t k) { return l.get(k, kNow); });
}
BENCHMARK(BM_Cache_NaiveLruHit1M_ZipfBaseline)->UseRealTime()->Threads(1)->Threads(2);

void BM_Cache_Hit1M_Hot1K(benchmark::State& state) {
  BenchCache& c = populated_cache();
  run_hits(state, Keys::hot1k, [&](uint64_t k) { return c.get(k, kNow); });
}
BENCHMARK(BM_Cache_Hit1M_Hot1K)->UseRealTime()->Threads(1)->Threads(2);

void BM_Cache_NaiveLruHit1M_Hot1KBaseline(benchmark::State& state) {
  NaiveLru& l = populated_naive();
  run_hits(state, Keys::hot1k, [&](uint64_t k) { return l.get(k, kNow); });
}
BENCHMARK(BM_Cache_NaiveLruHit1M_Hot1KBaseline)->UseRealTime()->Threads(1)->Threads(2);

// get_or_fill on a hit: the single-flight path costs nothing extra when the value is there.
void BM_Cache_GetOrFillHit1M_Zipf(benchmark::State& state) {
  BenchCache& c = populated_cache();
  run_hits(state, Keys::zipf, [&](uint64_t k) {
    auto r = c.get_or_fill(k, kNow, [k] { return k; });
    return r ? std::move(r->value) : nullptr;
  });
}
BENCHMARK(BM_Cache_GetOrFillHit1M_Zipf)->UseRealTime()->Threads(1)->Threads(2);

// Keys for the insertion benchmarks: distinct and scattered, so that neither container gets
// the locality that consecutive integers give an identity-hashed std::unordered_map.
uint64_t scattered(uint64_t i) { return i * 0x9E3779B97F4A7C15ULL; }

// Steady-state insertion into a full cache of 100K entries: every put of a new key evicts one.
// With ->Threads(2) both threads insert into one cache (disjoint keys).
void BM_Cache_InsertEvict(benchmark::State& state) {
  auto& c = shared_instance<BenchCache>();
  const uint64_t threads = static_cast<uint64_t>(state.threads());
  const uint64_t me = static_cast<uint64_t>(state.thread_index());
  if (me == 0) {
    CacheOptions o = big_options();
    o.max_entries = 100'000;
    c = std::make_unique<BenchCache>(o);
    for (uint64_t k = 0; k < 100'000; ++k) c->put(scattered(k), k, kNow);
  }
  uint64_t k = 100'000 + me;
  for (auto _ : state) {
    c->put(scattered(k), k, kNow);
    k += threads;
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_Cache_InsertEvict)->UseRealTime()->Threads(1)->Threads(2);

void BM_Cache_NaiveLruInsertEvictBaseline(benchmark::State& state) {
  auto& l = shared_instance<NaiveLru>();
  const uint64_t threads = static_cast<uint64_t>(state.threads());
  const uint64_t me = static_cast<uint64_t>(state.thread_index());
  if (me == 0) {
    l = std::make_unique<NaiveLru>(100'000);
    for (uint64_t k = 0; k < 100'000; ++k) {
      l->put(scattered(k), std::make_shared<const uint64_t>(k), kNow);
    }
  }
  uint64_t k = 100'000 + me;
  for (auto _ : state) {
    l->put(scattered(k), std::make_shared<const uint64_t>(k), kNow);
    k += threads;
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_Cache_NaiveLruInsertEvictBaseline)->UseRealTime()->Threads(1)->Threads(2);

}  // namespace
