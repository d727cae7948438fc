#include "proxy/alerting.h"

#include <cmath>

#include "bulwark/circuit/circuit_breaker.h"
#include "upstream/endpoint_health.h"

namespace bulwark::gateway::proxy {

namespace {

using bulwark::observe::AlertEngine;
using bulwark::observe::AlertRule;
using bulwark::observe::AlertState;
using config::AlertSignalKind;

constexpr std::size_t k5xx = 4;  // RouteMetrics::requests index of the 5xx class

double seconds(Duration d) { return std::chrono::duration<double>(d).count(); }

bool same_rules(const std::vector<config::AlertSpec>& a, const std::vector<config::AlertSpec>& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (a[i].name != b[i].name || a[i].metric != b[i].metric || a[i].op != b[i].op ||
        a[i].threshold != b[i].threshold || a[i].for_duration != b[i].for_duration ||
        a[i].severity != b[i].severity) {
      return false;
    }
  }
  return true;
}

bool in_scope(const std::string& scope, const std::string& name) {
  return scope.empty() || scope == name;
}

double value_of(const observe::Counter* counter) {
  return counter != nullptr ? counter->value() : 0.0;
}

// Totals over the routes in scope: (5xx answers, all answers, budget refusals).
struct RouteTotals {
  double errors = 0;
  double answers = 0;
  double budget_refusals = 0;
};
RouteTotals route_totals(const route::Snapshot& snap, const std::string& scope) {
  RouteTotals out;
  for (const route::RouteRuntime& r : snap.routes) {
    if (!in_scope(scope, r.config->name) || r.metrics == nullptr) continue;
    for (const observe::Counter* c : r.metrics->requests) out.answers += value_of(c);
    out.errors += value_of(r.metrics->requests[k5xx]);
    out.budget_refusals += value_of(r.metrics->retries_denied[1]);  // budget_exhausted
  }
  return out;
}

bulwark::observe::HistogramSnapshot route_durations(const route::Snapshot& snap,
                                                    const std::string& scope) {
  bulwark::observe::HistogramSnapshot merged;
  for (const route::RouteRuntime& r : snap.routes) {
    if (!in_scope(scope, r.config->name) || r.metrics == nullptr || !r.metrics->duration) continue;
    merged.merge(r.metrics->duration->snapshot());
  }
  return merged;
}

double breakers_open(const route::Snapshot& snap, const std::string& scope, TimePoint now) {
  double open = 0;
  for (const route::ClusterRuntime& c : snap.clusters) {
    if (!in_scope(scope, c.config->name) || !c.state || !c.state->breaker) continue;
    c.state->breaker->poll(now);
    const circuit::State s = c.state->breaker->state();
    open += s == circuit::State::open || s == circuit::State::forced_open;
  }
  return open;
}

double endpoints_unusable(const route::Snapshot& snap, const std::string& scope, TimePoint now) {
  double unusable = 0;
  for (const route::ClusterRuntime& c : snap.clusters) {
    if (!in_scope(scope, c.config->name)) continue;
    for (const route::EndpointRuntime& e : c.endpoints) unusable += !e.health->usable(now);
  }
  return unusable;
}

}  // namespace

SignalWindow::Increase SignalWindow::add(TimePoint now, double first, double second) {
  samples_.push_back({now, first, second});
  while (samples_.size() > 1 && now - samples_[1].at >= window_) samples_.pop_front();
  const Sample& base = samples_.front();
  return {std::max(0.0, first - base.first), std::max(0.0, second - base.second), now - base.at};
}

std::optional<double> QuantileWindow::add(TimePoint now,
                                          bulwark::observe::HistogramSnapshot current,
                                          double quantile) {
  // The base is the oldest snapshot inside the window, or the newest one before it.
  while (samples_.size() > 1 && now - samples_[1].at >= window_) samples_.pop_front();
  const bulwark::observe::HistogramSnapshot window =
      samples_.empty() ? current : current.since(samples_.front().snapshot);
  if (samples_.empty() || now - samples_.back().at >= step_) {
    samples_.push_back({now, std::move(current)});
  }
  if (window.count() == 0) return std::nullopt;
  return window.percentile(quantile);
}

Alerting::Alerting(Clock& clock, const filters::OverloadManager& overload,
                   bulwark::observe::Logger log)
    : clock_(clock), overload_(overload), log_(std::move(log)) {}

Alerting::~Alerting() { stop(); }

