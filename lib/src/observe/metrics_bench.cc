// Micro-benchmarks of the metrics primitives, each next to a naive baseline:
//   Counter::inc            vs one shared std::atomic<uint64_t> (fetch_add) and the house
//                              StripedCounter (fetch_add on a per-thread stripe)
//   Histogram::observe      vs a std::mutex-guarded histogram (binary search over the bounds,
//                              bucket counts, sum, count)
//   Prometheus scrape of 10 000 counter series (2 labels each)
//                           vs prometheus-cpp's own Registry + TextSerializer on the same series
// The recording benchmarks run on 1 and 2 threads sharing ONE metric, which is what the
// per-thread cells are for: with real time per operation, the 2-thread rows show how much the
// contended baselines lose to cache-line bouncing.
#include <benchmark/benchmark.h>

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <mutex>
#include <sstream>
#include <string>
#include <vector>

#include "bulwark/core/random.h"
#include "bulwark/core/striped_counter.h"
#include "bulwark/observe/metrics.h"
#include "bulwark/observe/prometheus.h"
#include "bulwark/observe/registry.h"

namespace {

using bulwark::observe::Counter;
using bulwark::observe::Histogram;

// --- counters ------------------------------------------------------------------------------

void BM_Counter_Inc(benchmark::State& state) {
  static Counter counter;
  for (auto _ : state) counter.inc();
  benchmark::DoNotOptimize(&counter);
}
BENCHMARK(BM_Counter_Inc)->Threads(1)->Threads(2)->UseRealTime();

// Baseline: what a straightforward thread-safe counter does.
void BM_AtomicCounter_Inc(benchmark::State& state) {
  static std::atomic<uint64_t> counter{0};
  for (auto _ : state) counter.fetch_add(1, std::memory_order_relaxed);
  benchmark::DoNotOptimize(&counter);
}
BENCHMARK(BM_AtomicCounter_Inc)->Threads(1)->Threads(2)->UseRealTime();

// Reference: the striped counter the policies use for their stats.
void BM_StripedCounter_Inc(benchmark::State& state) {
  static bulwark::StripedCounter counter;
  for (auto _ : state) counter.add();
  benchmark::DoNotOptimize(&counter);
}
BENCHMARK(BM_StripedCounter_Inc)->Threads(1)->Threads(2)->UseRealTime();

// --- histograms ----------------------------------------------------------------------------

// Latencies from 100 us to ~1 s, exponentially distributed around 20 ms, precomputed so the
// benchmark measures recording, not the random source.
const std::vector<double>& latencies() {
  static const std::vector<double> values = [] {
    bulwark::Random rng(1);
    std::vector<double> v(4096);
    for (double& x : v) x = 0.0001 + -0.02 * std::log1p(-rng.uniform01());
    return v;
  }();
  return values;
}

void BM_Histogram_Observe(benchmark::State& state) {
  static Histogram histogram;
  const std::vector<double>& v = latencies();
  size_t i = static_cast<size_t>(state.thread_index()) * 1000;
  for (auto _ : state) {
    histogram.observe(v[i++ & 4095]);
  }
  benchmark::DoNotOptimize(&histogram);
}
BENCHMARK(BM_Histogram_Observe)->Threads(1)->Threads(2)->UseRealTime();

// Baseline: the classic client-library histogram behind one mutex.
class MutexHistogram {
 public:
  explicit MutexHistogram(std::vector<double> bounds)
      : bounds_(std::move(bounds)), counts_(bounds_.size() + 1, 0) {}
  void observe(double v) {
    const size_t b =
        static_cast<size_t>(std::lower_bound(bounds_.begin(), bounds_.end(), v) - bounds_.begin());
    std::lock_guard lock(mu_);
    ++counts_[b];
    sum_ += v;
    ++count_;
  }

