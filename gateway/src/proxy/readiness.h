// Readiness: what /readyz says beyond draining. Each cluster with `critical: true` is one
// critical check, "cluster:<name>", in the library's HealthRegistry (bulwark/observe/health.h),
// run every 500 ms by the library's HealthRunner on a thread of its own. The check fails while
// the cluster cannot take a request: none of its endpoints is usable (each is down by active
// health checks or ejected by outlier detection), or its breaker is open. The breaker is polled
// first, so an open time that has run out counts as half-open, which is ready: a gateway taken
// out of a load balancer's rotation comes back by itself once the cluster may be tried again.
// One failing run makes the check fail and one passing run makes it pass (retries = 1).
//
// While any critical check fails, /readyz answers 503 with
//   {"status": "not_ready", "failing": ["cluster:backend"]}
// so that a load balancer in front stops sending traffic that could only fail here.
//
// A reload hands the new snapshot to watch(): checks of clusters that are no longer critical
// are removed, new ones added; a cluster whose state carried over keeps its check.
//
// Decide apart from acting: unready_reason() is the pure decision over a cluster's state at
// `now`; the registry caches results; the runner is the only part with a thread.
//
// Thread-safety: every member may be called from any thread.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "bulwark/core/clock.h"
#include "bulwark/observe/health.h"
#include "route/runtime.h"

namespace bulwark::gateway::proxy {

// Why the cluster cannot take a request at `now` ("no usable endpoint", "breaker open"), or
// nullopt when it can. Polls the breaker's time-driven transitions.
std::optional<std::string> unready_reason(route::ClusterState& state, TimePoint now);

class Readiness {
 public:
  static constexpr Duration kInterval = std::chrono::milliseconds(500);

  explicit Readiness(Clock& clock);
  ~Readiness();
  Readiness(const Readiness&) = delete;
  Readiness& operator=(const Readiness&) = delete;

  // Registers a check per critical cluster of `snapshot` and removes the others.
  void watch(const route::Snapshot& snapshot);
  // Starts the runner thread (checks then run every kInterval).
  void start();

  struct Verdict {
    bool ready = true;
    std::vector<std::string> failing;  // names of failing critical checks
  };
  Verdict verdict() const;

  // For tests: run the checks that are due without the runner.
  std::size_t run_due(TimePoint now) { return registry_.run_due(now); }

 private:
  Clock& clock_;
  bulwark::observe::HealthRegistry registry_;
  mutable std::mutex mu_;
  // Check name -> the cluster state it reads (to keep a check whose state carried over).
  std::map<std::string, std::shared_ptr<route::ClusterState>, std::less<>> watched_;
  std::unique_ptr<bulwark::observe::HealthRunner> runner_;
};

}  // namespace bulwark::gateway::proxy
