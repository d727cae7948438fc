#include "bulwark/observe/metrics.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <barrier>
#include <chrono>
#include <cmath>
#include <limits>
#include <memory>
#include <stdexcept>
#include <thread>
#include <vector>

#include "bulwark/core/random.h"

namespace bulwark::observe {
namespace {

using namespace std::chrono_literals;

constexpr int kThreads = 4;

// Runs body(thread_index) on kThreads threads; `check` runs once all bodies have finished but
// before any thread exits (so that live per-thread cells are read), then the threads are joined.
template <class Body, class Check>
void run_threads(Body body, Check check) {
  std::barrier done(kThreads + 1);
  std::barrier checked(kThreads + 1);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      body(t);
      done.arrive_and_wait();
      checked.arrive_and_wait();
    });
  }
  done.arrive_and_wait();
  check();
  checked.arrive_and_wait();
  for (auto& th : threads) th.join();
}

// --- Counter ------------------------------------------------------------------------------

TEST(Counter, CountsIncrementsAndIgnoresNegativeAndNaN) {
  Counter c;
  EXPECT_EQ(c.value(), 0.0);
  c.inc();
  c.inc(2.5);
  c.inc(-10);
  c.inc(std::numeric_limits<double>::quiet_NaN());
  EXPECT_EQ(c.value(), 3.5);
}

TEST(Counter, ConcurrentIncrementsSumExactlyWhileThreadsLiveAndAfterTheyExit) {
  Counter c;
  constexpr int kPerThread = 200'000;
  run_threads(
      [&](int) {
        for (int i = 0; i < kPerThread; ++i) c.inc();
      },
      [&] { EXPECT_EQ(c.value(), double{kThreads} * kPerThread); });
  // The threads have exited: their cells were folded into the process totals.
  EXPECT_EQ(c.value(), double{kThreads} * kPerThread);
  c.inc();
  EXPECT_EQ(c.value(), double{kThreads} * kPerThread + 1);
}

TEST(Counter, ReusedCellsStartAtZeroEvenAfterAThreadThatWroteThemExited) {
  auto first = std::make_unique<Counter>();
  std::thread([&] { first->inc(7); }).join();
  first->inc(1);
  EXPECT_EQ(first->value(), 8.0);
  first.reset();
  Counter second;  // most likely gets the released cell back; must not inherit its counts
  EXPECT_EQ(second.value(), 0.0);
  std::thread([&] { second.inc(); }).join();
  EXPECT_EQ(second.value(), 1.0);
}

TEST(Counter, ManyCountersSpanningManyPagesStayIndependent) {
  // 3000 cells cover several 512-cell pages, so threads grow their page tables.
  std::vector<std::unique_ptr<Counter>> counters;
  for (int i = 0; i < 3000; ++i) counters.push_back(std::make_unique<Counter>());
  run_threads(
      [&](int t) {
        for (size_t i = 0; i < counters.size(); ++i) {
          if (i % kThreads == static_cast<size_t>(t) || i % 7 == 0) counters[i]->inc(double(i));
        }
      },
      [] {});
  for (size_t i = 0; i < counters.size(); ++i) {
    const double writers = i % 7 == 0 ? kThreads : 1;
    ASSERT_EQ(counters[i]->value(), writers * double(i)) << i;
  }
}

// --- Gauge --------------------------------------------------------------------------------

TEST(Gauge, SetAddIncDec) {
  Gauge g;
  g.set(10);
  g.add(2.5);
  g.inc();
  g.dec();
  g.dec();
  EXPECT_EQ(g.value(), 11.5);
  g.set(-3);
  EXPECT_EQ(g.value(), -3.0);
}

TEST(Gauge, ConcurrentAddsSumExactly) {
  Gauge g;
  constexpr int kPerThread = 100'000;
  run_threads(
      [&](int t) {
        for (int i = 0; i < kPerThread; ++i) {
          g.add(t % 2 == 0 ? 1.0 : 0.5);  // binary fractions: every partial sum is exact
          if (i % 4 == 0) g.dec();
        }
      },
      [] {});
  const double expected = 2 * kPerThread * 1.0 + 2 * kPerThread * 0.5 - kThreads * (kPerThread / 4);
  EXPECT_EQ(g.value(), expected);
}

// --- Histogram: counting ------------------------------------------------------------------

TEST(Histogram, ConcurrentObservationsCountAndSumExactly) {
  Histogram h;
  constexpr int kPerThread = 100'000;
  const std::vector<double> values = {0.000125, 0.25, 0.5, 1.0, 3.0, 0.0009765625};
  double per_thread_sum = 0;
  for (int i = 0; i < kPerThread; ++i) per_thread_sum += values[i % values.size()];
  auto check = [&] {
    const HistogramSnapshot s = h.snapshot();
    EXPECT_EQ(s.count(), uint64_t{kThreads} * kPerThread);
    EXPECT_EQ(s.sum(), kThreads * per_thread_sum);
    // Every value is <= 3, so every bucket from le=3 up holds all of them.
    const auto cum = s.cumulative_counts();
    const auto bounds = s.bounds();
    for (size_t i = 0; i < bounds.size(); ++i) {
      if (bounds[i] >= 3.0) {
        EXPECT_EQ(cum[i], s.count()) << bounds[i];
      }
    }
  };
  run_threads(
      [&](int) {
        for (int i = 0; i < kPerThread; ++i) h.observe(values[i % values.size()]);
      },
      check);
  check();
}

