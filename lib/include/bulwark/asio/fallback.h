// Asio awaitable adapters for fallback, parallel races and hedged requests.
//
//   co_await bulwark::asio::sequential(primary, fallback1, fallback2)
//   co_await bulwark::asio::parallel(replica_a, replica_b)
//   co_await bulwark::asio::hedge(policy, attempt)
//
// Every callable here takes `const CallContext&` (or nothing) and returns
// `boost::asio::awaitable<R>`, where R is a value, void or Result<T>, exactly like the
// callables of bulwark::asio::run. The result is Result<T>. A callable's exception becomes
// errc::call_failed (judged by the classifier like any error; FallbackInfo::exception keeps it).
//
// sequential: as fallback::sequential (bulwark/fallback/fallback.h), awaiting each alternative
//   in turn; an alternative runs only if the one before failed.
//
// parallel: starts every alternative at once; the first answer (a success or caller_error)
//   wins and every other alternative still running is cancelled; if all fail, the failure
//   chosen by RunOptions::report (default: the last to fail) is returned.
//
// hedge: runs `fn` as attempt 0; when nothing has answered `policy.options().delay` after the
//   latest start, starts `fn` again as the next attempt (ctx.attempt = 1, 2, ...), up to
//   max_attempts; a retryable failure starts the next attempt at once; every attempt after the
//   first is drawn from the policy's retry budget. The rules are HedgeRun's
//   (bulwark/fallback/hedge.h); this adapter acts on them with a steady_timer.
//
// Cancellation guarantees (parallel and hedge):
//  - Losers are cancelled through Asio per-operation cancellation: each attempt runs in its own
//    coroutine with its own cancellation_signal, which is emitted (terminal) when the race is
//    decided; the attempt's pending operation completes with operation_aborted.
//  - Nothing outlives the operation: it completes only after every attempt it started has
//    finished (answered, failed, or unwound from the cancellation). A callable may therefore
//    capture references to the caller's locals.
//  - If the caller cancels the whole operation (a cancellation slot, awaitable_operators, an
//    outer asio::run timeout), every running attempt is cancelled and awaited, and the
//    operation then completes with the cancellation exception (system_error
//    operation_aborted), as Asio operations do.
//  - RunOptions::deadline: no attempt after the first starts once it has passed; when it
//    passes with attempts still running, they are cancelled and the result is errc::timeout.
//    If the deadline has already passed at the start, nothing starts (errc::deadline_exceeded).
//  - The attempts of one race run on a strand of the caller's executor, so the race's
//    bookkeeping needs no locks even on a multi-threaded io_context.
//
// Time: waits use Asio's steady clock; decisions read the hedge policy's Clock (or
// RunOptions::clock for parallel), so use these adapters with SystemClock (the default). The
// decisions themselves are tested on a ManualClock through HedgeRun.
//
// Composition with pipelines (the recommended arrangement): hedge or race outside, one
// pipeline per attempt inside, so each attempt has its own per-try timeout, breaker permit and
// retries, and a cancelled attempt releases its permit:
//
//   bulwark::Result<Reply> r = co_await bulwark::asio::hedge(policy,
//       [&](const bulwark::CallContext& ctx) {
//         return bulwark::asio::run(per_attempt, [&](const bulwark::CallContext& c) {
//           return client.async_get(path, c.deadline);
//         }, {.deadline = ctx.deadline});
//       });
//
// An overall timeout goes around the hedge: `asio::run(outer_with_timeout, [&] { return
// asio::hedge(policy, ...); })` cancels the whole hedge (and so every attempt) when it expires.
// Share one RetryBudget between the per-attempt retry stage and the hedge policy (and set
// HedgeOptions::record_requests = false, since the retry stage records the requests).
//
// Thread-safety: as Pipeline; the policy is shared, each call's coroutine is its own.
#pragma once

#include <algorithm>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/this_coro.hpp>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <optional>
#include <ranges>
#include <type_traits>
#include <utility>
#include <vector>

#include "bulwark/asio/pipeline.h"
#include "bulwark/fallback/fallback.h"
#include "bulwark/fallback/hedge.h"

