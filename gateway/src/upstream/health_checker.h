// HealthChecker: active HTTP health checks, off the data path. One thread of its own runs a
// probe loop per endpoint of every cluster with `health_check`; a probe is
//
//   connect, then  GET <path> HTTP/1.1 / Host: <endpoint> / Connection: close
//   / User-Agent: bulwark-health-check, and the status line of the answer
//
// all within `timeout`; it passes when the status is one of `expected_statuses` (default any
// 2xx; probe_passed). Results move the endpoint's HealthProbeState (upstream/endpoint_health.h):
// `unhealthy_threshold` failures in a row mark it down — the exchange then stops picking it —
// and `healthy_threshold` passes in a row mark it up again. Probes start at once, then every
// `interval`. Status changes are logged (warn when down, info when up).
//
// A reload hands the checker the new snapshot (watch): the loops of the old one stop at their
// next step and new ones start; an endpoint that stays in its cluster keeps its EndpointHealth,
// so its status and its run of results carry over.
//
// Metrics (route/policy_store.h reports them):
//   bulwark_endpoint_health{cluster,endpoint,status}          gauge  unknown | up | down
//   bulwark_endpoint_health_checks_total{cluster,endpoint,result}  counter  passed | failed
//
// Thread-safety: watch() and the destructor may be called from any thread.
#pragma once

#include <memory>
#include <string_view>

#include "bulwark/observe/log.h"
#include "config/config.h"
#include "route/runtime.h"

namespace bulwark::gateway::upstream {

// Whether the first line of an answer ("HTTP/1.1 200 OK") is a passing status. Pure.
bool probe_passed(std::string_view status_line, const config::HealthCheckSpec& spec) noexcept;

class HealthChecker {
 public:
  explicit HealthChecker(bulwark::observe::Logger log);
  ~HealthChecker();
  HealthChecker(const HealthChecker&) = delete;
  HealthChecker& operator=(const HealthChecker&) = delete;

  // Probes the endpoints of `snapshot`'s clusters that have health_check (and stops probing
  // for the snapshot before).
  void watch(std::shared_ptr<const route::Snapshot> snapshot);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace bulwark::gateway::upstream