TEST(Histogram, LeBucketsAreExactIncludingValuesOnTheBound) {
  HistogramOptions o;
  o.buckets = {0.001, 0.1, 0.1003, 0.3, 1.0, 7.0};  // 0.1 and 0.1003 share a fine bucket
  Histogram h(o);
  Random rng(7);
  std::vector<double> samples;
  for (double b : o.buckets) {
    samples.push_back(b);                         // exactly on the bound: counts as <= b
    samples.push_back(std::nextafter(b, 100.0));  // just above: does not
    samples.push_back(std::nextafter(b, -1.0));   // just below: does
  }
  for (int i = 0; i < 20'000; ++i) samples.push_back(rng.uniform01() * 8.0);
  for (double v : samples) h.observe(v);
  const HistogramSnapshot s = h.snapshot();
  const auto cum = s.cumulative_counts();
  ASSERT_EQ(cum.size(), o.buckets.size());
  for (size_t i = 0; i < o.buckets.size(); ++i) {
    const auto expected =
        std::count_if(samples.begin(), samples.end(), [&](double v) { return v <= o.buckets[i]; });
    EXPECT_EQ(cum[i], static_cast<uint64_t>(expected)) << "le=" << o.buckets[i];
  }
  EXPECT_EQ(s.count(), samples.size());
}

TEST(Histogram, OutOfRangeValuesAreCountedAndNaNIsIgnored) {
  HistogramOptions o;
  o.buckets = {1e-9, 5.0, 1e6};  // bounds below min and above max of the fine layout
  o.min = 1e-3;
  o.max = 100;
  Histogram h(o);
  h.observe(0.0);
  h.observe(-2.0);
  h.observe(1e-10);
  h.observe(1e5);
  h.observe(std::numeric_limits<double>::infinity());
  h.observe(std::numeric_limits<double>::quiet_NaN());
  h.observe(2e6);
  const HistogramSnapshot s = h.snapshot();
  EXPECT_EQ(s.count(), 6u);
  EXPECT_EQ(s.cumulative_counts(), (std::vector<uint64_t>{3, 3, 4}));
  // Above the last bound the layout knows nothing more: the top percentile clamps to it.
  EXPECT_EQ(s.percentile(1.0), 1e6);
}

TEST(Histogram, ObservesDurationsInSeconds) {
  Histogram h;
  h.observe(1500ms);
  h.observe(250us);
  const HistogramSnapshot s = h.snapshot();
  EXPECT_EQ(s.count(), 2u);
  EXPECT_DOUBLE_EQ(s.sum(), 1.50025);
}

TEST(Histogram, EmptyHistogramHasNaNPercentilesAndZeroCounts) {
  Histogram h;
  const HistogramSnapshot s = h.snapshot();
  EXPECT_EQ(s.count(), 0u);
  EXPECT_TRUE(std::isnan(s.percentile(0.5)));
  EXPECT_EQ(s.cumulative_counts(), std::vector<uint64_t>(default_latency_buckets().size(), 0));
}

TEST(Histogram, SinceIsTheWindowBetweenTwoSnapshotsAndMergeAddsSeries) {
  Histogram h;
  for (int i = 0; i < 100; ++i) h.observe(0.001);
  const HistogramSnapshot earlier = h.snapshot();
  for (int i = 0; i < 10; ++i) h.observe(2.0);
  const HistogramSnapshot window = h.snapshot().since(earlier);
  EXPECT_EQ(window.count(), 10u);
  EXPECT_NEAR(window.sum(), 20.0, 1e-9);
  EXPECT_NEAR(window.percentile(0.99), 2.0, 2.0 / 128);  // the old fast samples are gone
  EXPECT_LT(h.snapshot().percentile(0.5), 0.01);         // the whole history still has them

  Histogram other(h.layout());
  other.observe(4.0);
  HistogramSnapshot merged = window;
  merged.merge(other.snapshot());
  EXPECT_EQ(merged.count(), 11u);
  EXPECT_NEAR(merged.percentile(1.0), 4.0, 4.0 / 128);
  HistogramSnapshot empty;
  empty.merge(window);
  EXPECT_EQ(empty.count(), 10u);
  Histogram foreign;  // another layout: ignored
  foreign.observe(9.0);
  merged.merge(foreign.snapshot());
  EXPECT_EQ(merged.count(), 11u);
  EXPECT_EQ(window.since(foreign.snapshot()).count(), 10u);
}

TEST(Histogram, InvalidOptionsThrow) {
  auto make = [](auto mutate) {
    HistogramOptions o;
    mutate(o);
    return Histogram(o);
  };
  EXPECT_THROW(make([](auto& o) { o.min = 0; }), std::invalid_argument);
  EXPECT_THROW(make([](auto& o) { o.max = o.min; }), std::invalid_argument);
  EXPECT_THROW(make([](auto& o) { o.max = std::numeric_limits<double>::infinity(); }),
               std::invalid_argument);
  EXPECT_THROW(make([](auto& o) { o.precision_bits = 0; }), std::invalid_argument);
  EXPECT_THROW(make([](auto& o) { o.precision_bits = 11; }), std::invalid_argument);
  EXPECT_THROW(make([](auto& o) { o.buckets = {1, 1}; }), std::invalid_argument);
  EXPECT_THROW(make([](auto& o) { o.buckets = {2, 1}; }), std::invalid_argument);
  EXPECT_THROW(make([](auto& o) { o.buckets = {std::nan("")}; }), std::invalid_argument);
  EXPECT_THROW(make([](auto& o) {
                 o.min = 1e-300;
                 o.max = 1e300;
               }),
               std::invalid_argument);  // too many fine buckets
  EXPECT_NO_THROW(make([](auto& o) { o.buckets.clear(); }));
}

TEST(Histogram, BucketHelpers) {
  EXPECT_EQ(linear_buckets(1, 2, 3), (std::vector<double>{1, 3, 5}));
  EXPECT_EQ(exponential_buckets(1, 10, 3), (std::vector<double>{1, 10, 100}));
  EXPECT_THROW(linear_buckets(1, 0, 3), std::invalid_argument);
  EXPECT_THROW(exponential_buckets(0, 2, 3), std::invalid_argument);
  EXPECT_THROW(exponential_buckets(1, 1, 3), std::invalid_argument);
  EXPECT_THROW(exponential_buckets(1, 2, 0), std::invalid_argument);
  const auto d = default_latency_buckets();
  EXPECT_TRUE(std::is_sorted(d.begin(), d.end()));
}

// --- Histogram: percentiles ---------------------------------------------------------------

// Nearest-rank percentile of the recorded samples.
double exact_percentile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  const size_t rank = static_cast<size_t>(std::ceil(q * static_cast<double>(v.size())));
  return v[std::max<size_t>(rank, 1) - 1];
}

