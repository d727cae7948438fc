#include "proxy/readiness.h"

#include "bulwark/circuit/circuit_breaker.h"
#include "upstream/endpoint_health.h"

namespace bulwark::gateway::proxy {

namespace {

constexpr std::string_view kCheckPrefix = "cluster:";

bulwark::observe::HealthCheckOptions check_options() {
  bulwark::observe::HealthCheckOptions options;
  options.interval = Readiness::kInterval;
  options.timeout = std::chrono::seconds(1);
  options.retries = 1;
  options.critical = true;
  return options;
}

}  // namespace

std::optional<std::string> unready_reason(route::ClusterState& state, TimePoint now) {
  if (state.breaker) {
    state.breaker->poll(now);
    const circuit::State breaker = state.breaker->state();
    if (breaker == circuit::State::open || breaker == circuit::State::forced_open) {
      return "breaker open";
    }
  }
  for (const auto& [address, health] : state.endpoints) {
    if (health->usable(now)) return std::nullopt;
  }
  return "no usable endpoint";
}

Readiness::Readiness(Clock& clock) : clock_(clock), registry_(clock) {}

Readiness::~Readiness() {
  if (runner_) runner_->stop();
}

void Readiness::watch(const route::Snapshot& snapshot) {
  std::map<std::string, std::shared_ptr<route::ClusterState>, std::less<>> wanted;
  for (const route::ClusterRuntime& cluster : snapshot.clusters) {
    if (cluster.config->critical) {
      wanted.emplace(std::string(kCheckPrefix) + cluster.config->name, cluster.state);
    }
  }
  std::lock_guard lock(mu_);
  for (auto it = watched_.begin(); it != watched_.end();) {
    const auto next = wanted.find(it->first);
    if (next != wanted.end() && next->second == it->second) {
      ++it;
      continue;
    }
    registry_.remove(it->first);
    it = watched_.erase(it);
  }
  for (const auto& entry : wanted) {
    const std::string& name = entry.first;
    const std::shared_ptr<route::ClusterState> state = entry.second;
    if (watched_.contains(name)) continue;
    registry_.add(
        name,
        [this, state](Deadline) {
          const auto why = unready_reason(*state, clock_.now());
          return why ? bulwark::observe::CheckResult::fail(*why)
                     : bulwark::observe::CheckResult::pass();
        },
        check_options());
    watched_.emplace(name, state);
  }
  if (runner_) runner_->wake();
}

void Readiness::start() {
  std::lock_guard lock(mu_);
  if (runner_) return;
  runner_ = std::make_unique<bulwark::observe::HealthRunner>(registry_, clock_, kInterval);
  runner_->start();
}

Readiness::Verdict Readiness::verdict() const {
  Verdict out;
  for (const auto& check : registry_.snapshot().checks) {
    if (check.status == bulwark::observe::CheckStatus::failing) out.failing.push_back(check.name);
  }
  out.ready = out.failing.empty();
  return out;
}

}  // namespace bulwark::gateway::proxy
