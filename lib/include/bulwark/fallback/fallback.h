// Sequential fallback: a primary, then fallbacks in order, until one of them answers.
//
//   bulwark::Result<Price> p = bulwark::fallback::sequential(
//       [&](const bulwark::CallContext& ctx) { return live.execute(fetch_price); },  // primary
//       [&] { return price_cache.get(sku); },                                          // fallback
//       1
//       [&] { return Price::unknown(); });                                             // fallback
//       2
//
// Semantics:
//  - Each alternative runs only if the one before it failed. "Failed" means its result was
//    judged a retryable_failure or a final_failure (the same rule a circuit breaker uses,
//    is_breaker_failure()); a success or a caller_error (the target answered correctly that
//    the request is wrong, e.g. HTTP 404) is an answer and ends the call. The default judge
//    (DefaultClassifier) calls any value a success and any error a retryable failure; pass
//    your own classifier (Result<T> -> Outcome or Classification) to change what falls back.
//  - The result is the first answer, or, when every alternative failed, the failure chosen by
//    RunOptions::report (by default the last alternative's failure).
//  - FallbackInfo::answered_by records which alternative produced the returned result
//    (0 = primary, 1 = first fallback, ...).
//  - Alternatives are callables like the ones Pipeline::execute accepts: they take
//    `const CallContext&` (or nothing) and return a value, void or Result<T>, or throw. All
//    alternatives of one call must produce the same value type T. An exception is caught and
//    becomes errc::call_failed (judged by the classifier like any error, so by default it
//    falls back); the exception itself is kept in FallbackInfo::exception when that
//    alternative's result is the one returned.
//  - Each alternative gets a CallContext with RunOptions::deadline and ::stop, and
//    ctx.attempt = its 1-based position (1 = primary). No alternative starts once the deadline
//    has passed (the call then returns the failure so far, with
//    FallbackInfo::policy_reason = deadline_exceeded, or errc::deadline_exceeded if nothing ran)
//    or once ctx.stop is requested (errc::cancelled). A running alternative is never
//    interrupted: the synchronous adapter cannot pre-empt a blocking call; give the alternative
//    its own Pipeline with a timeout (see "Composition" below) or use the Asio adapter.
//
// Composition with pipelines: an alternative is any callable, so it may run its own Pipeline:
// `[&] { return primary_pipeline.execute(call); }`. The usual arrangement puts fallback
// outermost: the primary's pipeline retries, times out and trips its breaker; only what is
// still a failure after all that (errc::timeout, errc::circuit_open, the upstream's last
// error) moves on to the fallback. A fallback that answers with a value of its own (a default,
// a cached copy) can also be a stage of the pipeline itself: FallbackStage<T>
// (fallback_stage.h, Pipeline::Builder::fallback).
//
// Parallel and hedged execution need real cancellation of the losers, so they exist only in
// the Asio adapter (bulwark/asio/fallback.h, including run_hedged: a hedge of pipeline runs);
// their decisions live in hedge.h.
//
// Thread-safety: the functions hold no shared state; concurrent calls are independent.
#pragma once

#include <cstddef>
#include <cstdint>
#include <exception>
#include <optional>
#include <ranges>
#include <stop_token>
#include <string_view>
#include <type_traits>
#include <utility>

#include "bulwark/core/clock.h"
#include "bulwark/core/deadline.h"
#include "bulwark/core/error.h"
#include "bulwark/pipeline/events.h"
#include "bulwark/pipeline/pipeline.h"

