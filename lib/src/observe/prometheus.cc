#include "bulwark/observe/prometheus.h"

#include <prometheus/metric_family.h>
#include <prometheus/text_serializer.h>

#include <array>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <ostream>
#include <sstream>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace bulwark::observe {

namespace {

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};

constexpr std::array<std::string_view, 3> kHistogramSuffixes = {"_bucket", "_sum", "_count"};

// --- text helpers ---------------------------------------------------------------------------

// Label values escape backslash, double quote and newline; help texts backslash and newline.
void append_escaped(std::string& out, std::string_view s, bool quote) {
  for (char c : s) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else if (quote && c == '"') {
      out += "\\\"";
    } else {
      out += c;
    }
  }
}

// Floats as the reference (Go) client writes them: shortest round-trip digits in %g layout
// (strconv.FormatFloat(v, 'g', -1, 64)), NaN, +Inf, -Inf.
void append_double(std::string& out, double v) {
  if (std::isnan(v)) {
    out += "NaN";
  } else if (std::isinf(v)) {
    out += v > 0 ? "+Inf" : "-Inf";
  } else {
    char buf[32];
    const auto r = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::general);
    out.append(buf, r.ptr);
  }
}

void append_u64(std::string& out, uint64_t v) {
  char buf[24];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

// prometheus-cpp 1.0 writes HELP text verbatim, so a backslash or newline in a help string
// would corrupt its exposition; later versions escape it themselves. Probe the serializer once
// and escape for it only if it does not.
bool serializer_escapes_help() {
  static const bool escapes = [] {
    std::vector<prometheus::MetricFamily> probe(1);
    probe[0].name = "probe";
    probe[0].help.push_back('\\');  // one backslash
    probe[0].type = prometheus::MetricType::Gauge;
    std::ostringstream out;
    prometheus::TextSerializer().Serialize(out, probe);
    return out.str().find("\\\\") != std::string::npos;
  }();
  return escapes;
}

}  // namespace

// Series are stored compactly: each family keeps the rendered label pairs of all its series in
// one string (`a="x",b="y"`, already escaped), so gathering 10k series costs few allocations
// and rendering is plain appends.
struct PrometheusTextSink::Impl {
  enum class Type : uint8_t { counter, gauge, histogram };

  struct Series {
    uint32_t labels_begin;  // in Family::labels
    uint32_t labels_size;
    uint32_t histogram;  // index into histograms (histogram families)
    double value;
    uint64_t hash;  // of the rendered labels, for duplicate detection
  };
  struct Family {
    std::string name;
    std::string help;  // as given (unescaped)
    Type type;
    std::string labels;
    std::vector<Series> series;
    // Open addressing over series indices + 1 (0 = empty); size is a power of two.
    std::vector<uint32_t> table;

    std::string_view labels_of(const Series& s) const {
      return std::string_view(labels).substr(s.labels_begin, s.labels_size);
    }
  };
  struct Histogram {
    std::vector<double> bounds;
    std::vector<uint64_t> cumulative;
    uint64_t count;
    double sum;
  };

  // Only the first `used` families / `used_histograms` histograms are live: the rest are kept,
  // with their buffers, from an earlier scrape on this thread (see reset()).
  std::vector<Family> families;
  size_t used = 0;
  std::vector<Histogram> histograms;
  size_t used_histograms = 0;
  std::unordered_map<std::string, size_t, StringHash, std::equal_to<>> index;
  // Sources report a family's series one after another: remember the last family.
  size_t last = std::numeric_limits<size_t>::max();
  ScrapeStats stats;

  static constexpr size_t npos = std::numeric_limits<size_t>::max();

  // Empties the sink but keeps its buffers. Returns false when they are too large to be worth
  // keeping for the next scrape.
  bool reset() {
    size_t bytes = 0;
    for (Family& f : families) {
      bytes += f.labels.capacity() + f.series.capacity() * sizeof(Series) +
               f.table.capacity() * sizeof(uint32_t);
      f.name.clear();
      f.help.clear();
      f.labels.clear();
      f.series.clear();
      std::fill(f.table.begin(), f.table.end(), 0u);
    }
    for (Histogram& h : histograms) bytes += h.bounds.capacity() * 16;
    used = 0;
    used_histograms = 0;
    index.clear();
    last = npos;
    stats = ScrapeStats{};
    return bytes <= kMaxRetainedBytes;
  }
  static constexpr size_t kMaxRetainedBytes = size_t{32} << 20;

