// FallbackStage<T>: answers a failed call with a value of its own, as a pipeline stage
// (Polly's AddFallback; Resilience4j's fallback decorator).
//
//   auto pipeline = bulwark::Pipeline::Builder(clock)
//                       .fallback([](const bulwark::AttemptResult&) { return Price::unknown(); })
//                       .timeout(2s)
//                       .retry({.max_attempts = 3})
//                       .circuit_breaker(breaker)
//                       .build();
//   bulwark::Result<Price> p = pipeline.execute(fetch_price);   // ExecutionInfo::fallback tells
//
// enter() lets the call through. leave() looks at the inner run's result: when `handle` says
// the fallback answers for it (by default: a failure — fallback::is_failure(outcome), i.e. a
// retryable or final failure, including the policies' own refusals such as circuit_open,
// rate_limited or timeout — but not a cancellation), it calls
//
//     fn(failure, ctx) -> Result<T>
//
// and the call's result becomes that value: the typed adapter returns it, ExecutionInfo::fallback
// is true, and the stages outside see a success (Outcome::success, from_call) — or, if the
// fallback itself returned an error, that error as a final failure; a fallback that throws
// gives errc::call_failed (its exception in ExecutionInfo::exception). Otherwise the result
// passes through unchanged.
//
// Where it goes: outermost, as in the example, answers for everything the policies inside
// could not save (the usual arrangement). Anywhere else it means what it says: inside a retry
// stage every failed attempt is answered at once (nothing is retried).
//
// Both adapters: the fallback works in Pipeline::execute and in bulwark::asio::run alike, since
// both keep the call's value where the stage can write it (ValueSlot, stage.h). The fallback
// function itself is synchronous (a default, a cached value); for an asynchronous fallback use
// bulwark::asio::sequential (asio/fallback.h) around the pipeline. T must be the value type of
// the call the pipeline runs: a pipeline with a FallbackStage<int> used to execute() a call
// returning std::string, or run untyped with Pipeline::run / asio::run_attempts, throws
// std::logic_error from the first call it would answer (a programming error, reported loudly).
//
// Thread-safety: the stage is immutable apart from its striped statistics; `fn` and `handle`
// are called on the thread running the call, concurrently for concurrent calls, and must be
// thread-safe. `handle` must not throw.
#pragma once

#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

#include "bulwark/core/error.h"
#include "bulwark/core/striped_counter.h"
#include "bulwark/pipeline/events.h"
#include "bulwark/pipeline/stage.h"

namespace bulwark::fallback {

struct FallbackStageOptions {
  // Which inner results the fallback answers for. Empty: default_fallback_handles.
  std::function<bool(const AttemptResult&)> handle;
  // Told each time the fallback answers (EventListener::on_fallback) when not null, as `name`.
  EventListener* listener = nullptr;
  std::string name;
};

// The default: a retryable or final failure that is not a cancellation.
constexpr bool default_fallback_handles(const AttemptResult& r) noexcept {
  const bool cancelled = !r.from_call && r.error == errc::cancelled;
  return is_breaker_failure(r.outcome) && !cancelled;
}

template <class T>
class FallbackStage final : public Stage {
 public:
  using Function = std::function<Result<T>(const AttemptResult& failure, const CallContext& ctx)>;

  // Throws std::invalid_argument if `fn` is empty.
  explicit FallbackStage(Function fn, FallbackStageOptions options = {})
      : fn_(std::move(fn)),
        handle_(std::move(options.handle)),
        listener_(options.listener),
        name_(std::move(options.name)) {
    if (!fn_) throw std::invalid_argument("FallbackStage: the fallback function is empty");
  }

  std::unique_ptr<StageRun> start() const override { return std::make_unique<Run>(*this); }
  std::size_t run_size() const noexcept override { return sizeof(Run); }
  std::size_t run_align() const noexcept override { return alignof(Run); }
  StageRun* start_in(void* storage) const override { return emplace_run<Run>(storage, *this); }
  std::string_view kind() const noexcept override { return "fallback"; }

  struct Stats {
    uint64_t calls;     // inner runs the stage saw finish
    uint64_t answered;  // of those, answered by the fallback
    uint64_t failed;    // of those answered, the fallback returned an error or threw
  };
  Stats stats() const noexcept { return {calls_.value(), answered_.value(), failed_.value()}; }

 private:
  class Run final : public StageRun {
   public:
    explicit Run(const FallbackStage& stage) : stage_(stage) {}
    Step enter(CallContext&, TimePoint) override { return Step::proceed(); }
    Step leave(CallContext& ctx, AttemptResult result, TimePoint now) override {
      stage_.calls_.add();
      const bool handles =
          stage_.handle_ ? stage_.handle_(result) : default_fallback_handles(result);
      if (!handles) return Step::finish(std::move(result));
      std::optional<Result<T>>* value = ctx.value_slot ? ctx.value_slot->get<T>() : nullptr;
      if (value == nullptr) {
        throw std::logic_error(
            "FallbackStage<T>: the call's value type is not T, or the pipeline runs untyped");
      }
      stage_.answered_.add();
      if (stage_.listener_ != nullptr) {
        stage_.listener_->on_fallback(
            {.name = stage_.name_, .alternative = 1, .failure = result, .at = now});
      }
      std::exception_ptr thrown;
      try {
        value->emplace(stage_.fn_(result, ctx));
      } catch (...) {
        thrown = std::current_exception();
        value->emplace(make_error_code(errc::call_failed));
      }
      ctx.value_slot->exception() = thrown;
      ctx.value_slot->replaced = true;
      AttemptResult answer;
      if (!**value) {
        stage_.failed_.add();
        answer.outcome = Outcome::final_failure;
        answer.error = (*value)->error();
      }
      return Step::finish(std::move(answer));
    }

   private:
    const FallbackStage& stage_;
  };

  Function fn_;
  std::function<bool(const AttemptResult&)> handle_;
  EventListener* listener_;
  std::string name_;
  mutable StripedCounter calls_, answered_, failed_;
};

}  // namespace bulwark::fallback
