#include "bulwark/pipeline/stages.h"

#include <stdexcept>

#include "bulwark/core/random.h"

namespace bulwark {

// ---------------------------------------------------------------------------------------------
// TimeoutStage

class TimeoutStage::Run final : public StageRun {
 public:
  explicit Run(const TimeoutStage& stage) : stage_(stage) {}

  Step enter(CallContext& ctx, TimePoint now) override {
    stage_.calls_.add();
    own_ = Deadline::after(now, stage_.timeout_);
    ctx.deadline = earliest(ctx.deadline, own_);
    return Step::proceed();
  }
  Step leave(CallContext&, AttemptResult result, TimePoint now) override {
    // Count only the timeouts this stage's own limit caused, not an outer deadline's.
    if (!result.from_call && result.error == errc::timeout && own_.expired(now)) {
      stage_.timeouts_.add();
    }
    return Step::finish(std::move(result));
  }

 private:
  const TimeoutStage& stage_;
  Deadline own_;
};

TimeoutStage::TimeoutStage(Duration timeout) : timeout_(timeout) {
  if (timeout <= Duration::zero()) throw std::invalid_argument("timeout: must be > 0");
}

std::unique_ptr<StageRun> TimeoutStage::start() const { return std::make_unique<Run>(*this); }
std::size_t TimeoutStage::run_size() const noexcept { return sizeof(Run); }
std::size_t TimeoutStage::run_align() const noexcept { return alignof(Run); }
StageRun* TimeoutStage::start_in(void* storage) const { return emplace_run<Run>(storage, *this); }

// ---------------------------------------------------------------------------------------------
// RetryStage

namespace {
uint64_t mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}
}  // namespace

class RetryStage::Run final : public StageRun {
 public:
  explicit Run(const RetryStage& stage)
      : stage_(stage),
        rng_(stage.seed_ ? Random(mix(*stage.seed_ ^ mix(stage.call_counter_.fetch_add(
                                                         1, std::memory_order_relaxed))))
                         : Random(thread_random().next_u64())) {}

  Step enter(CallContext& ctx, TimePoint now) override {
    if (!attempts_) {
      stage_.calls_.add();
      attempts_.emplace(stage_.policy_.start(now, ctx.deadline, stage_.budget_));
    }
    if (ctx.stop.stop_requested()) {
      return Step::finish(cancelled_result());
    }
    if (!attempts_->may_start(now)) {
      stage_.deadline_exceeded_.add();
      return stop_with(errc::deadline_exceeded);
    }
    ctx.attempt = attempts_->attempt();
    const Duration per_try = attempts_->per_try_timeout(now);
    if (per_try != Duration::max()) {
      ctx.deadline = earliest(ctx.deadline, Deadline::after(now, per_try));
    }
    return Step::proceed();
  }

  Step leave(CallContext& ctx, AttemptResult result, TimePoint now) override {
    const Outcome judged = stage_.judge_ ? stage_.judge_(result) : result.outcome;
    const auto decision = attempts_->on_outcome(judged, now, rng_, result.retry_after);
    switch (decision.action) {
      case retry::RetryAction::done:
        return Step::finish(std::move(result));
      case retry::RetryAction::retry:
        if (ctx.stop.stop_requested()) {
          return Step::finish(cancelled_result());
        }
        stage_.retries_.add();
        if (stage_.listener_ != nullptr) {
          // attempt() already counts the next attempt.
          stage_.listener_->on_retry({.name = stage_.name_,
                                      .attempt = attempts_->attempt() - 1,
                                      .delay = decision.delay,
                                      .result = result,
                                      .at = now});
        }
        last_ = std::move(result);
        return Step::again(decision.delay);
      case retry::RetryAction::stop:
        break;
    }
    if (decision.reason == errc::budget_exhausted) {
      stage_.budget_exhausted_.add();
    } else if (decision.reason == errc::deadline_exceeded) {
      stage_.deadline_exceeded_.add();
    } else {
      stage_.exhausted_.add();
    }
    last_ = std::move(result);
    return stop_with(decision.reason);
  }