  void drop(std::string_view name, std::string_view why) {
    ++stats.dropped;
    if (stats.first_error.empty()) {
      stats.first_error = std::string(name) + ": " + std::string(why);
    }
  }

  // The index of the family for `name`, creating it; npos (after counting the drop) when the
  // series cannot be accepted.
  size_t family_for(std::string_view name, std::string_view help, Type type) {
    if (last < used && families[last].name == name) {
      if (families[last].type == type) return last;
      drop(name, "reported with two different types");
      return npos;
    }
    if (auto it = index.find(name); it != index.end()) {
      if (families[it->second].type != type) {
        drop(name, "reported with two different types");
        return npos;
      }
      last = it->second;
      return last;
    }
    if (!is_valid_metric_name(name)) {
      drop(name, "invalid metric name");
      return npos;
    }
    // Keep the series names of histograms unique across families.
    for (std::string_view suffix : kHistogramSuffixes) {
      if (name.ends_with(suffix)) {
        auto it = index.find(name.substr(0, name.size() - suffix.size()));
        if (it != index.end() && families[it->second].type == Type::histogram) {
          drop(name, "collides with the series of a histogram");
          return npos;
        }
      }
      if (type == Type::histogram && index.contains(std::string(name) + std::string(suffix))) {
        drop(name, "histogram series collide with another family");
        return npos;
      }
    }
    if (used == families.size()) families.emplace_back();
    Family& f = families[used++];
    f.name = name;
    f.help = help;
    f.type = type;
    last = used - 1;
    index.emplace(std::string(name), last);
    return last;
  }

  // Appends a series to family `fi`; nullptr (after counting the drop) when its labels are
  // invalid or it duplicates an earlier series.
  Series* series_for(size_t fi, Labels labels) {
    Family& f = families[fi];
    for (size_t i = 0; i < labels.size(); ++i) {
      const std::string_view n = labels[i].name;
      if (!is_valid_label_name(n) || n == "le" || n == "quantile") {
        drop(f.name, "invalid or reserved label name \"" + std::string(n) + "\"");
        return nullptr;
      }
      for (size_t j = 0; j < i; ++j) {
        if (labels[j].name == n) {
          drop(f.name, "duplicate label name \"" + std::string(n) + "\"");
          return nullptr;
        }
      }
    }
    const size_t begin = f.labels.size();
    for (size_t i = 0; i < labels.size(); ++i) {
      if (i != 0) f.labels += ',';
      f.labels += labels[i].name;
      f.labels += "=\"";
      append_escaped(f.labels, labels[i].value, true);
      f.labels += '"';
    }
    if (f.labels.size() > std::numeric_limits<uint32_t>::max()) {
      f.labels.resize(begin);
      drop(f.name, "labels too large");
      return nullptr;
    }
    Series s{};
    s.labels_begin = static_cast<uint32_t>(begin);
    s.labels_size = static_cast<uint32_t>(f.labels.size() - begin);
    const std::string_view rendered = f.labels_of(s);
    s.hash = std::hash<std::string_view>{}(rendered);

    if (f.series.size() * 2 >= f.table.size()) grow(f);
    const size_t mask = f.table.size() - 1;
    size_t pos = s.hash & mask;
    while (f.table[pos] != 0) {
      const Series& other = f.series[f.table[pos] - 1];
      if (other.hash == s.hash && f.labels_of(other) == rendered) {
        f.labels.resize(begin);
        drop(f.name, "duplicate series");
        return nullptr;
      }
      pos = (pos + 1) & mask;
    }
    f.series.push_back(s);
    f.table[pos] = static_cast<uint32_t>(f.series.size());
    ++stats.series;
    return &f.series.back();
  }

  static void grow(Family& f) {
    std::vector<uint32_t> table(std::max<size_t>(16, f.table.size() * 2), 0);
    const size_t mask = table.size() - 1;
    for (uint32_t i = 0; i < f.series.size(); ++i) {
      size_t pos = f.series[i].hash & mask;
      while (table[pos] != 0) pos = (pos + 1) & mask;
      table[pos] = i + 1;
    }
    f.table = std::move(table);
  }

