#include "bulwark/observe/registry.h"

#include <gtest/gtest.h>

#include <atomic>
#include <barrier>
#include <cmath>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace bulwark::observe {
namespace {

using namespace std::chrono_literals;

TEST(Names, MetricAndLabelNameRules) {
  EXPECT_TRUE(is_valid_metric_name("http_requests_total"));
  EXPECT_TRUE(is_valid_metric_name("_x9"));
  EXPECT_FALSE(is_valid_metric_name(""));
  EXPECT_FALSE(is_valid_metric_name("9lives"));
  EXPECT_FALSE(is_valid_metric_name("a-b"));
  EXPECT_FALSE(is_valid_metric_name("job:rate5m"));  // colons: recording rules only
  EXPECT_FALSE(is_valid_metric_name("caf\xc3\xa9"));
  EXPECT_TRUE(is_valid_label_name("route"));
  EXPECT_TRUE(is_valid_label_name("_private"));
  EXPECT_FALSE(is_valid_label_name("__name__"));
  EXPECT_FALSE(is_valid_label_name("a.b"));
  EXPECT_FALSE(is_valid_label_name(""));
}

TEST(Registry, RegistrationIsIdempotentForIdenticalDefinitions) {
  Registry r;
  auto& a = r.counter("x_total", "help", {"route"});
  auto& b = r.counter("x_total", "help", {"route"});
  EXPECT_EQ(&a, &b);
  auto& h1 = r.histogram("lat_seconds", "help", {});
  auto& h2 = r.histogram("lat_seconds", "help", {});
  EXPECT_EQ(&h1, &h2);
}

TEST(Registry, ConflictingOrInvalidRegistrationsThrow) {
  Registry r;
  r.counter("x_total", "help", {"route"});
  r.histogram("lat_seconds", "help");
  EXPECT_THROW(r.gauge("x_total", "help", {"route"}), std::invalid_argument);  // other type
  EXPECT_THROW(r.counter("x_total", "other help", {"route"}), std::invalid_argument);
  EXPECT_THROW(r.counter("x_total", "help", {"code"}), std::invalid_argument);
  EXPECT_THROW(r.counter("x_total", "help"), std::invalid_argument);
  HistogramOptions other;
  other.buckets = {1, 2};
  EXPECT_THROW(r.histogram("lat_seconds", "help", {}, other), std::invalid_argument);
  EXPECT_THROW(r.counter("bad-name_total", "help"), std::invalid_argument);
  EXPECT_THROW(r.counter("requests", "help"), std::invalid_argument);  // counters end in _total
  EXPECT_THROW(r.gauge("g", ""), std::invalid_argument);               // help is required
  EXPECT_THROW(r.gauge("g", "help", {"__reserved"}), std::invalid_argument);
  EXPECT_THROW(r.gauge("g", "help", {"le"}), std::invalid_argument);
  EXPECT_THROW(r.gauge("g", "help", {"quantile"}), std::invalid_argument);
  EXPECT_THROW(r.gauge("g", "help", {"a", "a"}), std::invalid_argument);
  EXPECT_THROW(r.gauge("g", "help", {"a b"}), std::invalid_argument);
  // A histogram's series names are taken...
  EXPECT_THROW(r.gauge("lat_seconds_count", "help"), std::invalid_argument);
  EXPECT_THROW(r.gauge("lat_seconds_sum", "help"), std::invalid_argument);
  EXPECT_THROW(r.histogram("lat_seconds_bucket", "help"), std::invalid_argument);
  // ... and a histogram may not shadow an existing family with its series names.
  r.gauge("depth_bucket", "help");
  EXPECT_THROW(r.histogram("depth", "help"), std::invalid_argument);
  HistogramOptions bad;
  bad.min = -1;
  EXPECT_THROW(r.histogram("h2", "help", {}, bad), std::invalid_argument);
  // Nothing half-registered: the valid name is still free.
  EXPECT_NO_THROW(r.histogram("h2", "help"));
}

TEST(Registry, WithReturnsOneSeriesPerLabelValuesAndChecksArity) {
  Registry r;
  auto& f = r.counter("req_total", "help", {"route", "code"});
  Counter& a = f.with({"api", "200"});
  Counter& b = f.with({"api", "500"});
  EXPECT_NE(&a, &b);
  EXPECT_EQ(&a, &f.with({"api", "200"}));
  const std::vector<std::string> owned = {"api", "200"};
  EXPECT_EQ(&a, &f.with(owned));
  EXPECT_THROW(f.with({"api"}), std::invalid_argument);
  EXPECT_THROW(f.with(), std::invalid_argument);
  EXPECT_EQ(f.size(), 2u);
  EXPECT_TRUE(f.remove({"api", "500"}));
  EXPECT_FALSE(f.remove({"api", "500"}));
  EXPECT_EQ(f.size(), 1u);
  auto& plain = r.gauge("up", "help");
  EXPECT_EQ(&plain.with(), &plain.with({}));
}

TEST(Registry, ConcurrentLookupsAndIncrementsSumExactly) {
  Registry r;
  auto& f = r.counter("req_total", "help", {"worker"});
  constexpr int kThreads = 4;
  constexpr int kPerThread = 50'000;
  std::barrier start(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      start.arrive_and_wait();
      Counter& mine = f.with({std::to_string(t % 2)});
      for (int i = 0; i < kPerThread; ++i) {
        mine.inc();
        if (i % 1000 == 0) f.with({"shared"}).inc();  // lookups racing with each other
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(f.with({"0"}).value(), 2.0 * kPerThread);
  EXPECT_EQ(f.with({"1"}).value(), 2.0 * kPerThread);
  EXPECT_EQ(f.with({"shared"}).value(), kThreads * (kPerThread / 1000.0));
}

TEST(Registry, CollectReportsFamiliesInNameOrderThenCollectors) {
  Registry r;
  r.gauge("b_gauge", "gauge help", {"k"}).with({"v"}).set(2);
  r.counter("a_total", "counter help", {"k"}).with({"y"}).inc(3);
  r.counter("a_total", "counter help", {"k"}).with({"x"}).inc(1);
  auto& h = r.histogram("c_seconds", "hist help", {}).with();
  for (int i = 1; i <= 100; ++i) h.observe(i * 0.001);
  r.add_collector([](MetricsSink& s) { s.gauge("z_custom", "from a collector", {}, 42); });

  SnapshotSink sink;
  r.collect(sink);
  const auto& samples = sink.samples();
  ASSERT_EQ(samples.size(), 5u);
  EXPECT_EQ(samples[0].name, "a_total");
  EXPECT_EQ(samples[0].labels[0].second, "x");  // label-value order within a family
  EXPECT_EQ(samples[0].value, 1.0);
  EXPECT_EQ(samples[1].labels[0].second, "y");
  EXPECT_EQ(samples[1].value, 3.0);
  EXPECT_EQ(samples[2].name, "b_gauge");
  EXPECT_EQ(samples[2].help, "gauge help");
  EXPECT_EQ(samples[2].value, 2.0);
  const Sample& hs = samples[3];
  EXPECT_EQ(hs.name, "c_seconds");
  EXPECT_EQ(hs.type, SampleType::histogram);
  EXPECT_EQ(hs.count, 100u);
  EXPECT_NEAR(hs.sum, 5.05, 1e-9);
  EXPECT_EQ(hs.bounds, default_latency_buckets());
  ASSERT_EQ(hs.quantiles.size(), 3u);
  EXPECT_EQ(hs.quantiles[0].q, 0.5);
  EXPECT_NEAR(hs.quantiles[0].value, 0.050, 0.0005);
  EXPECT_EQ(hs.quantiles[2].q, 0.99);
  EXPECT_NEAR(hs.quantiles[2].value, 0.099, 0.001);
  // le=0.01 holds 1..10 ms, le=0.05 holds 1..50 ms.
  EXPECT_EQ(hs.cumulative[4], 10u);
  EXPECT_EQ(hs.cumulative[6], 50u);
  EXPECT_EQ(samples[4].name, "z_custom");
  EXPECT_EQ(samples[4].value, 42.0);
}

TEST(Registry, CollectorsCanBeRemovedAndFailuresDoNotStopTheCollection) {
  Registry r;
  int runs = 0;
  auto id = r.add_collector([&](MetricsSink&) { ++runs; });
  r.add_collector([](MetricsSink&) { throw std::runtime_error("source unavailable"); });
  r.add_collector([](MetricsSink& s) { s.gauge("after_throw", "help", {}, 1); });
  SnapshotSink sink;
  r.collect(sink);
  EXPECT_EQ(runs, 1);
  EXPECT_NE(sink.find("after_throw"), nullptr);
  EXPECT_TRUE(r.remove_collector(id));
  EXPECT_FALSE(r.remove_collector(id));
  r.collect(sink);
  EXPECT_EQ(runs, 1);
}

TEST(Registry, CollectorMayRemoveItselfAndRegisterFamilies) {
  Registry r;
  Registry::CollectorId self = 0;
  int runs = 0;
  self = r.add_collector([&](MetricsSink&) {
    ++runs;
    r.gauge("registered_inside", "help").with().set(5);  // no deadlock on the registry lock
    EXPECT_TRUE(r.remove_collector(self));               // does not wait for itself
  });
  SnapshotSink first;
  r.collect(first);
  SnapshotSink second;
  r.collect(second);
  EXPECT_EQ(runs, 1);
  const Sample* s = second.find("registered_inside");
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->value, 5.0);
}

TEST(Registry, CollectorsRunningWhileRecordingSeeMonotonicCounters) {
  Registry r;
  Counter& c = r.counter("busy_total", "help").with();
  std::atomic<bool> stop{false};
  std::thread writer([&] {
    while (!stop.load(std::memory_order_relaxed)) c.inc();
  });
  double last = 0;
  // Collect until the writer has demonstrably been recording during the collections.
  for (int i = 0; last < 100'000; ++i) {
    SnapshotSink sink;
    r.collect(sink);
    const double v = sink.find("busy_total")->value;
    EXPECT_GE(v, last);
    last = v;
  }
  stop = true;
  writer.join();
  SnapshotSink sink;
  r.collect(sink);
  EXPECT_EQ(sink.find("busy_total")->value, c.value());
}

TEST(SnapshotSinkTest, FindMatchesASubsetOfLabels) {
  SnapshotSink s;
  s.counter("x_total", "h", {{"a", "1"}, {"b", "2"}}, 3);
  s.counter("x_total", "h", {{"a", "1"}, {"b", "3"}}, 4);
  EXPECT_EQ(s.find("x_total", {{"b", "3"}})->value, 4.0);
  EXPECT_EQ(s.find("x_total", {{"a", "1"}})->value, 3.0);
  EXPECT_EQ(s.find("x_total", {{"b", "9"}}), nullptr);
  EXPECT_EQ(s.find("y_total"), nullptr);
  const Label array[] = {{"k", "v"}};
  const Labels labels{std::span<const Label>(array)};
  EXPECT_EQ(labels.find("k"), "v");
  EXPECT_FALSE(labels.find("x").has_value());
}

}  // namespace
}  // namespace bulwark::observe
