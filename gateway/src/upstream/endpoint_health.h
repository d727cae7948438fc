// EndpointHealth: whether one endpoint of a cluster may be picked — the state behind outlier
// ejection (passive: the answers of real requests) and active health checks (probes), shared by
// every worker and carried across reloads for an endpoint that stays in its cluster.
//
// Outlier ejection (clusters[].outlier_detection, Envoy's consecutive-5xx detector):
//   - every finished attempt is a result: a 5xx answer, a connect failure, a reset, a timeout
//     or an answer that is not HTTP is a failure; any other answer is a success and resets the
//     run of failures;
//   - `consecutive_5xx` failures in a row eject the endpoint for base_ejection × (number of
//     times it has been ejected, this one included), capped at kMaxEjection (5 min) or
//     base_ejection when that is larger; it comes back by itself when the time is up;
//   - at most max_ejection_percent of the cluster's endpoints are ejected at once, rounded down,
//     but at least one when the cluster has two or more (so a two-endpoint cluster can route
//     around one bad endpoint); a single-endpoint cluster is never ejected (its breaker is the
//     tool for that). See may_eject().
// Active health checks (clusters[].health_check): probes report ok / not ok; the status starts
//   `unknown` (usable), goes `down` after unhealthy_threshold failures in a row and `up` after
//   healthy_threshold successes in a row (HealthProbeState, a pure state machine).
// An endpoint is usable when it is not down and not ejected at `now`.
//
// Time: every member takes `now`; nothing reads a clock.
// Thread-safety: results may be recorded from any worker (atomics, no lock); probe results come
// from the one health checker of the process.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

#include "bulwark/core/clock.h"
#include "config/config.h"

namespace bulwark::gateway::upstream {

inline constexpr Duration kMaxEjection = std::chrono::minutes(5);

// How many endpoints of a cluster of `total` may be ejected at once.
constexpr std::size_t max_ejected(std::size_t total, double max_fraction) noexcept {
  if (total < 2) return 0;
  const auto allowed = static_cast<std::size_t>(static_cast<double>(total) * max_fraction);
  return allowed == 0 ? 1 : (allowed >= total ? total - 1 : allowed);
}
constexpr bool may_eject(std::size_t ejected_now, std::size_t total, double max_fraction) noexcept {
  return ejected_now < max_ejected(total, max_fraction);
}
// How long the `ejections`-th ejection (1-based) lasts.
constexpr Duration ejection_duration(Duration base, uint32_t ejections) noexcept {
  const Duration cap = base > kMaxEjection ? base : kMaxEjection;
  if (ejections == 0) ejections = 1;
  if (base.count() > 0 && ejections > cap / base) return cap;
  const Duration d = base * ejections;
  return d > cap ? cap : d;
}

enum class HealthStatus : uint8_t { unknown, up, down };
std::string_view to_string(HealthStatus s) noexcept;

// Consecutive probe results → status. Pure; one per endpoint, driven by the health checker.
class HealthProbeState {
 public:
  // Returns the new status when this result changed it.
  std::optional<HealthStatus> record(bool ok, uint32_t healthy_threshold,
                                     uint32_t unhealthy_threshold) noexcept;
  HealthStatus status() const noexcept { return status_; }

 private:
  HealthStatus status_ = HealthStatus::unknown;
  uint32_t successes_ = 0;
  uint32_t failures_ = 0;
};

class EndpointHealth {
 public:
  bool usable(TimePoint now) const noexcept {
    return status() != HealthStatus::down && !ejected(now);
  }
  bool ejected(TimePoint now) const noexcept {
    return now.time_since_epoch().count() < ejected_until_.load(std::memory_order_relaxed);
  }
  HealthStatus status() const noexcept { return status_.load(std::memory_order_relaxed); }
  void set_status(HealthStatus s) noexcept { status_.store(s, std::memory_order_relaxed); }

  // Records one attempt's result. `ejected_in_cluster` and `cluster_size` bound the ejection
  // (may_eject). Returns true when this result ejected the endpoint.
  bool record(bool failure, TimePoint now, const config::OutlierDetection& spec,
              std::size_t ejected_in_cluster, std::size_t cluster_size) noexcept;

  uint32_t ejections() const noexcept { return ejections_.load(std::memory_order_relaxed); }
  uint32_t consecutive_failures() const noexcept {
    return consecutive_.load(std::memory_order_relaxed);
  }
  TimePoint ejected_until() const noexcept {
    return TimePoint(Duration(ejected_until_.load(std::memory_order_relaxed)));
  }

  HealthProbeState probes;  // the health checker's, on its thread only
  void count_probe(bool passed) noexcept {
    (passed ? probes_passed_ : probes_failed_).fetch_add(1, std::memory_order_relaxed);
  }
  uint64_t probes_passed() const noexcept { return probes_passed_.load(std::memory_order_relaxed); }
  uint64_t probes_failed() const noexcept { return probes_failed_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint32_t> consecutive_{0};
  std::atomic<uint32_t> ejections_{0};
  std::atomic<int64_t> ejected_until_{INT64_MIN};  // steady-clock nanoseconds
  std::atomic<HealthStatus> status_{HealthStatus::unknown};
  std::atomic<uint64_t> probes_passed_{0};
  std::atomic<uint64_t> probes_failed_{0};
};

// Whether an attempt's result counts as an outlier failure: a 5xx answer or a gateway failure.
constexpr bool is_outlier_failure(bool answered, int status) noexcept {
  return !answered || status >= 500;
}

}  // namespace bulwark::gateway::upstream