namespace bulwark::fallback {

// Whether an alternative that ended with `o` sends the call on to the next alternative (or,
// in a race, leaves the race to the others). A caller_error is an answer, not a failure.
constexpr bool is_failure(Outcome o) noexcept { return is_breaker_failure(o); }

// Which failure is returned when no alternative / attempt answered.
enum class FailureChoice : uint8_t {
  last_to_fail,   // the failure that ended the call: the last one to fail (default)
  first_to_fail,  // the first one to fail
  lowest_index,   // the failure of the lowest-numbered one that failed (the primary, if it ran)
};
std::string_view to_string(FailureChoice c) noexcept;

// What happened in one sequential, parallel or hedged call.
struct FallbackInfo {
  // Index of the alternative (sequential, parallel) or attempt (hedged) whose result was
  // returned: 0 = primary / first attempt. Empty when the result came from the policy itself
  // (errc::cancelled, errc::timeout, errc::deadline_exceeded before anything ran).
  std::optional<std::size_t> answered_by;
  uint32_t started = 0;    // alternatives / attempts started
  uint32_t cancelled = 0;  // started, then cancelled because the call ended first (races)
  Outcome outcome = Outcome::success;  // how the returned result was judged
  // Why no further alternative / hedge started although one could have: deadline_exceeded,
  // budget_exhausted (hedging). Empty otherwise.
  boost::system::error_code policy_reason;
  // The exception thrown by the alternative whose result (errc::call_failed) was returned.
  std::exception_ptr exception;
};

struct RunOptions {
  Deadline deadline = Deadline::never();  // no alternative / attempt starts after it
  std::stop_token stop;                   // cooperative cancellation (sequential)
  FailureChoice report = FailureChoice::last_to_fail;
  FallbackInfo* info = nullptr;  // filled in when not null
  Clock* clock = nullptr;        // reads `now` for the deadline; null = SystemClock
  // Handed to every alternative / attempt as CallContext::key (for keyed stages of the
  // pipelines they run). Must stay valid until the call returns.
  std::string_view key;
  // Sequential: told before each fallback alternative starts (EventListener::on_fallback,
  // FallbackEvent::name = `name`, with the failed alternative's judged outcome and error).
  EventListener* listener = nullptr;
  std::string_view name;
};

// An alternative: invocable like the callables Pipeline::execute accepts.
template <class F>
concept Alternative = std::is_invocable_v<F&, const CallContext&> || std::is_invocable_v<F&>;

namespace detail {

// Bookkeeping shared by the synchronous and the Asio sequential adapters: which failure to
// keep, when to stop, what to report.
template <class T>
class SequentialCall {
 public:
  explicit SequentialCall(const RunOptions& options) : options_(options) {}

  // Before alternative `index`: returns a context to run it with, or nothing when the call
  // must end now (then finish() gives the result).
  std::optional<CallContext> before(std::size_t index) {
    if (options_.stop.stop_requested()) {
      end_with_policy(errc::cancelled);
      return std::nullopt;
    }
    if (!options_.deadline.is_never() && options_.deadline.expired(now())) {
      if (!kept_) {
        end_with_policy(errc::deadline_exceeded);
      } else {
        info_.policy_reason = make_error_code(errc::deadline_exceeded);
      }
      return std::nullopt;
    }
    if (index > 0 && options_.listener != nullptr) {
      options_.listener->on_fallback(
          {.name = options_.name, .alternative = index, .failure = last_failure_, .at = now()});
    }
    ++info_.started;
    CallContext ctx;
    ctx.deadline = options_.deadline;
    ctx.stop = options_.stop;
    ctx.key = options_.key;
    ctx.attempt = static_cast<uint32_t>(index + 1);
    return ctx;
  }

  // After alternative `index` produced `r` (judged `outcome`; `thrown` if it threw). Returns
  // true when that is the answer and the call ends.
  bool after(std::size_t index, Result<T>&& r, Outcome outcome, std::exception_ptr thrown) {
    last_failure_.outcome = outcome;
    last_failure_.error = r ? boost::system::error_code() : r.error();
    if (!is_failure(outcome)) {
      keep(index, std::move(r), outcome, std::move(thrown));
      return true;
    }
    // In sequence, time order is index order: first_to_fail and lowest_index agree.
    if (!kept_ || options_.report == FailureChoice::last_to_fail) {
      keep(index, std::move(r), outcome, std::move(thrown));
    }
    return false;
  }

  Result<T> finish() {
    if (options_.info) *options_.info = std::move(info_);
    if (kept_) return std::move(*kept_);
    return Result<T>(make_error_code(policy_error_));
  }

 private:
  TimePoint now() const {
    return (options_.clock ? *options_.clock : SystemClock::instance()).now();
  }
  void keep(std::size_t index, Result<T>&& r, Outcome outcome, std::exception_ptr thrown) {
    kept_.emplace(std::move(r));
    info_.answered_by = index;
    info_.outcome = outcome;
    info_.exception = std::move(thrown);
  }
  void end_with_policy(errc e) {
    if (kept_ && e == errc::cancelled) kept_.reset();
    if (!kept_) {
      policy_error_ = e;
      info_.answered_by.reset();
      info_.outcome = Outcome::final_failure;
      info_.exception = nullptr;
    }
  }

