#include "bulwark/asio/fallback.h"

#include <algorithm>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/system/system_error.hpp>
#include <deque>
#include <memory>

namespace bulwark::asio::detail {
namespace {

// State shared by the race's controller and its attempts. Everything runs on one strand, so
// nothing here needs a lock. It lives in the controller's frame, which ends only after every
// attempt has reported, so no attempt ever touches it after it is gone.
struct Shared {
  Shared(const net::any_io_executor& ex, uint32_t n)
      : wake(ex), signals(std::make_unique<net::cancellation_signal[]>(n)), results(n) {}

  // The controller sleeps on this timer until the next hedge is due; an attempt that finishes
  // cancels it to wake the controller early (a timer used as a condition variable).
  net::steady_timer wake;
  std::unique_ptr<net::cancellation_signal[]> signals;  // one per attempt
  std::vector<std::optional<AttemptResult>> results;    // empty: the attempt unwound
  std::deque<uint32_t> finished;                        // attempts that ended, in order
  uint32_t live = 0;                                    // attempts started, not yet ended
};

// Completion of one attempt's coroutine. Runs on the strand, never inline in co_spawn.
struct AttemptDone {
  Shared* shared;
  uint32_t index;
  void operator()(std::exception_ptr) const {
    shared->finished.push_back(index);
    --shared->live;
    shared->wake.cancel();
  }
};

net::awaitable<void> run_attempt(Shared* shared, uint32_t index,
                                 net::awaitable<AttemptResult> attempt) {
  try {
    shared->results[index] = co_await std::move(attempt);
  } catch (...) {
    // Unwound by cancellation (the typed layer turns every other exception into a result).
    shared->results[index].reset();
  }
}

void sleep_until(net::steady_timer& timer, Clock& clock, TimePoint when) {
  if (when == kTimePointMax) {
    timer.expires_at(net::steady_timer::time_point::max());
  } else {
    // Relative to the decision clock's `now`: with SystemClock the two clocks agree.
    timer.expires_after(std::max(when - clock.now(), Duration::zero()));
  }
}

net::awaitable<RaceReport> control(fallback::HedgeRun& run, Clock& clock, CallContext ctx,
                                   const RaceAttempt& attempt) {
  const net::any_io_executor ex = co_await net::this_coro::executor;
  Shared shared(ex, run.max_attempts());
  RaceReport report;
  bool caller_cancelled = false;

  const fallback::HedgePolicy* policy = run.policy();
  EventListener* listener = policy != nullptr ? policy->listener() : nullptr;
  bool after_failure = false;  // the pending starts were triggered by a failed attempt
  auto launch = [&](uint32_t i) {
    if (i > 0 && listener != nullptr) {
      listener->on_hedge({.name = policy->name(),
                          .attempt = i + 1,
                          .on_failure = after_failure,
                          .at = clock.now()});
    }
    CallContext c = ctx;
    c.attempt = i + 1;
    ++shared.live;
    net::co_spawn(ex, run_attempt(&shared, i, attempt(i, c)),
                  net::bind_cancellation_slot(shared.signals[i].slot(), AttemptDone{&shared, i}));
  };

  fallback::RaceAction action = run.on_start(clock.now());
  for (;;) {
    // With delay 0 (parallel) every start makes the next one due at once.
    while (action.kind == fallback::RaceAction::Kind::start) {
      launch(action.index);
      action = run.on_timer(clock.now());
    }
    if (action.kind == fallback::RaceAction::Kind::finish) break;

    if (!shared.finished.empty()) {
      const uint32_t i = shared.finished.front();
      shared.finished.pop_front();
      const std::optional<AttemptResult>& r = shared.results[i];
      // An attempt that unwound without being cancelled by us: an escaped failure.
      const Outcome o = r ? r->outcome : Outcome::retryable_failure;
      action = run.on_result(i, o, clock.now());
      after_failure = true;
      continue;
    }

    const TimePoint now = clock.now();
    if (ctx.deadline.expired(now)) {
      report.timed_out = true;
      run.abort();
      break;
    }
    TimePoint wake_at = ctx.deadline.time();
    if (const std::optional<TimePoint> next = run.next_hedge_at()) {
      if (*next <= now) {
        after_failure = false;
        action = run.on_timer(now);
        continue;
      }
      wake_at = std::min(wake_at, *next);
    }
    after_failure = false;
    sleep_until(shared.wake, clock, wake_at);
    boost::system::error_code ec;  // operation_aborted when an attempt woke us early
    co_await shared.wake.async_wait(net::redirect_error(net::use_awaitable, ec));
    if ((co_await net::this_coro::cancellation_state).cancelled() != net::cancellation_type::none) {
      caller_cancelled = true;
      run.abort();
      break;
    }
  }

  // The run is over: cancel every attempt still running and wait until each one has ended, so
  // that nothing started here outlives the operation.
  for (uint32_t i = 0; i < run.started(); ++i) {
    if (run.is_running(i)) {
      ++report.cancelled;
      shared.signals[i].emit(net::cancellation_type::terminal);
    }
  }
  // A second cancellation from the caller must not interrupt the wait for the losers.
  co_await net::this_coro::reset_cancellation_state(net::disable_cancellation());
  while (shared.live > 0) {
    shared.wake.expires_at(net::steady_timer::time_point::max());
    boost::system::error_code ec;
    co_await shared.wake.async_wait(net::redirect_error(net::use_awaitable, ec));
  }
  if (caller_cancelled) {
    throw boost::system::system_error(net::error::operation_aborted, "bulwark race cancelled");
  }
  co_return report;
}

}  // namespace

net::awaitable<RaceReport> race(fallback::HedgeRun& run, Clock& clock, CallContext ctx,
                                const RaceAttempt& attempt) {
  // The controller and all attempts share one strand: their bookkeeping needs no lock, and
  // the cancellation signals are emitted on the strand their operations run on.
  const auto strand = net::make_strand(co_await net::this_coro::executor);
  co_return co_await net::co_spawn(strand, control(run, clock, std::move(ctx), attempt),
                                   net::use_awaitable);
}

}  // namespace bulwark::asio::detail
