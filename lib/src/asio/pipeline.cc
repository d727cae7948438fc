#include "bulwark/asio/pipeline.h"

#include <algorithm>
#include <atomic>
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/execution/outstanding_work.hpp>
#include <boost/asio/experimental/parallel_group.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/prefer.hpp>
#include <boost/asio/recycling_allocator.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <cstddef>
#include <new>
#include <optional>

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
        using Work = std::decay_t<decltype(net::prefer(net::get_associated_executor(handler),
                                                       net::execution::outstanding_work.tracked))>;
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
                               Clock& clock, net::steady_timer& timer) {
  if (deadline.is_never()) {
    co_await async_wait_for(waiter, net::use_awaitable);
    co_return;
  }
  const Duration left = deadline.remaining(clock.now());
  if (left <= Duration::zero()) {
    waiter->cancel();
    co_return;
  }
  timer.expires_after(left);
  (void)co_await net::experimental::make_parallel_group(async_wait_for(waiter, net::deferred),
                                                        timer.async_wait(net::deferred))
      .async_wait(net::experimental::wait_for_one(), net::use_awaitable);
  // Neither operation reports an error as an exception: a cancellation by the caller is seen
  // here, and ends the wait the way Asio operations end, with operation_aborted.
  const net::cancellation_state state = co_await net::this_coro::cancellation_state;
  if (state.cancelled() != net::cancellation_type::none) {
    throw boost::system::system_error(net::error::operation_aborted);
  }
}

// One call's PipelineCall storage, from Asio's per-thread recycling allocator (blocks are
// reused by the next call on the thread, so steady-state calls do not reach malloc).
class CallStorage {
 public:
  using Unit = std::max_align_t;
  CallStorage(std::size_t size, std::size_t align)
      : units_((std::max<std::size_t>(size, 1) + sizeof(Unit) - 1) / sizeof(Unit)), align_(align) {
    if (align_ <= alignof(Unit)) {
      data_ = net::recycling_allocator<Unit>().allocate(units_);
    } else {
      data_ = ::operator new(units_ * sizeof(Unit), std::align_val_t(align_));
    }
  }
  ~CallStorage() {
    if (align_ <= alignof(Unit)) {
      net::recycling_allocator<Unit>().deallocate(static_cast<Unit*>(data_), units_);
    } else {
      ::operator delete(data_, std::align_val_t(align_));
    }
  }
  CallStorage(const CallStorage&) = delete;
  CallStorage& operator=(const CallStorage&) = delete;
  void* data() const noexcept { return data_; }

 private:
  std::size_t units_;
  std::size_t align_;
  void* data_ = nullptr;
};

}  // namespace

net::awaitable<AttemptResult> run_attempts(const Pipeline& pipeline, CallContext ctx,
                                           AsyncCallRef call) {
  using Kind = PipelineCall::Kind;
  Clock& clock = pipeline.clock();
  const auto executor = co_await net::this_coro::executor;
  CallStorage storage(pipeline.call_storage_size(), pipeline.call_storage_align());
  PipelineCall walk(pipeline, ctx, storage.data());
  // One timer for the whole call: each attempt's deadline, each backoff, each timed wait.
  net::steady_timer timer(executor);

  for (PipelineCall::Action a = walk.start();;) {
    std::exception_ptr thrown;
    switch (a.kind) {
      case Kind::done:
        co_return walk.take_result();

      case Kind::call: {
        CallContext& inner = walk.call_context();
        AttemptResult result;
        try {
          if (inner.deadline.is_never()) {
            result = co_await call(inner);
          } else if (const Duration left = inner.deadline.remaining(clock.now());
                     left <= Duration::zero()) {
            result = timeout_result();
          } else {
            // Race the call against the deadline; the loser is cancelled and awaited, so
            // nothing of the call outlives this attempt. Neither side throws into the group:
            // the call's exception (its cancellation) comes back as an exception_ptr.
            timer.expires_after(left);
            auto [order, call_error, call_result, timer_error] =
                co_await net::experimental::make_parallel_group(
                    net::co_spawn(executor, call(inner), net::deferred),
                    timer.async_wait(net::deferred))
                    .async_wait(net::experimental::wait_for_one(), net::use_awaitable);
            if (order[0] == 1 && !timer_error) {
              result = timeout_result();  // the deadline came first
            } else if (call_error) {
              std::rethrow_exception(call_error);  // cancelled by the caller
            } else {
              result = std::move(call_result);
            }
          }
        } catch (...) {
          thrown = std::current_exception();
        }
        if (thrown) {
          walk.fail();
          std::rethrow_exception(thrown);
        }
        a = walk.on_call(std::move(result));
        break;
      }

      case Kind::wait: {
        try {
          co_await wait_step(a.waiter, a.until, clock, timer);
        } catch (...) {
          thrown = std::current_exception();
        }
        if (thrown) {
          walk.fail();
          std::rethrow_exception(thrown);
        }
        const bool stopped = a.stop->stop_requested();
        a = stopped ? walk.on_wait_stopped() : walk.on_wait_end();
        break;
      }

      case Kind::sleep: {
        timer.expires_after(a.delay);
        try {
          co_await timer.async_wait(net::use_awaitable);
        } catch (...) {
          thrown = std::current_exception();
        }
        if (thrown) {
          walk.fail();
          std::rethrow_exception(thrown);
        }
        a = walk.on_sleep_end();
        break;
      }
    }
  }
}

}  // namespace bulwark::asio
