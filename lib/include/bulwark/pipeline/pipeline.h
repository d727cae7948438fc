// Pipeline: policies composed around a call, outermost first.
//
// A Pipeline is an ordered list of stages (stage.h). Stages run in the order they were added
// to the Builder, the first one outermost. The order most users want, and the one the
// gateway uses, is
//
//     timeout (whole call) -> retry (per-try timeout inside) -> circuit breaker -> call
//
// so a breaker sees every try, each retry asks the breaker again, and the total timeout bounds
// retries and backoff together. Other orders are allowed and mean what they say: a timeout
// added after retry() bounds each try; a breaker added before retry() sees one result per call
// (the final one) and rejects the whole call when open.
//
// The Builder has a method for every policy that can be a stage: timeout, retry,
// circuit_breaker, bulkhead, rate_limit, keyed_rate_limit (one limit per
// ExecuteOptions::key) and fallback (a value of its own for a failed call); stage() adds any
// other Stage. Hedging is not a stage (see Builder). listener() registers an EventListener
// (events.h) with the stages added after it. A typical full order is
//
//     fallback -> rate limit -> timeout -> bulkhead -> retry -> circuit breaker -> call
//
// execute() is the synchronous adapter. It wraps any callable that takes `const CallContext&`
// (or nothing) and returns a value, void or Result<T>, or throws:
//   - a value is a success unless the classifier says otherwise;
//   - Result<T> with an error is a retryable failure by default;
//   - an exception is caught and becomes errc::call_failed (retryable by default); the
//     exception itself is kept in ExecutionInfo::exception so the caller may rethrow it.
// It returns Result<T>: the wrapped call's last result, a fallback stage's value, or the
// policy error that prevented one (errc::circuit_open, errc::timeout, errc::deadline_exceeded,
// errc::cancelled, errc::rate_limited, errc::queue_full, ...).
// Waiting between retries uses Clock::sleep_for, so on a ManualClock it takes no real time.
// Timeouts in the synchronous adapter are cooperative: the callable should honour
// ctx.deadline / ctx.stop; a result that arrives after the deadline is discarded as a timeout.
// For real cancellation use the Asio adapter (bulwark/asio/pipeline.h).
//
// Allocations: execute() makes none of its own when every stage constructs its runs in place
// (Stage::run_size(); every built-in stage does) and call_storage_size() fits
// kInlineCallStorage: the runs and the per-stage contexts live in one buffer on the stack. A
// stage that implements only Stage::start() costs one allocation per run; waiting on a Waiter
// (a queued bulkhead) allocates the wait's shared state.
//
// Thread-safety: a built Pipeline is immutable and may run any number of concurrent calls.
// Stages refer to shared policy state (breakers, budgets) that must outlive the Pipeline.
//
// Example:
//   bulwark::circuit::CircuitBreaker breaker("users", {}, clock);
//   bulwark::retry::RetryBudget budget;
//   auto pipeline = bulwark::Pipeline::Builder(clock)
//                       .timeout(2s)
//                       .retry({.max_attempts = 3, .per_try_timeout = 500ms}, &budget)
//                       .circuit_breaker(breaker)
//                       .build();
//   bulwark::Result<User> user = pipeline.execute([&](const bulwark::CallContext& ctx) {
//     return client.get_user(id, ctx.deadline);   // returns Result<User>
//   });
#pragma once

#include <concepts>
#include <cstddef>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "bulwark/core/clock.h"
#include "bulwark/core/error.h"
#include "bulwark/core/function_ref.h"
#include "bulwark/fallback/fallback_stage.h"
#include "bulwark/limit/bulkhead_stage.h"
#include "bulwark/limit/keyed_rate_limit_stage.h"
#include "bulwark/limit/rate_limit_stage.h"
#include "bulwark/pipeline/stage.h"
#include "bulwark/pipeline/stages.h"

