// The config binding of the listener concurrency limit (see concurrency_limit.h).
#include "filters/concurrency_limit/concurrency_limit.h"

#include "filter/reasons.h"

namespace bulwark::gateway::filters {

std::unique_ptr<filter::RequestFilter> bind_concurrency_limit(const config::Listener& listener,
                                                              std::atomic<uint32_t>& in_flight,
                                                              observe::ListenerMetrics& metrics) {
  return std::make_unique<ConcurrencyLimit>(in_flight, listener.limits.max_concurrent_requests,
                                            metrics.requests_active, reason::kConcurrencyLimit);
}

}  // namespace bulwark::gateway::filters
