#include "bulwark/pipeline/pipeline.h"

namespace bulwark {

AttemptResult Pipeline::run(CallContext ctx, FunctionRef<AttemptResult(CallContext&)> call) const {
  return run_from(0, ctx, call);
}

AttemptResult Pipeline::run_from(std::size_t index, CallContext& ctx,
                                 FunctionRef<AttemptResult(CallContext&)> call) const {
  if (index == stages_.size()) {
    // The innermost point: the one place the effective deadline is enforced.
    if (ctx.stop.stop_requested()) {
      return AttemptResult::from_policy(errc::cancelled, Outcome::final_failure);
    }
    if (ctx.deadline.expired(clock_->now())) return timeout_result();
    AttemptResult r = call(ctx);
    if (ctx.deadline.expired(clock_->now())) return timeout_result();
    return r;
  }

  std::unique_ptr<StageRun> run = stages_[index]->start();
  for (;;) {
    CallContext inner = ctx;
    Step step = run->enter(inner, clock_->now());
    if (step.kind == Step::Kind::finish) return std::move(step.result);

    AttemptResult result;
    try {
      result = run_from(index + 1, inner, call);
    } catch (...) {
      run->abandon();
      throw;
    }
    step = run->leave(inner, std::move(result), clock_->now());
    if (step.kind != Step::Kind::again) return std::move(step.result);
    clock_->sleep_for(step.delay);
  }
}

Pipeline::Builder& Pipeline::Builder::timeout(Duration timeout) {
  stages_.push_back(std::make_shared<TimeoutStage>(timeout));
  return *this;
}

Pipeline::Builder& Pipeline::Builder::retry(retry::RetryOptions options, retry::RetryBudget* budget,
                                            std::optional<uint64_t> seed) {
  stages_.push_back(
      std::make_shared<RetryStage>(retry::RetryPolicy(std::move(options)), budget, seed));
  return *this;
}

Pipeline::Builder& Pipeline::Builder::circuit_breaker(circuit::CircuitBreaker& breaker) {
  stages_.push_back(std::make_shared<BreakerStage>(breaker));
  return *this;
}

Pipeline::Builder& Pipeline::Builder::stage(std::shared_ptr<const Stage> stage) {
  if (!stage) throw std::invalid_argument("pipeline stage: null");
  stages_.push_back(std::move(stage));
  return *this;
}

}  // namespace bulwark
