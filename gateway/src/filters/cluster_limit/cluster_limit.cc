#include "filters/cluster_limit/cluster_limit.h"

#include <chrono>

#include "filter/reasons.h"

namespace bulwark::gateway::filters {

limit::BulkheadOptions bulkhead_options(const config::Cluster& cluster) noexcept {
  limit::BulkheadOptions o;
  o.max_concurrent = cluster.max_concurrent_requests;
  o.max_queue = cluster.queue ? cluster.queue->max_size : 0;
  o.max_wait = cluster.queue ? cluster.queue->max_wait : Duration::zero();
  o.displace_lower_priority = true;
  return o;
}

std::string_view cluster_limit_reason(errc refusal) noexcept {
  return refusal == errc::wait_timeout ? reason::kQueueTimeout : reason::kClusterConcurrencyLimit;
}

uint32_t estimated_wait_seconds(Duration estimate) noexcept {
  if (estimate <= Duration::zero()) return 1;
  const auto seconds = std::chrono::ceil<std::chrono::seconds>(estimate).count();
  if (seconds > UINT32_MAX) return UINT32_MAX;
  return seconds < 1 ? 1 : static_cast<uint32_t>(seconds);
}

filter::LocalReply ClusterLimit::on_request(const filter::RequestInfo& request,
                                            filter::FilterState& state) const {
  if (Slot* slot = state.owned<Slot>()) {
    // Asked again after the wait: the ticket holds the permit or the refusal (a wait that
    // reached its deadline is withdrawn here and refused as timed out).
    Result<limit::Permit> permit = slot->ticket.take();
    slot->ticket = {};
    if (permit) return admitted(*slot, std::move(*permit));
    const errc why =
        permit.error() == make_error_code(errc::wait_timeout) ? errc::wait_timeout : errc::queue_full;
    return refused(request, why, bulkhead_->estimated_wait(request.now, request.priority));
  }
  limit::Bulkhead::Acquisition acquisition =
      bulkhead_->try_acquire(request.now, request.priority, Deadline::at(request.deadline));
  switch (acquisition.status) {
    case limit::Bulkhead::Status::granted:
      return admitted(state.make<Slot>(), std::move(acquisition.permit));
    case limit::Bulkhead::Status::queued: {
      Slot& slot = state.make<Slot>();
      slot.ticket = acquisition.ticket;
      slot.ticket.on_resolved(*request.wake);
      return filter::wait_until(slot.ticket.deadline().time());
    }
    case limit::Bulkhead::Status::rejected:
      break;
  }
  return refused(request, acquisition.reason, acquisition.retry_after);
}

filter::LocalReply ClusterLimit::admitted(Slot& slot, limit::Permit permit) const {
  slot.permit = std::move(permit);
  if (active_ != nullptr) active_->inc();
  return {};
}

filter::LocalReply ClusterLimit::refused(const filter::RequestInfo& request, errc reason,
                                         Duration estimate) const {
  // A refused request's body is not read: its connection closes after the answer.
  filter::LocalReply reply = filter::refuse(503, cluster_limit_reason(reason), request.has_body);
  reply.retry_after_seconds = estimated_wait_seconds(estimate);
  return reply;
}

void ClusterLimit::on_complete(const filter::Completion& done, filter::FilterState& state) const {
  Slot* slot = state.owned<Slot>();
  if (slot == nullptr) return;
  // A request abandoned while it waited gives its place (or a permit granted at that very
  // moment) back.
  if (slot->ticket) slot->ticket.cancel();
  if (slot->permit) {
    // A request destroyed half-way completes without a time: the bulkhead's clock is read.
    if (done.now == TimePoint{}) {
      slot->permit.release();
    } else {
      slot->permit.release(done.now);
    }
    if (active_ != nullptr) active_->dec();
  }
  state.end<Slot>();
}

}  // namespace bulwark::gateway::filters