namespace bulwark {

struct ExecutionInfo {
  uint32_t attempts = 0;                    // times the wrapped callable was invoked
  Outcome outcome = Outcome::success;       // how the final result was judged
  boost::system::error_code policy_reason;  // why policies stopped retrying, if they did
  std::exception_ptr exception;             // the callable's exception, if it produced the result
  bool fallback = false;  // a fallback stage answered the call (the result is its value)
};

struct ExecuteOptions {
  Deadline deadline = Deadline::never();  // overall deadline, on top of any timeout stage
  std::stop_token stop;                   // cooperative cancellation by the caller
  ExecutionInfo* info = nullptr;          // filled in when not null
  // The call's key for keyed stages (CallContext::key): must stay valid until the call returns.
  std::string_view key;
};

// A classifier may return an Outcome, or a Classification when it also extracts a server's
// retry hint from the result (e.g. an HTTP Retry-After header) or the call's own status code
// (e.g. HTTP 429), which stage predicates can then judge by (AttemptResult::status).
struct Classification {
  Outcome outcome = Outcome::success;
  std::optional<Duration> retry_after;
  uint32_t status = 0;
};

// The default classification: a value is a success, any error a retryable failure.
struct DefaultClassifier {
  template <class T>
  Outcome operator()(const Result<T>& r) const noexcept {
    return r ? Outcome::success : Outcome::retryable_failure;
  }
};

namespace detail {
template <class R>
struct UnwrapResult {
  using type = R;
};
template <class T>
struct UnwrapResult<boost::system::result<T, boost::system::error_code>> {
  using type = T;
};

template <class F>
decltype(auto) invoke_with_context(F& fn, const CallContext& ctx) {
  if constexpr (std::is_invocable_v<F&, const CallContext&>) {
    return std::invoke(fn, ctx);
  } else {
    return std::invoke(fn);
  }
}

template <class F>
using CallReturn =
    decltype(invoke_with_context(std::declval<F&>(), std::declval<const CallContext&>()));

template <class F>
using ValueOf = typename UnwrapResult<std::remove_cvref_t<CallReturn<F>>>::type;

// Runs fn once and wraps whatever it returns into Result<T>.
template <class T, class F>
Result<T> call_as_result(F& fn, const CallContext& ctx) {
  using R = std::remove_cvref_t<CallReturn<F>>;
  if constexpr (std::is_void_v<R>) {
    invoke_with_context(fn, ctx);
    return {};
  } else if constexpr (std::is_same_v<R, Result<T>>) {
    return invoke_with_context(fn, ctx);
  } else {
    return Result<T>(invoke_with_context(fn, ctx));
  }
}

template <class C, class T>
Classification classify(C& classifier, const Result<T>& r) {
  using Ret = std::invoke_result_t<C&, const Result<T>&>;
  if constexpr (std::is_same_v<Ret, Classification>) {
    return classifier(r);
  } else {
    static_assert(std::is_same_v<Ret, Outcome>, "a classifier returns Outcome or Classification");
    return Classification{classifier(r), std::nullopt};
  }
}

// What the stages see of one attempt's typed result.
template <class C, class T>
AttemptResult judge(C& classifier, const Result<T>& r) {
  const Classification c = classify(classifier, r);
  AttemptResult out;
  out.outcome = c.outcome;
  out.status = c.status;
  out.retry_after = c.retry_after;
  if (!r) out.error = r.error();
  return out;
}

// The typed result of a whole execution: the last call's result if the stages let it through,
// else the policy's error; fills `options.info`. Shared by the sync and Asio adapters.
template <class T>
Result<T> finish(const AttemptResult& final_result, std::optional<Result<T>>& last,
                 const std::exception_ptr& last_exception, uint32_t calls, const ValueSlot& slot,
                 const ExecuteOptions& options) {
  const bool from_call = final_result.from_call && last.has_value();
  if (options.info) {
    options.info->attempts = calls;
    options.info->outcome = final_result.outcome;
    options.info->policy_reason = final_result.policy_reason;
    options.info->exception = from_call ? last_exception : nullptr;
    options.info->fallback = from_call && slot.replaced;
  }
  if (from_call) return std::move(*last);
  return Result<T>(final_result.error);
}
}  // namespace detail

class PipelineCall;

class Pipeline {
 public:
  class Builder;

  // Runs `fn` under every stage. See the file comment for what fn may be and return.
  template <class F>
  Result<detail::ValueOf<F>> execute(F&& fn, const ExecuteOptions& options = {}) const {
    return execute_classified(std::forward<F>(fn), DefaultClassifier{}, options);
  }

