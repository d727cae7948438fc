#include "bulwark/limit/keyed_rate_limit_stage.h"

#include <stdexcept>

namespace bulwark::limit {

class KeyedRateLimitStage::Run final : public StageRun {
 public:
  explicit Run(const KeyedRateLimitStage& stage) : stage_(stage) {}

  Step enter(CallContext& ctx, TimePoint now) override {
    std::string_view key = ctx.key;
    if (key.empty()) {
      stage_.missing_key_.add();
      if (stage_.options_.missing_key == MissingKey::refuse) {
        stage_.refused_no_key_.add();
        stage_.notify(errc::rejected, std::nullopt, {}, now);
        return Step::finish(AttemptResult::from_policy(errc::rejected, Outcome::final_failure));
      }
      key = stage_.options_.shared_key;
    }
    const RateDecision d = stage_.limiter_.try_acquire(key, now, stage_.options_.permits);
    if (d.allowed) {
      stage_.admitted_.add();
      return Step::proceed();
    }
    stage_.rejected_.add();
    stage_.notify(errc::rate_limited, d.retry_after, ctx.key, now);
    return Step::finish(
        AttemptResult::from_policy(errc::rate_limited, Outcome::final_failure, d.retry_after));
  }

  Step leave(CallContext&, AttemptResult result, TimePoint) override {
    return Step::finish(std::move(result));
  }

 private:
  const KeyedRateLimitStage& stage_;
};

KeyedRateLimitStage::KeyedRateLimitStage(KeyedLimiter& limiter, KeyedRateLimitStageOptions options)
    : limiter_(limiter), options_(std::move(options)) {
  if (options_.permits < 1 || options_.permits > limiter.limit()) {
    throw std::invalid_argument(
        "KeyedRateLimitStageOptions.permits: must be in 1..limiter.limit()");
  }
}

std::unique_ptr<StageRun> KeyedRateLimitStage::start() const {
  return std::make_unique<Run>(*this);
}
std::size_t KeyedRateLimitStage::run_size() const noexcept { return sizeof(Run); }
std::size_t KeyedRateLimitStage::run_align() const noexcept { return alignof(Run); }
StageRun* KeyedRateLimitStage::start_in(void* storage) const {
  return emplace_run<Run>(storage, *this);
}

void KeyedRateLimitStage::notify(errc reason, std::optional<Duration> retry_after,
                                 std::string_view key, TimePoint now) const noexcept {
  if (options_.listener == nullptr) return;
  options_.listener->on_rejected({.stage = kind(),
                                  .name = options_.name,
                                  .reason = reason,
                                  .retry_after = retry_after,
                                  .key = key,
                                  .at = now});
}

KeyedRateLimitStage::Stats KeyedRateLimitStage::stats() const noexcept {
  const uint64_t admitted = admitted_.value();
  const uint64_t rejected = rejected_.value();
  const uint64_t refused = refused_no_key_.value();
  return {admitted + rejected + refused, admitted, rejected, missing_key_.value(), refused};
}

}  // namespace bulwark::limit
