// PolicyStore: the policy objects that outlive config snapshots — each cluster's circuit
// breaker, endpoint health (outlier ejection, health checks) and bulkhead (concurrency limit and
// queue), the retry budgets, the rate limiters. A snapshot asks the store for them when it is built
// and holds them (shared_ptr); the store remembers them weakly, by name and options, so a reload
// that keeps a cluster (with the same breaker options) or a limit (with the same rate) keeps its
// state — an open breaker stays open, a limited client stays limited — and a reload that drops
// or changes one starts it afresh. Nothing here is looked up per request.
//
// Metrics (read at scrape time by collectors; names fixed, docs/resilience.md lists them):
//   bulwark_breaker_*{breaker=<cluster>}          the library's breaker series (policy_metrics.h)
//   bulwark_retry_budget_*{target=<cluster>}      the library's retry budget series
//   bulwark_bulkhead_*{bulkhead=<cluster>}        the library's bulkhead series: the cluster's
//                                                 limit and queue (in flight, queued, granted
//                                                 after a wait, rejected by reason, estimated wait)
//   (endpoint: the endpoint's label, route/runtime.h EndpointRuntime::label)
//   bulwark_endpoint_ejected{cluster,endpoint}    gauge  1 while ejected by outlier detection
//   bulwark_endpoint_ejections_total{cluster,endpoint}  counter
//   bulwark_endpoint_health{cluster,endpoint,status}    gauge  1 for the health-check status
//                                                              (unknown | up | down)
//   bulwark_endpoint_health_checks_total{cluster,endpoint,result}  counter  passed | failed
//   bulwark_rate_limit_keys{limit}                gauge  keys with a state in the limiter
//   bulwark_rate_limit_decisions_total{limit,result}   counter  result: allowed | limited
//   bulwark_rate_limit_evictions_total{limit,kind}     counter  kind: idle | forced
//   bulwark_breaker_*{breaker="redis"}            the breaker around Redis (global limits)
//
// Thread-safety: the getters take a mutex (snapshot build only); the objects they return are
// thread-safe.
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "bulwark/circuit/circuit_breaker.h"
#include "bulwark/core/clock.h"
#include "bulwark/limit/bulkhead.h"
#include "bulwark/limit/keyed_limiter.h"
#include "bulwark/observe/registry.h"
#include "bulwark/retry/retry_budget.h"
#include "config/config.h"
#include "upstream/endpoint_health.h"

namespace bulwark::gateway::route {

struct ClusterState {
  std::string name;
  std::unique_ptr<circuit::CircuitBreaker> breaker;  // null without circuit_breaker
  // max_concurrent_requests and the queue (filters/cluster_limit). Replaced only while a
  // snapshot is built (under the store's lock); the data path holds the filter's own copy.
  std::shared_ptr<limit::Bulkhead> bulkhead;
  // By endpoint label (EndpointRuntime::label: the address as written, or "name:port (ip)").
  std::map<std::string, std::shared_ptr<upstream::EndpointHealth>, std::less<>> endpoints;
};

struct RateLimiterState {
  std::string name;  // the metric label: "<listener>/per_client" or "<route>"
  config::RateSpec spec;
  std::unique_ptr<limit::KeyedLimiter> limiter;
};

class PolicyStore {
 public:
  // The limiters' memory bound, each (keys are 16 bytes; about 3 M clients).
  static constexpr std::size_t kLimiterMaxBytes = std::size_t{64} << 20;

  PolicyStore(const Clock& clock, bulwark::observe::Registry& registry);
  ~PolicyStore();
  PolicyStore(const PolicyStore&) = delete;
  PolicyStore& operator=(const PolicyStore&) = delete;

  // The cluster's state: the one already in use when its breaker options are unchanged
  // (endpoints kept by label, new ones added, the others dropped), otherwise a new one.
  // `endpoints` are the labels of the cluster's endpoints (EndpointRuntime::label); without
  // them, the config's endpoints as written.
  std::shared_ptr<ClusterState> cluster(const config::Cluster& cluster,
                                        const std::vector<std::string>& endpoints);
  std::shared_ptr<ClusterState> cluster(const config::Cluster& cluster);
  // The retry budget of `cluster` for these options (routes with the same options share it).
  std::shared_ptr<retry::RetryBudget> budget(const std::string& cluster,
                                             const config::RetryBudgetSpec& spec);
  std::shared_ptr<RateLimiterState> limiter(const std::string& name, const config::RateSpec& spec);
  // The circuit breaker around Redis (global rate limits), named "redis": the one in use while
  // its options stay the same.
  std::shared_ptr<circuit::CircuitBreaker> redis_breaker(const circuit::BreakerOptions& options);
  // The breaker around Redis in use, if any (admin views).
  std::shared_ptr<circuit::CircuitBreaker> current_redis_breaker();

  // The clock the policies are given (only `now` arguments are used on the data path).
  Clock& clock() const noexcept { return const_cast<Clock&>(clock_); }

 private:
  void collect(bulwark::observe::MetricsSink& sink);

  const Clock& clock_;
  bulwark::observe::Registry& registry_;
  bulwark::observe::Registry::CollectorId collector_ = 0;
  std::mutex mu_;
  std::map<std::string, std::weak_ptr<ClusterState>, std::less<>> clusters_;
  std::map<std::string, std::weak_ptr<retry::RetryBudget>, std::less<>> budgets_;
  std::map<std::string, std::weak_ptr<RateLimiterState>, std::less<>> limiters_;
  std::weak_ptr<circuit::CircuitBreaker> redis_breaker_;
};

// Whether two breaker configurations are the same (a reload keeps the breaker's state).
bool same_breaker(const circuit::BreakerOptions& a, const circuit::BreakerOptions& b) noexcept;

// The limiter's burst: the configured one, or max(1, rate per second).
uint64_t effective_burst(const config::RateSpec& spec) noexcept;

}  // namespace bulwark::gateway::route
