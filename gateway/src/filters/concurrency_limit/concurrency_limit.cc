#include "filters/concurrency_limit/concurrency_limit.h"

#include "filter/reasons.h"

namespace bulwark::gateway::filters {

bool try_admit(std::atomic<uint32_t>& in_flight, uint32_t limit) noexcept {
  if (in_flight.fetch_add(1, std::memory_order_relaxed) >= limit) {
    in_flight.fetch_sub(1, std::memory_order_relaxed);
    return false;
  }
  return true;
}

void release(std::atomic<uint32_t>& in_flight) noexcept {
  in_flight.fetch_sub(1, std::memory_order_relaxed);
}

filter::LocalReply ConcurrencyLimit::on_request(const filter::RequestInfo& request,
                                                filter::FilterState& state) const {
  (void)state;
  // A refused request's body is not read: its connection closes after the answer.
  if (!try_admit(in_flight_, limit_)) {
    return filter::refuse(503, reason_, request.has_body);
  }
  if (active_ != nullptr) active_->inc();
  return {};
}

void ConcurrencyLimit::on_complete(const filter::Completion& done,
                                   filter::FilterState& state) const {
  (void)done;
  (void)state;
  release(in_flight_);
  if (active_ != nullptr) active_->dec();
}

}  // namespace bulwark::gateway::filters
