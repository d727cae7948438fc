#include "bulwark/observe/alerts.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <stdexcept>
#include <utility>

namespace bulwark::observe {

namespace {

// Upper bound on the samples a rate rule keeps. When evaluate() runs more often than
// rate_window / kMaxRateSamples, the newest sample is replaced instead of appended; samples carry
// a running reset-adjusted total, so dropping one in the middle loses nothing.
constexpr std::size_t kMaxRateSamples = 512;

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) !=
        std::tolower(static_cast<unsigned char>(b[i]))) {
      return false;
    }
  }
  return true;
}

std::optional<double> finite_or_none(std::optional<double> v) {
  if (v && !std::isfinite(*v)) return std::nullopt;
  return v;
}

}  // namespace

CompareOp parse_compare_op(std::string_view s) {
  const std::string_view t = trim(s);
  if (t == ">") return CompareOp::gt;
  if (t == "<") return CompareOp::lt;
  if (t == ">=") return CompareOp::ge;
  if (t == "<=") return CompareOp::le;
  throw std::invalid_argument("invalid comparison operator '" + std::string(s) +
                              "' (expected >, <, >= or <=)");
}

std::string_view to_string(CompareOp op) noexcept {
  switch (op) {
    case CompareOp::gt:
      return ">";
    case CompareOp::lt:
      return "<";
    case CompareOp::ge:
      return ">=";
    case CompareOp::le:
      return "<=";
  }
  return "?";
}

bool compare(CompareOp op, double value, double threshold) noexcept {
  // Every comparison with NaN is false, which is what "no value" must mean.
  switch (op) {
    case CompareOp::gt:
      return value > threshold;
    case CompareOp::lt:
      return value < threshold;
    case CompareOp::ge:
      return value >= threshold;
    case CompareOp::le:
      return value <= threshold;
  }
  return false;
}

Severity parse_severity(std::string_view s) {
  const std::string_view t = trim(s);
  if (iequals(t, "info")) return Severity::info;
  if (iequals(t, "warning")) return Severity::warning;
  if (iequals(t, "critical")) return Severity::critical;
  throw std::invalid_argument("invalid severity '" + std::string(s) +
                              "' (expected info, warning or critical)");
}

std::string_view to_string(Severity s) noexcept {
  switch (s) {
    case Severity::info:
      return "info";
    case Severity::warning:
      return "warning";
    case Severity::critical:
      return "critical";
  }
  return "?";
}

std::string_view to_string(AlertState s) noexcept {
  switch (s) {
    case AlertState::inactive:
      return "inactive";
    case AlertState::pending:
      return "pending";
    case AlertState::firing:
      return "firing";
    case AlertState::resolved:
      return "resolved";
    case AlertState::silenced:
      return "silenced";
  }
  return "?";
}

ValueMode parse_value_mode(std::string_view s) {
  const std::string_view t = trim(s);
  if (iequals(t, "value")) return ValueMode::value;
  if (iequals(t, "rate")) return ValueMode::rate;
  throw std::invalid_argument("invalid value mode '" + std::string(s) +
                              "' (expected value or rate)");
}

std::string_view to_string(ValueMode m) noexcept { return m == ValueMode::rate ? "rate" : "value"; }

AlertEngine::AlertEngine(AlertEngineOptions options) : options_(options) {
  if (options_.keep_resolved < Duration::zero()) {
    throw std::invalid_argument("AlertEngineOptions.keep_resolved: must be >= 0");
  }
}

AlertEngine::~AlertEngine() = default;