void expect_percentiles_within_1_percent(const std::vector<double>& samples) {
  Histogram h;
  for (double v : samples) h.observe(v);
  const HistogramSnapshot s = h.snapshot();
  ASSERT_EQ(s.count(), samples.size());
  for (double q : {0.5, 0.9, 0.95, 0.99, 0.999}) {
    const double exact = exact_percentile(samples, q);
    const double est = s.percentile(q);
    EXPECT_NEAR(est, exact, exact * 0.01) << "q=" << q;
  }
}

TEST(HistogramPercentiles, UniformWithin1Percent) {
  Random rng(42);
  std::vector<double> samples(200'000);
  for (double& v : samples) v = 0.001 + rng.uniform01() * (0.5 - 0.001);  // 1 ms .. 500 ms
  expect_percentiles_within_1_percent(samples);
}

TEST(HistogramPercentiles, ExponentialWithin1Percent) {
  Random rng(43);
  std::vector<double> samples(200'000);
  for (double& v : samples) v = -0.05 * std::log1p(-rng.uniform01());  // mean 50 ms
  expect_percentiles_within_1_percent(samples);
}

TEST(HistogramPercentiles, LogNormalSpanningDecadesWithin1Percent) {
  Random rng(44);
  std::vector<double> samples(200'000);
  for (double& v : samples) {
    // Box-Muller normal, exp'd: median 10 ms, spanning microseconds to seconds.
    const double u1 = 1.0 - rng.uniform01();
    const double u2 = rng.uniform01();
    const double n = std::sqrt(-2 * std::log(u1)) * std::cos(2 * M_PI * u2);
    v = 0.01 * std::exp(1.5 * n);
  }
  expect_percentiles_within_1_percent(samples);
}

TEST(HistogramPercentiles, WorstCaseErrorIsBoundedByTheBucketWidth) {
  // A single repeated value: every percentile must land in its fine bucket, i.e. within
  // 2^-precision_bits of it, whatever the value.
  Random rng(45);
  for (int i = 0; i < 200; ++i) {
    const double v = std::exp(rng.uniform01() * 18 - 13);  // ~2e-6 .. ~150, inside the layout
    Histogram h;
    for (int k = 0; k < 10; ++k) h.observe(v);
    const HistogramSnapshot s = h.snapshot();
    for (double q : {0.0, 0.5, 1.0}) {
      EXPECT_NEAR(s.percentile(q), v, v / 128.0) << "v=" << v << " q=" << q;
    }
  }
}

TEST(HistogramPercentiles, CoarserPrecisionIsCoarser) {
  HistogramOptions o;
  o.precision_bits = 2;  // buckets up to 25 % wide
  o.buckets.clear();
  Histogram h(o);
  h.observe(1.0);
  h.observe(1.2);
  const HistogramSnapshot s = h.snapshot();
  // Both samples land in [1, 1.25); interpolation spreads them over the bucket.
  EXPECT_GE(s.percentile(0.5), 1.0);
  EXPECT_LT(s.percentile(1.0), 1.25 + 1e-12);
}

}  // namespace
}  // namespace bulwark::observe
