#include "filters/overload/overload.h"

#include "bulwark/observe/policy_metrics.h"
#include "filter/reasons.h"

namespace bulwark::gateway::filters {

namespace {

constexpr std::string_view kLevelNames[] = {"normal", "warning", "critical", "exhausted"};

OverloadLevel from_library(bulwark::observe::ResourceLevel level) noexcept {
  return static_cast<OverloadLevel>(static_cast<uint8_t>(level));
}

}  // namespace

OverloadManager::OverloadManager(bulwark::observe::Registry& registry) : registry_(registry) {
  collector_ = registry_.add_collector([this](bulwark::observe::MetricsSink& sink) {
    if (auto* monitor = running_.load(std::memory_order_acquire)) {
      bulwark::observe::report(*monitor, sink);
    }
    const OverloadLevel now = level();
    for (std::size_t i = 0; i < std::size(kLevelNames); ++i) {
      sink.gauge("bulwark_overload_level",
                 "1 for the overload level in force (measured or forced by overload.force_level).",
                 {{"level", kLevelNames[i]}}, static_cast<std::size_t>(now) == i ? 1 : 0);
    }
  });
}

OverloadManager::~OverloadManager() {
  registry_.remove_collector(collector_);
  if (monitor_) monitor_->stop();
}

void OverloadManager::start(const config::OverloadSpec& spec, bulwark::observe::Logger log) {
  if (monitor_) return;
  bulwark::observe::ResourceMonitorOptions options;
  options.memory_limit_bytes = spec.memory_limit.value_or(0);
  monitor_ = std::make_unique<bulwark::observe::ResourceMonitor>(
      std::make_shared<bulwark::observe::ProcResourceReader>(), options);
  monitor_->add_listener([log](const bulwark::observe::ResourceEvent& e) {
    const auto level = e.to >= bulwark::observe::ResourceLevel::warning
                           ? bulwark::observe::LogLevel::warn
                           : bulwark::observe::LogLevel::info;
    log.log(level, "overload level changed",
            {{"resource", e.resource},
             {"from", bulwark::observe::to_string(e.from)},
             {"to", bulwark::observe::to_string(e.to)},
             {"usage", e.usage}});
  });
  // The monitor's poller waits on the system clock between polls, off the data path.
  monitor_->start(SystemClock::instance());
  running_.store(monitor_.get(), std::memory_order_release);
}

OverloadLevel OverloadManager::level() const noexcept {
  const auto* monitor = running_.load(std::memory_order_acquire);
  const OverloadLevel measured =
      monitor != nullptr ? from_library(monitor->level()) : OverloadLevel::normal;
  return worse(measured, forced_.load(std::memory_order_relaxed));
}

filter::LocalReply OverloadFilter::on_request(const filter::RequestInfo& request,
                                              filter::FilterState& state) const {
  (void)state;
  if (sheds(manager_.level(), priority_)) {
    return filter::refuse(503, reason::kOverloaded, request.has_body);
  }
  return {};
}

}  // namespace bulwark::gateway::filters
