#include "bulwark/observe/alerts.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "bulwark/testing/manual_clock.h"

namespace bulwark::observe {
namespace {

using namespace std::chrono_literals;
using bulwark::testing::ManualClock;

AlertRule value_rule(std::string name, double* value, CompareOp op, double threshold,
                     Duration for_duration) {
  AlertRule r;
  r.name = std::move(name);
  r.source = [value](TimePoint) -> std::optional<double> { return *value; };
  r.op = op;
  r.threshold = threshold;
  r.for_duration = for_duration;
  r.severity = Severity::critical;
  r.summary = "value too high";
  return r;
}

// Records events as "rule:from->to".
struct EventLog {
  std::vector<std::string> events;
  void attach(AlertEngine& engine) {
    engine.add_listener([this](const AlertEvent& e) {
      events.push_back(e.rule + ":" + std::string(to_string(e.from)) + "->" +
                       std::string(to_string(e.to)));
    });
  }
  std::vector<std::string> take() { return std::exchange(events, {}); }
};

AlertState state_of(const AlertEngine& engine, std::string_view name) {
  auto s = engine.status(name);
  EXPECT_TRUE(s.has_value());
  return s ? s->state : AlertState::inactive;
}

TEST(AlertParseTest, CompareOperators) {
  EXPECT_EQ(parse_compare_op(">"), CompareOp::gt);
  EXPECT_EQ(parse_compare_op("<"), CompareOp::lt);
  EXPECT_EQ(parse_compare_op(">="), CompareOp::ge);
  EXPECT_EQ(parse_compare_op("<="), CompareOp::le);
  EXPECT_EQ(parse_compare_op(" >= "), CompareOp::ge);
  for (const char* bad : {"", "=", "==", "=>", "=<", "> =", "gt", ">>", "!="}) {
    EXPECT_THROW(parse_compare_op(bad), std::invalid_argument) << bad;
  }
  for (CompareOp op : {CompareOp::gt, CompareOp::lt, CompareOp::ge, CompareOp::le}) {
    EXPECT_EQ(parse_compare_op(to_string(op)), op);
  }
}

TEST(AlertParseTest, CompareSemanticsAtAndAroundTheThreshold) {
  EXPECT_TRUE(compare(CompareOp::gt, 1.5, 1.0));
  EXPECT_FALSE(compare(CompareOp::gt, 1.0, 1.0));
  EXPECT_TRUE(compare(CompareOp::ge, 1.0, 1.0));
  EXPECT_FALSE(compare(CompareOp::ge, 0.5, 1.0));
  EXPECT_TRUE(compare(CompareOp::lt, 0.5, 1.0));
  EXPECT_FALSE(compare(CompareOp::lt, 1.0, 1.0));
  EXPECT_TRUE(compare(CompareOp::le, 1.0, 1.0));
  EXPECT_FALSE(compare(CompareOp::le, 1.5, 1.0));
  const double nan = std::numeric_limits<double>::quiet_NaN();
  for (CompareOp op : {CompareOp::gt, CompareOp::lt, CompareOp::ge, CompareOp::le}) {
    EXPECT_FALSE(compare(op, nan, 1.0));
  }
}

TEST(AlertParseTest, SeveritiesAndModes) {
  EXPECT_EQ(parse_severity("info"), Severity::info);
  EXPECT_EQ(parse_severity("warning"), Severity::warning);
  EXPECT_EQ(parse_severity("CRITICAL"), Severity::critical);
  for (const char* bad : {"", "warn", "error", "page", "critical!"}) {
    EXPECT_THROW(parse_severity(bad), std::invalid_argument) << bad;
  }
  for (Severity s : {Severity::info, Severity::warning, Severity::critical}) {
    EXPECT_EQ(parse_severity(to_string(s)), s);
  }
  EXPECT_EQ(parse_value_mode("rate"), ValueMode::rate);
  EXPECT_EQ(parse_value_mode("value"), ValueMode::value);
  EXPECT_THROW(parse_value_mode("delta"), std::invalid_argument);
  EXPECT_EQ(to_string(AlertState::silenced), "silenced");
  EXPECT_EQ(to_string(AlertState::resolved), "resolved");
}

TEST(AlertEngineTest, InvalidRulesAreRejected) {
  AlertEngine engine;
  double v = 0;
  AlertRule ok = value_rule("r", &v, CompareOp::gt, 1, 0s);
  AlertRule r = ok;
  r.name = "";
  EXPECT_THROW(engine.add_rule(r), std::invalid_argument);
  r = ok;
  r.source = nullptr;
  EXPECT_THROW(engine.add_rule(r), std::invalid_argument);
  r = ok;
  r.threshold = std::numeric_limits<double>::infinity();
  EXPECT_THROW(engine.add_rule(r), std::invalid_argument);
  r = ok;
  r.rate_window = 0s;
  EXPECT_THROW(engine.add_rule(r), std::invalid_argument);
  r = ok;
  r.for_duration = -1s;
  try {
    engine.add_rule(r);
    FAIL() << "expected std::invalid_argument";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("'r'"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("for"), std::string::npos) << e.what();
  }
  engine.add_rule(ok);
  EXPECT_THROW(engine.add_rule(ok), std::invalid_argument);
  EXPECT_EQ(engine.size(), 1u);
  EXPECT_THROW(AlertEngine(AlertEngineOptions{.keep_resolved = -1s}), std::invalid_argument);
}

TEST(AlertEngineTest, PendingThenFiringAfterForThenResolvedThenInactive) {
  ManualClock clock;
  AlertEngine engine({.keep_resolved = 30s});
  EventLog log;
  log.attach(engine);
  double v = 0;
  engine.add_rule(value_rule("high", &v, CompareOp::gt, 10, 60s));

  engine.evaluate(clock.now());
  EXPECT_EQ(state_of(engine, "high"), AlertState::inactive);

  v = 11;
  const TimePoint active = clock.now();
  engine.evaluate(clock.now());
  EXPECT_EQ(state_of(engine, "high"), AlertState::pending);
  EXPECT_EQ(engine.status("high")->active_since, active);

  clock.advance(59s);
  engine.evaluate(clock.now());
  EXPECT_EQ(state_of(engine, "high"), AlertState::pending);
  clock.advance(1s);
  engine.evaluate(clock.now());
  EXPECT_EQ(state_of(engine, "high"), AlertState::firing);
  auto st = engine.status("high");
  EXPECT_EQ(st->firing_since, clock.now());
  EXPECT_EQ(st->value, 11.0);
  ASSERT_EQ(engine.firing().size(), 1u);

  v = 10;  // not > 10
  clock.advance(15s);
  engine.evaluate(clock.now());
  EXPECT_EQ(state_of(engine, "high"), AlertState::resolved);
  EXPECT_EQ(engine.status("high")->resolved_at, clock.now());
  EXPECT_TRUE(engine.firing().empty());

  clock.advance(29s);
  engine.evaluate(clock.now());
  EXPECT_EQ(state_of(engine, "high"), AlertState::resolved);
  clock.advance(1s);
  engine.evaluate(clock.now());
  EXPECT_EQ(state_of(engine, "high"), AlertState::inactive);

  EXPECT_EQ(log.take(),
            (std::vector<std::string>{"high:inactive->pending", "high:pending->firing",
                                      "high:firing->resolved", "high:resolved->inactive"}));
}

TEST(AlertEngineTest, PendingFallsBackWhenTheConditionBreaksBeforeFor) {
  ManualClock clock;
  AlertEngine engine;
  EventLog log;
  log.attach(engine);
  double v = 100;
  engine.add_rule(value_rule("r", &v, CompareOp::ge, 50, 30s));
  engine.evaluate(clock.now());
  clock.advance(20s);
  v = 49;
  engine.evaluate(clock.now());
  EXPECT_EQ(state_of(engine, "r"), AlertState::inactive);
  // The `for` clock restarts: 20 + 20 s of a true condition in two spells do not fire.
  v = 50;
  engine.evaluate(clock.now());
  clock.advance(20s);
  engine.evaluate(clock.now());
  EXPECT_EQ(state_of(engine, "r"), AlertState::pending);
  clock.advance(10s);
  engine.evaluate(clock.now());
  EXPECT_EQ(state_of(engine, "r"), AlertState::firing);
  EXPECT_EQ(log.take(), (std::vector<std::string>{"r:inactive->pending", "r:pending->inactive",
                                                  "r:inactive->pending", "r:pending->firing"}));
}

TEST(AlertEngineTest, ZeroForFiresAtOnce) {
  ManualClock clock;
  AlertEngine engine({.keep_resolved = 0s});
  EventLog log;
  log.attach(engine);
  double v = 0.5;
  engine.add_rule(value_rule("low", &v, CompareOp::lt, 1.0, 0s));
  engine.evaluate(clock.now());
  EXPECT_EQ(state_of(engine, "low"), AlertState::firing);
  v = 2;
  clock.advance(1s);
  engine.evaluate(clock.now());
  EXPECT_EQ(state_of(engine, "low"), AlertState::resolved);
  clock.advance(1s);
  engine.evaluate(clock.now());  // keep_resolved = 0: gone at the next evaluation
  EXPECT_EQ(state_of(engine, "low"), AlertState::inactive);
  EXPECT_EQ(log.take(), (std::vector<std::string>{"low:inactive->firing", "low:firing->resolved",
                                                  "low:resolved->inactive"}));
}

TEST(AlertEngineTest, ResolvedGoesPendingAgainWhenTheConditionReturns) {
  ManualClock clock;
  AlertEngine engine({.keep_resolved = 5min});
  EventLog log;
  log.attach(engine);
  double v = 5;
  engine.add_rule(value_rule("r", &v, CompareOp::gt, 1, 10s));
  engine.evaluate(clock.now());
  clock.advance(10s);
  engine.evaluate(clock.now());
  v = 0;
  clock.advance(1s);
  engine.evaluate(clock.now());
  EXPECT_EQ(state_of(engine, "r"), AlertState::resolved);
  v = 5;
  clock.advance(1s);
  engine.evaluate(clock.now());
  EXPECT_EQ(state_of(engine, "r"), AlertState::pending);
  EXPECT_FALSE(engine.status("r")->resolved_at.has_value());
  EXPECT_EQ(log.take(), (std::vector<std::string>{"r:inactive->pending", "r:pending->firing",
                                                  "r:firing->resolved", "r:resolved->pending"}));
}

TEST(AlertEngineTest, NoValueMeansTheConditionIsFalse) {
  ManualClock clock;
  AlertEngine engine;
  std::optional<double> v = 100;
  bool throw_now = false;
  AlertRule r;
  r.name = "r";
  r.source = [&](TimePoint) -> std::optional<double> {
    if (throw_now) throw std::runtime_error("source broke");
    return v;
  };
  r.op = CompareOp::gt;
  r.threshold = 1;
  engine.add_rule(r);
  engine.evaluate(clock.now());
  EXPECT_EQ(state_of(engine, "r"), AlertState::firing);

  for (int kind = 0; kind < 3; ++kind) {
    v = 100;
    throw_now = false;
    engine.evaluate(clock.now());
    ASSERT_EQ(engine.status("r")->condition_state, AlertState::firing);
    if (kind == 0) v = std::nullopt;
    if (kind == 1) v = std::numeric_limits<double>::quiet_NaN();
    if (kind == 2) throw_now = true;
    clock.advance(1s);
    engine.evaluate(clock.now());
    auto st = engine.status("r");
    EXPECT_EQ(st->state, AlertState::resolved) << "kind " << kind;
    EXPECT_FALSE(st->value.has_value()) << "kind " << kind;
  }
}

TEST(AlertEngineTest, RateOfACounterPerSecond) {
  ManualClock clock;
  AlertEngine engine;
  double counter = 0;
  AlertRule r;
  r.name = "errors";
  r.source = [&](TimePoint) -> std::optional<double> { return counter; };
  r.mode = ValueMode::rate;
  r.rate_window = 60s;
  r.op = CompareOp::gt;
  r.threshold = 5.0;  // errors per second
  engine.add_rule(r);

  engine.evaluate(clock.now());
  EXPECT_FALSE(engine.status("errors")->value.has_value());  // one sample: no rate yet

  // 2 errors/s for a minute, sampled every 15 s.
  for (int i = 0; i < 4; ++i) {
    clock.advance(15s);
    counter += 30;
    engine.evaluate(clock.now());
    ASSERT_TRUE(engine.status("errors")->value.has_value());
    EXPECT_DOUBLE_EQ(*engine.status("errors")->value, 2.0);
  }
  EXPECT_EQ(state_of(engine, "errors"), AlertState::inactive);

  // 10 errors/s: after one step the window mixes both rates, after a full window it is 10/s.
  clock.advance(15s);
  counter += 150;
  engine.evaluate(clock.now());
  EXPECT_DOUBLE_EQ(*engine.status("errors")->value, (30 * 3 + 150) / 60.0);  // 4/s
  EXPECT_EQ(state_of(engine, "errors"), AlertState::inactive);
  clock.advance(15s);
  counter += 150;
  engine.evaluate(clock.now());
  EXPECT_DOUBLE_EQ(*engine.status("errors")->value, (30 * 2 + 300) / 60.0);  // 6/s
  EXPECT_EQ(state_of(engine, "errors"), AlertState::firing);
  for (int i = 0; i < 2; ++i) {
    clock.advance(15s);
    counter += 150;
    engine.evaluate(clock.now());
  }
  EXPECT_DOUBLE_EQ(*engine.status("errors")->value, 10.0);
}

TEST(AlertEngineTest, RateSurvivesACounterReset) {
  ManualClock clock;
  AlertEngine engine;
  double counter = 1000;
  AlertRule r;
  r.name = "c";
  r.source = [&](TimePoint) -> std::optional<double> { return counter; };
  r.mode = ValueMode::rate;
  r.rate_window = 60s;
  r.threshold = 1e9;
  engine.add_rule(r);
  engine.evaluate(clock.now());
  clock.advance(10s);
  counter = 1100;  // +100
  engine.evaluate(clock.now());
  clock.advance(10s);
  counter = 50;  // process restarted: +50 since the reset
  engine.evaluate(clock.now());
  EXPECT_DOUBLE_EQ(*engine.status("c")->value, 150.0 / 20.0);
  clock.advance(10s);
  counter = 80;  // +30
  engine.evaluate(clock.now());
  EXPECT_DOUBLE_EQ(*engine.status("c")->value, 180.0 / 30.0);
  EXPECT_GE(*engine.status("c")->value, 0.0);
}

TEST(AlertEngineTest, RateStaysExactWhenEvaluatedFarMoreOftenThanItKeepsSamples) {
  ManualClock clock;
  AlertEngine engine;
  double counter = 0;
  AlertRule r;
  r.name = "c";
  r.source = [&](TimePoint) -> std::optional<double> { return counter; };
  r.mode = ValueMode::rate;
  r.rate_window = 1s;
  r.threshold = 1e9;
  engine.add_rule(r);
  // 10 000 evaluations per second for 3 s, 7 events per evaluation: 70 000/s.
  for (int i = 0; i < 30'000; ++i) {
    counter += 7;
    engine.evaluate(clock.now());
    clock.advance(100us);
  }
  ASSERT_TRUE(engine.status("c")->value.has_value());
  EXPECT_NEAR(*engine.status("c")->value, 70'000.0, 70'000.0 * 1e-9);
}

TEST(AlertEngineTest, SilenceHidesTransitionsUntilItExpires) {
  ManualClock clock;
  AlertEngine engine({.keep_resolved = 0s});
  EventLog log;
  log.attach(engine);
  double v = 0;
  engine.add_rule(value_rule("r", &v, CompareOp::gt, 1, 10s));
  engine.evaluate(clock.now());

  EXPECT_FALSE(engine.silence("r", clock.now(), clock.now()));  // until must be in the future
  EXPECT_FALSE(engine.silence("nope", clock.now() + 1h, clock.now()));
  EXPECT_TRUE(engine.silence("r", clock.now() + 1min, clock.now()));
  EXPECT_EQ(state_of(engine, "r"), AlertState::silenced);
  EXPECT_EQ(engine.status("r")->silenced_until, clock.now() + 1min);

  // The condition goes pending and firing underneath; nothing is announced.
  v = 5;
  engine.evaluate(clock.now());
  clock.advance(10s);
  engine.evaluate(clock.now());
  auto st = engine.status("r");
  EXPECT_EQ(st->state, AlertState::silenced);
  EXPECT_EQ(st->condition_state, AlertState::firing);
  EXPECT_TRUE(engine.firing().empty());

  clock.advance(49s);
  engine.evaluate(clock.now());
  EXPECT_EQ(state_of(engine, "r"), AlertState::silenced);
  clock.advance(1s);  // the silence ends at the first evaluation at or after `until`
  engine.evaluate(clock.now());
  EXPECT_EQ(state_of(engine, "r"), AlertState::firing);
  EXPECT_FALSE(engine.status("r")->silenced_until.has_value());

  // A silence that ends while the condition is gone returns to where the rule is by then.
  EXPECT_TRUE(engine.silence("r", clock.now() + 30s, clock.now()));
  v = 0;
  clock.advance(1s);
  engine.evaluate(clock.now());  // firing -> resolved underneath
  clock.advance(1s);
  engine.evaluate(clock.now());  // resolved -> inactive underneath
  EXPECT_EQ(engine.status("r")->condition_state, AlertState::inactive);
  EXPECT_TRUE(engine.unsilence("r", clock.now()));
  EXPECT_FALSE(engine.unsilence("r", clock.now()));
  EXPECT_EQ(state_of(engine, "r"), AlertState::inactive);

  EXPECT_EQ(log.take(), (std::vector<std::string>{"r:inactive->silenced", "r:silenced->firing",
                                                  "r:firing->silenced", "r:silenced->inactive"}));
}

TEST(AlertEngineTest, ExtendingASilenceAnnouncesNothing) {
  ManualClock clock;
  AlertEngine engine;
  EventLog log;
  log.attach(engine);
  double v = 0;
  engine.add_rule(value_rule("r", &v, CompareOp::gt, 1, 0s));
  engine.silence("r", clock.now() + 10s, clock.now());
  engine.silence("r", clock.now() + 20s, clock.now());
  clock.advance(15s);
  engine.evaluate(clock.now());
  EXPECT_EQ(state_of(engine, "r"), AlertState::silenced);
  clock.advance(5s);
  engine.evaluate(clock.now());
  EXPECT_EQ(state_of(engine, "r"), AlertState::inactive);
  EXPECT_EQ(log.take(), (std::vector<std::string>{"r:inactive->silenced", "r:silenced->inactive"}));
}

TEST(AlertEngineTest, EventsCarryRuleDetails) {
  ManualClock clock;
  AlertEngine engine;
  std::vector<AlertEvent> events;
  engine.add_listener([&](const AlertEvent& e) { events.push_back(e); });
  engine.add_listener([](const AlertEvent&) { throw std::runtime_error("ignored"); });
  double v = 42;
  engine.add_rule(value_rule("r", &v, CompareOp::gt, 1, 0s));
  engine.evaluate(clock.now());
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].rule, "r");
  EXPECT_EQ(events[0].severity, Severity::critical);
  EXPECT_EQ(events[0].from, AlertState::inactive);
  EXPECT_EQ(events[0].to, AlertState::firing);
  EXPECT_EQ(events[0].value, 42.0);
  EXPECT_EQ(events[0].at, clock.now());
  EXPECT_EQ(events[0].summary, "value too high");
}

