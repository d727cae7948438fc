#include "bulwark/observe/prometheus.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "prometheus_test_util.h"

namespace bulwark::observe {
namespace {

using test::expect_promtool_clean;

TEST(PrometheusText, RendersFamiliesWithHelpTypeAndSeries) {
  Registry r;
  auto& req = r.counter("http_requests_total", "Requests served.", {"route", "code"});
  req.with({"api", "200"}).inc(3);
  req.with({"api", "500"}).inc();
  r.gauge("queue_depth", "Requests waiting.").with().set(7);
  ScrapeStats stats;
  const std::string text = to_prometheus_text(r, &stats);
  EXPECT_EQ(text,
            "# HELP http_requests_total Requests served.\n"
            "# TYPE http_requests_total counter\n"
            "http_requests_total{route=\"api\",code=\"200\"} 3\n"
            "http_requests_total{route=\"api\",code=\"500\"} 1\n"
            "# HELP queue_depth Requests waiting.\n"
            "# TYPE queue_depth gauge\n"
            "queue_depth 7\n");
  EXPECT_EQ(stats.families, 2u);
  EXPECT_EQ(stats.series, 3u);
  EXPECT_EQ(stats.dropped, 0u);
  expect_promtool_clean(text);
}

TEST(PrometheusText, EscapesLabelValuesAndHelp) {
  Registry r;
  r.counter("odd_total", "Help with a \\ backslash\nand a newline.", {"v"})
      .with({"quote\" backslash\\ newline\n end"})
      .inc();
  const std::string text = to_prometheus_text(r);
  EXPECT_NE(text.find(R"(odd_total{v="quote\" backslash\\ newline\n end"} 1)"), std::string::npos)
      << text;
  EXPECT_NE(text.find(R"(# HELP odd_total Help with a \\ backslash\nand a newline.)"),
            std::string::npos)
      << text;
  expect_promtool_clean(text);
}

TEST(PrometheusText, HistogramHasCumulativeBucketsInfSumAndCount) {
  Registry r;
  HistogramOptions o;
  o.buckets = {0.1, 0.5, 1};
  auto& h = r.histogram("job_duration_seconds", "Job duration.", {"job"}, o).with({"a"});
  for (double v : {0.05, 0.1, 0.2, 0.7, 3.0}) h.observe(v);
  const std::string text = to_prometheus_text(r);
  for (const char* line : {
           "# TYPE job_duration_seconds histogram\n",
           "job_duration_seconds_bucket{job=\"a\",le=\"0.1\"} 2\n",
           "job_duration_seconds_bucket{job=\"a\",le=\"0.5\"} 3\n",
           "job_duration_seconds_bucket{job=\"a\",le=\"1\"} 4\n",
           "job_duration_seconds_bucket{job=\"a\",le=\"+Inf\"} 5\n",
           "job_duration_seconds_sum{job=\"a\"} 4.05\n",
           "job_duration_seconds_count{job=\"a\"} 5\n",
       }) {
    EXPECT_NE(text.find(line), std::string::npos) << line << "---\n" << text;
  }
  expect_promtool_clean(text);
}

TEST(PrometheusText, SpecialValuesAndEmptyFamiliesAreValid) {
  Registry r;
  r.gauge("g_nan", "NaN gauge.").with().set(std::numeric_limits<double>::quiet_NaN());
  r.gauge("g_inf", "Inf gauge.").with().set(-std::numeric_limits<double>::infinity());
  r.counter("never_used_total", "A family without series.", {"x"});
  r.histogram("empty_seconds", "Histogram without samples.").with();
  const std::string text = to_prometheus_text(r);
  EXPECT_NE(text.find("g_nan NaN\n"), std::string::npos) << text;
  EXPECT_NE(text.find("g_inf -Inf\n"), std::string::npos) << text;
  expect_promtool_clean(text);
}

TEST(PrometheusText, CollectorSeriesMergeIntoFamiliesAndBadSeriesAreDropped) {
  Registry r;
  r.counter("shared_total", "From the registry.", {"src"}).with({"registry"}).inc(1);
  r.add_collector([](MetricsSink& s) {
    s.counter("shared_total", "From a collector.", {{"src", "collector"}}, 2);  // merged
    s.counter("shared_total", "dup", {{"src", "registry"}}, 99);                // duplicate
    s.gauge("shared_total", "wrong type", {{"src", "gauge"}}, 1);               // type clash
    s.gauge("bad-name", "invalid name", {}, 1);                                 // invalid
    s.gauge("ok", "fine", {{"le", "1"}}, 1);                                    // reserved label
    s.gauge("ok", "fine", {{"a", "1"}, {"a", "2"}}, 1);                         // repeated label
    s.gauge("ok", "fine", {{"__x", "1"}}, 1);                                   // reserved prefix
    s.gauge("ok", "fine", {{"a", "1"}}, 5);                                     // accepted
    const double bounds[] = {1.0};
    HistogramData bad;
    bad.bounds = bounds;  // no cumulative counts
    s.histogram("h_seconds", "bad histogram", {}, bad);
    HistogramData good;
    const uint64_t cum[] = {1};
    good.bounds = bounds;
    good.cumulative = cum;
    good.count = 2;
    good.sum = 3;
    s.histogram("h2_seconds", "good histogram", {}, good);
    s.gauge("h2_seconds_count", "collides with the histogram", {}, 1);
  });
  ScrapeStats stats;
  const std::string text = to_prometheus_text(r, &stats);
  EXPECT_NE(text.find("shared_total{src=\"registry\"} 1\n"), std::string::npos) << text;
  EXPECT_NE(text.find("shared_total{src=\"collector\"} 2\n"), std::string::npos) << text;
  EXPECT_EQ(text.find("99"), std::string::npos) << text;
  EXPECT_NE(text.find("ok{a=\"1\"} 5\n"), std::string::npos) << text;
  EXPECT_NE(text.find("h2_seconds_bucket{le=\"+Inf\"} 2\n"), std::string::npos) << text;
  EXPECT_EQ(text.find("# HELP shared_total From a collector."), std::string::npos);
  EXPECT_EQ(stats.series, 4u);
  EXPECT_EQ(stats.dropped, 8u);
  EXPECT_EQ(stats.first_error, "shared_total: duplicate series");
  expect_promtool_clean(text);
}

TEST(PrometheusText, ConsecutiveScrapesOnOneThreadDoNotLeakIntoEachOther) {
  // The second sink reuses the first one's buffers (same thread): nothing of the first scrape
  // may show up, and its duplicate detection must start empty.
  Registry big;
  auto& f = big.counter("a_total", "A.", {"i"});
  for (int i = 0; i < 100; ++i) f.with({std::to_string(i)}).inc();
  big.histogram("h_seconds", "H.").with().observe(0.1);
  big.gauge("g", "G.").with().set(1);
  ASSERT_NE(to_prometheus_text(big).find("h_seconds_count 1"), std::string::npos);

  Registry small;
  small.gauge("a_total_is_a_gauge_now", "B.").with().set(2);
  small.counter("a_total", "Other help.", {"i"}).with({"7"}).inc(5);
  std::string out = "stale";
  ScrapeStats stats;
  write_prometheus_text(small, out, &stats);
  EXPECT_EQ(out,
            "# HELP a_total Other help.\n"
            "# TYPE a_total counter\n"
            "a_total{i=\"7\"} 5\n"
            "# HELP a_total_is_a_gauge_now B.\n"
            "# TYPE a_total_is_a_gauge_now gauge\n"
            "a_total_is_a_gauge_now 2\n");
  EXPECT_EQ(stats.families, 2u);
  EXPECT_EQ(stats.series, 2u);
  EXPECT_EQ(stats.dropped, 0u);
}

TEST(PrometheusText, SinkIsUsableWithoutARegistry) {
  PrometheusTextSink sink;
  sink.gauge("temperature_celsius", "Temperature.", {{"room", "a"}}, 21.5);
  EXPECT_EQ(sink.text(),
            "# HELP temperature_celsius Temperature.\n"
            "# TYPE temperature_celsius gauge\n"
            "temperature_celsius{room=\"a\"} 21.5\n");
  EXPECT_EQ(sink.stats().families, 1u);
}

TEST(PrometheusText, TenThousandSeriesRenderAndValidate) {
  Registry r;
  auto& f = r.counter("many_total", "Many series.", {"id", "kind"});
  for (int i = 0; i < 10'000; ++i) f.with({std::to_string(i), i % 2 ? "odd" : "even"}).inc(i);
  ScrapeStats stats;
  const std::string text = to_prometheus_text(r, &stats);
  EXPECT_EQ(stats.series, 10'000u);
  EXPECT_NE(text.find("many_total{id=\"9999\",kind=\"odd\"} 9999\n"), std::string::npos);
  expect_promtool_clean(text);
}

TEST(PrometheusText, FloatsAreWrittenLikeTheGoClient) {
  PrometheusTextSink sink;
  const double values[] = {0.0005, 1e-5, 100000, 1e6, 1234567, 12345678901.0, 0.1 + 0.2, -2.5, 0};
  const char* expected[] = {"0.0005",
                            "1e-05",
                            "100000",
                            "1e+06",
                            "1.234567e+06",
                            "1.2345678901e+10",
                            "0.30000000000000004",
                            "-2.5",
                            "0"};
  for (size_t i = 0; i < std::size(values); ++i) {
    sink.gauge("v", "Values.", {{"i", std::to_string(i)}}, values[i]);
  }
  const std::string text = sink.text();
  for (size_t i = 0; i < std::size(values); ++i) {
    const std::string line = "v{i=\"" + std::to_string(i) + "\"} " + expected[i] + "\n";
    EXPECT_NE(text.find(line), std::string::npos) << line << text;
  }
}

std::vector<std::string> sorted_lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  std::sort(lines.begin(), lines.end());
  return lines;
}

TEST(PrometheusText, FastRendererMatchesPrometheusCppTextSerializer) {
  // Values whose spelling both renderers agree on; the two differ only in the order of a
  // histogram's lines and in how they spell some floats (NaN, large integers).
  Registry r;
  auto& req = r.counter("req_total", "Requests \\ with\nescapes.", {"route", "code"});
  req.with({"a\"b\\c\nd", "200"}).inc(3);
  req.with({"", "500"}).inc(0.5);
  r.gauge("depth", "Queue depth.").with().set(-7.25);
  HistogramOptions o;
  o.buckets = {0.005, 0.1, 1, 2.5};
  auto& h = r.histogram("lat_seconds", "Latency.", {"route"}, o);
  for (double v : {0.001, 0.05, 0.5, 2.0, 4.0}) h.with({"x"}).observe(v);
  h.with({"y"});
  const std::string fast = to_prometheus_text(r, nullptr, PrometheusRenderer::fast);
  const std::string reference = to_prometheus_text(r, nullptr, PrometheusRenderer::prometheus_cpp);
  EXPECT_EQ(sorted_lines(fast), sorted_lines(reference)) << fast << "---\n" << reference;
  expect_promtool_clean(reference);
}

TEST(PrometheusText, ContentTypeIsTheTextFormat004) {
  EXPECT_EQ(kPrometheusContentType, "text/plain; version=0.0.4; charset=utf-8");
}

}  // namespace
}  // namespace bulwark::observe
