// Fault injection: a request filter for users' own chaos drills, off by default. On a route
// with `filters.fault` it aborts a share of requests with a chosen status (the gateway's own
// answer, reason fault_abort, as if the upstream had failed) and delays a share before their
// upstream call — the way Envoy's fault filter lets a team see what its clients, retries and
// breakers do before a real outage shows them.
//
// Which requests: each fault has a percentage (drawn per request from the worker's seeded
// source); with `header` set, every request carrying that header gets the fault too, so a
// drill can aim at its own test traffic and leave everybody else's alone. An aborted request
// is not also delayed. A delay is a hold on the request (filter::LocalReply::hold): the
// exchange waits it out before the first attempt, within the route's request deadline (a
// delay that outlasts the deadline answers 504 request_timeout when the deadline passes).
//
// Config (binding: bind_fault):
//   routes[].filters.fault:
//     header: x-fault-drill                 optional: requests carrying it always get the faults
//     abort: {percent: 0..100, status: 400..599 (default 503)}
//     delay: {percent: 0..100, duration: 1ms..1h}
//
// Metrics (handles resolved when the snapshot is built):
//   bulwark_route_faults_total{route,fault="abort"|"delay"}   counter
//   bulwark_gateway_responses_total{code=<status>,reason="fault_abort"}   (the LocalReply path)
//
// Thread-safety: immutable; the random source is the calling worker's.
#pragma once

#include <chrono>
#include <memory>

#include "bulwark/core/random.h"
#include "config/config.h"
#include "filter/filter.h"
#include "observe/gateway_metrics.h"

namespace bulwark::gateway::filters {

struct FaultDecision {
  int abort_status = 0;  // 0: no abort
  std::chrono::nanoseconds delay{0};
};

// The faults for one request. Draws from `random` only for a percentage strictly between 0
// and 100 that the header did not already decide. Pure.
FaultDecision decide_fault(const config::FaultSpec& spec, bool carries_header,
                           Random& random) noexcept;

class FaultFilter final : public filter::RequestFilter {
 public:
  FaultFilter(config::FaultSpec spec, observe::Counter* aborts, observe::Counter* delays)
      : spec_(std::move(spec)), aborts_(aborts), delays_(delays) {}

  std::string_view name() const noexcept override { return "fault"; }
  filter::LocalReply on_request(const filter::RequestInfo& request,
                                filter::FilterState& state) const override;

 private:
  bool carries_header(const filter::RequestInfo& request) const noexcept;

  config::FaultSpec spec_;
  observe::Counter* aborts_;
  observe::Counter* delays_;
};

// The route's filter, or null when the route has no fault section.
std::unique_ptr<filter::RequestFilter> bind_fault(const config::Route& route,
                                                  observe::RouteMetrics& metrics);

}  // namespace bulwark::gateway::filters
