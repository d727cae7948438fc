// MetricsSink: the small interface through which metrics leave the library.
//
// Everything that exports metrics — a Registry's own families, collectors registered on it,
// and the policy reporters of policy_metrics.h — describes its series to a MetricsSink, one
// call per series, at collection (scrape) time. The Prometheus exposition (prometheus.h) is one
// sink; implement the interface to feed another backend (StatsD, OpenTelemetry, a JSON status
// page) from the same sources. Recording on hot paths never goes through a sink: sinks are
// pull-style and only see values when something collects.
//
// Calls and lifetimes: every string_view and span passed to a sink is valid only for the
// duration of the call; a sink that keeps data must copy it. A series is identified by name +
// label set; sources report each series at most once per collection. Names and label names
// follow the Prometheus rules (registry.h: is_valid_metric_name / is_valid_label_name);
// a sink may drop series that break them.
//
// Thread-safety: a sink is called from the thread that runs the collection, one call at a
// time; implementations need no locking of their own unless they share state elsewhere.
//
// Example:
//   class StatsdSink final : public bulwark::observe::MetricsSink {
//    public:
//     void counter(std::string_view name, std::string_view, Labels labels, double v) override {
//       send(name, labels, v, "c");
//     }
//     void gauge(std::string_view name, std::string_view, Labels labels, double v) override {
//       send(name, labels, v, "g");
//     }
//     void histogram(std::string_view name, std::string_view, Labels labels,
//                    const HistogramData& h) override {
//       send(std::string(name) + "_p99", labels, h.quantile(0.99), "g");
//     }
//   };
//   StatsdSink sink;
//   registry.collect(sink);
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <iterator>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace bulwark::observe {

struct Label {
  std::string_view name;
  std::string_view value;
};

// A non-owning list of labels: built from a braced list at the call site
// (`{{"breaker", name}, {"outcome", "success"}}`) or from a span of Label.
class Labels {
 public:
  constexpr Labels() noexcept = default;
  // Like std::span, the view refers to the list's array, which lives until the end of the
  // full-expression that contains the braced list: pass it straight to a call.
  constexpr Labels(std::initializer_list<Label> labels) noexcept  // NOLINT: implicit by design
      : data_(std::data(labels)), size_(labels.size()) {}
  constexpr Labels(std::span<const Label> labels) noexcept  // NOLINT: implicit by design
      : data_(labels.data()), size_(labels.size()) {}

  constexpr const Label* begin() const noexcept { return data_; }
  constexpr const Label* end() const noexcept { return data_ + size_; }
  constexpr size_t size() const noexcept { return size_; }
  constexpr bool empty() const noexcept { return size_ == 0; }
  constexpr const Label& operator[](size_t i) const noexcept { return data_[i]; }
  // The value of label `name`, if present.
  std::optional<std::string_view> find(std::string_view name) const noexcept {
    for (const Label& l : *this) {
      if (l.name == name) return l.value;
    }
    return std::nullopt;
  }

 private:
  const Label* data_ = nullptr;
  size_t size_ = 0;
};

struct Quantile {
  double q;      // in [0, 1]
  double value;  // estimated q-quantile; NaN when there are no samples
};

// A histogram as handed to a sink.
struct HistogramData {
  std::span<const double> bounds;        // finite `le` upper bounds, strictly increasing
  std::span<const uint64_t> cumulative;  // samples <= bounds[i]; same size as bounds
  uint64_t count = 0;                    // all samples (the +Inf bucket)
  double sum = 0;                        // sum of all samples
  std::span<const Quantile> quantiles;   // p50, p95, p99 (may be empty for foreign sources)

  // The quantile for q if it was provided, else NaN.
  double quantile(double q) const noexcept {
    for (const Quantile& x : quantiles) {
      if (x.q == q) return x.value;
    }
    return std::nan("");
  }
};

class MetricsSink {
 public:
  virtual ~MetricsSink() = default;

  // A monotonically increasing value (Prometheus type counter; name should end in _total).
  virtual void counter(std::string_view name, std::string_view help, Labels labels,
                       double value) = 0;
  // A value that goes up and down.
  virtual void gauge(std::string_view name, std::string_view help, Labels labels, double value) = 0;
  // A distribution with cumulative `le` buckets, count, sum and estimated quantiles.
  virtual void histogram(std::string_view name, std::string_view help, Labels labels,
                         const HistogramData& data) = 0;
};

enum class SampleType { counter, gauge, histogram };

// One series as copied by SnapshotSink.
struct Sample {
  SampleType type;
  std::string name;
  std::string help;
  std::vector<std::pair<std::string, std::string>> labels;  // in reported order
  double value = 0;                                         // counter and gauge
  // histogram only
  std::vector<double> bounds;
  std::vector<uint64_t> cumulative;
  uint64_t count = 0;
  double sum = 0;
  std::vector<Quantile> quantiles;
};

// A sink that copies everything it is given. For tests, JSON status pages and one-off dumps.
//
// Example:
//   SnapshotSink sink;
//   report(breaker, sink);
//   const Sample* s = sink.find("bulwark_breaker_state", {{"breaker", "db"}, {"state", "open"}});
class SnapshotSink final : public MetricsSink {
 public:
  void counter(std::string_view name, std::string_view help, Labels labels, double value) override;
  void gauge(std::string_view name, std::string_view help, Labels labels, double value) override;
  void histogram(std::string_view name, std::string_view help, Labels labels,
                 const HistogramData& data) override;

  const std::vector<Sample>& samples() const noexcept { return samples_; }
  // The first sample named `name` whose labels include every label in `labels` (order and
  // extra labels of the sample do not matter), or nullptr.
  const Sample* find(std::string_view name, Labels labels = {}) const noexcept;
  void clear() noexcept { samples_.clear(); }

 private:
  Sample& add(SampleType type, std::string_view name, std::string_view help, Labels labels);
  std::vector<Sample> samples_;
};

}  // namespace bulwark::observe