namespace bulwark::asio {

// An async alternative: invocable like the callables of asio::run.
template <class F>
concept AsyncAlternative = std::is_invocable_v<F&, const CallContext&> || std::is_invocable_v<F&>;

namespace detail {

// One attempt of a race, type-erased: runs attempt `index` with `ctx` and returns how its
// result was judged (the typed layer keeps the value).
using RaceAttempt = std::function<net::awaitable<AttemptResult>(uint32_t index, CallContext ctx)>;

struct RaceReport {
  bool timed_out = false;  // the deadline passed before the run ended
  uint32_t cancelled = 0;  // attempts cancelled because the run ended first
};

// The untyped core of parallel() and hedge(): drives `run`, starting attempts with `attempt`,
// until it finishes; cancels and awaits every attempt still running. Rethrows the caller's
// cancellation after the attempts have finished.
net::awaitable<RaceReport> race(fallback::HedgeRun& run, Clock& clock, CallContext ctx,
                                const RaceAttempt& attempt);

// Awaits fn(ctx) and wraps whatever it produces into Result<T>.
template <class T, class F>
net::awaitable<Result<T>> await_as_result(F& fn, CallContext ctx) {
  using R = std::remove_cvref_t<AwaitedOf<F>>;
  if constexpr (std::is_void_v<R>) {
    co_await invoke_async(fn, ctx);
    co_return Result<T>();
  } else if constexpr (std::is_same_v<R, Result<T>>) {
    co_return co_await invoke_async(fn, ctx);
  } else {
    co_return Result<T>(co_await invoke_async(fn, ctx));
  }
}

// Attempt `index` of a pack of callables.
template <class T, class... Fs>
net::awaitable<Result<T>> await_nth(std::size_t index, const CallContext& ctx, Fs&... fs) {
  std::optional<net::awaitable<Result<T>>> a;
  std::size_t k = 0;
  ((k++ == index ? (void)a.emplace(await_as_result<T>(fs, ctx)) : void()), ...);
  return std::move(*a);
}

template <class F, class... Fs>
constexpr bool kSameValue = (std::is_same_v<ValueOf<F>, ValueOf<Fs>> && ...);

inline Clock& clock_of(const fallback::RunOptions& o) {
  return o.clock ? *o.clock : SystemClock::instance();
}

// `make(i, ctx)` returns the awaitable of alternative i.
template <class T, class Make, class C>
net::awaitable<Result<T>> sequential_impl(std::size_t count, Make make, C classify,
                                          fallback::RunOptions options) {
  fallback::detail::SequentialCall<T> seq(options);
  for (std::size_t i = 0; i < count; ++i) {
    std::optional<CallContext> ctx = seq.before(i);
    if (!ctx) break;
    std::optional<Result<T>> r;
    std::exception_ptr thrown;
    try {
      r.emplace(co_await make(i, *ctx));
    } catch (...) {
      thrown = std::current_exception();
    }
    if (thrown) {
      // The caller cancelling this coroutine is not the alternative's failure: unwind.
      auto state = co_await net::this_coro::cancellation_state;
      if (state.cancelled() != net::cancellation_type::none) std::rethrow_exception(thrown);
      r.emplace(make_error_code(errc::call_failed));
    }
    const Outcome o = bulwark::detail::classify(classify, *r).outcome;
    if (seq.after(i, std::move(*r), o, std::move(thrown))) break;
  }
  co_return seq.finish();
}

// Runs a race decided by `run`; `make(i, ctx)` returns the awaitable of attempt i.
template <class T, class Make, class C>
net::awaitable<Result<T>> race_impl(fallback::HedgeRun run, Clock& clock, Make make, C classify,
                                    fallback::RunOptions options) {
  fallback::FallbackInfo info;
  auto publish = [&](Result<T> r) {
    if (options.info) *options.info = std::move(info);
    return r;
  };
  if (options.stop.stop_requested()) {
    info.outcome = Outcome::final_failure;
    co_return publish(Result<T>(make_error_code(errc::cancelled)));
  }
  if (options.deadline.expired(clock.now())) {
    info.outcome = Outcome::final_failure;
    co_return publish(Result<T>(make_error_code(errc::deadline_exceeded)));
  }

  struct Slot {
    std::optional<Result<T>> result;
    std::exception_ptr exception;
    Outcome outcome = Outcome::success;
  };
  std::vector<Slot> slots(run.max_attempts());

  // Runs on the race's strand, one coroutine per attempt; writes only its own slot.
  RaceAttempt attempt = [&](uint32_t i, CallContext ctx) -> net::awaitable<AttemptResult> {
    Slot& slot = slots[i];
    std::exception_ptr thrown;
    try {
      slot.result.emplace(co_await make(i, ctx));
    } catch (...) {
      thrown = std::current_exception();
    }
    if (thrown) {
      // Cancelled because another attempt won (or the caller gave up): let it unwind.
      auto state = co_await net::this_coro::cancellation_state;
      if (state.cancelled() != net::cancellation_type::none) std::rethrow_exception(thrown);
      slot.exception = thrown;
      slot.result.emplace(make_error_code(errc::call_failed));
    }
    const Classification c = bulwark::detail::classify(classify, *slot.result);
    slot.outcome = c.outcome;
    AttemptResult r;
    r.outcome = c.outcome;
    r.retry_after = c.retry_after;
    if (!*slot.result) r.error = slot.result->error();
    co_return r;
  };

  CallContext ctx;
  ctx.deadline = options.deadline;
  ctx.stop = options.stop;
  ctx.key = options.key;
  const RaceReport report = co_await race(run, clock, ctx, attempt);

  info.started = run.started();
  info.cancelled = report.cancelled;
  info.policy_reason = run.policy_reason();
  const std::optional<uint32_t> answer = run.answer();
  if (report.timed_out) {
    info.outcome = Outcome::retryable_failure;
    co_return publish(Result<T>(make_error_code(errc::timeout)));
  }
  if (!answer || !slots[*answer].result) {  // not expected: every attempt reports a result
    info.outcome = Outcome::final_failure;
    co_return publish(Result<T>(make_error_code(errc::call_failed)));
  }
  Slot& won = slots[*answer];
  info.answered_by = *answer;
  info.outcome = won.outcome;
  info.exception = won.exception;
  co_return publish(std::move(*won.result));
}

}  // namespace detail

// ---------------------------------------------------------------------------------------------
// sequential

template <class C, AsyncAlternative F, AsyncAlternative... Fs>
net::awaitable<Result<detail::ValueOf<F>>> sequential_classified(fallback::RunOptions options,
                                                                 C classify, F primary,
                                                                 Fs... fallbacks) {
  static_assert(detail::kSameValue<F, Fs...>, "all alternatives must produce the same value type");
  using T = detail::ValueOf<F>;
  auto make = [&](std::size_t i, const CallContext& ctx) {
    return detail::await_nth<T>(i, ctx, primary, fallbacks...);
  };
  co_return co_await detail::sequential_impl<T>(1 + sizeof...(Fs), make, std::move(classify),
                                                options);
}

template <AsyncAlternative F, AsyncAlternative... Fs>
net::awaitable<Result<detail::ValueOf<F>>> sequential(fallback::RunOptions options, F primary,
                                                      Fs... fallbacks) {
  return asio::sequential_classified(options, DefaultClassifier{}, std::move(primary),
                                     std::move(fallbacks)...);
}

template <AsyncAlternative F, AsyncAlternative... Fs>
net::awaitable<Result<detail::ValueOf<F>>> sequential(F primary, Fs... fallbacks) {
  return asio::sequential_classified(fallback::RunOptions{}, DefaultClassifier{},
                                     std::move(primary), std::move(fallbacks)...);
}

namespace detail {
// What a run over an empty run-time list returns: nothing was started.
template <class T>
Result<T> empty_list(const fallback::RunOptions& options) {
  if (options.info) *options.info = fallback::FallbackInfo{.outcome = Outcome::final_failure};
  return Result<T>(make_error_code(errc::call_failed));
}
// Starts alternative i of a run-time list (the list must outlive the returned callable).
template <class T, class R>
auto nth_of_range(R& alternatives) {
  return [&alternatives](std::size_t i, const CallContext& ctx) {
    auto&& fn =
        std::ranges::begin(alternatives)[static_cast<std::ranges::range_difference_t<R>>(i)];
    return await_as_result<T>(fn, ctx);
  };
}
}  // namespace detail

// Over a run-time list: a sized random-access range of callables ([0] = primary), taken by
// value (pass a std::span or std::views::all to refer to a list the caller keeps alive). An
// empty list starts nothing and returns errc::call_failed.
template <std::ranges::random_access_range R, class C = DefaultClassifier>
requires AsyncAlternative<std::ranges::range_reference_t<R>>
    net::awaitable<Result<detail::ValueOf<std::ranges::range_reference_t<R>>>> sequential_range(
        R alternatives, fallback::RunOptions options = {}, C classify = {}) {
  using T = detail::ValueOf<std::ranges::range_reference_t<R>>;
  const auto count = static_cast<std::size_t>(std::ranges::size(alternatives));
  if (count == 0) co_return detail::empty_list<T>(options);
  auto make = detail::nth_of_range<T>(alternatives);
  co_return co_await detail::sequential_impl<T>(count, make, std::move(classify), options);
}

// ---------------------------------------------------------------------------------------------
// parallel (1..64 alternatives)

template <class C, AsyncAlternative F, AsyncAlternative... Fs>
net::awaitable<Result<detail::ValueOf<F>>> parallel_classified(fallback::RunOptions options,
                                                               C classify, F first, Fs... rest) {
  static_assert(detail::kSameValue<F, Fs...>, "all alternatives must produce the same value type");
  static_assert(1 + sizeof...(Fs) <= fallback::HedgeRun::kMaxAttempts, "at most 64 alternatives");
  using T = detail::ValueOf<F>;
  auto make = [&](std::size_t i, const CallContext& ctx) {
    return detail::await_nth<T>(i, ctx, first, rest...);
  };
  co_return co_await detail::race_impl<T>(
      fallback::HedgeRun::parallel(1 + sizeof...(Fs), options.report), detail::clock_of(options),
      make, std::move(classify), options);
}

template <AsyncAlternative F, AsyncAlternative... Fs>
net::awaitable<Result<detail::ValueOf<F>>> parallel(fallback::RunOptions options, F first,
                                                    Fs... rest) {
  return asio::parallel_classified(options, DefaultClassifier{}, std::move(first),
                                   std::move(rest)...);
}

template <AsyncAlternative F, AsyncAlternative... Fs>
net::awaitable<Result<detail::ValueOf<F>>> parallel(F first, Fs... rest) {
  return asio::parallel_classified(fallback::RunOptions{}, DefaultClassifier{}, std::move(first),
                                   std::move(rest)...);
}

// Over a run-time list (1..64 callables, by value as for sequential_range). An empty list
// returns errc::call_failed; more than 64 throws std::invalid_argument before anything starts.
template <std::ranges::random_access_range R, class C = DefaultClassifier>
requires AsyncAlternative<std::ranges::range_reference_t<R>>
    net::awaitable<Result<detail::ValueOf<std::ranges::range_reference_t<R>>>> parallel_range(
        R alternatives, fallback::RunOptions options = {}, C classify = {}) {
  using T = detail::ValueOf<std::ranges::range_reference_t<R>>;
  const auto count = static_cast<std::size_t>(std::ranges::size(alternatives));
  if (count == 0) co_return detail::empty_list<T>(options);
  auto make = detail::nth_of_range<T>(alternatives);
  // More than 64 makes HedgeRun::parallel throw std::invalid_argument (65 keeps the count in
  // range of uint32_t while still being rejected).
  co_return co_await detail::race_impl<T>(
      fallback::HedgeRun::parallel(static_cast<uint32_t>(std::min<std::size_t>(count, 65)),
                                   options.report),
      detail::clock_of(options), make, std::move(classify), options);
}

// ---------------------------------------------------------------------------------------------
// hedge

// Runs `fn` hedged under `policy` (which must outlive the operation). ctx.attempt is the
// 1-based attempt number; ctx.deadline is options.deadline.
template <AsyncAlternative F, class C = DefaultClassifier>
net::awaitable<Result<detail::ValueOf<F>>> hedge(const fallback::HedgePolicy& policy, F fn,
                                                 fallback::RunOptions options = {},
                                                 C classify = {}) {
  using T = detail::ValueOf<F>;
  auto make = [&](std::size_t, const CallContext& ctx) {
    return detail::await_as_result<T>(fn, ctx);
  };
  co_return co_await detail::race_impl<T>(policy.start(options.deadline, options.report),
                                          policy.clock(), make, std::move(classify), options);
}

// ---------------------------------------------------------------------------------------------
// run_hedged: a hedge of pipeline runs

// Hedging a pipeline, the Asio-only path (a hedge cannot be a stage, see Pipeline::Builder):
// every attempt of the hedge decided by `policy` runs `fn` under `per_attempt` — so each
// attempt has its own per-try timeout, retries and breaker permit, and a cancelled attempt
// releases what its stages hold. The same as
//
//   hedge(policy, [&](const CallContext& ctx) {
//     return run(per_attempt, fn, {.deadline = ctx.deadline, .stop = ctx.stop, .key = ctx.key},
//                classify);
//   }, options, classify);
//
// `fn` is called once per attempt (by reference: it is not copied). Put an overall timeout
// around the whole hedge (an outer asio::run), and share one RetryBudget between the
// per-attempt retry stage and the policy (HedgeOptions::record_requests = false).
//
// Example:
//   auto per_attempt = bulwark::Pipeline::Builder()
//                          .retry({.max_attempts = 2, .per_try_timeout = 300ms}, &budget)
//                          .circuit_breaker(breaker)
//                          .build();
//   bulwark::fallback::HedgePolicy policy({.delay = 50ms, .max_attempts = 3}, &budget);
//   auto r = co_await bulwark::asio::run_hedged(policy, per_attempt, [&](const auto& ctx) {
//     return client.async_get(path, ctx.deadline);
//   });
template <AsyncAlternative F, class C = DefaultClassifier>
net::awaitable<Result<detail::ValueOf<F>>> run_hedged(const fallback::HedgePolicy& policy,
                                                      const Pipeline& per_attempt, F fn,
                                                      fallback::RunOptions options = {},
                                                      C classify = {}) {
  auto attempt = [&](const CallContext& ctx) {
    ExecuteOptions eo;
    eo.deadline = ctx.deadline;
    eo.stop = ctx.stop;
    eo.key = ctx.key;
    return asio::run(per_attempt, std::ref(fn), eo, classify);
  };
  co_return co_await asio::hedge(policy, attempt, options, classify);
}

}  // namespace bulwark::asio
