#include "bulwark/observe/registry.h"

#include <array>
#include <stdexcept>
#include <string>
#include <utility>

namespace bulwark::observe {

namespace {

bool name_start(char c) noexcept {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}
bool name_char(char c) noexcept { return name_start(c) || (c >= '0' && c <= '9'); }

bool valid_identifier(std::string_view s) noexcept {
  if (s.empty() || !name_start(s[0])) return false;
  for (char c : s) {
    if (!name_char(c)) return false;
  }
  return true;
}

[[noreturn]] void invalid(std::string_view name, const std::string& what) {
  throw std::invalid_argument("metric \"" + std::string(name) + "\": " + what);
}

constexpr std::array<std::string_view, 3> kHistogramSuffixes = {"_bucket", "_sum", "_count"};

const char* type_name(MetricType t) noexcept {
  switch (t) {
    case MetricType::counter:
      return "counter";
    case MetricType::gauge:
      return "gauge";
    case MetricType::histogram:
      return "histogram";
  }
  return "?";
}

MetricType type_of(const std::unique_ptr<Family<Counter>>&) { return MetricType::counter; }
MetricType type_of(const std::unique_ptr<Family<Gauge>>&) { return MetricType::gauge; }
MetricType type_of(const std::unique_ptr<Family<Histogram>>&) { return MetricType::histogram; }

// Marks the thread that is running a registry's collectors, so remove_collector called from a
// collector does not wait for the collection it is part of.
thread_local const Registry* t_collecting = nullptr;

}  // namespace

bool is_valid_metric_name(std::string_view name) noexcept { return valid_identifier(name); }

bool is_valid_label_name(std::string_view name) noexcept {
  return valid_identifier(name) && !name.starts_with("__");
}

// --- Family -------------------------------------------------------------------------------

template <class M>
Family<M>::Family(std::string name, std::string help, std::vector<std::string> label_names,
                  std::shared_ptr<const detail::HistogramLayout> layout)
    : name_(std::move(name)),
      help_(std::move(help)),
      label_names_(std::move(label_names)),
      layout_(std::move(layout)) {}

template <class M>
void Family<M>::check_arity(size_t n) const {
  if (n != label_names_.size()) {
    invalid(name_, "expected " + std::to_string(label_names_.size()) + " label values, got " +
                       std::to_string(n));
  }
}

template <class M>
M& Family<M>::with(std::span<const std::string_view> values) {
  check_arity(values.size());
  std::lock_guard lock(mu_);
  auto it = series_.find(values);
  if (it != series_.end()) return *it->second;
  std::unique_ptr<M> metric;
  if constexpr (std::is_same_v<M, Histogram>) {
    metric = std::make_unique<Histogram>(layout_);
  } else {
    metric = std::make_unique<M>();
  }
  M& ref = *metric;
  series_.emplace(std::vector<std::string>(values.begin(), values.end()), std::move(metric));
  return ref;
}

template <class M>
M& Family<M>::with(std::span<const std::string> values) {
  check_arity(values.size());
  std::vector<std::string_view> views(values.begin(), values.end());
  return with(std::span<const std::string_view>(views));
}

template <class M>
bool Family<M>::remove(std::span<const std::string_view> values) {
  std::unique_ptr<M> doomed;  // destroyed outside the lock
  std::lock_guard lock(mu_);
  auto it = series_.find(values);
  if (it == series_.end()) return false;
  doomed = std::move(it->second);
  series_.erase(it);
  return true;
}

template <class M>
size_t Family<M>::size() const {
  std::lock_guard lock(mu_);
  return series_.size();
}

template class Family<Counter>;
template class Family<Gauge>;
template class Family<Histogram>;

// --- Registry -----------------------------------------------------------------------------

Registry::Registry() = default;
Registry::~Registry() = default;

Registry::AnyFamily* Registry::find_or_check(std::string_view name, std::string_view help,
                                             MetricType type,
                                             const std::vector<std::string>& label_names) {
  if (!is_valid_metric_name(name)) invalid(name, "name must match [a-zA-Z_][a-zA-Z0-9_]*");
  if (type == MetricType::counter && !name.ends_with("_total")) {
    invalid(name, "counter names must end in _total");
  }
  if (help.empty()) invalid(name, "help text must not be empty");
  for (size_t i = 0; i < label_names.size(); ++i) {
    const std::string& l = label_names[i];
    if (!is_valid_label_name(l)) {
      invalid(name, "label name \"" + l +
                        "\" must match [a-zA-Z_][a-zA-Z0-9_]* and not start "
                        "with __");
    }
    if (l == "le" || l == "quantile") {
      invalid(name, "label name \"" + l + "\" is reserved for histogram and summary series");
    }
    for (size_t j = 0; j < i; ++j) {
      if (label_names[j] == l) invalid(name, "duplicate label name \"" + l + "\"");
    }
  }

  if (auto it = families_.find(name); it != families_.end()) {
    AnyFamily& existing = it->second;
    const MetricType existing_type = std::visit([](const auto& f) { return type_of(f); }, existing);
    if (existing_type != type) {
      invalid(name, std::string("already registered as a ") + type_name(existing_type));
    }
    const bool same = std::visit(
        [&](const auto& f) { return f->help() == help && f->label_names() == label_names; },
        existing);
    if (!same) invalid(name, "already registered with a different help text or label names");
    return &existing;
  }

  // Series names a histogram family occupies must not collide with other families.
  for (std::string_view suffix : kHistogramSuffixes) {
    if (name.ends_with(suffix)) {
      auto it = families_.find(name.substr(0, name.size() - suffix.size()));
      if (it != families_.end() &&
          std::holds_alternative<std::unique_ptr<Family<Histogram>>>(it->second)) {
        invalid(name, "collides with the series of histogram \"" + it->first + "\"");
      }
    }
    if (type == MetricType::histogram) {
      const std::string series = std::string(name) + std::string(suffix);
      if (families_.contains(series)) {
        invalid(name, "histogram series " + series + " would collide with an existing family");
      }
    }
  }
  return nullptr;
}

Family<Counter>& Registry::counter(std::string_view name, std::string_view help,
                                   std::vector<std::string> label_names) {
  std::lock_guard lock(mu_);
  if (AnyFamily* f = find_or_check(name, help, MetricType::counter, label_names)) {
    return *std::get<std::unique_ptr<Family<Counter>>>(*f);
  }
  auto* family =
      new Family<Counter>(std::string(name), std::string(help), std::move(label_names), nullptr);
  families_.emplace(std::string(name), std::unique_ptr<Family<Counter>>(family));
  return *family;
}

Family<Gauge>& Registry::gauge(std::string_view name, std::string_view help,
                               std::vector<std::string> label_names) {
  std::lock_guard lock(mu_);
  if (AnyFamily* f = find_or_check(name, help, MetricType::gauge, label_names)) {
    return *std::get<std::unique_ptr<Family<Gauge>>>(*f);
  }
  auto* family =
      new Family<Gauge>(std::string(name), std::string(help), std::move(label_names), nullptr);
  families_.emplace(std::string(name), std::unique_ptr<Family<Gauge>>(family));
  return *family;
}

Family<Histogram>& Registry::histogram(std::string_view name, std::string_view help,
                                       std::vector<std::string> label_names,
                                       const HistogramOptions& options) {
  // Validate the options before taking the lock; the layout is shared by all series.
  auto layout = std::make_shared<const detail::HistogramLayout>(options);
  std::lock_guard lock(mu_);
  if (AnyFamily* f = find_or_check(name, help, MetricType::histogram, label_names)) {
    auto& existing = *std::get<std::unique_ptr<Family<Histogram>>>(*f);
    const detail::HistogramLayout& l = *existing.layout_;
    if (l.bounds != layout->bounds || l.min != layout->min || l.max != layout->max ||
        l.shift != layout->shift) {
      invalid(name, "already registered with different histogram options");
    }
    return existing;
  }
  auto* family = new Family<Histogram>(std::string(name), std::string(help), std::move(label_names),
                                       std::move(layout));
  families_.emplace(std::string(name), std::unique_ptr<Family<Histogram>>(family));
  return *family;
}

Registry::CollectorId Registry::add_collector(Collector collector) {
  auto c = std::make_shared<const Collector>(std::move(collector));
  std::lock_guard lock(collectors_mu_);
  const CollectorId id = next_id_++;
  collectors_.emplace_back(id, std::move(c));
  return id;
}

bool Registry::remove_collector(CollectorId id) {
  bool found = false;
  {
    std::lock_guard lock(collectors_mu_);
    for (auto it = collectors_.begin(); it != collectors_.end(); ++it) {
      if (it->first == id) {
        collectors_.erase(it);
        found = true;
        break;
      }
    }
  }
  // Wait for a collection that may still be running it (unless that is us).
  if (found && t_collecting != this) {
    std::lock_guard run(run_mu_);
  }
  return found;
}

namespace {

// Reports one family's series with the label names filled in.
template <class M, class Report>
void report_family(const Family<M>& family, Report&& report) {
  const auto& names = family.label_names();
  std::vector<Label> labels(names.size());
  for (size_t i = 0; i < names.size(); ++i) labels[i].name = names[i];
  family.for_each([&](const std::vector<std::string>& values, const M& metric) {
    for (size_t i = 0; i < values.size(); ++i) labels[i].value = values[i];
    report(Labels(std::span<const Label>(labels)), metric);
  });
}

}  // namespace

void Registry::collect(MetricsSink& sink) const {
  // Families are never removed, so the pointers stay valid after the lock is dropped; the
  // registry lock is not held while the sink runs (it may be slow, and may register).
  std::vector<const AnyFamily*> families;
  {
    std::lock_guard lock(mu_);
    families.reserve(families_.size());
    for (const auto& [name, family] : families_) families.push_back(&family);
  }
  std::vector<uint64_t> cumulative;
  for (const AnyFamily* any : families) {
    if (const auto* c = std::get_if<std::unique_ptr<Family<Counter>>>(any)) {
      const Family<Counter>& f = **c;
      report_family(f, [&](Labels labels, const Counter& m) {
        sink.counter(f.name(), f.help(), labels, m.value());
      });
    } else if (const auto* g = std::get_if<std::unique_ptr<Family<Gauge>>>(any)) {
      const Family<Gauge>& f = **g;
      report_family(f, [&](Labels labels, const Gauge& m) {
        sink.gauge(f.name(), f.help(), labels, m.value());
      });
    } else if (const auto* h = std::get_if<std::unique_ptr<Family<Histogram>>>(any)) {
      const Family<Histogram>& f = **h;
      report_family(f, [&](Labels labels, const Histogram& m) {
        const HistogramSnapshot snap = m.snapshot();
        cumulative = snap.cumulative_counts();
        const std::array<Quantile, 3> quantiles = {Quantile{0.5, snap.percentile(0.5)},
                                                   Quantile{0.95, snap.percentile(0.95)},
                                                   Quantile{0.99, snap.percentile(0.99)}};
        HistogramData data;
        data.bounds = snap.bounds();
        data.cumulative = cumulative;
        data.count = snap.count();
        data.sum = snap.sum();
        data.quantiles = quantiles;
        sink.histogram(f.name(), f.help(), labels, data);
      });
    }
  }

  // A collector that collects this registry again gets the families only (no recursion).
  if (t_collecting == this) return;
  std::lock_guard run(run_mu_);
  std::vector<std::shared_ptr<const Collector>> collectors;
  {
    std::lock_guard lock(collectors_mu_);
    collectors.reserve(collectors_.size());
    for (const auto& [id, c] : collectors_) collectors.push_back(c);
  }
  const Registry* outer = t_collecting;
  t_collecting = this;
  for (const auto& c : collectors) {
    try {
      (*c)(sink);
    } catch (...) {
      // A failing source must not take the whole scrape down; its series are simply missing.
    }
  }
  t_collecting = outer;
}

}  // namespace bulwark::observe
