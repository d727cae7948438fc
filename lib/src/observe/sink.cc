#include "bulwark/observe/sink.h"

#include <algorithm>

namespace bulwark::observe {

Sample& SnapshotSink::add(SampleType type, std::string_view name, std::string_view help,
                          Labels labels) {
  Sample& s = samples_.emplace_back();
  s.type = type;
  s.name = name;
  s.help = help;
  s.labels.reserve(labels.size());
  for (const Label& l : labels) s.labels.emplace_back(l.name, l.value);
  return s;
}

void SnapshotSink::counter(std::string_view name, std::string_view help, Labels labels,
                           double value) {
  add(SampleType::counter, name, help, labels).value = value;
}

void SnapshotSink::gauge(std::string_view name, std::string_view help, Labels labels,
                         double value) {
  add(SampleType::gauge, name, help, labels).value = value;
}

void SnapshotSink::histogram(std::string_view name, std::string_view help, Labels labels,
                             const HistogramData& data) {
  Sample& s = add(SampleType::histogram, name, help, labels);
  s.bounds.assign(data.bounds.begin(), data.bounds.end());
  s.cumulative.assign(data.cumulative.begin(), data.cumulative.end());
  s.count = data.count;
  s.sum = data.sum;
  s.quantiles.assign(data.quantiles.begin(), data.quantiles.end());
}

const Sample* SnapshotSink::find(std::string_view name, Labels labels) const noexcept {
  for (const Sample& s : samples_) {
    if (s.name != name) continue;
    const bool all = std::all_of(labels.begin(), labels.end(), [&](const Label& want) {
      return std::any_of(s.labels.begin(), s.labels.end(), [&](const auto& have) {
        return have.first == want.name && have.second == want.value;
      });
    });
    if (all) return &s;
  }
  return nullptr;
}

}  // namespace bulwark::observe