 private:
  const std::vector<double> bounds_;
  std::mutex mu_;
  std::vector<uint64_t> counts_;
  double sum_ = 0;
  uint64_t count_ = 0;
};

void BM_MutexHistogram_Observe(benchmark::State& state) {
  static MutexHistogram histogram(bulwark::observe::default_latency_buckets());
  const std::vector<double>& v = latencies();
  size_t i = static_cast<size_t>(state.thread_index()) * 1000;
  for (auto _ : state) {
    histogram.observe(v[i++ & 4095]);
  }
  benchmark::DoNotOptimize(&histogram);
}
BENCHMARK(BM_MutexHistogram_Observe)->Threads(1)->Threads(2)->UseRealTime();

// --- scrape --------------------------------------------------------------------------------

constexpr int kSeries = 10'000;

// Collect + render, as an admin endpoint does per request.
void scrape_10k(benchmark::State& state, bulwark::observe::PrometheusRenderer renderer) {
  bulwark::observe::Registry registry;
  auto& family = registry.counter("bench_requests_total", "Requests.", {"route", "code"});
  for (int i = 0; i < kSeries; ++i) {
    family.with({"/route/" + std::to_string(i / 10), std::to_string(200 + i % 10)}).inc(i);
  }
  size_t bytes = 0;
  for (auto _ : state) {
    std::string text = bulwark::observe::to_prometheus_text(registry, nullptr, renderer);
    bytes = text.size();
    benchmark::DoNotOptimize(text);
  }
  state.counters["bytes"] = static_cast<double>(bytes);
}

void BM_Scrape_10kSeries(benchmark::State& state) {
  scrape_10k(state, bulwark::observe::PrometheusRenderer::fast);
}
BENCHMARK(BM_Scrape_10kSeries)->Unit(benchmark::kMillisecond);

// The same with one output buffer kept across scrapes (write_prometheus_text).
void BM_Scrape_10kSeries_ReusedBuffer(benchmark::State& state) {
  bulwark::observe::Registry registry;
  auto& family = registry.counter("bench_requests_total", "Requests.", {"route", "code"});
  for (int i = 0; i < kSeries; ++i) {
    family.with({"/route/" + std::to_string(i / 10), std::to_string(200 + i % 10)}).inc(i);
  }
  std::string text;
  for (auto _ : state) {
    bulwark::observe::write_prometheus_text(registry, text);
    benchmark::DoNotOptimize(text.data());
  }
  state.counters["bytes"] = static_cast<double>(text.size());
}
BENCHMARK(BM_Scrape_10kSeries_ReusedBuffer)->Unit(benchmark::kMillisecond);

// The same scrape rendered through prometheus-cpp's TextSerializer (MetricFamily structs).
void BM_Scrape_10kSeries_PrometheusCppRenderer(benchmark::State& state) {
  scrape_10k(state, bulwark::observe::PrometheusRenderer::prometheus_cpp);
}
BENCHMARK(BM_Scrape_10kSeries_PrometheusCppRenderer)->Unit(benchmark::kMillisecond);

// Baseline: prometheus-cpp's registry, collected and serialised the way its exposer does.
void BM_PrometheusCppScrape_10kSeries(benchmark::State& state) {
  prometheus::Registry registry;
  auto& family =
      prometheus::BuildCounter().Name("bench_requests_total").Help("Requests.").Register(registry);
  for (int i = 0; i < kSeries; ++i) {
    family
        .Add(
            {{"route", "/route/" + std::to_string(i / 10)}, {"code", std::to_string(200 + i % 10)}})
        .Increment(i);
  }
  size_t bytes = 0;
  for (auto _ : state) {
    std::ostringstream out;
    prometheus::TextSerializer().Serialize(out, registry.Collect());
    std::string text = std::move(out).str();
    bytes = text.size();
    benchmark::DoNotOptimize(text);
  }
  state.counters["bytes"] = static_cast<double>(bytes);
}
BENCHMARK(BM_PrometheusCppScrape_10kSeries)->Unit(benchmark::kMillisecond);

}  // namespace
