#include "filters/fault/fault.h"

#include "filter/reasons.h"
#include "http/head_writer.h"

namespace bulwark::gateway::filters {

namespace {

bool draw(double fraction, Random& random) noexcept {
  if (fraction <= 0) return false;
  if (fraction >= 1) return true;
  return random.uniform01() < fraction;
}

}  // namespace

FaultDecision decide_fault(const config::FaultSpec& spec, bool carries_header,
                           Random& random) noexcept {
  FaultDecision decision;
  if (spec.abort && (carries_header || draw(spec.abort->fraction, random))) {
    decision.abort_status = spec.abort->status;
    return decision;
  }
  if (spec.delay && (carries_header || draw(spec.delay->fraction, random))) {
    decision.delay = spec.delay->duration;
  }
  return decision;
}

bool FaultFilter::carries_header(const filter::RequestInfo& request) const noexcept {
  if (spec_.header.empty()) return false;
  for (const filter::HeaderLine& line : request.headers) {
    if (http::iequals(line.name, spec_.header)) return true;
  }
  return false;
}

filter::LocalReply FaultFilter::on_request(const filter::RequestInfo& request,
                                           filter::FilterState& state) const {
  (void)state;
  const FaultDecision decision = decide_fault(spec_, carries_header(request), *request.random);
  if (decision.abort_status != 0) {
    if (aborts_ != nullptr) aborts_->inc();
    return filter::refuse(decision.abort_status, reason::kFaultAbort, request.has_body);
  }
  filter::LocalReply go_on;
  if (decision.delay > std::chrono::nanoseconds::zero()) {
    if (delays_ != nullptr) delays_->inc();
    go_on.hold = decision.delay;
  }
  return go_on;
}

}  // namespace bulwark::gateway::filters