  // As execute(), judging each result with `classify` (Result<T> -> Outcome or Classification).
  template <class F, class C>
  Result<detail::ValueOf<F>> execute_classified(F&& fn, C&& classify,
                                                const ExecuteOptions& options = {}) const;

  // The untyped core of execute(): runs `call` (one attempt) under every stage.
  AttemptResult run(CallContext ctx, FunctionRef<AttemptResult(CallContext&)> call) const;

  const std::vector<std::shared_ptr<const Stage>>& stages() const noexcept { return stages_; }
  Clock& clock() const noexcept { return *clock_; }

  // Bytes and alignment of the storage one call's PipelineCall needs (its contexts and the runs
  // of every in-place stage), fixed when the pipeline is built. The synchronous executor keeps
  // up to kInlineCallStorage bytes on the stack and allocates only beyond that.
  std::size_t call_storage_size() const noexcept { return storage_size_; }
  std::size_t call_storage_align() const noexcept { return storage_align_; }
  static constexpr std::size_t kInlineCallStorage = 1024;

 private:
  friend class PipelineCall;
  struct Slot {
    std::size_t offset;  // of the run (in place) or of its std::unique_ptr (heap)
    bool in_place;
  };

  // Throws std::invalid_argument for a stage whose run_align() is not a power of two.
  Pipeline(Clock& clock, std::vector<std::shared_ptr<const Stage>> stages);

  Clock* clock_;
  std::vector<std::shared_ptr<const Stage>> stages_;
  std::vector<Slot> slots_;
  std::size_t runs_offset_ = 0;  // the StageRun* of each stage
  std::size_t storage_size_ = 0;
  std::size_t storage_align_ = alignof(CallContext);
};

// One call's walk through a pipeline's stages: the protocol of stage.h as a state machine that
// tells its executor what to do next (run the call, wait, sleep) and never waits or calls
// anything itself. The synchronous executor (Pipeline::run) and the Asio executor
// (bulwark::asio::run_attempts) drive it; an executor for another event loop can too.
//
//   PipelineCall walk(pipeline, ctx, storage);
//   for (PipelineCall::Action a = walk.start();;) {
//     switch (a.kind) {
//       case Kind::call:  a = walk.on_call(call(walk.call_context())); break;
//       case Kind::wait:  wait on *a.waiter until a.until (or *a.stop);
//                         a = stopped ? walk.on_wait_stopped() : walk.on_wait_end(); break;
//       case Kind::sleep: sleep a.delay; a = walk.on_sleep_end(); break;
//       case Kind::done:  return walk.take_result();
//     }
//   }
//
// What the walk does for the executor, exactly as the stage protocol says: it constructs each
// stage's run when the call first reaches it (in place in `storage`, or with Stage::start() for
// stages without run_size()), enters the stages outermost first, stops at the innermost point
// with cancelled_result() when ctx.stop is requested and timeout_result() when the deadline has
// passed (the call does not run), hands the call's result to the stages' leave() innermost
// first, re-enters a stage after its wait or its `again` delay, and destroys each run when the
// inner run it belongs to has finished.
//
// Exceptions: an exception thrown by a stage (enter, leave) abandons the runs outside that
// stage, destroys every run and propagates out of the member that was called. When the
// executor's own action throws (the call, a wait, a sleep: e.g. a coroutine cancelled by its
// caller), the executor calls fail() and lets the exception go on: fail() abandons every run
// the action was inside of (for a wait, the waiting stage's run too, which may hold a late
// grant) and destroys every run.
//
// Storage: pipeline.call_storage_size() bytes aligned to call_storage_align(), owned by the
// executor, outliving the PipelineCall. The pipeline and its stages must outlive it too.
//
// Thread-safety: one PipelineCall belongs to one call; its members are called one at a time
// (from any thread: an Asio call may resume on another thread of its executor).
class PipelineCall {
 public:
  struct Action {
    enum class Kind : uint8_t { call, wait, sleep, done };
    Kind kind = Kind::done;
    Duration delay{};                       // sleep: how long
    std::shared_ptr<Waiter> waiter;         // wait: the stage's Waiter (hold it while waiting)
    Deadline until;                         // wait: the earlier of the wait's deadline and ctx's
    const std::stop_token* stop = nullptr;  // wait: the waiting stage's stop token
  };
  using Kind = Action::Kind;

