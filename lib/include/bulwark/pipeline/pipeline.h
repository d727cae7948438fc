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
// execute() is the synchronous adapter. It wraps any callable that takes `const CallContext&`
// (or nothing) and returns a value, void or Result<T>, or throws:
//   - a value is a success unless the classifier says otherwise;
//   - Result<T> with an error is a retryable failure by default;
//   - an exception is caught and becomes errc::call_failed (retryable by default); the
//     exception itself is kept in ExecutionInfo::exception so the caller may rethrow it.
// It returns Result<T>: the wrapped call's last result, or the policy error that prevented one
// (errc::circuit_open, errc::timeout, errc::deadline_exceeded, errc::cancelled).
// Waiting between retries uses Clock::sleep_for, so on a ManualClock it takes no real time.
// Timeouts in the synchronous adapter are cooperative: the callable should honour
// ctx.deadline / ctx.stop; a result that arrives after the deadline is discarded as a timeout.
// For real cancellation use the Asio adapter (bulwark/asio/pipeline.h).
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
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <type_traits>
#include <utility>
#include <vector>

#include "bulwark/core/clock.h"
#include "bulwark/core/error.h"
#include "bulwark/core/function_ref.h"
#include "bulwark/pipeline/stage.h"
#include "bulwark/pipeline/stages.h"

namespace bulwark {

struct ExecutionInfo {
  uint32_t attempts = 0;                    // times the wrapped callable was invoked
  Outcome outcome = Outcome::success;       // how the final result was judged
  boost::system::error_code policy_reason;  // why policies stopped retrying, if they did
  std::exception_ptr exception;             // the callable's exception, if it produced the result
};

struct ExecuteOptions {
  Deadline deadline = Deadline::never();  // overall deadline, on top of any timeout stage
  std::stop_token stop;                   // cooperative cancellation by the caller
  ExecutionInfo* info = nullptr;          // filled in when not null
};

// A classifier may return an Outcome, or a Classification when it also extracts a server's
// retry hint from the result (e.g. an HTTP Retry-After header).
struct Classification {
  Outcome outcome = Outcome::success;
  std::optional<Duration> retry_after;
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
  out.retry_after = c.retry_after;
  if (!r) out.error = r.error();
  return out;
}

// The typed result of a whole execution: the last call's result if the stages let it through,
// else the policy's error; fills `options.info`. Shared by the sync and Asio adapters.
template <class T>
Result<T> finish(const AttemptResult& final_result, std::optional<Result<T>>& last,
                 const std::exception_ptr& last_exception, uint32_t calls,
                 const ExecuteOptions& options) {
  const bool from_call = final_result.from_call && last.has_value();
  if (options.info) {
    options.info->attempts = calls;
    options.info->outcome = final_result.outcome;
    options.info->policy_reason = final_result.policy_reason;
    options.info->exception = from_call ? last_exception : nullptr;
  }
  if (from_call) return std::move(*last);
  return Result<T>(final_result.error);
}
}  // namespace detail

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

 private:
  Pipeline(Clock& clock, std::vector<std::shared_ptr<const Stage>> stages)
      : clock_(&clock), stages_(std::move(stages)) {}
  AttemptResult run_from(std::size_t index, CallContext& ctx,
                         FunctionRef<AttemptResult(CallContext&)> call) const;

  Clock* clock_;
  std::vector<std::shared_ptr<const Stage>> stages_;
};

class Pipeline::Builder {
 public:
  explicit Builder(Clock& clock = SystemClock::instance()) : clock_(clock) {}

  // Bounds everything added after it (the inner stages and the call) to `timeout`.
  Builder& timeout(Duration timeout);
  // Retries the inner stages per `options`; retries withdraw from `budget` when not null.
  // `seed` makes jitter reproducible (tests); leave it empty in production.
  Builder& retry(retry::RetryOptions options, retry::RetryBudget* budget = nullptr,
                 std::optional<uint64_t> seed = std::nullopt);
  Builder& circuit_breaker(circuit::CircuitBreaker& breaker);
  // Any other stage (e.g. a user's own policy).
  Builder& stage(std::shared_ptr<const Stage> stage);

  Pipeline build() const { return Pipeline(clock_, stages_); }

 private:
  Clock& clock_;
  std::vector<std::shared_ptr<const Stage>> stages_;
};

template <class F, class C>
Result<detail::ValueOf<F>> Pipeline::execute_classified(F&& fn, C&& classify,
                                                        const ExecuteOptions& options) const {
  using T = detail::ValueOf<F>;
  std::optional<Result<T>> last;
  std::exception_ptr last_exception;
  uint32_t calls = 0;

  auto call = [&](CallContext& ctx) -> AttemptResult {
    ++calls;
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
  const AttemptResult final_result = run(ctx, call);
  return detail::finish(final_result, last, last_exception, calls, options);
}

}  // namespace bulwark
