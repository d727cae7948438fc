// Overload: sheds load when the gateway's own process runs out of room, on libbulwark's
// ResourceMonitor (open descriptors against RLIMIT_NOFILE, RSS against `overload.memory_limit`
// or the cgroup's memory.max, polled every second off the data path, levels with hysteresis and
// automatic recovery — the library's rules):
//
//   level      usage   the gateway
//   normal     < 80 %  nothing
//   warning    ≥ 80 %  logs the change, shows it in the metrics
//   critical   ≥ 90 %  503 `overloaded` for routes with `priority: low`; keep-alive off (every
//                      client connection closes after its answer)
//   exhausted  ≥ 95 %  503 `overloaded` for every new request
//
// (each level is left only 5 points below its entry threshold). The decision is pure
// (sheds, keep_alive_allowed); OverloadManager holds the state shared by every worker and
// snapshot; OverloadFilter is the first request filter of every route chain, bound with the
// route's priority.
//
// Test hook (off by default): `overload.force_level: warning | critical | exhausted` makes the
// level at least that, whatever the resources say — for drills and tests; a reload without it
// recovers at once.
//
// Config: overload.memory_limit (bytes; start-up only), overload.force_level (reloadable),
// routes[].priority (low | normal | high; default normal).
//
// Metrics: the library's bulwark_resource_{level,used,limit,usage_ratio}{resource} and
// bulwark_resource_read_errors_total, bulwark_overload_level{level} (1 for the level in force,
// forced or measured), bulwark_gateway_responses_total{code="503",reason="overloaded"}.
//
// Thread-safety: level() and keep_alive_allowed() are two atomic loads; the rest is start-up
// and reload.
#pragma once

#include <atomic>
#include <memory>

#include "bulwark/observe/log.h"
#include "bulwark/observe/registry.h"
#include "bulwark/observe/resource_monitor.h"
#include "config/config.h"
#include "filter/filter.h"

namespace bulwark::gateway::filters {

using config::OverloadLevel;

// Whether a new request of a route with `priority` is refused at `level`. Pure.
constexpr bool sheds(OverloadLevel level, config::RoutePriority priority) noexcept {
  return level >= OverloadLevel::exhausted ||
         (level >= OverloadLevel::critical && priority == config::RoutePriority::low);
}
constexpr bool keep_alive_allowed(OverloadLevel level) noexcept {
  return level < OverloadLevel::critical;
}
constexpr OverloadLevel worse(OverloadLevel a, OverloadLevel b) noexcept { return a > b ? a : b; }

class OverloadManager {
 public:
  explicit OverloadManager(bulwark::observe::Registry& registry);
  ~OverloadManager();
  OverloadManager(const OverloadManager&) = delete;
  OverloadManager& operator=(const OverloadManager&) = delete;

  // Starts polling the process's resources (once; `memory_limit` from the start-up config).
  void start(const config::OverloadSpec& spec, bulwark::observe::Logger log);
  // From each snapshot's config.
  void force(OverloadLevel level) noexcept { forced_.store(level, std::memory_order_relaxed); }

  OverloadLevel level() const noexcept;
  bool keep_alive_allowed() const noexcept { return filters::keep_alive_allowed(level()); }

 private:
  bulwark::observe::Registry& registry_;
  bulwark::observe::Registry::CollectorId collector_ = 0;
  std::atomic<OverloadLevel> forced_{OverloadLevel::normal};
  std::unique_ptr<bulwark::observe::ResourceMonitor> monitor_;
  std::atomic<bulwark::observe::ResourceMonitor*> running_{nullptr};
};

class OverloadFilter final : public filter::RequestFilter {
 public:
  OverloadFilter(const OverloadManager& manager, config::RoutePriority priority) noexcept
      : manager_(manager), priority_(priority) {}
  std::string_view name() const noexcept override { return "overload"; }
  filter::LocalReply on_request(const filter::RequestInfo& request,
                                filter::FilterState& state) const override;

 private:
  const OverloadManager& manager_;
  config::RoutePriority priority_;
};

std::unique_ptr<filter::RequestFilter> bind_overload(const config::Route& route,
                                                     const OverloadManager& manager);

}  // namespace bulwark::gateway::filters
