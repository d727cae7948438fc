#include "bulwark/limit/rate_limit_stage.h"

#include <stdexcept>

namespace bulwark::limit {

class RateLimitStage::Run final : public StageRun {
 public:
  explicit Run(const RateLimitStage& stage) : stage_(stage) {}

  Step enter(CallContext&, TimePoint now) override {
    const RateDecision d = stage_.limiter_.try_acquire(now, stage_.permits_);
    if (d.allowed) {
      stage_.admitted_.add();
      return Step::proceed();
    }
    stage_.rejected_.add();
    if (stage_.listener_ != nullptr) {
      stage_.listener_->on_rejected({.stage = stage_.kind(),
                                     .name = stage_.name_,
                                     .reason = errc::rate_limited,
                                     .retry_after = d.retry_after,
                                     .at = now});
    }
    return Step::finish(
        AttemptResult::from_policy(errc::rate_limited, Outcome::final_failure, d.retry_after));
  }

  Step leave(CallContext&, AttemptResult result, TimePoint) override {
    return Step::finish(std::move(result));
  }

 private:
  const RateLimitStage& stage_;
};

RateLimitStage::RateLimitStage(RateLimiter& limiter, uint64_t permits)
    : limiter_(limiter), permits_(permits) {
  if (permits < 1 || permits > limiter.limit()) {
    throw std::invalid_argument("RateLimitStage.permits: must be in 1..limiter.limit()");
  }
}

RateLimitStage::RateLimitStage(RateLimiter& limiter, RateLimitStageOptions options)
    : RateLimitStage(limiter, options.permits) {
  listener_ = options.listener;
  name_ = std::move(options.name);
}

std::unique_ptr<StageRun> RateLimitStage::start() const { return std::make_unique<Run>(*this); }
std::size_t RateLimitStage::run_size() const noexcept { return sizeof(Run); }
std::size_t RateLimitStage::run_align() const noexcept { return alignof(Run); }
StageRun* RateLimitStage::start_in(void* storage) const { return emplace_run<Run>(storage, *this); }

RateLimitStage::Stats RateLimitStage::stats() const noexcept {
  const uint64_t admitted = admitted_.value();
  const uint64_t rejected = rejected_.value();
  return {admitted + rejected, admitted, rejected};
}

}  // namespace bulwark::limit
