// Alerting: the config's alert rules (`alerts[]`) evaluated every second by the library's
// AlertEngine (bulwark/observe/alerts.h) over the gateway's own signals, on a thread of its
// own. /alerts and the status page show each rule's state — inactive, pending (the condition
// holds, not yet for `for`), firing, resolved — with its last value; every change of state is
// logged (warn when a rule fires, info otherwise).
//
// Signals (`alerts[].metric`; config::AlertSignalKind), each optionally scoped with a selector:
//   bulwark_requests_5xx_ratio{route="r"}           5xx answers / all answers, last minute (no
//                                                   value while there were none)
//   bulwark_request_duration_p99_seconds{route="r"} p99 of request durations, last minute
//                                                   (across routes: their merged distribution)
//   bulwark_requests_per_second{route="r"}          answers per second, last minute
//   bulwark_retry_budget_exhausted_per_second{route="r"}  retries refused by the budget
//   bulwark_breakers_open{cluster="c"}              cluster breakers open now
//   bulwark_endpoints_unusable{cluster="c"}         endpoints down or ejected now
//   bulwark_overload_level                          0 normal, 1 warning, 2 critical, 3 exhausted
// "Last minute" signals keep their own samples: a sample a second for counters
// (SignalWindow), a histogram snapshot every 10 s for the p99 (QuantileWindow). The base of a
// window is the newest sample at least a minute old, so a window spans a minute and at most
// one step more (less while the gateway is younger than that).
//
// A reload that leaves the rules as they were keeps their states; one that changes them starts
// every rule afresh (inactive).
//
// Decide apart from acting: SignalWindow and the signal functions are pure over their inputs;
// the engine decides states; the thread only calls evaluate(now) every second.
//
// Thread-safety: every member may be called from any thread.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "bulwark/core/clock.h"
#include "bulwark/observe/alerts.h"
#include "bulwark/observe/log.h"
#include "bulwark/observe/metrics.h"
#include "config/config.h"
#include "route/runtime.h"

#include <nlohmann/json.hpp>

namespace bulwark::gateway::proxy {

// Increases of two running totals since the base: the newest sample at least `window` old
// (or the oldest, while none is). A total that went down (a route removed by a reload) counts
// as no increase.
class SignalWindow {
 public:
  explicit SignalWindow(Duration window) : window_(window) {}

  struct Increase {
    double first = 0;
    double second = 0;
    Duration span{0};  // between the base sample and this one
  };
  Increase add(TimePoint now, double first, double second);

 private:
  struct Sample {
    TimePoint at;
    double first;
    double second;
  };
  Duration window_;
  std::deque<Sample> samples_;
};

// The p99 of a histogram over the last `window`, from snapshots taken at least `step` apart.
class QuantileWindow {
 public:
  QuantileWindow(Duration window, Duration step) : window_(window), step_(step) {}
  // nullopt while no sample fell in the window.
  std::optional<double> add(TimePoint now, bulwark::observe::HistogramSnapshot current,
                            double quantile);

 private:
  struct Sample {
    TimePoint at;
    bulwark::observe::HistogramSnapshot snapshot;
  };
  Duration window_;
  Duration step_;
  std::deque<Sample> samples_;
};

class Alerting {
 public:
  static constexpr Duration kInterval = std::chrono::seconds(1);
  static constexpr Duration kWindow = std::chrono::minutes(1);
  static constexpr Duration kHistogramStep = std::chrono::seconds(10);

  Alerting(Clock& clock, const filters::OverloadManager& overload, bulwark::observe::Logger log);
  ~Alerting();
  Alerting(const Alerting&) = delete;
  Alerting& operator=(const Alerting&) = delete;

  // Reads the signals of `snapshot` from now on and takes the rules of its config (keeping
  // the states when they are unchanged). Takes no lock but its own: a reload may call it
  // while holding its own.
  void watch(std::shared_ptr<const route::Snapshot> snapshot);
  void start();  // the evaluation thread
  void stop();

  void evaluate(TimePoint now);  // one evaluation (the thread's step; tests call it)
  std::vector<bulwark::observe::AlertStatus> statuses() const;
  // /alerts: {"evaluated": true, "interval_seconds": 1, "rules": [...]}.
  nlohmann::json to_json(TimePoint now) const;

 private:
  bulwark::observe::ValueSource source_for(const config::AlertSignal& signal);
  void loop();

  Clock& clock_;
  const filters::OverloadManager& overload_;
  bulwark::observe::Logger log_;

  // Guards snapshot_, engine_ and specs_; evaluate() holds it while the sources read
  // snapshot_, so a source never takes another lock (no order against a reload's).
  mutable std::mutex mu_;
  std::shared_ptr<const route::Snapshot> snapshot_;
  std::unique_ptr<bulwark::observe::AlertEngine> engine_;
  std::vector<config::AlertSpec> specs_;

  std::mutex thread_mu_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace bulwark::gateway::proxy