TEST(AlertEngineTest, RulesAreIndependentAndRemovable) {
  ManualClock clock;
  AlertEngine engine;
  double a = 5, b = 0;
  engine.add_rule(value_rule("b", &b, CompareOp::gt, 1, 0s));
  engine.add_rule(value_rule("a", &a, CompareOp::gt, 1, 0s));
  engine.evaluate(clock.now());
  auto snap = engine.snapshot();
  ASSERT_EQ(snap.size(), 2u);
  EXPECT_EQ(snap[0].name, "a");
  EXPECT_EQ(snap[0].state, AlertState::firing);
  EXPECT_EQ(snap[1].state, AlertState::inactive);
  EXPECT_TRUE(engine.remove_rule("a"));
  EXPECT_FALSE(engine.remove_rule("a"));
  EXPECT_FALSE(engine.status("a").has_value());
  EXPECT_TRUE(engine.firing().empty());
}

TEST(AlertEngineTest, TimeGoingBackwardsIsTreatedAsStandingStill) {
  ManualClock clock;
  AlertEngine engine;
  double v = 5;
  engine.add_rule(value_rule("r", &v, CompareOp::gt, 1, 10s));
  const TimePoint t0 = clock.now();
  engine.evaluate(t0);
  engine.evaluate(t0 - 1h);  // must not count as a long-held condition or crash
  EXPECT_EQ(state_of(engine, "r"), AlertState::pending);
  EXPECT_EQ(engine.status("r")->last_evaluated, t0);
  engine.evaluate(t0 + 10s);
  EXPECT_EQ(state_of(engine, "r"), AlertState::firing);
}

TEST(AlertEngineTest, SourceMayReadTheEngine) {
  ManualClock clock;
  AlertEngine engine;
  AlertRule r;
  r.name = "self";
  r.source = [&](TimePoint) -> std::optional<double> {
    return static_cast<double>(engine.snapshot().size());
  };
  r.threshold = 0.5;
  engine.add_rule(r);
  engine.evaluate(clock.now());
  EXPECT_EQ(state_of(engine, "self"), AlertState::firing);
}

}  // namespace
}  // namespace bulwark::observe
