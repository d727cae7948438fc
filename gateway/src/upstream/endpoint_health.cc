#include "upstream/endpoint_health.h"

namespace bulwark::gateway::upstream {

std::string_view to_string(HealthStatus s) noexcept {
  switch (s) {
    case HealthStatus::up:
      return "up";
    case HealthStatus::down:
      return "down";
    case HealthStatus::unknown:
      break;
  }
  return "unknown";
}

std::optional<HealthStatus> HealthProbeState::record(bool ok, uint32_t healthy_threshold,
                                                     uint32_t unhealthy_threshold) noexcept {
  if (ok) {
    failures_ = 0;
    ++successes_;
    if (status_ != HealthStatus::up && successes_ >= healthy_threshold) {
      status_ = HealthStatus::up;
      return status_;
    }
  } else {
    successes_ = 0;
    ++failures_;
    if (status_ != HealthStatus::down && failures_ >= unhealthy_threshold) {
      status_ = HealthStatus::down;
      return status_;
    }
  }
  return std::nullopt;
}

bool EndpointHealth::record(bool failure, TimePoint now, const config::OutlierDetection& spec,
                            std::size_t ejected_in_cluster, std::size_t cluster_size) noexcept {
  if (!failure) {
    if (consecutive_.load(std::memory_order_relaxed) != 0) {
      consecutive_.store(0, std::memory_order_relaxed);
    }
    return false;
  }
  const uint32_t run = consecutive_.fetch_add(1, std::memory_order_relaxed) + 1;
  if (run < spec.consecutive_5xx || ejected(now)) return false;
  if (!may_eject(ejected_in_cluster, cluster_size, spec.max_ejection_percent)) return false;
  // One of the workers that see the run reach the threshold ejects; the others find the run
  // already reset.
  uint32_t expected = run;
  if (!consecutive_.compare_exchange_strong(expected, 0, std::memory_order_relaxed)) return false;
  const uint32_t count = ejections_.fetch_add(1, std::memory_order_relaxed) + 1;
  const TimePoint until = now + ejection_duration(spec.base_ejection, count);
  ejected_until_.store(until.time_since_epoch().count(), std::memory_order_relaxed);
  return true;
}

}  // namespace bulwark::gateway::upstream