  PipelineCall(const Pipeline& pipeline, const CallContext& ctx, void* storage);
  ~PipelineCall();
  PipelineCall(const PipelineCall&) = delete;
  PipelineCall& operator=(const PipelineCall&) = delete;

  // The first action. Call once.
  Action start();
  // Kind::call: the context to run the call with (the innermost stage's).
  CallContext& call_context() noexcept;
  // Kind::call: the call ended with `result` (the executor turns a late result into
  // timeout_result() first when it enforces the deadline that way).
  Action on_call(AttemptResult result);
  // Kind::wait: the wait ended by the Waiter's `ready`, at its deadline or the context's (the
  // executor withdrew the Waiter, see Waiter), but not by a stop: the stage is entered again.
  Action on_wait_end();
  // Kind::wait: the caller's stop token fired during the wait (the Waiter was withdrawn): the
  // stage is abandoned and finishes with cancelled_result().
  Action on_wait_stopped();
  // Kind::sleep: the delay has passed; the stage is entered again.
  Action on_sleep_end();
  // The executor's pending action threw: see the class comment. The walk is over.
  void fail() noexcept;
  // Kind::done: the call's final result.
  AttemptResult take_result() noexcept { return std::move(result_); }

 private:
  enum class Phase : uint8_t { idle, calling, waiting, sleeping, done };

  CallContext& context(std::size_t level) noexcept;
  StageRun*& run(std::size_t level) noexcept;
  void construct(std::size_t level);
  void destroy(std::size_t level) noexcept;
  // Abandons the live runs below `limit` and destroys every live run, innermost first.
  void unwind(std::size_t limit) noexcept;
  Action descend();
  Action ascend(AttemptResult result);

  const Pipeline& pipeline_;
  std::byte* base_;
  std::size_t size_;       // stages
  std::size_t level_ = 0;  // the stage being entered, left, waited for (size_: the call)
  std::size_t live_ = 0;   // runs constructed: those of levels 0 .. live_ - 1
  Phase phase_ = Phase::idle;
  AttemptResult result_;
};

class Pipeline::Builder {
 public:
  explicit Builder(Clock& clock = SystemClock::instance()) : clock_(clock) {}

  // The stages added after this call (by the methods below; not stage()) report their events
  // to `listener` (events.h), unless their options name another. It must outlive the pipeline.
  Builder& listener(EventListener& listener) {
    listener_ = &listener;
    return *this;
  }

  // Bounds everything added after it (the inner stages and the call) to `timeout`.
  Builder& timeout(Duration timeout);
  // Retries the inner stages per `options`; retries withdraw from `budget` when not null.
  // `seed` makes jitter reproducible (tests); leave it empty in production.
  Builder& retry(retry::RetryOptions options, retry::RetryBudget* budget = nullptr,
                 std::optional<uint64_t> seed = std::nullopt);
  // The same with the stage's options (budget, seed, judge: see stages.h).
  Builder& retry(retry::RetryOptions options, RetryStageOptions stage_options);
  // `options.judge` re-judges results for this breaker only (BreakerVerdict::ignore: counted
  // neither as a success nor as a failure).
  Builder& circuit_breaker(circuit::CircuitBreaker& breaker, BreakerStageOptions options = {});
  // A concurrency limit with an optional queue: limit::BulkheadStage (waits for a permit, or
  // refuses with queue_full / wait_timeout / throttled / rejected).
  Builder& bulkhead(limit::Bulkhead& bulkhead, limit::BulkheadStageOptions options = {});
  // A shared rate limit: limit::RateLimitStage (refuses with errc::rate_limited + retry_after).
  Builder& rate_limit(limit::RateLimiter& limiter, limit::RateLimitStageOptions options = {});
  // One rate limit per call key (ExecuteOptions::key): limit::KeyedRateLimitStage. Refuses with
  // errc::rate_limited and the key's retry_after; keyless calls per options.missing_key.
  Builder& keyed_rate_limit(limit::KeyedLimiter& limiter,
                            limit::KeyedRateLimitStageOptions options = {});
  // Answers a failed call with a value of its own: fallback::FallbackStage<T> (see
  // fallback/fallback_stage.h; usually added first, outermost). `fn` is invocable as
  // fn(const AttemptResult& failure, const CallContext&), fn(const AttemptResult&) or fn()
  // (as a const callable: concurrent calls share it), and returns T, Result<T> or void, T being
  // the value type of the calls the pipeline runs.
  template <class F>
  Builder& fallback(F fn, bulwark::fallback::FallbackStageOptions options = {});

