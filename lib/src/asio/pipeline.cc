#include "bulwark/asio/pipeline.h"

#include <atomic>
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/execution/outstanding_work.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/prefer.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <optional>
#include <variant>

namespace bulwark::asio {
namespace {

// An Asio asynchronous operation over a bulwark::Waiter. Completes with success when the
// Waiter calls `ready` (from any thread: the completion is posted to the waiting coroutine's
// executor), or with operation_aborted when the operation is cancelled through its
// cancellation slot and the Waiter could still be withdrawn. Exactly one completion happens.
template <class CompletionToken>
auto async_wait_for(std::shared_ptr<Waiter> waiter, CompletionToken&& token) {
  return net::async_initiate<CompletionToken, void(boost::system::error_code)>(
      [waiter](auto handler) {
        using Handler = decltype(handler);
        // The grant may come from a thread that is not running the io_context, and nothing
        // else may be pending meanwhile: count the wait as outstanding work so run() does not
        // return before the completion arrives.
        using Work = decltype(net::prefer(net::get_associated_executor(handler),
                                          net::execution::outstanding_work.tracked));
        struct Op {
          std::atomic<bool> done{false};
          std::optional<Handler> handler;
          std::optional<Work> work;
        };
        auto op = std::make_shared<Op>();
        op->work.emplace(net::prefer(net::get_associated_executor(handler),
                                     net::execution::outstanding_work.tracked));
        op->handler.emplace(std::move(handler));
        auto complete = [op](boost::system::error_code ec) {
          net::post(*op->work, [op, ec]() mutable {
            Handler h = std::move(*op->handler);
            op->handler.reset();
            op->work.reset();
            net::get_associated_cancellation_slot(h).clear();
            std::move(h)(ec);
          });
        };
        auto slot = net::get_associated_cancellation_slot(*op->handler);
        if (slot.is_connected()) {
          slot.assign([op, waiter, complete](net::cancellation_type) {
            // If cancel() fails, `ready` is running and completes the operation itself.
            if (waiter->cancel() && !op->done.exchange(true)) {
              complete(net::error::operation_aborted);
            }
          });
        }
        waiter->start([op, complete](bool) {
          if (!op->done.exchange(true)) complete({});
        });
      },
      token);
}

// Runs one Step::wait: until the Waiter answers or `deadline` passes (then the Waiter is
// withdrawn). A cancellation of the calling coroutine withdraws it too and propagates.
net::awaitable<void> wait_step(const std::shared_ptr<Waiter>& waiter, Deadline deadline,
                               Clock& clock) {
  if (deadline.is_never()) {
    co_await async_wait_for(waiter, net::use_awaitable);
    co_return;
  }
  const Duration left = deadline.remaining(clock.now());
  if (left <= Duration::zero()) {
    waiter->cancel();
    co_return;
  }
  using namespace net::experimental::awaitable_operators;
  net::steady_timer timer(co_await net::this_coro::executor, left);
  co_await (async_wait_for(waiter, net::use_awaitable) || timer.async_wait(net::use_awaitable));
}

net::awaitable<AttemptResult> run_from(const Pipeline& pipeline, std::size_t index,
                                       CallContext& ctx, const AsyncCall& call) {
  Clock& clock = pipeline.clock();
  const auto executor = co_await net::this_coro::executor;

  if (index == pipeline.stages().size()) {
    if (ctx.stop.stop_requested()) {
      co_return cancelled_result();
    }
    if (ctx.deadline.is_never()) co_return co_await call(ctx);
    const Duration left = ctx.deadline.remaining(clock.now());
    if (left <= Duration::zero()) co_return timeout_result();
    // Race the call against the deadline; the loser is cancelled and awaited, so nothing of
    // the call outlives this attempt.
    using namespace net::experimental::awaitable_operators;
    net::steady_timer timer(executor, left);
    std::variant<AttemptResult, std::monostate> first =
        co_await (call(ctx) || timer.async_wait(net::use_awaitable));
    if (first.index() == 1) co_return timeout_result();
    co_return std::get<0>(std::move(first));
  }

  std::unique_ptr<StageRun> run = pipeline.stages()[index]->start();
  for (;;) {
    CallContext inner = ctx;
    Step step = run->enter(inner, clock.now());
    if (step.kind == Step::Kind::finish) co_return std::move(step.result);

    AttemptResult result;
    std::exception_ptr thrown;
    if (step.kind == Step::Kind::wait) {
      try {
        co_await wait_step(step.waiter, earliest(step.wait_deadline, inner.deadline), clock);
      } catch (...) {
        thrown = std::current_exception();
      }
      if (!thrown && ctx.stop.stop_requested()) {
        run->abandon();
        co_return cancelled_result();
      }
      if (!thrown) continue;  // enter() again: the stage reads the wait's fate from its Waiter
    } else {
      try {
        result = co_await run_from(pipeline, index + 1, inner, call);
      } catch (...) {
        thrown = std::current_exception();
      }
    }
    if (thrown) {
      run->abandon();
      std::rethrow_exception(thrown);
    }
    step = run->leave(inner, std::move(result), clock.now());
    if (step.kind != Step::Kind::again) co_return std::move(step.result);
    net::steady_timer backoff(executor, step.delay);
    co_await backoff.async_wait(net::use_awaitable);
  }
}

}  // namespace

net::awaitable<AttemptResult> run_attempts(const Pipeline& pipeline, CallContext ctx,
                                           const AsyncCall& call) {
  co_return co_await run_from(pipeline, 0, ctx, call);
}

}  // namespace bulwark::asio
