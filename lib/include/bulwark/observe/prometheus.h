// Prometheus text exposition (format 0.0.4) of a Registry or of any metrics source.
//
// PrometheusTextSink is a MetricsSink that gathers what it is given into metric families and
// renders them as text: one # HELP and # TYPE per family, help and label values escaped
// (backslash, newline, and in label values double quote), histograms as cumulative
// _bucket{le=...} series ending in le="+Inf", then _sum and _count. Numbers are written like
// the reference Go client (shortest round-trip digits in %g layout; NaN, +Inf, -Inf), so `le`
// values match other exporters' (le="0.005", le="1", le="2.5"). The output passes
// `promtool check metrics` when the names follow the Registry's rules (registry.h).
//
// Two renderers produce equivalent exposition (the same series, values and escaping; line
// order inside a histogram and float spelling may differ):
//   - PrometheusRenderer::fast (default): appends straight into one string;
//   - PrometheusRenderer::prometheus_cpp: builds prometheus-cpp MetricFamily structs and runs
//     its TextSerializer. Kept as the reference implementation (a test checks that both agree);
//     building and serialising ClientMetric structs for 10 000 series takes longer than the
//     10 ms scrape budget on a small machine, more than ten times the fast path
//     (metrics_bench.cc measures both side by side).
//
// Series from different sources that share a name are merged into one family, in the order
// they arrive (the first help text wins). A series is dropped, and counted in ScrapeStats, when
//   - its name or a label name is invalid, a label name is repeated, or it uses "le" /
//     "quantile" as a label name;
//   - its name was already reported with another type, or a histogram's series names
//     (_bucket/_sum/_count) collide with another family;
//   - the same name and label set was already reported (the first one wins);
//   - a histogram's cumulative counts do not match its bounds.
// Quantiles of histograms are not exported: Prometheus computes them from the buckets with
// histogram_quantile(); the fine-grained p50/p95/p99 are available from HistogramSnapshot and
// through other sinks.
//
// Cost: linear in the number of series; a scrape of 10 000 counter series (collect + render)
// takes a few milliseconds (metrics_bench.cc, BM_Scrape_10kSeries). The sink's internal
// buffers are kept per thread for the next sink (up to 32 MiB), so repeated scrapes from one
// thread do not allocate them again.
//
// Thread-safety: a PrometheusTextSink is used by one thread at a time; to_prometheus_text may
// be called from any number of threads (each call has its own sink).
//
// Example (an admin endpoint):
//   std::string body = bulwark::observe::to_prometheus_text(registry);
//   response.set(http::field::content_type, bulwark::observe::kPrometheusContentType);
#pragma once

#include <cstddef>
#include <iosfwd>
#include <memory>
#include <string>
#include <string_view>

#include "bulwark/observe/registry.h"
#include "bulwark/observe/sink.h"

namespace bulwark::observe {

inline constexpr std::string_view kPrometheusContentType =
    "text/plain; version=0.0.4; charset=utf-8";

enum class PrometheusRenderer { fast, prometheus_cpp };

struct ScrapeStats {
  size_t families = 0;      // families rendered
  size_t series = 0;        // series accepted (a histogram counts once)
  size_t dropped = 0;       // series rejected (see the file comment)
  std::string first_error;  // why the first rejected series was rejected
};

class PrometheusTextSink final : public MetricsSink {
 public:
  PrometheusTextSink();
  ~PrometheusTextSink() override;
  PrometheusTextSink(const PrometheusTextSink&) = delete;
  PrometheusTextSink& operator=(const PrometheusTextSink&) = delete;

  void counter(std::string_view name, std::string_view help, Labels labels, double value) override;
  void gauge(std::string_view name, std::string_view help, Labels labels, double value) override;
  void histogram(std::string_view name, std::string_view help, Labels labels,
                 const HistogramData& data) override;

  // Renders everything gathered so far.
  void write(std::ostream& out, PrometheusRenderer renderer = PrometheusRenderer::fast) const;
  std::string text(PrometheusRenderer renderer = PrometheusRenderer::fast) const;
  void append_to(std::string& out, PrometheusRenderer renderer = PrometheusRenderer::fast) const;
  const ScrapeStats& stats() const noexcept;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  // Buffers of the last sink destroyed on this thread, reused by the next one.
  static thread_local std::unique_ptr<Impl> spare_;
};

// registry.collect() rendered as Prometheus text. Fills *stats when given.
std::string to_prometheus_text(const Registry& registry, ScrapeStats* stats = nullptr,
                               PrometheusRenderer renderer = PrometheusRenderer::fast);
// The same into `out` (cleared first, capacity kept): an endpoint that keeps one buffer per
// thread avoids allocating (and faulting in) the exposition on every scrape.
void write_prometheus_text(const Registry& registry, std::string& out, ScrapeStats* stats = nullptr,
                           PrometheusRenderer renderer = PrometheusRenderer::fast);

}  // namespace bulwark::observe
