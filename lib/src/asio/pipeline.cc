#include "bulwark/asio/pipeline.h"

#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <variant>

namespace bulwark::asio {
namespace {

net::awaitable<AttemptResult> run_from(const Pipeline& pipeline, std::size_t index,
                                       CallContext& ctx, const AsyncCall& call) {
  Clock& clock = pipeline.clock();
  const auto executor = co_await net::this_coro::executor;

  if (index == pipeline.stages().size()) {
    if (ctx.stop.stop_requested()) {
      co_return AttemptResult::from_policy(errc::cancelled, Outcome::final_failure);
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
    try {
      result = co_await run_from(pipeline, index + 1, inner, call);
    } catch (...) {
      thrown = std::current_exception();
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