 private:
  // Finishes with the last attempt's result (so the caller sees the upstream's real answer)
  // annotated with why no further attempt was made.
  Step stop_with(errc reason) {
    if (!last_) {
      return Step::finish(AttemptResult::from_policy(reason, Outcome::final_failure));
    }
    AttemptResult r = std::move(*last_);
    r.policy_reason = make_error_code(reason);
    return Step::finish(std::move(r));
  }

  const RetryStage& stage_;
  Random rng_;
  std::optional<retry::RetryPolicy::Attempts> attempts_;
  std::optional<AttemptResult> last_;
};

RetryStage::RetryStage(retry::RetryPolicy policy, retry::RetryBudget* budget,
                       std::optional<uint64_t> seed)
    : policy_(std::move(policy)), budget_(budget), seed_(seed) {}

RetryStage::RetryStage(retry::RetryPolicy policy, RetryStageOptions options)
    : policy_(std::move(policy)),
      budget_(options.budget),
      seed_(options.seed),
      judge_(std::move(options.judge)),
      listener_(options.listener),
      name_(std::move(options.name)) {}

std::unique_ptr<StageRun> RetryStage::start() const { return std::make_unique<Run>(*this); }
std::size_t RetryStage::run_size() const noexcept { return sizeof(Run); }
std::size_t RetryStage::run_align() const noexcept { return alignof(Run); }
StageRun* RetryStage::start_in(void* storage) const { return emplace_run<Run>(storage, *this); }

RetryStage::Stats RetryStage::stats() const noexcept {
  return {calls_.value(), retries_.value(), exhausted_.value(), budget_exhausted_.value(),
          deadline_exceeded_.value()};
}

// ---------------------------------------------------------------------------------------------
// BreakerStage

class BreakerStage::Run final : public StageRun {
 public:
  explicit Run(const BreakerStage& stage) : stage_(stage) {}
  ~Run() override { abandon(); }

  Step enter(CallContext&, TimePoint now) override {
    auto admission = stage_.breaker_.try_acquire(now);
    if (!admission.allowed) {
      if (stage_.listener_ != nullptr) {
        stage_.listener_->on_rejected({.stage = stage_.kind(),
                                       .name = stage_.breaker_.name(),
                                       .reason = admission.reason,
                                       .retry_after = admission.retry_after,
                                       .at = now});
      }
      return Step::finish(AttemptResult::from_policy(admission.reason, Outcome::final_failure,
                                                     admission.retry_after));
    }
    permit_ = admission.permit;
    return Step::proceed();
  }

  Step leave(CallContext&, AttemptResult result, TimePoint now) override {
    if (permit_) {
      if (!result.from_call && result.error == errc::cancelled) {
        stage_.breaker_.release(*permit_);
      } else {
        switch (stage_.judge_ ? stage_.judge_(result) : default_breaker_verdict(result)) {
          case BreakerVerdict::success:
            stage_.breaker_.on_success(*permit_, now);
            break;
          case BreakerVerdict::failure:
            stage_.breaker_.on_failure(*permit_, now);
            break;
          case BreakerVerdict::ignore:
            stage_.breaker_.ignore(*permit_);
            break;
        }
      }
      permit_.reset();
    }
    return Step::finish(std::move(result));
  }

  void abandon() noexcept override {
    if (permit_) {
      stage_.breaker_.release(*permit_);
      permit_.reset();
    }
  }

 private:
  const BreakerStage& stage_;
  std::optional<circuit::Permit> permit_;
};

std::unique_ptr<StageRun> BreakerStage::start() const { return std::make_unique<Run>(*this); }
std::size_t BreakerStage::run_size() const noexcept { return sizeof(Run); }
std::size_t BreakerStage::run_align() const noexcept { return alignof(Run); }
StageRun* BreakerStage::start_in(void* storage) const { return emplace_run<Run>(storage, *this); }

}  // namespace bulwark
