#include "bulwark/pipeline/pipeline.h"

#include <algorithm>
#include <condition_variable>
#include <mutex>
#include <new>
#include <stdexcept>

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

constexpr std::size_t align_up(std::size_t n, std::size_t align) noexcept {
  return (n + align - 1) / align * align;
}

// The synchronous executor's per-call storage: on the stack up to kInlineCallStorage bytes.
class SyncStorage {
 public:
  SyncStorage(std::size_t size, std::size_t align) : align_(align) {
    if (size > sizeof(inline_) || align > alignof(std::max_align_t)) {
      heap_ = ::operator new(size, std::align_val_t(align));
    }
  }
  ~SyncStorage() {
    if (heap_ != nullptr) ::operator delete(heap_, std::align_val_t(align_));
  }
  SyncStorage(const SyncStorage&) = delete;
  SyncStorage& operator=(const SyncStorage&) = delete;
  void* data() noexcept { return heap_ != nullptr ? heap_ : static_cast<void*>(inline_); }

 private:
  alignas(std::max_align_t) std::byte inline_[Pipeline::kInlineCallStorage];
  void* heap_ = nullptr;
  std::size_t align_;
};

}  // namespace

StageRun* Stage::start_in(void*) const {
  throw std::logic_error("stage reports run_size() > 0 but does not implement start_in()");
}

// ---------------------------------------------------------------------------------------------
// Pipeline

Pipeline::Pipeline(Clock& clock, std::vector<std::shared_ptr<const Stage>> stages)
    : clock_(&clock), stages_(std::move(stages)) {
  // Layout: CallContext[n + 1] | StageRun*[n] | one slot per stage.
  std::size_t offset = (stages_.size() + 1) * sizeof(CallContext);
  offset = align_up(offset, alignof(StageRun*));
  runs_offset_ = offset;
  offset += stages_.size() * sizeof(StageRun*);
  std::size_t max_align = std::max(alignof(CallContext), alignof(StageRun*));
  slots_.reserve(stages_.size());
  for (const auto& stage : stages_) {
    std::size_t size = stage->run_size();
    std::size_t align = stage->run_align();
    const bool in_place = size > 0;
    if (!in_place) {
      size = sizeof(std::unique_ptr<StageRun>);
      align = alignof(std::unique_ptr<StageRun>);
    } else if (align == 0 || (align & (align - 1)) != 0) {
      throw std::invalid_argument("pipeline stage: run_align() must be a power of two");
    }
    offset = align_up(offset, align);
    slots_.push_back({offset, in_place});
    offset += size;
    max_align = std::max(max_align, align);
  }
  storage_size_ = align_up(offset, max_align);
  storage_align_ = max_align;
}

