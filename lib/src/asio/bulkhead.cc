#include "bulwark/asio/bulkhead.h"

#include <atomic>
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/execution/outstanding_work.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/prefer.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/system/system_error.hpp>
#include <memory>
#include <optional>

namespace bulwark::asio {
namespace {

namespace net = boost::asio;
using limit::Bulkhead;
using limit::Permit;
using limit::Ticket;

// Waits until `ticket` is granted or refused. Completes with success then (the caller reads
// the fate with take()), or with operation_aborted when the operation is cancelled through its
// cancellation slot while the ticket could still be withdrawn. The ticket's deadline is
// enforced with a steady_timer that calls bulkhead.expire(), so the refusal is the bulkhead's
// own (counted as timed out). Exactly one completion happens, always posted to the handler's
// executor (a grant may arrive on any thread).
template <class CompletionToken>
auto async_wait_ticket(Bulkhead& bulkhead, Ticket ticket, CompletionToken&& token) {
  return net::async_initiate<CompletionToken, void(boost::system::error_code)>(
      [&bulkhead, ticket](auto handler) {
        using Handler = decltype(handler);
        // Only used with use_awaitable, whose handlers run on an any_io_executor.
        const net::any_io_executor executor = net::get_associated_executor(handler);
        struct Op {
          Op(Bulkhead& b, Ticket t, const net::any_io_executor& ex)
              : bulkhead(b),
                ticket(std::move(t)),
                timer(ex),
                work(net::prefer(ex, net::execution::outstanding_work.tracked)) {}
          Bulkhead& bulkhead;
          Ticket ticket;
          net::steady_timer timer;
          // Keeps the io_context running while the grant may come from another thread.
          net::any_io_executor work;
          std::atomic<bool> done{false};
          std::optional<Handler> handler;
        };
        auto op = std::make_shared<Op>(bulkhead, ticket, executor);
        op->handler.emplace(std::move(handler));

        auto complete = [op, executor](boost::system::error_code ec) {
          if (op->done.exchange(true)) return;
          net::post(executor, [op, ec]() mutable {
            op->timer.cancel();
            Handler h = std::move(*op->handler);
            op->handler.reset();
            net::get_associated_cancellation_slot(h).clear();
            op->work = {};
            std::move(h)(ec);
          });
        };

        auto slot = net::get_associated_cancellation_slot(*op->handler);
        if (slot.is_connected()) {
          slot.assign([op, complete](net::cancellation_type) {
            // If withdraw() fails the ticket was resolved: on_resolved completes the operation
            // and the caller sees the cancellation in its own state.
            if (op->ticket.withdraw()) complete(net::error::operation_aborted);
          });
        }

        const Deadline deadline = op->ticket.deadline();
        if (!deadline.is_never()) {
          // Re-armed until the bulkhead itself times the ticket out, so that a timer firing a
          // hair early by the bulkhead's clock cannot leave the ticket waiting.
          struct Arm {
            std::shared_ptr<Op> op;
            void operator()(Deadline deadline) const {
              const Duration left = deadline.remaining(op->bulkhead.clock().now());
              op->timer.expires_after(std::max(left, Duration(std::chrono::microseconds(50))));
              op->timer.async_wait([op = op, deadline](boost::system::error_code ec) {
                if (ec || op->done.load()) return;
                op->bulkhead.expire(op->bulkhead.clock().now());
                if (op->ticket.state() == Ticket::State::waiting) Arm{op}(deadline);
              });
            }
          };
          if (deadline.expired(op->bulkhead.clock().now())) {
            op->bulkhead.expire(op->bulkhead.clock().now());
          } else {
            Arm{op}(deadline);
          }
        }
        op->ticket.on_resolved([complete] { complete({}); });
      },
      token);
}

}  // namespace

net::awaitable<Result<Permit>> async_acquire(Bulkhead& bulkhead, int priority, Deadline deadline) {
  Clock& clock = bulkhead.clock();
  Bulkhead::Acquisition a = bulkhead.try_acquire(clock.now(), priority, deadline);
  if (a.status == Bulkhead::Status::rejected) co_return make_error_code(a.reason);

  Permit permit;
  if (a.status == Bulkhead::Status::granted) {
    permit = std::move(a.permit);
  } else {
    const Ticket ticket = a.ticket;
    bool cancelled = false;
    try {
      co_await async_wait_ticket(bulkhead, ticket, net::use_awaitable);
    } catch (const boost::system::system_error&) {
      cancelled = true;  // operation_aborted: the ticket was withdrawn, or the wait never began
    }
    if (!cancelled) {
      const net::cancellation_state state = co_await net::this_coro::cancellation_state;
      cancelled = state.cancelled() != net::cancellation_type::none;
    }
    if (cancelled) {
      // Withdraws a waiting ticket, or returns a grant that raced with the cancellation.
      ticket.cancel();
      co_return make_error_code(errc::cancelled);
    }
    Result<Permit> r = ticket.take();
    if (!r) co_return r.error();
    permit = std::move(*r);
  }

  const TimePoint now = clock.now();
  if (permit.start_at() > now) {
    net::steady_timer start(co_await net::this_coro::executor, permit.start_at() - now);
    try {
      co_await start.async_wait(net::use_awaitable);
    } catch (const boost::system::system_error&) {
      co_return make_error_code(errc::cancelled);  // `permit` goes back as it is destroyed
    }
  }
  co_return permit;
}

}  // namespace bulwark::asio