void AlertEngine::add_rule(AlertRule rule) {
  auto bad = [&](std::string_view field, std::string_view why) {
    throw std::invalid_argument("alert rule '" + rule.name + "': " + std::string(field) + ": " +
                                std::string(why));
  };
  if (rule.name.empty()) throw std::invalid_argument("alert rule: name: must not be empty");
  if (!rule.source) bad("source", "must be set");
  if (!std::isfinite(rule.threshold)) bad("threshold", "must be finite");
  if (rule.rate_window <= Duration::zero()) bad("rate_window", "must be > 0");
  if (rule.for_duration < Duration::zero()) bad("for", "must be >= 0");
  auto state = std::make_shared<RuleState>();
  std::string name = rule.name;
  state->rule = std::move(rule);
  std::lock_guard lock(mu_);
  if (rules_.contains(name)) {
    throw std::invalid_argument("alert rule '" + name + "': duplicate name");
  }
  rules_.emplace(std::move(name), std::move(state));
}

bool AlertEngine::remove_rule(std::string_view name) {
  std::lock_guard lock(mu_);
  auto it = rules_.find(name);
  if (it == rules_.end()) return false;
  rules_.erase(it);
  return true;
}

std::optional<double> AlertEngine::update_rate(RuleState& r, std::optional<double> raw,
                                               TimePoint now) {
  const Duration window = r.rule.rate_window;
  if (raw) {
    Sample s{now, *raw, *raw};
    if (!r.samples.empty()) {
      const Sample& last = r.samples.back();
      // A counter that went down was reset: it counted *raw since the reset.
      s.adjusted = last.adjusted + (*raw >= last.raw ? *raw - last.raw : *raw);
    }
    const Duration min_spacing = window / static_cast<int64_t>(kMaxRateSamples);
    if (r.samples.size() >= 2 && now - r.samples[r.samples.size() - 2].at < min_spacing) {
      r.samples.back() = s;
    } else {
      r.samples.push_back(s);
    }
  }
  while (!r.samples.empty() && now - r.samples.front().at > window) r.samples.pop_front();
  // No reading now means no value now, even if old samples could give a rate: the condition
  // must not be judged on data that stopped arriving.
  if (!raw || r.samples.size() < 2) return std::nullopt;
  const Sample& first = r.samples.front();
  const Sample& last = r.samples.back();
  if (last.at <= first.at) return std::nullopt;
  const double seconds = std::chrono::duration<double>(last.at - first.at).count();
  return (last.adjusted - first.adjusted) / seconds;
}

void AlertEngine::queue_event_locked(const RuleState& r, AlertState from, TimePoint at) {
  const AlertState to = reported(r);
  if (from == to) return;
  events_.push(AlertEvent{r.rule.name, r.rule.severity, from, to, r.value, at, r.rule.summary});
}

void AlertEngine::step_locked(RuleState& r, std::optional<double> raw, TimePoint now) {
  const AlertState before = reported(r);
  if (r.silenced_until && now >= *r.silenced_until) r.silenced_until.reset();

  raw = finite_or_none(raw);
  const std::optional<double> value =
      r.rule.mode == ValueMode::rate ? update_rate(r, raw, now) : raw;
  r.value = value;
  r.last_evaluated = now;
  const bool cond = value && compare(r.rule.op, *value, r.rule.threshold);

  auto activate = [&] {
    r.active_since = now;
    r.resolved_at.reset();
    if (r.rule.for_duration <= Duration::zero()) {
      r.condition = AlertState::firing;
      r.firing_since = now;
    } else {
      r.condition = AlertState::pending;
    }
  };

  switch (r.condition) {
    case AlertState::inactive:
      if (cond) activate();
      break;
    case AlertState::pending:
      if (!cond) {
        r.condition = AlertState::inactive;
        r.active_since.reset();
      } else if (now - *r.active_since >= r.rule.for_duration) {
        r.condition = AlertState::firing;
        r.firing_since = now;
      }
      break;
    case AlertState::firing:
      if (!cond) {
        r.condition = AlertState::resolved;
        r.resolved_at = now;
        r.active_since.reset();
        r.firing_since.reset();
      }
      break;
    case AlertState::resolved:
      if (cond) {
        activate();
      } else if (now - *r.resolved_at >= options_.keep_resolved) {
        r.condition = AlertState::inactive;
      }
      break;
    case AlertState::silenced:
      break;  // never a condition state
  }
  queue_event_locked(r, before, now);
}

