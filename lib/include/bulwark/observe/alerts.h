// Alert rules: conditions over numbers (usually metrics) that must hold for a while before they
// fire, in the style of Prometheus alerting rules.
//
// A rule reads a number from a ValueSource at each evaluate(now): either the value itself
// (ValueMode::value, e.g. a gauge or an error ratio) or its per-second increase over a window
// (ValueMode::rate, for counters). The source is a plain function, so a rule can watch anything:
// a metric, a breaker's stats, a queue depth.
//
// Rate: on each evaluate the engine takes a sample (now, value) of the rule's source and keeps
// the samples of the last `rate_window`. The rate is the counter's increase between the oldest
// and the newest kept sample divided by the time between them, in units per second. A counter
// that goes down was reset: the increase across the reset counts as the new value (as if it
// restarted from zero). Rates need two samples, so a rate rule has no value at its first
// evaluation.
//
// Condition: `value <op> threshold` with op one of >, <, >=, <=. No value (the source returned
// nullopt or NaN, or a rate has too few samples) means the condition is false.
//
// States (of the condition; what snapshot() calls condition_state):
//
//                 cond (for > 0)               held for `for`
//   inactive ------------------------> pending -----------------> firing
//      ^  ^                              |                          |
//      |  +---------- !cond -------------+                          | !cond
//      |                                                            v
//      +------- !cond and keep_resolved elapsed ---------------- resolved
//                                                                   | cond: pending (or firing
//                                                                   |       when for == 0)
//   With for == 0 a true condition goes straight to firing.
//
// Silencing: silence(name, until, now) hides a rule's state: while now < until the reported
// state is `silenced`; the condition keeps being evaluated underneath, and when the silence
// expires (noticed by the first evaluate at or after `until`, or by unsilence) the reported
// state returns to the condition state, whatever it is by then.
//
// Events: listeners get one AlertEvent per change of the reported state (so nothing is announced
// while a rule is silenced; the expiry of a silence announces where the rule is).
//
// Thread-safety: every member is safe to call from any thread. evaluate() calls are serialised;
// sources are called without the engine's state lock, so a source may read snapshot() (but
// must not call evaluate()).
// Listeners are called outside the lock, one event at a time, in order; if another thread is
// delivering, a new event is queued for it. A listener may call any member, evaluate()
// included (events it causes are delivered after it returns). Exceptions from listeners are
// caught and ignored; an exception from a source counts as "no value".
//
// Example:
//   bulwark::observe::AlertEngine alerts;
//   alerts.add_rule({.name = "high_5xx",
//                    .source = [&](TimePoint) { return double(errors_5xx.value()); },
//                    .mode = ValueMode::rate, .rate_window = 60s,
//                    .op = parse_compare_op(">"), .threshold = 5.0,
//                    .for_duration = 60s, .severity = parse_severity("critical")});
//   alerts.add_listener([](const AlertEvent& e) { log_alert(e); });
//   every 15 s: alerts.evaluate(clock.now());
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "bulwark/core/clock.h"
#include "bulwark/core/event_queue.h"

