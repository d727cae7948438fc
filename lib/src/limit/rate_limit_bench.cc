// Micro-benchmarks of the rate limiters, each next to a naive baseline in the same binary:
//   TokenBucket::try_acquire          vs NaiveTokenBucket: std::mutex + double tokens/refill
//   ... the same with ->Threads(2) on one shared limiter
//   TokenBucket refusing (empty)      vs the naive one refusing
//   Gcra::try_acquire                 vs NaiveGcra: the same TAT arithmetic behind a std::mutex
//   SlidingWindow::try_acquire        vs NaiveSlidingWindow: two counters + double weight, mutex
//   KeyedLimiter, 1M keys, random key vs std::unordered_map<std::string, NaiveBucket> under one
//                                        std::mutex
// The keyed benchmarks report bytes per key from the limiter's own accounting (bytes_per_key;
// for the map, from a counting allocator) and from the process RSS growth while the million
// keys were inserted (rss_bytes_per_key).
// Time is synthetic (a TimePoint advanced by the benchmark), so the numbers measure the
// limiters, not clock reads.
#include <benchmark/benchmark.h>

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "bulwark/core/random.h"
#include "bulwark/limit/gcra.h"
#include "bulwark/limit/keyed_limiter.h"
#include "bulwark/limit/sliding_window.h"
#include "bulwark/limit/token_bucket.h"

namespace {

using namespace std::chrono_literals;
using bulwark::Duration;
using bulwark::TimePoint;
using namespace bulwark::limit;

const TimePoint kStart = TimePoint(std::chrono::hours(24));

// ---------------------------------------------------------------------------------------------
// Baselines: the textbook versions, one mutex each.

class NaiveTokenBucket {
 public:
  NaiveTokenBucket(double per_second, double burst)
      : rate_(per_second / 1e9), burst_(burst), tokens_(burst) {}

  bool try_acquire(TimePoint now, double n = 1) {
    std::lock_guard lock(mu_);
    const double t = static_cast<double>(now.time_since_epoch().count());
    if (t > last_) {
      tokens_ = std::min(burst_, tokens_ + (t - last_) * rate_);
      last_ = t;
    }
    if (tokens_ < n) return false;
    tokens_ -= n;
    return true;
  }

 private:
  std::mutex mu_;
  double rate_;  // tokens per ns
  double burst_;
  double tokens_;
  double last_ = 0;
};

class NaiveGcra {
 public:
  NaiveGcra(int64_t interval_us, int64_t burst) : t_(interval_us), cap_(interval_us * burst) {}

  bool try_acquire(TimePoint now) {
    std::lock_guard lock(mu_);
    const int64_t now_us = now.time_since_epoch().count() / 1000;
    const int64_t new_tat = std::max(tat_, now_us) + t_;
    if (new_tat - now_us > cap_) return false;
    tat_ = new_tat;
    return true;
  }

 private:
  std::mutex mu_;
  int64_t t_;
  int64_t cap_;
  int64_t tat_ = 0;
};

class NaiveSlidingWindow {
 public:
  NaiveSlidingWindow(double limit, Duration window) : limit_(limit), window_(window.count()) {}

  bool try_acquire(TimePoint now) {
    std::lock_guard lock(mu_);
    const int64_t t = now.time_since_epoch().count();
    const int64_t w = t / window_;
    if (w != index_) {
      prev_ = w == index_ + 1 ? cur_ : 0;
      cur_ = 0;
      index_ = w;
    }
    const double elapsed = static_cast<double>(t - w * window_) / static_cast<double>(window_);
    if (prev_ * (1.0 - elapsed) + cur_ + 1 > limit_) return false;
    ++cur_;
    return true;
  }