bulwark::observe::ValueSource Alerting::source_for(const config::AlertSignal& signal) {
  switch (signal.kind) {
    case AlertSignalKind::requests_5xx_ratio: {
      auto window = std::make_shared<SignalWindow>(kWindow);
      return [this, signal, window](TimePoint now) -> std::optional<double> {
        const RouteTotals t = route_totals(*snapshot_, signal.route);
        const SignalWindow::Increase inc = window->add(now, t.errors, t.answers);
        if (inc.second <= 0) return std::nullopt;
        return inc.first / inc.second;
      };
    }
    case AlertSignalKind::requests_per_second:
    case AlertSignalKind::retry_budget_exhausted: {
      auto window = std::make_shared<SignalWindow>(kWindow);
      const bool answers = signal.kind == AlertSignalKind::requests_per_second;
      return [this, signal, window, answers](TimePoint now) -> std::optional<double> {
        const RouteTotals t = route_totals(*snapshot_, signal.route);
        const SignalWindow::Increase inc =
            window->add(now, answers ? t.answers : t.budget_refusals, 0);
        if (inc.span <= Duration::zero()) return std::nullopt;
        return inc.first / seconds(inc.span);
      };
    }
    case AlertSignalKind::request_duration_p99: {
      auto window = std::make_shared<QuantileWindow>(kWindow, kHistogramStep);
      return [this, signal, window](TimePoint now) {
        return window->add(now, route_durations(*snapshot_, signal.route), 0.99);
      };
    }
    case AlertSignalKind::breakers_open:
      return [this, signal](TimePoint now) -> std::optional<double> {
        return breakers_open(*snapshot_, signal.cluster, now);
      };
    case AlertSignalKind::endpoints_unusable:
      return [this, signal](TimePoint now) -> std::optional<double> {
        return endpoints_unusable(*snapshot_, signal.cluster, now);
      };
    case AlertSignalKind::overload_level:
      return [this](TimePoint) -> std::optional<double> {
        return static_cast<double>(overload_.level());
      };
  }
  return [](TimePoint) -> std::optional<double> { return std::nullopt; };
}

void Alerting::watch(std::shared_ptr<const route::Snapshot> snapshot) {
  std::lock_guard lock(mu_);
  snapshot_ = std::move(snapshot);
  const config::Config& config = *snapshot_->config;
  if (engine_ && same_rules(specs_, config.alerts)) return;
  auto engine = std::make_unique<AlertEngine>();
  for (const config::AlertSpec& spec : config.alerts) {
    AlertRule rule;
    rule.name = spec.name;
    rule.source = source_for(spec.signal);
    rule.op = bulwark::observe::parse_compare_op(spec.op);
    rule.threshold = spec.threshold;
    rule.for_duration = spec.for_duration;
    rule.severity = bulwark::observe::parse_severity(spec.severity);
    rule.summary = spec.metric + " " + spec.op + " " + nlohmann::json(spec.threshold).dump();
    engine->add_rule(std::move(rule));
  }
  engine->add_listener([log = log_](const bulwark::observe::AlertEvent& e) {
    const auto emit = [&](bulwark::observe::LogField value) {
      const std::initializer_list<bulwark::observe::LogField> fields{
          {"alert", e.rule},
          {"from", bulwark::observe::to_string(e.from)},
          {"to", bulwark::observe::to_string(e.to)},
          {"severity", bulwark::observe::to_string(e.severity)},
          value,
          {"condition", e.summary}};
      if (e.to == AlertState::firing) {
        log.warn("alert firing", fields);
      } else {
        log.info("alert state changed", fields);
      }
    };
    if (e.value && std::isfinite(*e.value)) {
      emit({"value", *e.value});
    } else {
      emit({"value", nullptr});
    }
  });
  engine_ = std::move(engine);
  specs_ = config.alerts;
}

void Alerting::evaluate(TimePoint now) {
  std::lock_guard lock(mu_);
  if (engine_) engine_->evaluate(now);
}

std::vector<bulwark::observe::AlertStatus> Alerting::statuses() const {
  std::lock_guard lock(mu_);
  return engine_ ? engine_->snapshot() : std::vector<bulwark::observe::AlertStatus>{};
}

nlohmann::json Alerting::to_json(TimePoint now) const {
  nlohmann::json rules = nlohmann::json::array();
  std::lock_guard lock(mu_);
  const auto statuses =
      engine_ ? engine_->snapshot() : std::vector<bulwark::observe::AlertStatus>{};
  for (const config::AlertSpec& spec : specs_) {
    nlohmann::json rule{{"name", spec.name},
                        {"metric", spec.metric},
                        {"op", spec.op},
                        {"threshold", spec.threshold},
                        {"for_seconds", seconds(spec.for_duration)},
                        {"severity", spec.severity},
                        {"state", "inactive"},
                        {"value", nullptr}};
    for (const auto& status : statuses) {
      if (status.name != spec.name) continue;
      rule["state"] = bulwark::observe::to_string(status.state);
      if (status.value && std::isfinite(*status.value)) rule["value"] = *status.value;
      if (status.active_since) rule["active_seconds"] = seconds(now - *status.active_since);
      if (status.firing_since) rule["firing_seconds"] = seconds(now - *status.firing_since);
    }
    rules.push_back(std::move(rule));
  }
  return {{"evaluated", true}, {"interval_seconds", seconds(kInterval)}, {"rules", rules}};
}

void Alerting::start() {
  std::lock_guard lock(thread_mu_);
  if (thread_.joinable()) return;
  stopping_ = false;
  thread_ = std::thread([this] { loop(); });
}

void Alerting::stop() {
  {
    std::lock_guard lock(thread_mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Alerting::loop() {
  std::unique_lock lock(thread_mu_);
  while (!stopping_) {
    lock.unlock();
    evaluate(clock_.now());
    lock.lock();
    wake_.wait_for(lock, kInterval, [this] { return stopping_; });
  }
}

}  // namespace bulwark::gateway::proxy
