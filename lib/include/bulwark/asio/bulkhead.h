// Awaitable bulkhead acquisition for Asio coroutines.
//
//   bulwark::Result<bulwark::limit::Permit> permit =
//       co_await bulwark::asio::async_acquire(bulkhead, priority, deadline);
//
// Completes with
//   - a Permit: granted at once, or later when another caller (on any thread) releases one;
//     the completion always runs on the awaiting coroutine's executor. A throttled permit is
//     delivered at its start_at() (an asio timer waits for it).
//   - errc::queue_full / errc::throttled / errc::rejected: refused on arrival (see bulkhead.h);
//   - errc::wait_timeout: the wait reached its deadline (the earlier of `deadline` and
//     now + max_wait), measured by an asio::steady_timer;
//   - errc::cancelled: the awaiting operation was cancelled (per-operation cancellation, e.g.
//     `co_await (async_acquire(b) || timer.async_wait(use_awaitable))`, or a cancelled parent
//     coroutine). The waiter leaves the queue and its slot is free at once. A grant that
//     races with the cancellation is returned to the bulkhead: exactly one of "the coroutine
//     gets the permit" or "the permit goes back" happens.
// It never throws for these outcomes.
//
// Clocks: the bulkhead's Clock decides (admission, deadlines in the core), while the waits are
// asio::steady_timer, so use a bulkhead on SystemClock (the default) with this adapter.
//
// Threads: the grant may come from any thread; the awaiting coroutine should run on a
// single-threaded io_context or a strand (the operation's timer is used from its executor).
//
// Lifetime: the bulkhead must outlive the operation; the io_context must outlive a pending
// wait (a grant posts the completion to it).
#pragma once

#include <boost/asio/awaitable.hpp>

#include "bulwark/limit/bulkhead.h"

namespace bulwark::asio {

boost::asio::awaitable<Result<limit::Permit>> async_acquire(limit::Bulkhead& bulkhead,
                                                            int priority = 0,
                                                            Deadline deadline = Deadline::never());

}  // namespace bulwark::asio
