// Concurrency limit: at most N requests in flight at once on a listener across all workers, the
// next one answered at once with 503 concurrency_limit (Retry-After: 1) without touching an
// upstream — fail fast, like Envoy's overload actions, rather than queueing behind work that is
// already late. (A cluster's limit, which may queue, is filters/cluster_limit.)
//
// A request counts from the moment it passed hygiene and routing until it is over (answered,
// failed, or abandoned by the client): the filter takes a slot in on_request and gives it back
// in on_complete, which the chain runs exactly once for every admitted request.
//
// Config:
//   listeners[].limits.max_concurrent_requests   1 .. 2^32-1, default 1000 (bind_concurrency_limit)
//
// Metrics (handles resolved when the snapshot is built):
//   bulwark_listener_requests_active{listener}                     gauge, admitted requests
//   bulwark_gateway_responses_total{listener,status="503",reason="concurrency_limit"}
//                                                                  counter (the LocalReply path)
//
// Thread-safety: the in-flight count is one atomic shared by every worker (it outlives config
// snapshots, so a reload neither resets nor double-counts requests in flight).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>

#include "config/config.h"
#include "filter/filter.h"
#include "observe/gateway_metrics.h"

namespace bulwark::gateway::filters {

// The decision: takes a slot when fewer than `limit` are taken. No I/O, no clock.
bool try_admit(std::atomic<uint32_t>& in_flight, uint32_t limit) noexcept;
void release(std::atomic<uint32_t>& in_flight) noexcept;

class ConcurrencyLimit final : public filter::RequestFilter {
 public:
  ConcurrencyLimit(std::atomic<uint32_t>& in_flight, uint32_t limit, observe::Gauge* active,
                   std::string_view reason) noexcept
      : in_flight_(in_flight), limit_(limit), active_(active), reason_(reason) {}

  std::string_view name() const noexcept override { return "concurrency_limit"; }
  filter::LocalReply on_request(const filter::RequestInfo& request,
                                filter::FilterState& state) const override;
  void on_complete(const filter::Completion& done, filter::FilterState& state) const override;

  uint32_t limit() const noexcept { return limit_; }

 private:
  std::atomic<uint32_t>& in_flight_;
  uint32_t limit_;
  observe::Gauge* active_;
  std::string_view reason_;  // a filter/reasons.h constant
};

// The config binding: the listener's limit over its shared in-flight count.
std::unique_ptr<filter::RequestFilter> bind_concurrency_limit(const config::Listener& listener,
                                                              std::atomic<uint32_t>& in_flight,
                                                              observe::ListenerMetrics& metrics);

}  // namespace bulwark::gateway::filters