void AlertEngine::evaluate(TimePoint now) {
  {
    std::lock_guard eval_lock(eval_mu_);
    std::vector<std::shared_ptr<RuleState>> rules;
    {
      std::lock_guard lock(mu_);
      rules.reserve(rules_.size());
      for (const auto& [name, r] : rules_) {
        rules.push_back(r);
        // Time never goes backwards for a rule: rates and `for` would break.
        if (r->last_evaluated && now < *r->last_evaluated) now = *r->last_evaluated;
      }
    }
    // Sources run without mu_: they may be slow or read this engine. `rule` is immutable after
    // add_rule, so reading it unlocked is safe; the shared_ptr keeps a removed rule alive.
    std::vector<std::optional<double>> values(rules.size());
    for (std::size_t i = 0; i < rules.size(); ++i) {
      try {
        values[i] = rules[i]->rule.source(now);
      } catch (...) {
        values[i] = std::nullopt;
      }
    }
    std::lock_guard lock(mu_);
    for (std::size_t i = 0; i < rules.size(); ++i) {
      auto it = rules_.find(rules[i]->rule.name);
      if (it == rules_.end() || it->second != rules[i]) continue;  // removed meanwhile
      step_locked(*rules[i], values[i], now);
    }
  }
  events_.deliver();
}

bool AlertEngine::silence(std::string_view name, TimePoint until, TimePoint now) {
  if (until <= now) return false;
  {
    std::lock_guard lock(mu_);
    auto it = rules_.find(name);
    if (it == rules_.end()) return false;
    RuleState& r = *it->second;
    const AlertState before = reported(r);
    r.silenced_until = until;
    queue_event_locked(r, before, now);
  }
  events_.deliver();
  return true;
}

bool AlertEngine::unsilence(std::string_view name, TimePoint now) {
  {
    std::lock_guard lock(mu_);
    auto it = rules_.find(name);
    if (it == rules_.end() || !it->second->silenced_until) return false;
    RuleState& r = *it->second;
    const AlertState before = reported(r);
    r.silenced_until.reset();
    queue_event_locked(r, before, now);
  }
  events_.deliver();
  return true;
}

AlertStatus AlertEngine::status_locked(const RuleState& r) const {
  AlertStatus s;
  s.name = r.rule.name;
  s.summary = r.rule.summary;
  s.severity = r.rule.severity;
  s.mode = r.rule.mode;
  s.op = r.rule.op;
  s.threshold = r.rule.threshold;
  s.for_duration = r.rule.for_duration;
  s.state = reported(r);
  s.condition_state = r.condition;
  s.value = r.value;
  s.last_evaluated = r.last_evaluated;
  s.active_since = r.active_since;
  s.firing_since = r.firing_since;
  s.resolved_at = r.resolved_at;
  s.silenced_until = r.silenced_until;
  return s;
}

std::vector<AlertStatus> AlertEngine::snapshot() const {
  std::lock_guard lock(mu_);
  std::vector<AlertStatus> out;
  out.reserve(rules_.size());
  for (const auto& [name, r] : rules_) out.push_back(status_locked(*r));
  return out;
}

std::optional<AlertStatus> AlertEngine::status(std::string_view name) const {
  std::lock_guard lock(mu_);
  auto it = rules_.find(name);
  if (it == rules_.end()) return std::nullopt;
  return status_locked(*it->second);
}

std::vector<AlertStatus> AlertEngine::firing() const {
  std::lock_guard lock(mu_);
  std::vector<AlertStatus> out;
  for (const auto& [name, r] : rules_) {
    if (reported(*r) == AlertState::firing) out.push_back(status_locked(*r));
  }
  return out;
}

std::size_t AlertEngine::size() const {
  std::lock_guard lock(mu_);
  return rules_.size();
}

void AlertEngine::add_listener(Listener listener) { events_.add_listener(std::move(listener)); }

}  // namespace bulwark::observe
