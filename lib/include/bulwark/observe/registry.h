// Registry: named metric families with fixed label names, plus collectors run at scrape time.
//
// A family is a metric name, a help text, a type (counter, gauge, histogram) and a fixed list
// of label names. A series is one combination of label values in a family; asking for it
// creates it on first use and returns the same object afterwards:
//
//   bulwark::observe::Registry registry;
//   auto& requests = registry.counter("myapp_requests_total", "Requests served.",
//                                     {"route", "code"});
//   bulwark::observe::Counter& ok = requests.with({"api", "200"});   // may lock: cache it
//   ok.inc();                                                          // never locks
//   auto& latency = registry.histogram("myapp_request_duration_seconds",
//                                      "Request latency.", {"route"});
//   latency.with({"api"}).observe(std::chrono::milliseconds(12));
//   registry.add_collector([&](bulwark::observe::MetricsSink& s) { report(breaker, s); });
//   std::string text = bulwark::observe::to_prometheus_text(registry);   // prometheus.h
//
// Costs: counter()/gauge()/histogram() and Family::with() take a mutex and look the name or
// label values up in a map; call them once and keep the returned reference on hot paths.
// Recording on a series (Counter::inc, Gauge::set, Histogram::observe) takes no lock; see
// metrics.h. References returned by counter()/gauge()/histogram() and with() stay valid for the
// life of the Registry (with()'s result until Family::remove() of that series).
//
// Validation (std::invalid_argument, at registration, naming the offending input):
//   - metric names match [a-zA-Z_][a-zA-Z0-9_]* (colons are reserved for recording rules);
//   - counter names end in "_total" (the Prometheus and OpenMetrics convention; promtool's
//     lint flags counters without it);
//   - help is not empty;
//   - label names match [a-zA-Z_][a-zA-Z0-9_]*, do not start with "__", are not "le" or
//     "quantile" (reserved for histogram and summary series) and are unique within the family;
//   - a histogram named X reserves X_bucket, X_sum and X_count, so no other family may use
//     those names (and a histogram may not be named so that it would clash with one);
//   - registering an existing name again returns the existing family if type, help, label
//     names (and for histograms the options) are equal, and throws otherwise.
// Family::with() throws std::invalid_argument when the number of label values differs from the
// number of label names. Label values may be any string (escaped on export).
//
// Collection: collect(sink) reports every series of every family (families in name order,
// series in label-value order) and then runs the collectors in the order they were added.
// Collectors are for values that live elsewhere (policy stats, process resources): they report
// through the same sink and cost nothing between scrapes. A collector may register families
// and add or remove collectors (changes take effect from the next collection). An exception
// thrown by a collector is caught; the collection continues with the next one.
//
// Thread-safety: every member of Registry and Family is safe from any thread. Collections may
// run concurrently with recording and with each other (collectors are serialised). The sink is
// called while the reported family's lock is held, so a sink must not create or remove series
// (collectors run without any family lock and may).
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "bulwark/observe/metrics.h"
#include "bulwark/observe/sink.h"

namespace bulwark::observe {

enum class MetricType { counter, gauge, histogram };

// [a-zA-Z_][a-zA-Z0-9_]*
bool is_valid_metric_name(std::string_view name) noexcept;
// [a-zA-Z_][a-zA-Z0-9_]* and not starting with "__".
bool is_valid_label_name(std::string_view name) noexcept;

namespace detail {
// Orders label-value lists lexicographically; compares owned lists with borrowed ones so that
// with() can look a series up without building strings.
struct LabelValuesLess {
  using is_transparent = void;
  template <class A, class B>
  bool operator()(const A& a, const B& b) const noexcept {
    return std::lexicographical_compare(
        a.begin(), a.end(), b.begin(), b.end(),
        [](std::string_view x, std::string_view y) { return x < y; });
  }
};
}  // namespace detail

template <class M>
class Family {
 public:
  Family(const Family&) = delete;
  Family& operator=(const Family&) = delete;

