#include "filters/fault/fault.h"

#include <gtest/gtest.h>

#include "filter/reasons.h"

namespace bulwark::gateway::filters {
namespace {

using namespace std::chrono_literals;

config::FaultSpec spec_of(double abort, double delay, std::string header = {}) {
  config::FaultSpec spec;
  spec.header = std::move(header);
  if (abort > 0 || !spec.header.empty()) spec.abort = config::FaultAbortSpec{abort, 502};
  if (delay > 0 || !spec.header.empty()) spec.delay = config::FaultDelaySpec{delay, 200ms};
  return spec;
}

TEST(FaultDecision, AbortsAndDelaysTheirShareOfRequests) {
  Random random(42);
  config::FaultSpec spec = spec_of(0.1, 0.3);
  int aborted = 0;
  int delayed = 0;
  constexpr int kRequests = 20000;
  for (int i = 0; i < kRequests; ++i) {
    const FaultDecision d = decide_fault(spec, false, random);
    aborted += d.abort_status == 502;
    delayed += d.delay == 200ms;
    EXPECT_FALSE(d.abort_status != 0 && d.delay > 0ns);  // an abort is not also delayed
  }
  // 10 % aborted; 30 % of the other 90 % delayed (27 %): within 1.5 points at this count.
  EXPECT_NEAR(aborted, kRequests * 0.10, kRequests * 0.015);
  EXPECT_NEAR(delayed, kRequests * 0.27, kRequests * 0.015);
}

TEST(FaultDecision, TheHeaderAlwaysGetsTheFaultAndNoPercentageNeverDraws) {
  Random random(7);
  const config::FaultSpec by_header = spec_of(0, 0, "x-fault-drill");
  const Random before = random;
  EXPECT_EQ(decide_fault(by_header, true, random).abort_status, 502);
  EXPECT_EQ(decide_fault(by_header, false, random).abort_status, 0);
  EXPECT_EQ(decide_fault(by_header, false, random).delay, 0ns);
  Random untouched = before;
  EXPECT_EQ(random.next_u64(), untouched.next_u64());  // nothing was drawn
  config::FaultSpec delay_only = spec_of(0, 0, "x-fault-drill");
  delay_only.abort.reset();
  EXPECT_EQ(decide_fault(delay_only, true, random).delay, 200ms);
  EXPECT_EQ(decide_fault(spec_of(1.0, 0), false, random).abort_status, 502);  // 100 %
}

TEST(FaultFilter, AbortsThroughTheLocalReplyOrHoldsTheRequest) {
  bulwark::observe::Counter aborts;
  bulwark::observe::Counter delays;
  config::FaultSpec spec = spec_of(0, 0, "x-fault-drill");
  spec.abort.reset();
  const FaultFilter delaying(spec, &aborts, &delays);
  const FaultFilter aborting(spec_of(1.0, 0), &aborts, &delays);
  Random random(1);
  const std::array<filter::HeaderLine, 1> drill{{{"X-Fault-Drill", "1"}}};
  filter::RequestInfo request;
  request.random = &random;
  filter::FilterState state;

  const filter::LocalReply untouched = delaying.on_request(request, state);
  EXPECT_FALSE(untouched);
  EXPECT_EQ(untouched.hold, 0ns);
  request.headers = drill;
  const filter::LocalReply held = delaying.on_request(request, state);
  EXPECT_FALSE(held);
  EXPECT_EQ(held.hold, 200ms);

  const filter::LocalReply aborted = aborting.on_request(request, state);
  EXPECT_EQ(aborted.status, 502);
  EXPECT_EQ(aborted.reason, reason::kFaultAbort);
  EXPECT_EQ(aborts.value(), 1);
  EXPECT_EQ(delays.value(), 1);
}

}  // namespace
}  // namespace bulwark::gateway::filters
