// BulkheadStage: a Bulkhead as a pipeline stage (see bulwark/pipeline/stage.h).
//
//   enter()   asks the bulkhead for a permit at the stage's priority, under the call's deadline.
//             Granted: the call proceeds (after waiting for a throttled start, if any).
//             Must queue: the stage returns Step::wait with a Waiter over its ticket and the
//             ticket's deadline; the executor blocks (sync) or suspends (Asio) until the
//             ticket is granted or refused, the deadline passes, or the caller cancels, then
//             calls enter() again, which reads the ticket's fate:
//               granted                  -> proceed
//               refused / deadline passed -> finish with errc::wait_timeout (or queue_full for
//                                            a displaced waiter), Outcome::final_failure
//             Refused on arrival: finish with the reason (queue_full, wait_timeout, throttled,
//             rejected), Outcome::final_failure and the bulkhead's retry_after estimate.
//   leave()   releases the permit and, when an AdaptiveConcurrency is configured, feeds it one
//             sample: rtt = now - permit start, in_flight = permits in flight when the permit
//             was granted, dropped = the outcome is a retryable failure (timeouts, 502/503/504,
//             resets: signs of overload). Final failures and cancellations are not fed (they
//             say nothing about load); successes and caller errors are fed as successes.
//   abandon() releases the permit, or gives the ticket up (a grant that raced in is returned).
//
// Where to put it: inside a retry stage each attempt takes its own permit (a slow attempt does
// not hold a slot while backing off); outside, one permit covers every attempt.
//
// Thread-safety: the stage is immutable and may serve any number of concurrent calls; the
// Bulkhead and AdaptiveConcurrency it refers to must outlive every pipeline that uses it.
//
// Example:
//   Bulkhead bulkhead("users", {.max_concurrent = 16, .max_queue = 64, .max_wait = 100ms});
//   auto pipeline = Pipeline::Builder(clock)
//                       .timeout(2s)
//                       .bulkhead(bulkhead)   // or
//                       .stage(std::make_shared<BulkheadStage>(bulkhead)) .build();
#pragma once

#include <memory>

#include "bulwark/limit/adaptive_limit.h"
#include "bulwark/limit/bulkhead.h"
#include "bulwark/pipeline/events.h"
#include "bulwark/pipeline/stage.h"

namespace bulwark::limit {

struct BulkheadStageOptions {
  // Queue priority of the calls through this stage (higher first).
  int priority = 0;
  // Fed one sample per finished call when not null; it usually sets the same bulkhead's limit.
  AdaptiveConcurrency* adaptive = nullptr;
  // Told of every refusal (EventListener::on_rejected, name = the bulkhead's) when not null.
  EventListener* listener = nullptr;
};

class BulkheadStage final : public Stage {
 public:
  explicit BulkheadStage(Bulkhead& bulkhead, BulkheadStageOptions options = {})
      : bulkhead_(bulkhead), options_(options) {}
  std::unique_ptr<StageRun> start() const override;
  std::size_t run_size() const noexcept override;
  std::size_t run_align() const noexcept override;
  StageRun* start_in(void* storage) const override;
  std::string_view kind() const noexcept override { return "bulkhead"; }
  Bulkhead& bulkhead() const noexcept { return bulkhead_; }
  const BulkheadStageOptions& options() const noexcept { return options_; }

 private:
  class Run;
  Bulkhead& bulkhead_;
  BulkheadStageOptions options_;
};

// A Waiter over a bulkhead ticket: ready(true) when granted, ready(false) when refused;
// cancel() withdraws the ticket if it still waits. Exposed for custom stages.
class TicketWaiter final : public Waiter {
 public:
  explicit TicketWaiter(Ticket ticket) : ticket_(std::move(ticket)) {}
  void start(std::function<void(bool granted)> ready) override;
  bool cancel() noexcept override;
  const Ticket& ticket() const noexcept { return ticket_; }

 private:
  Ticket ticket_;
};

}  // namespace bulwark::limit