  const std::string& name() const noexcept { return name_; }
  const std::string& help() const noexcept { return help_; }
  const std::vector<std::string>& label_names() const noexcept { return label_names_; }

  // The series with these label values (in label-name order), created on first use.
  M& with(std::initializer_list<std::string_view> values) {
    return with(std::span<const std::string_view>(values.begin(), values.size()));
  }
  M& with(std::span<const std::string_view> values);
  M& with(std::span<const std::string> values);
  // The series of a family without labels.
  M& with() { return with(std::span<const std::string_view>()); }

  // Removes a series; returns whether it existed. References to it become dangling: the caller
  // guarantees that nothing records into it any more.
  bool remove(std::initializer_list<std::string_view> values) {
    return remove(std::span<const std::string_view>(values.begin(), values.size()));
  }
  bool remove(std::span<const std::string_view> values);

  size_t size() const;

  // Calls fn(const std::vector<std::string>& label_values, const M& metric) for every series,
  // in label-value order, holding the family's lock (fn must not call with() or remove()).
  template <class Fn>
  void for_each(Fn&& fn) const {
    std::lock_guard lock(mu_);
    for (const auto& [values, metric] : series_) fn(values, *metric);
  }

 private:
  friend class Registry;
  Family(std::string name, std::string help, std::vector<std::string> label_names,
         std::shared_ptr<const detail::HistogramLayout> layout);
  void check_arity(size_t n) const;

  const std::string name_;
  const std::string help_;
  const std::vector<std::string> label_names_;
  const std::shared_ptr<const detail::HistogramLayout> layout_;  // histogram families only
  mutable std::mutex mu_;
  std::map<std::vector<std::string>, std::unique_ptr<M>, detail::LabelValuesLess> series_;
};

extern template class Family<Counter>;
extern template class Family<Gauge>;
extern template class Family<Histogram>;

class Registry {
 public:
  using Collector = std::function<void(MetricsSink&)>;
  using CollectorId = uint64_t;

  Registry();
  ~Registry();
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  Family<Counter>& counter(std::string_view name, std::string_view help,
                           std::vector<std::string> label_names = {});
  Family<Gauge>& gauge(std::string_view name, std::string_view help,
                       std::vector<std::string> label_names = {});
  Family<Histogram>& histogram(std::string_view name, std::string_view help,
                               std::vector<std::string> label_names = {},
                               const HistogramOptions& options = {});

  // Adds a callback run by every collect(), after the families. Returns an id for
  // remove_collector.
  CollectorId add_collector(Collector collector);
  // Removes a collector. When it returns, the collector is not running on another thread and
  // will not run again, so the objects it refers to may be destroyed. Called from inside a
  // collector (on the collecting thread) it does not wait. Returns whether the id was known.
  bool remove_collector(CollectorId id);

  // Reports every series and runs every collector into `sink`. Histograms are reported with
  // p50, p95 and p99.
  void collect(MetricsSink& sink) const;

 private:
  using AnyFamily = std::variant<std::unique_ptr<Family<Counter>>, std::unique_ptr<Family<Gauge>>,
                                 std::unique_ptr<Family<Histogram>>>;
  // Requires mu_. Validates and looks up `name`; returns the existing family or nullptr.
  AnyFamily* find_or_check(std::string_view name, std::string_view help, MetricType type,
                           const std::vector<std::string>& label_names);

  mutable std::mutex mu_;  // families_
  std::map<std::string, AnyFamily, std::less<>> families_;

  mutable std::mutex collectors_mu_;  // collectors_, next_id_
  std::vector<std::pair<CollectorId, std::shared_ptr<const Collector>>> collectors_;
  CollectorId next_id_ = 1;
  mutable std::mutex run_mu_;  // held while collectors run
};

}  // namespace bulwark::observe
