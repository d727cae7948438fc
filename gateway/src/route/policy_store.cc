#include "route/policy_store.h"

#include <cmath>
#include <sstream>

#include "bulwark/observe/policy_metrics.h"
#include "filters/cluster_limit/cluster_limit.h"

namespace bulwark::gateway::route {

bool same_breaker(const circuit::BreakerOptions& a, const circuit::BreakerOptions& b) noexcept {
  return a.window_type == b.window_type && a.window_size == b.window_size &&
         a.min_calls == b.min_calls && a.failure_rate == b.failure_rate &&
         a.slow_call_duration == b.slow_call_duration && a.slow_call_rate == b.slow_call_rate &&
         a.consecutive_failures == b.consecutive_failures && a.open_duration == b.open_duration &&
         a.open_multiplier == b.open_multiplier && a.max_open_duration == b.max_open_duration &&
         a.half_open_probes == b.half_open_probes && a.success_threshold == b.success_threshold &&
         a.half_open_max_wait == b.half_open_max_wait;
}

uint64_t effective_burst(const config::RateSpec& spec) noexcept {
  if (spec.burst != 0) return spec.burst;
  const double per_second = std::ceil(spec.per_second);
  return per_second < 1 ? 1 : static_cast<uint64_t>(per_second);
}

PolicyStore::PolicyStore(const Clock& clock, bulwark::observe::Registry& registry)
    : clock_(clock), registry_(registry) {
  collector_ = registry_.add_collector([this](bulwark::observe::MetricsSink& s) { collect(s); });
}

PolicyStore::~PolicyStore() { registry_.remove_collector(collector_); }

std::shared_ptr<ClusterState> PolicyStore::cluster(const config::Cluster& c) {
  std::vector<std::string> labels;
  for (const auto& e : c.endpoints) labels.push_back(e.text());
  return cluster(c, labels);
}

std::shared_ptr<ClusterState> PolicyStore::cluster(const config::Cluster& c,
                                                   const std::vector<std::string>& labels) {
  std::lock_guard lock(mu_);
  std::shared_ptr<ClusterState> state;
  if (auto it = clusters_.find(c.name); it != clusters_.end()) state = it->second.lock();
  const bool breaker_kept =
      state && (state->breaker != nullptr) == c.circuit_breaker.has_value() &&
      (!c.circuit_breaker || same_breaker(state->breaker->options(), *c.circuit_breaker));
  if (!breaker_kept) {
    auto fresh = std::make_shared<ClusterState>();
    fresh->name = c.name;
    if (c.circuit_breaker) {
      // The breaker is only ever given `now` by the data path; its clock serves the library's
      // no-argument conveniences, which read now() and nothing else.
      fresh->breaker = std::make_unique<circuit::CircuitBreaker>(c.name, *c.circuit_breaker,
                                                                 const_cast<Clock&>(clock_));
    }
    // Endpoint health and the bulkhead are not the breaker's: they carry over either way.
    if (state) {
      fresh->endpoints = state->endpoints;
      fresh->bulkhead = state->bulkhead;
    }
    state = std::move(fresh);
  }
  // The bulkhead keeps its permits in flight and its queue across a reload that changes only the
  // limit; a new queue shape starts a new one (requests in flight release to the old one).
  const limit::BulkheadOptions wanted = filters::bulkhead_options(c);
  if (state->bulkhead && state->bulkhead->options().max_queue == wanted.max_queue &&
      state->bulkhead->options().max_wait == wanted.max_wait) {
    if (state->bulkhead->limit() != wanted.max_concurrent) {
      state->bulkhead->set_limit(wanted.max_concurrent, clock_.now());
    }
  } else {
    state->bulkhead =
        std::make_shared<limit::Bulkhead>(c.name, wanted, const_cast<Clock&>(clock_));
  }
  std::map<std::string, std::shared_ptr<upstream::EndpointHealth>, std::less<>> endpoints;
  for (const std::string& label : labels) {
    auto it = state->endpoints.find(label);
    endpoints[label] =
        it != state->endpoints.end() ? it->second : std::make_shared<upstream::EndpointHealth>();
  }
  // The data path holds EndpointHealth pointers, never the map; the collector reads the map
  // under mu_.
  state->endpoints = std::move(endpoints);
  clusters_[c.name] = state;
  return state;
}

std::shared_ptr<retry::RetryBudget> PolicyStore::budget(const std::string& cluster,
                                                        const config::RetryBudgetSpec& spec) {
  std::ostringstream key;
  key << cluster << '\n' << spec.ratio << '\n' << spec.min_per_second;
  std::lock_guard lock(mu_);
  auto& slot = budgets_[key.str()];
  if (auto existing = slot.lock()) return existing;
  auto fresh = std::make_shared<retry::RetryBudget>(
      retry::RetryBudgetOptions{.ratio = spec.ratio, .min_per_second = spec.min_per_second});
  slot = fresh;
  return fresh;
}

std::shared_ptr<RateLimiterState> PolicyStore::limiter(const std::string& name,
                                                       const config::RateSpec& spec) {
  std::lock_guard lock(mu_);
  auto& slot = limiters_[name];
  if (auto existing = slot.lock()) {
    if (existing->spec.per_second == spec.per_second && existing->spec.burst == spec.burst) {
      return existing;
    }
  }
  auto fresh = std::make_shared<RateLimiterState>();
  fresh->name = name;
  fresh->spec = spec;
  limit::KeyedLimiterOptions options;
  options.algorithm = limit::RateAlgorithm::gcra;
  options.rate = limit::Rate::per_second(spec.per_second);
  options.burst = effective_burst(spec);
  options.max_bytes = kLimiterMaxBytes;
  fresh->limiter = std::make_unique<limit::KeyedLimiter>(options);
  slot = fresh;
  return fresh;
}

std::shared_ptr<circuit::CircuitBreaker> PolicyStore::redis_breaker(
    const circuit::BreakerOptions& options) {
  std::lock_guard lock(mu_);
  if (auto existing = redis_breaker_.lock(); existing && same_breaker(existing->options(), options)) {
    return existing;
  }
  auto fresh =
      std::make_shared<circuit::CircuitBreaker>("redis", options, const_cast<Clock&>(clock_));
  redis_breaker_ = fresh;
  return fresh;
}

std::shared_ptr<circuit::CircuitBreaker> PolicyStore::current_redis_breaker() {
  std::lock_guard lock(mu_);
  return redis_breaker_.lock();
}

void PolicyStore::collect(bulwark::observe::MetricsSink& sink) {
  std::vector<std::shared_ptr<ClusterState>> clusters;
  std::vector<std::pair<std::string, std::shared_ptr<retry::RetryBudget>>> budgets;
  std::vector<std::shared_ptr<RateLimiterState>> limiters;
  // Held while reporting: cluster() replaces endpoint maps under it.
  std::lock_guard lock(mu_);
  {
    for (auto& [name, weak] : clusters_) {
      if (auto s = weak.lock()) clusters.push_back(std::move(s));
    }
    for (auto& [key, weak] : budgets_) {
      if (auto b = weak.lock()) budgets.emplace_back(key.substr(0, key.find('\n')), std::move(b));
    }
    for (auto& [name, weak] : limiters_) {
      if (auto l = weak.lock()) limiters.push_back(std::move(l));
    }
  }
  if (auto breaker = redis_breaker_.lock()) bulwark::observe::report(*breaker, sink);
  const TimePoint now = clock_.now();
  for (const auto& c : clusters) {
    if (c->breaker) bulwark::observe::report(*c->breaker, sink);
    if (c->bulkhead) bulwark::observe::report(*c->bulkhead, sink);
    for (const auto& [address, health] : c->endpoints) {
      // Labels are views: each call gets its own (an initializer list lives for one statement).
      sink.gauge("bulwark_endpoint_ejected", "1 while outlier detection keeps the endpoint out.",
                 {{"cluster", c->name}, {"endpoint", address}}, health->ejected(now) ? 1 : 0);
      sink.counter("bulwark_endpoint_ejections_total",
                   "Times outlier detection ejected the endpoint.",
                   {{"cluster", c->name}, {"endpoint", address}}, health->ejections());
      for (const bool passed : {true, false}) {
        sink.counter(
            "bulwark_endpoint_health_checks_total",
            "Active health-check probes of the endpoint, by result.",
            {{"cluster", c->name}, {"endpoint", address}, {"result", passed ? "passed" : "failed"}},
            static_cast<double>(passed ? health->probes_passed() : health->probes_failed()));
      }
      for (auto status : {upstream::HealthStatus::unknown, upstream::HealthStatus::up,
                          upstream::HealthStatus::down}) {
        sink.gauge("bulwark_endpoint_health",
                   "1 for the endpoint's active health-check status (unknown, up, down).",
                   {{"cluster", c->name}, {"endpoint", address}, {"status", to_string(status)}},
                   health->status() == status ? 1 : 0);
      }
    }
  }
  for (const auto& [cluster, budget] : budgets) {
    bulwark::observe::report(*budget, cluster, now, sink);
  }
  for (const auto& l : limiters) {
    const auto stats = l->limiter->stats();
    sink.gauge("bulwark_rate_limit_keys", "Keys (clients) with a state in the rate limiter.",
               {{"limit", l->name}}, static_cast<double>(stats.keys));
    sink.counter("bulwark_rate_limit_decisions_total", "Rate limit decisions, by result.",
                 {{"limit", l->name}, {"result", "allowed"}}, static_cast<double>(stats.admitted));
    sink.counter("bulwark_rate_limit_decisions_total", "Rate limit decisions, by result.",
                 {{"limit", l->name}, {"result", "limited"}}, static_cast<double>(stats.rejected));
    sink.counter("bulwark_rate_limit_evictions_total",
                 "Keys evicted from the rate limiter by its memory bound, by kind.",
                 {{"limit", l->name}, {"kind", "idle"}}, static_cast<double>(stats.evictions_idle));
    sink.counter("bulwark_rate_limit_evictions_total",
                 "Keys evicted from the rate limiter by its memory bound, by kind.",
                 {{"limit", l->name}, {"kind", "forced"}},
                 static_cast<double>(stats.evictions_forced));
  }
}

}  // namespace bulwark::gateway::route
