#include "bulwark/limit/bulkhead_stage.h"

namespace bulwark::limit {

namespace {

// A wait for nothing but time: it never calls `ready`, so it ends at its deadline (when the
// executor cancels it) or when the caller cancels. Used to hold a throttled start back.
class DelayWaiter final : public Waiter {
 public:
  void start(std::function<void(bool)>) override {}
  bool cancel() noexcept override { return true; }
};

errc to_errc(const boost::system::error_code& ec) {
  return ec.category() == bulwark_category() ? static_cast<errc>(ec.value()) : errc::rejected;
}

}  // namespace

void TicketWaiter::start(std::function<void(bool granted)> ready) {
  // Copy the handle into the callback: the Waiter may be gone when the grant arrives.
  ticket_.on_resolved([ticket = ticket_, ready = std::move(ready)] {
    const Ticket::State s = ticket.state();
    ready(s == Ticket::State::granted || s == Ticket::State::taken);
  });
}

bool TicketWaiter::cancel() noexcept { return ticket_.withdraw(); }

class BulkheadStage::Run final : public StageRun {
 public:
  explicit Run(const BulkheadStage& stage) : stage_(stage) {}
  ~Run() override { abandon(); }

  Step enter(CallContext& ctx, TimePoint now) override {
    if (delaying_) {
      // The wait for the throttled start is over (the executor ends it at start_at).
      delaying_ = false;
      return Step::proceed();
    }
    if (ticket_) {
      // Back from a wait: granted, refused, or withdrawn by the executor at the deadline.
      Result<Permit> r = ticket_.take();
      ticket_ = Ticket();
      if (!r) return refuse(to_errc(r.error()), Duration::zero(), now);
      permit_ = std::move(*r);
      return begin(now);
    }
    Bulkhead::Acquisition a =
        stage_.bulkhead_.try_acquire(now, stage_.options_.priority, ctx.deadline);
    switch (a.status) {
      case Bulkhead::Status::granted:
        permit_ = std::move(a.permit);
        return begin(now);
      case Bulkhead::Status::queued: {
        ticket_ = a.ticket;
        const Deadline until = ticket_.deadline();
        return Step::wait(std::make_shared<TicketWaiter>(std::move(a.ticket)), until);
      }
      case Bulkhead::Status::rejected:
        break;
    }
    return refuse(a.reason, a.retry_after, now);
  }

  Step leave(CallContext&, AttemptResult result, TimePoint now) override {
    if (permit_) {
      const Duration rtt = now > permit_.start_at() ? now - permit_.start_at() : Duration::zero();
      const uint32_t in_flight = permit_.in_flight_at_start();
      permit_.release(now);
      if (AdaptiveConcurrency* adaptive = stage_.options_.adaptive) {
        const bool cancelled = !result.from_call && result.error == errc::cancelled;
        if (!cancelled && result.outcome != Outcome::final_failure) {
          adaptive->record(now, rtt, in_flight, result.outcome == Outcome::retryable_failure);
        }
      }
    }
    return Step::finish(std::move(result));
  }

  void abandon() noexcept override {
    if (ticket_) {
      ticket_.cancel();  // withdraws it, or returns a permit granted at the last moment
      ticket_ = Ticket();
    }
    permit_.release();
    delaying_ = false;
  }

 private:
  Step begin(TimePoint now) {
    if (permit_.start_at() > now) {
      delaying_ = true;
      return Step::wait(std::make_shared<DelayWaiter>(), Deadline::at(permit_.start_at()));
    }
    return Step::proceed();
  }

  Step refuse(errc reason, Duration retry_after, TimePoint now) const {
    std::optional<Duration> hint;
    if (retry_after > Duration::zero() && retry_after != Duration::max()) hint = retry_after;
    if (EventListener* l = stage_.options_.listener) {
      l->on_rejected({.stage = stage_.kind(),
                      .name = stage_.bulkhead_.name(),
                      .reason = reason,
                      .retry_after = hint,
                      .at = now});
    }
    return Step::finish(AttemptResult::from_policy(reason, Outcome::final_failure, hint));
  }

  const BulkheadStage& stage_;
  Permit permit_;
  Ticket ticket_;
  bool delaying_ = false;
};

std::unique_ptr<StageRun> BulkheadStage::start() const { return std::make_unique<Run>(*this); }
std::size_t BulkheadStage::run_size() const noexcept { return sizeof(Run); }
std::size_t BulkheadStage::run_align() const noexcept { return alignof(Run); }
StageRun* BulkheadStage::start_in(void* storage) const { return emplace_run<Run>(storage, *this); }

}  // namespace bulwark::limit