AttemptResult Pipeline::run(CallContext ctx, FunctionRef<AttemptResult(CallContext&)> call) const {
  SyncStorage storage(storage_size_, storage_align_);
  PipelineCall walk(*this, ctx, storage.data());
  for (PipelineCall::Action a = walk.start();;) {
    switch (a.kind) {
      case PipelineCall::Kind::done:
        return walk.take_result();
      case PipelineCall::Kind::call: {
        // The innermost point: the one place the effective deadline is enforced (PipelineCall
        // did not start the call once it had passed; a result arriving after it is discarded).
        CallContext& inner = walk.call_context();
        AttemptResult result;
        try {
          result = call(inner);
        } catch (...) {
          walk.fail();
          throw;
        }
        if (inner.deadline.expired(clock_->now())) result = timeout_result();
        a = walk.on_call(std::move(result));
        break;
      }
      case PipelineCall::Kind::wait: {
        bool go_on = false;
        try {
          go_on = wait_sync(*clock_, *a.waiter, a.until, *a.stop);
        } catch (...) {
          walk.fail();
          throw;
        }
        a = go_on ? walk.on_wait_end() : walk.on_wait_stopped();
        break;
      }
      case PipelineCall::Kind::sleep:
        try {
          clock_->sleep_for(a.delay);
        } catch (...) {
          walk.fail();
          throw;
        }
        a = walk.on_sleep_end();
        break;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// PipelineCall

PipelineCall::PipelineCall(const Pipeline& pipeline, const CallContext& ctx, void* storage)
    : pipeline_(pipeline), base_(static_cast<std::byte*>(storage)), size_(pipeline.stages_.size()) {
  auto* contexts = reinterpret_cast<CallContext*>(base_);
  ::new (static_cast<void*>(contexts)) CallContext(ctx);
  for (std::size_t i = 1; i <= size_; ++i) ::new (static_cast<void*>(contexts + i)) CallContext();
}

PipelineCall::~PipelineCall() {
  for (std::size_t j = live_; j-- > 0;) destroy(j);
  live_ = 0;
  auto* contexts = reinterpret_cast<CallContext*>(base_);
  for (std::size_t i = 0; i <= size_; ++i) contexts[i].~CallContext();
}

CallContext& PipelineCall::context(std::size_t level) noexcept {
  return std::launder(reinterpret_cast<CallContext*>(base_))[level];
}

StageRun*& PipelineCall::run(std::size_t level) noexcept {
  return reinterpret_cast<StageRun**>(base_ + pipeline_.runs_offset_)[level];
}

CallContext& PipelineCall::call_context() noexcept { return context(size_); }

void PipelineCall::construct(std::size_t level) {
  const Pipeline::Slot& slot = pipeline_.slots_[level];
  const Stage& stage = *pipeline_.stages_[level];
  void* at = base_ + slot.offset;
  if (slot.in_place) {
    run(level) = stage.start_in(at);
  } else {
    auto* owned = ::new (at) std::unique_ptr<StageRun>(stage.start());
    run(level) = owned->get();
  }
  live_ = level + 1;
}

void PipelineCall::destroy(std::size_t level) noexcept {
  const Pipeline::Slot& slot = pipeline_.slots_[level];
  if (slot.in_place) {
    run(level)->~StageRun();
  } else {
    std::launder(reinterpret_cast<std::unique_ptr<StageRun>*>(base_ + slot.offset))->~unique_ptr();
  }
  run(level) = nullptr;
  live_ = level;
}

void PipelineCall::unwind(std::size_t limit) noexcept {
  for (std::size_t j = live_; j-- > 0;) {
    if (j < limit) run(j)->abandon();
    destroy(j);
  }
  phase_ = Phase::done;
}

PipelineCall::Action PipelineCall::start() { return descend(); }

PipelineCall::Action PipelineCall::descend() {
  Clock& clock = pipeline_.clock();
  for (;;) {
    if (level_ == size_) {
      const CallContext& ctx = context(size_);
      if (ctx.stop.stop_requested()) return ascend(cancelled_result());
      if (ctx.deadline.expired(clock.now())) return ascend(timeout_result());
      phase_ = Phase::calling;
      return Action{.kind = Kind::call};
    }
    Step step;
    try {
      if (live_ == level_) construct(level_);
      CallContext& inner = context(level_ + 1);
      inner = context(level_);
      step = run(level_)->enter(inner, clock.now());
    } catch (...) {
      unwind(level_);
      throw;
    }
    switch (step.kind) {
      case Step::Kind::finish:
        destroy(level_);
        return ascend(std::move(step.result));
      case Step::Kind::wait: {
        CallContext& inner = context(level_ + 1);
        phase_ = Phase::waiting;
        return Action{.kind = Kind::wait,
                      .waiter = std::move(step.waiter),
                      .until = earliest(step.wait_deadline, inner.deadline),
                      .stop = &inner.stop};
      }
      case Step::Kind::proceed:
      case Step::Kind::again:
        break;
    }
    ++level_;
  }
}

PipelineCall::Action PipelineCall::ascend(AttemptResult result) {
  Clock& clock = pipeline_.clock();
  while (level_ > 0) {
    --level_;
    Step step;
    try {
      step = run(level_)->leave(context(level_ + 1), std::move(result), clock.now());
    } catch (...) {
      unwind(level_);
      throw;
    }
    if (step.kind == Step::Kind::again) {
      phase_ = Phase::sleeping;
      return Action{.kind = Kind::sleep, .delay = step.delay};
    }
    result = std::move(step.result);
    destroy(level_);
  }
  phase_ = Phase::done;
  result_ = std::move(result);
  return Action{.kind = Kind::done};
}

PipelineCall::Action PipelineCall::on_call(AttemptResult result) {
  phase_ = Phase::idle;
  return ascend(std::move(result));
}

PipelineCall::Action PipelineCall::on_wait_end() {
  phase_ = Phase::idle;
  return descend();
}

PipelineCall::Action PipelineCall::on_wait_stopped() {
  phase_ = Phase::idle;
  run(level_)->abandon();
  destroy(level_);
  return ascend(cancelled_result());
}

PipelineCall::Action PipelineCall::on_sleep_end() {
  phase_ = Phase::idle;
  return descend();
}

void PipelineCall::fail() noexcept {
  switch (phase_) {
    case Phase::calling:
      unwind(size_);
      break;
    case Phase::waiting:
      unwind(level_ + 1);
      break;
    case Phase::sleeping:
      unwind(level_);
      break;
    case Phase::idle:
    case Phase::done:
      unwind(0);
      break;
  }
}

// ---------------------------------------------------------------------------------------------
// Builder

Pipeline::Builder& Pipeline::Builder::timeout(Duration timeout) {
  stages_.push_back(std::make_shared<TimeoutStage>(timeout));
  return *this;
}

Pipeline::Builder& Pipeline::Builder::retry(retry::RetryOptions options, retry::RetryBudget* budget,
                                            std::optional<uint64_t> seed) {
  RetryStageOptions stage_options;
  stage_options.budget = budget;
  stage_options.seed = seed;
  stage_options.listener = listener_;
  stages_.push_back(std::make_shared<RetryStage>(retry::RetryPolicy(std::move(options)),
                                                 std::move(stage_options)));
  return *this;
}

Pipeline::Builder& Pipeline::Builder::retry(retry::RetryOptions options,
                                            RetryStageOptions stage_options) {
  stages_.push_back(std::make_shared<RetryStage>(retry::RetryPolicy(std::move(options)),
                                                 with_listener(std::move(stage_options))));
  return *this;
}

Pipeline::Builder& Pipeline::Builder::circuit_breaker(circuit::CircuitBreaker& breaker,
                                                      BreakerStageOptions options) {
  stages_.push_back(std::make_shared<BreakerStage>(breaker, with_listener(std::move(options))));
  return *this;
}

Pipeline::Builder& Pipeline::Builder::bulkhead(limit::Bulkhead& bulkhead,
                                               limit::BulkheadStageOptions options) {
  stages_.push_back(std::make_shared<limit::BulkheadStage>(bulkhead, with_listener(options)));
  return *this;
}

Pipeline::Builder& Pipeline::Builder::rate_limit(limit::RateLimiter& limiter,
                                                 limit::RateLimitStageOptions options) {
  stages_.push_back(
      std::make_shared<limit::RateLimitStage>(limiter, with_listener(std::move(options))));
  return *this;
}

Pipeline::Builder& Pipeline::Builder::keyed_rate_limit(limit::KeyedLimiter& limiter,
                                                       limit::KeyedRateLimitStageOptions options) {
  stages_.push_back(
      std::make_shared<limit::KeyedRateLimitStage>(limiter, with_listener(std::move(options))));
  return *this;
}

Pipeline::Builder& Pipeline::Builder::stage(std::shared_ptr<const Stage> stage) {
  if (!stage) throw std::invalid_argument("pipeline stage: null");
  stages_.push_back(std::move(stage));
  return *this;
}

}  // namespace bulwark