  const RunOptions& options_;
  FallbackInfo info_;
  AttemptResult last_failure_;  // the last alternative's judgement, for FallbackEvent
  std::optional<Result<T>> kept_;
  errc policy_error_ = errc::cancelled;
};

// Calls alternative `index` of a pack and wraps whatever it returns into Result<T>.
template <class T, class... Fs>
Result<T> call_nth(std::size_t index, const CallContext& ctx, Fs&... fs) {
  std::optional<Result<T>> out;
  std::size_t k = 0;
  ((k++ == index ? (void)out.emplace(bulwark::detail::call_as_result<T>(fs, ctx)) : void()), ...);
  return std::move(*out);
}

template <class T, class C, class Call>
Result<T> run_sequential(std::size_t count, Call&& call, C& classify, const RunOptions& options) {
  SequentialCall<T> seq(options);
  for (std::size_t i = 0; i < count; ++i) {
    std::optional<CallContext> ctx = seq.before(i);
    if (!ctx) break;
    std::optional<Result<T>> r;
    std::exception_ptr thrown;
    try {
      r.emplace(call(i, *ctx));
    } catch (...) {
      thrown = std::current_exception();
      r.emplace(make_error_code(errc::call_failed));
    }
    const Outcome o = bulwark::detail::classify(classify, *r).outcome;
    if (seq.after(i, std::move(*r), o, std::move(thrown))) break;
  }
  return seq.finish();
}

template <class F, class... Fs>
constexpr bool kSameValue =
    (std::is_same_v<bulwark::detail::ValueOf<F>, bulwark::detail::ValueOf<Fs>> && ...);

}  // namespace detail

// Runs `primary`, then each of `fallbacks` in order while the previous one failed, judging
// results with `classify`. See the file comment.
template <class C, Alternative F, Alternative... Fs>
Result<bulwark::detail::ValueOf<F>> sequential_classified(const RunOptions& options, C&& classify,
                                                          F&& primary, Fs&&... fallbacks) {
  static_assert(detail::kSameValue<F, Fs...>, "all alternatives must produce the same value type");
  using T = bulwark::detail::ValueOf<F>;
  auto call = [&](std::size_t i, const CallContext& ctx) {
    return detail::call_nth<T>(i, ctx, primary, fallbacks...);
  };
  return detail::run_sequential<T>(1 + sizeof...(Fs), call, classify, options);
}

template <Alternative F, Alternative... Fs>
Result<bulwark::detail::ValueOf<F>> sequential(const RunOptions& options, F&& primary,
                                               Fs&&... fallbacks) {
  return sequential_classified(options, DefaultClassifier{}, std::forward<F>(primary),
                               std::forward<Fs>(fallbacks)...);
}

template <Alternative F, Alternative... Fs>
Result<bulwark::detail::ValueOf<F>> sequential(F&& primary, Fs&&... fallbacks) {
  return sequential_classified(RunOptions{}, DefaultClassifier{}, std::forward<F>(primary),
                               std::forward<Fs>(fallbacks)...);
}

// The same over a list whose length is known only at run time (e.g. from configuration):
// `alternatives` is a sized random-access range of callables, [0] being the primary. An empty
// range starts nothing and returns errc::call_failed.
template <std::ranges::random_access_range R, class C = DefaultClassifier>
requires Alternative<std::ranges::range_reference_t<R>>
    Result<bulwark::detail::ValueOf<std::ranges::range_reference_t<R>>> sequential_range(
        R&& alternatives, const RunOptions& options = {}, C classify = {}) {
  using T = bulwark::detail::ValueOf<std::ranges::range_reference_t<R>>;
  const auto count = static_cast<std::size_t>(std::ranges::size(alternatives));
  if (count == 0) {
    if (options.info) *options.info = FallbackInfo{.outcome = Outcome::final_failure};
    return Result<T>(make_error_code(errc::call_failed));
  }
  auto first = std::ranges::begin(alternatives);
  auto call = [&](std::size_t i, const CallContext& ctx) {
    auto&& fn = first[static_cast<std::ranges::range_difference_t<R>>(i)];
    return bulwark::detail::call_as_result<T>(fn, ctx);
  };
  return detail::run_sequential<T>(count, call, classify, options);
}

}  // namespace bulwark::fallback
