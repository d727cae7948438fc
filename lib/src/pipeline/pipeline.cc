#include "bulwark/pipeline/pipeline.h"

#include <condition_variable>
#include <mutex>

namespace bulwark {
namespace {

// Runs one Step::wait on the calling thread: blocks until the Waiter grants or refuses, the
// deadline passes or a stop is requested. The deadline is read from `clock` once and then
// waited for in real time (a thread cannot sleep on a ManualClock), so with a ManualClock the
// wait lasts as long in real time as the clock says is left. Returns false if the caller asked
// to stop.
bool wait_sync(Clock& clock, Waiter& waiter, Deadline deadline, const std::stop_token& stop) {
  struct Shared {
    std::mutex mu;
    std::condition_variable_any cv;
    bool done = false;
  };
  auto shared = std::make_shared<Shared>();  // outlives us if `ready` comes late
  const Duration left = deadline.remaining(clock.now());
  if (left <= Duration::zero() || stop.stop_requested()) {
    waiter.cancel();
    return !stop.stop_requested();
  }
  waiter.start([shared](bool) {
    std::lock_guard lock(shared->mu);
    shared->done = true;
    shared->cv.notify_all();
  });
  std::unique_lock lock(shared->mu);
  const auto is_done = [&] { return shared->done; };
  if (deadline.is_never()) {
    shared->cv.wait(lock, stop, is_done);
  } else {
    shared->cv.wait_until(lock, stop, std::chrono::steady_clock::now() + left, is_done);
  }
  if (!shared->done) {
    lock.unlock();
    if (!waiter.cancel()) {
      // `ready` is being called right now: wait for it so the grant is not lost.
      lock.lock();
      shared->cv.wait(lock, is_done);
    }
  }
  return !stop.stop_requested();
}

}  // namespace

AttemptResult Pipeline::run(CallContext ctx, FunctionRef<AttemptResult(CallContext&)> call) const {
  return run_from(0, ctx, call);
}

AttemptResult Pipeline::run_from(std::size_t index, CallContext& ctx,
                                 FunctionRef<AttemptResult(CallContext&)> call) const {
  if (index == stages_.size()) {
    // The innermost point: the one place the effective deadline is enforced.
    if (ctx.stop.stop_requested()) {
      return cancelled_result();
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
    if (step.kind == Step::Kind::wait) {
      const Deadline until = earliest(step.wait_deadline, inner.deadline);
      if (!wait_sync(*clock_, *step.waiter, until, inner.stop)) {
        run->abandon();
        return cancelled_result();
      }
      continue;  // enter() again: the stage reads the wait's fate from its Waiter
    }

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
