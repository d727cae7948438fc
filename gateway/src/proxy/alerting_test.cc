#include "proxy/alerting.h"

#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>

#include <sstream>

#include "bulwark/observe/registry.h"
#include "bulwark/testing/manual_clock.h"
#include "observe/gateway_metrics.h"

namespace bulwark::gateway::proxy {
namespace {

using namespace std::chrono_literals;

TEST(SignalWindow, IncreasesOverTheLastWindowOnly) {
  testing::ManualClock clock;
  SignalWindow window(60s);
  EXPECT_EQ(window.add(clock.now(), 10, 100).span, 0s);
  clock.advance(30s);
  SignalWindow::Increase inc = window.add(clock.now(), 15, 150);
  EXPECT_EQ(inc.first, 5);
  EXPECT_EQ(inc.second, 50);
  EXPECT_EQ(inc.span, 30s);
  clock.advance(40s);  // the second sample is only 40 s old: the first stays the base
  inc = window.add(clock.now(), 16, 160);
  EXPECT_EQ(inc.first, 6);
  EXPECT_EQ(inc.span, 70s);
  clock.advance(20s);  // now the second is 60 s old: it becomes the base
  inc = window.add(clock.now(), 17, 170);
  EXPECT_EQ(inc.first, 2);
  EXPECT_EQ(inc.span, 60s);
  clock.advance(1s);
  EXPECT_EQ(window.add(clock.now(), 0, 0).first, 0);  // a total that went down: no increase
}

TEST(QuantileWindow, TheP99OfTheLastMinuteForgetsOlderSamples) {
  testing::ManualClock clock;
  bulwark::observe::Histogram h;
  QuantileWindow window(60s, 10s);
  EXPECT_EQ(window.add(clock.now(), h.snapshot(), 0.99), std::nullopt);
  for (int i = 0; i < 100; ++i) h.observe(2.0);  // slow, early
  clock.advance(10s);
  EXPECT_NEAR(*window.add(clock.now(), h.snapshot(), 0.99), 2.0, 0.05);
  for (int i = 0; i < 1000; ++i) h.observe(0.001);
  clock.advance(61s);  // the slow samples are older than the window now
  EXPECT_NEAR(*window.add(clock.now(), h.snapshot(), 0.99), 0.001, 0.0001);
}

struct AlertingTest : ::testing::Test {
  testing::ManualClock clock;
  bulwark::observe::Registry registry;
  observe::GatewayMetrics metrics{registry};
  filters::OverloadManager overload{registry};
  std::ostringstream log_text;
  bulwark::observe::LogSystem logs{{std::make_shared<spdlog::sinks::ostream_sink_mt>(log_text)},
                                   {.async = false}};
  std::shared_ptr<config::Config> config = std::make_shared<config::Config>();
  std::shared_ptr<const route::Snapshot> snapshot;

  AlertingTest() {
    config::Route route;
    route.name = "api";
    config->routes.push_back(route);
    config::AlertSpec spec;
    spec.name = "high_5xx";
    spec.metric = "bulwark_requests_5xx_ratio";
    spec.signal = *config::parse_alert_signal(spec.metric);
    spec.op = ">";
    spec.threshold = 0.5;
    spec.for_duration = 3s;
    spec.severity = "critical";
    config->alerts.push_back(spec);
    auto snap = std::make_shared<route::Snapshot>(config, route::Router(config->routes));
    route::RouteRuntime runtime;
    runtime.config = &config->routes[0];
    runtime.metrics = &metrics.route("api");
    snap->routes.push_back(std::move(runtime));
    snapshot = snap;
  }
  observe::RouteMetrics& route() { return metrics.route("api"); }
  void answer(int ok, int errors) {
    route().requests[1]->inc(ok);
    route().requests[4]->inc(errors);
  }
};

TEST_F(AlertingTest, AFiveHundredsRatioGoesPendingThenFiresThenResolves) {
  Alerting alerting(clock, overload, logs.logger("alerts"));
  alerting.watch(snapshot);
  const auto state = [&] { return alerting.to_json(clock.now())["rules"][0]["state"]; };
  alerting.evaluate(clock.now());
  EXPECT_EQ(state(), "inactive");  // no answers yet: no value
  for (int second = 1; second <= 2; ++second) {
    clock.advance(1s);
    answer(1, 9);
    alerting.evaluate(clock.now());
  }
  EXPECT_EQ(state(), "pending");
  EXPECT_NEAR(alerting.to_json(clock.now())["rules"][0]["value"].get<double>(), 0.9, 1e-9);
  for (int second = 0; second < 3; ++second) {
    clock.advance(1s);
    answer(1, 9);
    alerting.evaluate(clock.now());
  }
  EXPECT_EQ(state(), "firing");
  EXPECT_NE(log_text.str().find("alert firing"), std::string::npos) << log_text.str();

  // The errors stop; a minute of good answers brings the ratio down.
  for (int second = 0; second < 61; ++second) {
    clock.advance(1s);
    answer(10, 0);
    alerting.evaluate(clock.now());
  }
  EXPECT_EQ(state(), "resolved");

  // The same rules after a reload keep their state; other rules start afresh.
  alerting.watch(snapshot);
  EXPECT_EQ(state(), "resolved");
  config->alerts[0].threshold = 0.6;
  alerting.watch(snapshot);
  EXPECT_EQ(state(), "inactive");
}

TEST_F(AlertingTest, SignalsNameTheirScopeAndUnknownOnesAreRefused) {
  EXPECT_EQ(config::parse_alert_signal("bulwark_requests_5xx_ratio{route=\"api\"}")->route, "api");
  EXPECT_EQ(config::parse_alert_signal("bulwark_breakers_open{cluster=\"b\"}")->cluster, "b");
  EXPECT_EQ(config::parse_alert_signal("bulwark_overload_level")->kind,
            config::AlertSignalKind::overload_level);
  EXPECT_FALSE(config::parse_alert_signal("bulwark_requests_total"));
  EXPECT_FALSE(config::parse_alert_signal("bulwark_breakers_open{route=\"api\"}"));
  EXPECT_FALSE(config::parse_alert_signal("bulwark_requests_5xx_ratio{route=api}"));
  EXPECT_FALSE(config::parse_alert_signal("bulwark_requests_5xx_ratio{route=\"\"}"));
  EXPECT_FALSE(config::parse_alert_signal("bulwark_overload_level{cluster=\"b\"}"));
}

TEST_F(AlertingTest, TheOverloadLevelIsASignal) {
  config->alerts[0].metric = "bulwark_overload_level";
  config->alerts[0].signal = *config::parse_alert_signal(config->alerts[0].metric);
  config->alerts[0].threshold = 1;
  config->alerts[0].op = ">=";
  config->alerts[0].for_duration = 0s;
  Alerting alerting(clock, overload, logs.logger("alerts"));
  alerting.watch(snapshot);
  alerting.evaluate(clock.now());
  EXPECT_EQ(alerting.to_json(clock.now())["rules"][0]["state"], "inactive");
  overload.force(config::OverloadLevel::critical);
  clock.advance(1s);
  alerting.evaluate(clock.now());
  const auto rule = alerting.to_json(clock.now())["rules"][0];
  EXPECT_EQ(rule["state"], "firing");
  EXPECT_EQ(rule["value"], 2);
}

}  // namespace
}  // namespace bulwark::gateway::proxy