namespace bulwark::observe {

enum class CompareOp : uint8_t { gt, lt, ge, le };
// ">", "<", ">=", "<=" (surrounding spaces allowed). Throws std::invalid_argument otherwise.
CompareOp parse_compare_op(std::string_view s);
// ">", "<", ">=", "<=".
std::string_view to_string(CompareOp op) noexcept;
// `value <op> threshold`; false when either is NaN.
bool compare(CompareOp op, double value, double threshold) noexcept;

enum class Severity : uint8_t { info, warning, critical };
// "info", "warning", "critical" (case-insensitive). Throws std::invalid_argument otherwise.
Severity parse_severity(std::string_view s);
std::string_view to_string(Severity s) noexcept;

enum class AlertState : uint8_t { inactive, pending, firing, resolved, silenced };
// "inactive", "pending", "firing", "resolved", "silenced".
std::string_view to_string(AlertState s) noexcept;

enum class ValueMode : uint8_t { value, rate };
// "value", "rate". Throws std::invalid_argument otherwise.
ValueMode parse_value_mode(std::string_view s);
std::string_view to_string(ValueMode m) noexcept;

// Reads the watched number at `now`; nullopt when there is nothing to read.
using ValueSource = std::function<std::optional<double>(TimePoint)>;

struct AlertRule {
  std::string name;  // unique, non-empty
  ValueSource source;
  ValueMode mode = ValueMode::value;
  // ValueMode::rate: how far back samples are kept for the rate. > 0.
  Duration rate_window = std::chrono::minutes(1);
  CompareOp op = CompareOp::gt;
  double threshold = 0.0;  // finite
  // How long the condition must hold before firing. >= 0.
  Duration for_duration = Duration::zero();
  Severity severity = Severity::warning;
  std::string summary;  // free text for humans (shown in /alerts and events)
};

struct AlertEngineOptions {
  // How long a resolved alert stays `resolved` (if its condition stays false) before it becomes
  // inactive. 0: until the next evaluation. >= 0.
  Duration keep_resolved = std::chrono::minutes(5);
};

struct AlertStatus {
  std::string name;
  std::string summary;
  Severity severity = Severity::warning;
  ValueMode mode = ValueMode::value;
  CompareOp op = CompareOp::gt;
  double threshold = 0.0;
  Duration for_duration{};
  AlertState state = AlertState::inactive;            // reported (silenced while silenced)
  AlertState condition_state = AlertState::inactive;  // never silenced
  std::optional<double> value;                        // last evaluated value (or rate)
  std::optional<TimePoint> last_evaluated;
  std::optional<TimePoint> active_since;    // condition true since (pending and firing)
  std::optional<TimePoint> firing_since;    // firing since
  std::optional<TimePoint> resolved_at;     // last firing -> resolved
  std::optional<TimePoint> silenced_until;  // set while silenced
};

struct AlertEvent {
  std::string rule;
  Severity severity;
  AlertState from;  // reported states
  AlertState to;
  std::optional<double> value;  // value at the evaluation that caused it
  TimePoint at;
  std::string summary;
};

class AlertEngine {
 public:
  explicit AlertEngine(AlertEngineOptions options = {});
  ~AlertEngine();
  AlertEngine(const AlertEngine&) = delete;
  AlertEngine& operator=(const AlertEngine&) = delete;

  // Throws std::invalid_argument (naming the rule and field) for an empty or duplicate name, a
  // missing source, a non-finite threshold, rate_window <= 0 or for_duration < 0.
  void add_rule(AlertRule rule);
  bool remove_rule(std::string_view name);

  // Reads every rule's source at `now`, updates states and notifies listeners. `now` should not
  // go backwards (an earlier `now` is treated as the previous one).
  void evaluate(TimePoint now);

  // Silences `name` until `until` (extends or shortens an existing silence). False if the rule
  // is unknown or until <= now.
  bool silence(std::string_view name, TimePoint until, TimePoint now);
  // Ends a silence now. False if the rule is unknown or not silenced.
  bool unsilence(std::string_view name, TimePoint now);

  std::vector<AlertStatus> snapshot() const;  // sorted by name
  std::optional<AlertStatus> status(std::string_view name) const;
  // Rules whose reported state is firing.
  std::vector<AlertStatus> firing() const;
  std::size_t size() const;

  using Listener = std::function<void(const AlertEvent&)>;
  void add_listener(Listener listener);

 private:
  struct Sample {
    TimePoint at;
    double raw;       // value the source returned
    double adjusted;  // running total with counter resets undone
  };
  struct RuleState {
    AlertRule rule;
    AlertState condition = AlertState::inactive;
    std::optional<TimePoint> silenced_until;
    std::optional<double> value;
    std::optional<TimePoint> last_evaluated;
    std::optional<TimePoint> active_since;
    std::optional<TimePoint> firing_since;
    std::optional<TimePoint> resolved_at;
    std::deque<Sample> samples;  // rate mode only
  };

  static AlertState reported(const RuleState& r) noexcept {
    return r.silenced_until ? AlertState::silenced : r.condition;
  }
  static std::optional<double> update_rate(RuleState& r, std::optional<double> raw, TimePoint now);
  void step_locked(RuleState& r, std::optional<double> value, TimePoint now);
  AlertStatus status_locked(const RuleState& r) const;
  void queue_event_locked(const RuleState& r, AlertState from, TimePoint at);

  const AlertEngineOptions options_;
  std::mutex eval_mu_;  // serialises evaluate()
  mutable std::mutex mu_;
  // Guarded by mu_.
  std::map<std::string, std::shared_ptr<RuleState>, std::less<>> rules_;
  EventQueue<AlertEvent> events_;
};

}  // namespace bulwark::observe