  // --- rendering ---------------------------------------------------------------------------

  void render_fast(std::string& out) const {
    for (size_t fi = 0; fi < used; ++fi) {
      const Family& f = families[fi];
      out += "# HELP ";
      out += f.name;
      out += ' ';
      append_escaped(out, f.help, false);
      out += "\n# TYPE ";
      out += f.name;
      out += f.type == Type::counter ? " counter\n"
             : f.type == Type::gauge ? " gauge\n"
                                     : " histogram\n";
      for (const Series& s : f.series) {
        const std::string_view labels = f.labels_of(s);
        if (f.type != Type::histogram) {
          out += f.name;
          if (!labels.empty()) {
            out += '{';
            out += labels;
            out += '}';
          }
          out += ' ';
          append_double(out, s.value);
          out += '\n';
          continue;
        }
        const Histogram& h = histograms[s.histogram];
        auto bucket = [&](auto append_le, uint64_t count) {
          out += f.name;
          out += "_bucket{";
          if (!labels.empty()) {
            out += labels;
            out += ',';
          }
          out += "le=\"";
          append_le();
          out += "\"} ";
          append_u64(out, count);
          out += '\n';
        };
        for (size_t i = 0; i < h.bounds.size(); ++i) {
          bucket([&] { append_double(out, h.bounds[i]); }, h.cumulative[i]);
        }
        bucket([&] { out += "+Inf"; }, h.count);
        for (const char* suffix : {"_sum", "_count"}) {
          out += f.name;
          out += suffix;
          if (!labels.empty()) {
            out += '{';
            out += labels;
            out += '}';
          }
          out += ' ';
          if (suffix[1] == 's') {
            append_double(out, h.sum);
          } else {
            append_u64(out, h.count);
          }
          out += '\n';
        }
      }
    }
  }

  // Parses the rendered label pairs back (they were escaped on the way in) for prometheus-cpp.
  static std::vector<prometheus::ClientMetric::Label> parse_labels(std::string_view s) {
    std::vector<prometheus::ClientMetric::Label> out;
    size_t i = 0;
    while (i < s.size()) {
      prometheus::ClientMetric::Label l;
      const size_t eq = s.find('=', i);
      l.name = s.substr(i, eq - i);
      i = eq + 2;  // past ="
      while (s[i] != '"') {
        if (s[i] == '\\') {
          ++i;
          l.value += s[i] == 'n' ? '\n' : s[i];
        } else {
          l.value += s[i];
        }
        ++i;
      }
      i += 2;  // past ", (or past the end)
      out.push_back(std::move(l));
    }
    return out;
  }

  void render_prometheus_cpp(std::ostream& out) const {
    const bool escape_help = !serializer_escapes_help();
    std::vector<prometheus::MetricFamily> result;
    result.reserve(used);
    for (size_t fi = 0; fi < used; ++fi) {
      const Family& f = families[fi];
      prometheus::MetricFamily& mf = result.emplace_back();
      mf.name = f.name;
      if (escape_help) {
        append_escaped(mf.help, f.help, false);
      } else {
        mf.help = f.help;
      }
      mf.type = f.type == Type::counter ? prometheus::MetricType::Counter
                : f.type == Type::gauge ? prometheus::MetricType::Gauge
                                        : prometheus::MetricType::Histogram;
      mf.metric.reserve(f.series.size());
      for (const Series& s : f.series) {
        prometheus::ClientMetric& m = mf.metric.emplace_back();
        m.label = parse_labels(f.labels_of(s));
        if (f.type == Type::counter) {
          m.counter.value = s.value;
        } else if (f.type == Type::gauge) {
          m.gauge.value = s.value;
        } else {
          const Histogram& h = histograms[s.histogram];
          m.histogram.sample_count = h.count;
          m.histogram.sample_sum = h.sum;
          for (size_t i = 0; i < h.bounds.size(); ++i) {
            m.histogram.bucket.push_back({h.cumulative[i], h.bounds[i]});
          }
          m.histogram.bucket.push_back({h.count, std::numeric_limits<double>::infinity()});
        }
      }
    }
    prometheus::TextSerializer().Serialize(out, result);
  }
};

