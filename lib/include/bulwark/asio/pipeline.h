// Asio awaitable adapter for bulwark::Pipeline, with real cancellation.
//
//   co_await bulwark::asio::run(pipeline, fn)        or
//   co_await bulwark::asio::AsyncPipeline(pipeline).run(fn)
//
// runs `fn` under the pipeline's stages inside a C++20 coroutine. `fn` takes
// `const CallContext&` (or nothing) and returns `boost::asio::awaitable<R>`, where R is a
// value, void or Result<T>. The result is Result<T>, exactly as Pipeline::execute.
//
// Differences from the synchronous adapter:
//  - Deadlines cancel. When ctx.deadline passes, the call is cancelled through Asio's
//    per-operation cancellation (the awaitable's pending operation completes with
//    operation_aborted), and the attempt ends as errc::timeout. Stages see the timeout like
//    any other failure: the breaker records it, retry may retry it.
//  - Waiting between retries is an asio::steady_timer, not a blocked thread.
//  - If the caller cancels the whole operation (e.g. with a cancellation slot or
//    awaitable_operators), the cancellation propagates to the call, every stage releases what
//    it holds (breaker permits), and the coroutine completes with the cancellation exception,
//    as Asio operations do.
// Allocations: none per call in steady state through built-in stages (see run_attempts below):
// one coroutine drives every stage, the call is referenced without a std::function, and one
// timer serves the whole call.
// The waits use Asio's steady clock, so use this adapter with SystemClock (the default);
// decisions such as a breaker's open interval still read the pipeline's Clock.
//
// Thread-safety: as Pipeline. Run on any executor; one call's coroutine is not shared.
//
// Example:
//   boost::asio::awaitable<void> handler(const bulwark::Pipeline& p, Client& c) {
//     bulwark::Result<Reply> r = co_await bulwark::asio::run(
//         p, [&](const bulwark::CallContext& ctx) { return c.async_get(ctx.deadline); });
//   }
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/system/system_error.hpp>
#include <exception>
#include <functional>
#include <optional>
#include <type_traits>

#include "bulwark/pipeline/pipeline.h"

namespace bulwark::asio {

namespace net = boost::asio;

// One attempt of the wrapped call, type-erased without owning it (no allocation): the callable
// it refers to must outlive the awaited run_attempts().
using AsyncCallRef = FunctionRef<net::awaitable<AttemptResult>(CallContext&)>;
// The owning form (a std::function converts to AsyncCallRef).
using AsyncCall = std::function<net::awaitable<AttemptResult>(CallContext&)>;

// The untyped core: runs `call` under every stage of `pipeline`, in one coroutine that drives
// a PipelineCall (no coroutine per stage). Its coroutine frame (with one steady_timer, reused
// by every attempt, backoff and wait) and the pipeline's call storage come from Asio's
// per-thread recycling allocator, so a call through built-in stages makes no heap allocation once
// the thread's caches are warm; an attempt with a deadline races the call against that timer in an
// Asio parallel group, whose state is recycled too. Waiting on a stage's Waiter (a queued bulkhead)
// allocates, and so does a timed-out or cancelled call (the cancellation is an exception).
net::awaitable<AttemptResult> run_attempts(const Pipeline& pipeline, CallContext ctx,
                                           AsyncCallRef call);

namespace detail {
template <class F>
auto invoke_async(F& fn, const CallContext& ctx) {
  if constexpr (std::is_invocable_v<F&, const CallContext&>) {
    return std::invoke(fn, ctx);
  } else {
    return std::invoke(fn);
  }
}
template <class A>
struct AwaitableValue;
template <class R, class E>
struct AwaitableValue<net::awaitable<R, E>> {
  using type = R;
};
template <class F>
using AwaitedOf = typename AwaitableValue<std::remove_cvref_t<decltype(invoke_async(
    std::declval<F&>(), std::declval<const CallContext&>()))>>::type;
template <class F>
using ValueOf = typename bulwark::detail::UnwrapResult<std::remove_cvref_t<AwaitedOf<F>>>::type;
}  // namespace detail

template <class F, class C = DefaultClassifier>
net::awaitable<Result<detail::ValueOf<F>>> run(const Pipeline& pipeline, F fn,
                                               ExecuteOptions options = {}, C classify = {}) {
  using T = detail::ValueOf<F>;
  using R = std::remove_cvref_t<detail::AwaitedOf<F>>;
  std::optional<Result<T>> last;
  std::exception_ptr last_exception;
  uint32_t calls = 0;

  auto call = [&](CallContext& ctx) -> net::awaitable<AttemptResult> {
    ++calls;
    last_exception = nullptr;
    std::exception_ptr thrown;
    try {
      if constexpr (std::is_void_v<R>) {
        co_await detail::invoke_async(fn, ctx);
        last.emplace();
      } else if constexpr (std::is_same_v<R, Result<T>>) {
        last.emplace(co_await detail::invoke_async(fn, ctx));
      } else {
        last.emplace(Result<T>(co_await detail::invoke_async(fn, ctx)));
      }
    } catch (...) {
      thrown = std::current_exception();
    }
    if (thrown) {
      // A cancellation of this coroutine (deadline or caller) is not the call's failure: let it
      // unwind so the stages release what they hold.
      auto state = co_await net::this_coro::cancellation_state;
      if (state.cancelled() != net::cancellation_type::none) std::rethrow_exception(thrown);
      last_exception = thrown;
      last.emplace(make_error_code(errc::call_failed));
    }
    co_return bulwark::detail::judge(classify, *last);
  };

  ValueSlot slot(last, last_exception);
  CallContext ctx;
  ctx.deadline = options.deadline;
  ctx.stop = options.stop;
  ctx.key = options.key;
  ctx.value_slot = &slot;
  const AttemptResult final_result = co_await run_attempts(pipeline, ctx, call);
  co_return bulwark::detail::finish(final_result, last, last_exception, calls, slot, options);
}

// A Pipeline seen through the awaitable adapter: `co_await async.run(fn)`.
class AsyncPipeline {
 public:
  explicit AsyncPipeline(const Pipeline& pipeline) : pipeline_(pipeline) {}
  template <class F, class C = DefaultClassifier>
  net::awaitable<Result<detail::ValueOf<F>>> run(F fn, ExecuteOptions options = {},
                                                 C classify = {}) const {
    return asio::run(pipeline_, std::move(fn), options, std::move(classify));
  }
  const Pipeline& pipeline() const noexcept { return pipeline_; }

 private:
  const Pipeline& pipeline_;
};

}  // namespace bulwark::asio