 private:
  std::mutex mu_;
  double limit_;
  int64_t window_;
  int64_t index_ = 0;
  double prev_ = 0;
  double cur_ = 0;
};

// Shared by the threads of one benchmark run; created by thread 0 before the others start.
template <class T>
std::unique_ptr<T>& shared_instance() {
  static std::unique_ptr<T> instance;
  return instance;
}

// Token bucket and GCRA run at one fixed instant with a burst no run can exhaust (2^32), so
// every call takes the granting path (a compare-and-swap). The sliding window's limit is at
// most 2^18 per window, so it runs on a `now` advancing 1 us per iteration and thread (262,143
// per 100 ms window: the granting path too, single-threaded; with two threads whose clocks drift
// apart some calls are refused, reported as `admitted`).
TimePoint now_for(bool advance, int64_t i, int thread) {
  return advance ? kStart + Duration(i * 1000 + thread) : kStart;
}
constexpr uint64_t kHugeBurst = uint64_t{1} << 32;

// ---------------------------------------------------------------------------------------------
// Single limiters

template <class L, class Make>
void run_single(benchmark::State& state, Make make, bool advance) {
  auto& limiter = shared_instance<L>();
  if (state.thread_index() == 0) limiter = make();
  int64_t i = 0;
  int64_t admitted = 0;
  for (auto _ : state) {
    const bool ok = limiter->try_acquire(now_for(advance, i++, state.thread_index())).allowed;
    admitted += ok;
    benchmark::DoNotOptimize(ok);
  }
  state.counters["admitted"] = benchmark::Counter(
      static_cast<double>(admitted) / static_cast<double>(std::max<int64_t>(i, 1)),
      benchmark::Counter::kAvgThreads);
  state.SetItemsProcessed(state.iterations());
}

template <class L, class Make>
void run_naive(benchmark::State& state, Make make, bool advance) {
  auto& limiter = shared_instance<L>();
  if (state.thread_index() == 0) limiter = make();
  int64_t i = 0;
  for (auto _ : state) {
    const bool ok = limiter->try_acquire(now_for(advance, i++, state.thread_index()));
    benchmark::DoNotOptimize(ok);
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_TokenBucket(benchmark::State& state) {
  run_single<TokenBucket>(
      state,
      [] {
        return std::make_unique<TokenBucket>(
            TokenBucketOptions{.rate = Rate::per_second(1), .burst = kHugeBurst});
      },
      false);
}
void BM_TokenBucket_Naive(benchmark::State& state) {
  run_naive<NaiveTokenBucket>(
      state, [] { return std::make_unique<NaiveTokenBucket>(1, static_cast<double>(kHugeBurst)); },
      false);
}
BENCHMARK(BM_TokenBucket);
BENCHMARK(BM_TokenBucket_Naive);
BENCHMARK(BM_TokenBucket)->Threads(2)->UseRealTime();
BENCHMARK(BM_TokenBucket_Naive)->Threads(2)->UseRealTime();

// Refusing: the bucket is empty and stays empty (time does not move).
void BM_TokenBucket_Refusing(benchmark::State& state) {
  TokenBucket bucket({.rate = Rate::per_second(1), .burst = 1});
  bucket.try_acquire(kStart);
  for (auto _ : state) benchmark::DoNotOptimize(bucket.try_acquire(kStart).allowed);
  state.SetItemsProcessed(state.iterations());
}
void BM_TokenBucket_Refusing_Naive(benchmark::State& state) {
  NaiveTokenBucket bucket(1, 1);
  bucket.try_acquire(kStart);
  for (auto _ : state) benchmark::DoNotOptimize(bucket.try_acquire(kStart));
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_TokenBucket_Refusing);
BENCHMARK(BM_TokenBucket_Refusing_Naive);

void BM_Gcra(benchmark::State& state) {
  run_single<Gcra>(
      state,
      [] {
        return std::make_unique<Gcra>(
            GcraOptions{.rate = Rate::per_second(1), .burst = kHugeBurst});
      },
      false);
}
void BM_Gcra_Naive(benchmark::State& state) {
  run_naive<NaiveGcra>(
      state,
      [] { return std::make_unique<NaiveGcra>(1'000'000, static_cast<int64_t>(kHugeBurst)); },
      false);
}
BENCHMARK(BM_Gcra);
BENCHMARK(BM_Gcra_Naive);
BENCHMARK(BM_Gcra)->Threads(2)->UseRealTime();
BENCHMARK(BM_Gcra_Naive)->Threads(2)->UseRealTime();

void BM_SlidingWindow(benchmark::State& state) {
  run_single<SlidingWindow>(
      state,
      [] {
        return std::make_unique<SlidingWindow>(
            SlidingWindowOptions{.limit = 262'143, .window = 100ms});
      },
      true);
}
void BM_SlidingWindow_Naive(benchmark::State& state) {
  run_naive<NaiveSlidingWindow>(
      state, [] { return std::make_unique<NaiveSlidingWindow>(262'143, 100ms); }, true);
}
BENCHMARK(BM_SlidingWindow);
BENCHMARK(BM_SlidingWindow_Naive);
BENCHMARK(BM_SlidingWindow)->Threads(2)->UseRealTime();
BENCHMARK(BM_SlidingWindow_Naive)->Threads(2)->UseRealTime();

// ---------------------------------------------------------------------------------------------
// Keyed limiters with a million keys

constexpr std::size_t kKeys = 1'000'000;
constexpr std::size_t kSequence = std::size_t{1} << 20;

std::size_t rss_bytes() {
  std::ifstream statm("/proc/self/statm");
  std::size_t pages = 0, resident = 0;
  statm >> pages >> resident;
  return resident * static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
}

// Keys look like IPv4 addresses ("10.x.y.z"), formatted in place from their index for each call
// (as a server formats or slices the client address of the request it is handling, so the
// key's bytes are hot and the limiter's state is what may be cold). The access sequence is
// uniform over the million keys.
std::string_view format_key(uint32_t i, char (&buf)[16]) {
  char* p = buf;
  *p++ = '1';
  *p++ = '0';
  for (int shift = 16; shift >= 0; shift -= 8) {
    const unsigned octet = (i >> shift) & 255;
    *p++ = '.';
    if (octet >= 100) *p++ = static_cast<char>('0' + octet / 100);
    if (octet >= 10) *p++ = static_cast<char>('0' + octet / 10 % 10);
    *p++ = static_cast<char>('0' + octet % 10);
  }
  return {buf, static_cast<std::size_t>(p - buf)};
}

struct KeySet {
  std::vector<uint32_t> sequence;

  KeySet() {
    bulwark::Random rng(1);
    sequence.resize(kSequence);
    for (auto& s : sequence) s = static_cast<uint32_t>(rng.below(kKeys));
  }
};

const KeySet& key_set() {
  static const KeySet set;
  return set;
}

// Counts the bytes a container allocates.
std::atomic<std::size_t> g_map_bytes{0};
template <class T>
struct CountingAllocator {
  using value_type = T;
  CountingAllocator() = default;
  template <class U>
  CountingAllocator(const CountingAllocator<U>&) noexcept {}
  T* allocate(std::size_t n) {
    g_map_bytes.fetch_add(n * sizeof(T), std::memory_order_relaxed);
    return std::allocator<T>().allocate(n);
  }
  void deallocate(T* p, std::size_t n) noexcept {
    g_map_bytes.fetch_sub(n * sizeof(T), std::memory_order_relaxed);
    std::allocator<T>().deallocate(p, n);
  }
  template <class U>
  bool operator==(const CountingAllocator<U>&) const noexcept {
    return true;
  }
};

struct NaiveBucket {
  double tokens;
  int64_t last;
};

// The straightforward keyed limiter: a map from the key string to a bucket, one mutex.
class NaiveKeyedLimiter {
 public:
  NaiveKeyedLimiter(double per_second, double burst) : rate_(per_second / 1e9), burst_(burst) {}

  bool try_acquire(std::string_view key, TimePoint now) {
    const int64_t t = now.time_since_epoch().count();
    std::string k(key);  // short keys: no allocation
    std::lock_guard lock(mu_);
    auto [it, inserted] = map_.try_emplace(std::move(k), NaiveBucket{burst_, t});
    NaiveBucket& b = it->second;
    b.tokens = std::min(burst_, b.tokens + static_cast<double>(t - b.last) * rate_);
    b.last = t;
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  }
  std::size_t size() const { return map_.size(); }

 private:
  using Map = std::unordered_map<std::string, NaiveBucket, std::hash<std::string>,
                                 std::equal_to<std::string>,
                                 CountingAllocator<std::pair<const std::string, NaiveBucket>>>;
  std::mutex mu_;
  double rate_;
  double burst_;
  Map map_;
};

struct FilledKeyed {
  std::unique_ptr<KeyedLimiter> limiter;
  double rss_per_key = 0;
};

const FilledKeyed& filled_keyed() {
  static const FilledKeyed filled = [] {
    FilledKeyed f;
    char buf[16];
    const std::size_t before = rss_bytes();
    f.limiter = std::make_unique<KeyedLimiter>(KeyedLimiterOptions{
        .algorithm = RateAlgorithm::gcra, .rate = Rate::per_second(100), .burst = 100});
    for (std::size_t i = 0; i < kKeys; ++i)
      f.limiter->try_acquire(format_key(static_cast<uint32_t>(i), buf), kStart);
    f.rss_per_key = static_cast<double>(rss_bytes() - before) / kKeys;
    return f;
  }();
  return filled;
}

struct FilledNaive {
  std::unique_ptr<NaiveKeyedLimiter> limiter;
  double rss_per_key = 0;
  double bytes_per_key = 0;
};

const FilledNaive& filled_naive() {
  static const FilledNaive filled = [] {
    FilledNaive f;
    char buf[16];
    const std::size_t before = rss_bytes();
    const std::size_t counted = g_map_bytes.load();
    f.limiter = std::make_unique<NaiveKeyedLimiter>(100, 100);
    for (std::size_t i = 0; i < kKeys; ++i)
      f.limiter->try_acquire(format_key(static_cast<uint32_t>(i), buf), kStart);
    f.rss_per_key = static_cast<double>(rss_bytes() - before) / kKeys;
    f.bytes_per_key = static_cast<double>(g_map_bytes.load() - counted) / kKeys;
    return f;
  }();
  return filled;
}

// Each run starts 10,000 simulated seconds after the previous one, so time never goes back.
std::atomic<int64_t> g_run_start{0};
TimePoint run_start() {
  return kStart + Duration(g_run_start.fetch_add(int64_t{10'000} * 1'000'000'000));
}

// Each iteration: one random key of the million, time advancing by 1 us (every key is asked
// about once per simulated second on average, well under its 100/s: the granting path).
void BM_KeyedLimiter_1M(benchmark::State& state) {
  const KeySet& set = key_set();
  const FilledKeyed& f = filled_keyed();
  char buf[16];
  std::size_t i = static_cast<std::size_t>(state.thread_index()) * 7919;
  const TimePoint start = run_start();
  int64_t t = 0;
  for (auto _ : state) {
    const std::string_view key = format_key(set.sequence[i++ & (kSequence - 1)], buf);
    benchmark::DoNotOptimize(f.limiter->try_acquire(key, start + Duration(t++ * 1000)).allowed);
  }
  const auto st = f.limiter->stats();
  // Per-run facts, not per-thread sums.
  const auto avg = benchmark::Counter::kAvgThreads;
  state.counters["keys"] = benchmark::Counter(static_cast<double>(st.keys), avg);
  state.counters["bytes_per_key"] =
      benchmark::Counter(static_cast<double>(st.memory_bytes) / static_cast<double>(st.keys), avg);
  state.counters["rss_bytes_per_key"] = benchmark::Counter(f.rss_per_key, avg);
  state.SetItemsProcessed(state.iterations());
}

void BM_KeyedLimiter_1M_Naive(benchmark::State& state) {
  const KeySet& set = key_set();
  const FilledNaive& f = filled_naive();
  char buf[16];
  std::size_t i = static_cast<std::size_t>(state.thread_index()) * 7919;
  const TimePoint start = run_start();
  int64_t t = 0;
  for (auto _ : state) {
    const std::string_view key = format_key(set.sequence[i++ & (kSequence - 1)], buf);
    benchmark::DoNotOptimize(f.limiter->try_acquire(key, start + Duration(t++ * 1000)));
  }
  const auto avg = benchmark::Counter::kAvgThreads;
  state.counters["keys"] = benchmark::Counter(static_cast<double>(f.limiter->size()), avg);
  state.counters["bytes_per_key"] = benchmark::Counter(f.bytes_per_key, avg);
  state.counters["rss_bytes_per_key"] = benchmark::Counter(f.rss_per_key, avg);
  state.SetItemsProcessed(state.iterations());
}

BENCHMARK(BM_KeyedLimiter_1M);
BENCHMARK(BM_KeyedLimiter_1M_Naive);
BENCHMARK(BM_KeyedLimiter_1M)->Threads(2)->UseRealTime();
BENCHMARK(BM_KeyedLimiter_1M_Naive)->Threads(2)->UseRealTime();

}  // namespace