// A scrape builds megabytes of short-lived buffers for large registries; handing them to the
// next sink on the same thread avoids faulting that memory in again on every scrape (on a
// virtual machine page faults were most of the cost). At most one spare per thread, capped.
thread_local std::unique_ptr<PrometheusTextSink::Impl> PrometheusTextSink::spare_;

PrometheusTextSink::PrometheusTextSink()
    : impl_(spare_ ? std::move(spare_) : std::make_unique<Impl>()) {}

PrometheusTextSink::~PrometheusTextSink() {
  if (impl_ && !spare_ && impl_->reset()) spare_ = std::move(impl_);
}

void PrometheusTextSink::counter(std::string_view name, std::string_view help, Labels labels,
                                 double value) {
  const size_t f = impl_->family_for(name, help, Impl::Type::counter);
  if (f == Impl::npos) return;
  if (auto* s = impl_->series_for(f, labels)) s->value = value;
}

void PrometheusTextSink::gauge(std::string_view name, std::string_view help, Labels labels,
                               double value) {
  const size_t f = impl_->family_for(name, help, Impl::Type::gauge);
  if (f == Impl::npos) return;
  if (auto* s = impl_->series_for(f, labels)) s->value = value;
}

void PrometheusTextSink::histogram(std::string_view name, std::string_view help, Labels labels,
                                   const HistogramData& data) {
  if (data.cumulative.size() != data.bounds.size()) {
    impl_->drop(name, "histogram bounds and cumulative counts differ in size");
    return;
  }
  const size_t f = impl_->family_for(name, help, Impl::Type::histogram);
  if (f == Impl::npos) return;
  auto* s = impl_->series_for(f, labels);
  if (s == nullptr) return;
  s->histogram = static_cast<uint32_t>(impl_->used_histograms);
  if (impl_->used_histograms == impl_->histograms.size()) impl_->histograms.emplace_back();
  Impl::Histogram& h = impl_->histograms[impl_->used_histograms++];
  h.bounds.assign(data.bounds.begin(), data.bounds.end());
  h.cumulative.assign(data.cumulative.begin(), data.cumulative.end());
  h.count = data.count;
  h.sum = data.sum;
}

void PrometheusTextSink::write(std::ostream& out, PrometheusRenderer renderer) const {
  if (renderer == PrometheusRenderer::prometheus_cpp) {
    impl_->render_prometheus_cpp(out);
    return;
  }
  const std::string s = text(renderer);
  out.write(s.data(), static_cast<std::streamsize>(s.size()));
}

std::string PrometheusTextSink::text(PrometheusRenderer renderer) const {
  std::string out;
  append_to(out, renderer);
  return out;
}

void PrometheusTextSink::append_to(std::string& out, PrometheusRenderer renderer) const {
  if (renderer == PrometheusRenderer::prometheus_cpp) {
    std::ostringstream text;
    impl_->render_prometheus_cpp(text);
    out += std::move(text).str();
    return;
  }
  size_t estimate = 0;
  for (size_t fi = 0; fi < impl_->used; ++fi) {
    const Impl::Family& f = impl_->families[fi];
    estimate += 32 + 2 * f.name.size() + f.help.size() + f.labels.size() +
                f.series.size() * (f.name.size() + 16);
  }
  out.reserve(out.size() + estimate + impl_->used_histograms * 512);
  impl_->render_fast(out);
}

const ScrapeStats& PrometheusTextSink::stats() const noexcept {
  impl_->stats.families = impl_->used;
  return impl_->stats;
}

std::string to_prometheus_text(const Registry& registry, ScrapeStats* stats,
                               PrometheusRenderer renderer) {
  std::string text;
  write_prometheus_text(registry, text, stats, renderer);
  return text;
}

void write_prometheus_text(const Registry& registry, std::string& out, ScrapeStats* stats,
                           PrometheusRenderer renderer) {
  out.clear();
  PrometheusTextSink sink;
  registry.collect(sink);
  sink.append_to(out, renderer);
  if (stats != nullptr) *stats = sink.stats();
}

}  // namespace bulwark::observe