  // Hedging has no builder method: a hedge runs several attempts of the inner stages at once,
  // which the stage protocol (one inner run at a time, driven by a possibly blocking executor)
  // cannot express, and the synchronous adapter could not cancel the losers. Hedge around a
  // per-attempt pipeline with bulwark::asio::run_hedged (asio/fallback.h) instead.
  // Any other stage (e.g. a user's own policy).
  Builder& stage(std::shared_ptr<const Stage> stage);

  Pipeline build() const { return Pipeline(clock_, stages_); }

 private:
  template <class Options>
  Options with_listener(Options options) const {
    if (options.listener == nullptr) options.listener = listener_;
    return options;
  }

  Clock& clock_;
  std::vector<std::shared_ptr<const Stage>> stages_;
  EventListener* listener_ = nullptr;
};

namespace detail {
// The value type a fallback function produces, whichever of the accepted forms it has.
template <class F>
auto invoke_fallback(F& fn, const AttemptResult& failure, const CallContext& ctx) {
  if constexpr (std::is_invocable_v<F&, const AttemptResult&, const CallContext&>) {
    return std::invoke(fn, failure, ctx);
  } else if constexpr (std::is_invocable_v<F&, const AttemptResult&>) {
    return std::invoke(fn, failure);
  } else {
    return std::invoke(fn);
  }
}
template <class F>
using FallbackValueOf = typename UnwrapResult<std::remove_cvref_t<decltype(invoke_fallback(
    std::declval<F&>(), std::declval<const AttemptResult&>(),
    std::declval<const CallContext&>()))>>::type;
}  // namespace detail

template <class F>
Pipeline::Builder& Pipeline::Builder::fallback(F fn,
                                               bulwark::fallback::FallbackStageOptions options) {
  using T = detail::FallbackValueOf<F>;
  typename bulwark::fallback::FallbackStage<T>::Function wrapped =
      [fn = std::move(fn)](const AttemptResult& failure, const CallContext& ctx) {
        if constexpr (std::is_void_v<T>) {
          detail::invoke_fallback(fn, failure, ctx);
          return Result<void>();
        } else {
          return Result<T>(detail::invoke_fallback(fn, failure, ctx));
        }
      };
  return stage(std::make_shared<bulwark::fallback::FallbackStage<T>>(
      std::move(wrapped), with_listener(std::move(options))));
}

template <class F, class C>
Result<detail::ValueOf<F>> Pipeline::execute_classified(F&& fn, C&& classify,
                                                        const ExecuteOptions& options) const {
  using T = detail::ValueOf<F>;
  std::optional<Result<T>> last;
  std::exception_ptr last_exception;
  uint32_t calls = 0;

  ValueSlot slot(last, last_exception);
  auto call = [&](CallContext& ctx) -> AttemptResult {
    ++calls;
    slot.replaced = false;
    last_exception = nullptr;
    try {
      last.emplace(detail::call_as_result<T>(fn, ctx));
    } catch (...) {
      last_exception = std::current_exception();
      last.emplace(make_error_code(errc::call_failed));
    }
    return detail::judge(classify, *last);
  };

  CallContext ctx;
  ctx.deadline = options.deadline;
  ctx.stop = options.stop;
  ctx.key = options.key;
  ctx.value_slot = &slot;
  const AttemptResult final_result = run(ctx, call);
  return detail::finish(final_result, last, last_exception, calls, slot, options);
}

}  // namespace bulwark
