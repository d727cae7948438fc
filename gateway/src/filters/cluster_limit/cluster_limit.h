// Cluster limit: at most `max_concurrent_requests` requests in flight to a cluster across all
// workers and routes, on libbulwark's Bulkhead (limit/bulkhead.h). Without a queue the next
// request is answered at once with 503 cluster_concurrency_limit; with `queue` it waits for a
// slot — highest route priority first, first come first served within one priority — up to
// `queue.max_wait` (and never past the route's deadline), then 503 queue_timeout. When the
// queue is full, a request of a higher priority than the lowest waiting one takes the place of
// the newest of those, which is refused (503 cluster_concurrency_limit).
//
// A request counts from the moment it passed the filters before this one until it is over
// (answered, failed, or abandoned by the client): the filter takes a permit in on_request (or
// when its queued wait is granted) and gives it back in on_complete. A waiting request holds
// no worker thread: the filter returns LocalReply::wait, the library's ticket wakes the request
// (filter/filter.h WakeToken) when a permit is released to it on any worker, and the filter,
// asked again, takes the permit or the refusal.
//
// Retry-After on a refusal: the library's estimate of the wait for a slot (permits in flight,
// queue position, the mean time a permit is held), in whole seconds rounded up, at least 1.
//
// Config:
//   clusters[].max_concurrent_requests   1 .. 10^7, default 1000
//   clusters[].queue: {max_size: 100, max_wait: 1s}   none by default (fail fast)
//   routes[].priority                    low | normal | high: queue order
// The bulkhead outlives snapshots (route/policy_store.h): a reload that changes only the limit
// sets the new limit on it (raising it lets waiting requests in); one that changes the queue
// starts a new one.
//
// Metrics:
//   bulwark_cluster_requests_active{cluster}   gauge: admitted requests (this filter)
//   the library's bulkhead series for the cluster (route/policy_store.h)
//   bulwark_gateway_responses_total{status="503",reason="cluster_concurrency_limit" or
//                                   "queue_timeout"}   the LocalReply path
//
// Thread-safety: immutable; the bulkhead is thread-safe; the permit or ticket of one request
// lives in its FilterState.
#pragma once

#include <memory>
#include <string_view>

#include "bulwark/core/error.h"
#include "bulwark/limit/bulkhead.h"
#include "config/config.h"
#include "filter/filter.h"
#include "observe/gateway_metrics.h"

namespace bulwark::gateway::filters {

// The bulkhead's options for a cluster's config.
limit::BulkheadOptions bulkhead_options(const config::Cluster& cluster) noexcept;
// The reason of a refusal by the bulkhead (filter/reasons.h). Pure.
std::string_view cluster_limit_reason(errc refusal) noexcept;
// Retry-After for an estimated wait: whole seconds rounded up, at least 1. Pure.
uint32_t estimated_wait_seconds(Duration estimate) noexcept;

class ClusterLimit final : public filter::RequestFilter {
 public:
  ClusterLimit(std::shared_ptr<limit::Bulkhead> bulkhead, observe::Gauge* active) noexcept
      : bulkhead_(std::move(bulkhead)), active_(active) {}

  std::string_view name() const noexcept override { return "cluster_limit"; }
  filter::LocalReply on_request(const filter::RequestInfo& request,
                                filter::FilterState& state) const override;
  void on_complete(const filter::Completion& done, filter::FilterState& state) const override;

  const limit::Bulkhead& bulkhead() const noexcept { return *bulkhead_; }

 private:
  struct Slot {
    limit::Permit permit;
    limit::Ticket ticket;  // while queued
  };
  filter::LocalReply admitted(Slot& slot, limit::Permit permit) const;
  filter::LocalReply refused(const filter::RequestInfo& request, errc reason,
                             Duration estimate) const;

  std::shared_ptr<limit::Bulkhead> bulkhead_;
  observe::Gauge* active_;
};

// The config binding: a cluster's limit over its bulkhead (route/policy_store.h ClusterState,
// built from bulkhead_options), for the chain of a route to that cluster.
std::unique_ptr<filter::RequestFilter> bind_cluster_limit(std::shared_ptr<limit::Bulkhead> bulkhead,
                                                          observe::ClusterMetrics& metrics);

}  // namespace bulwark::gateway::filters
