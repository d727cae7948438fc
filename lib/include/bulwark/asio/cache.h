// Asio awaitable single-flight for bulwark::cache::Cache.
//
//   Result<Cached<V>> r = co_await bulwark::asio::get_or_fill(cache, key, clock, fill);
//
// does what Cache::get_or_fill does, without blocking a thread: a hit returns at once; on a
// miss exactly one fill runs for all concurrent callers of the key (threads or coroutines, on
// any executors), and every caller gets its outcome (the value, a stale value under
// stale-if-error, or the fill's error).
//
// `fill` takes no arguments and returns net::awaitable<R>, where R is anything
// Cache::get_or_fill accepts from a fill (Result<V>, V, Result<shared_ptr<const V>>,
// shared_ptr<const V>). A fill that throws is a failed fill (errc::call_failed for everyone,
// or a stale value).
//
// The fill runs in a coroutine of its own, spawned on the executor of the caller that missed
// first, not inside that caller: cancelling a caller only abandons that caller's wait. The
// fill still completes for the others and its value is still stored. Bound the fill with its
// own deadline (e.g. run it through a bulwark::asio pipeline with a timeout).
//
// Cancellation: the wait supports Asio per-operation cancellation (terminal, partial and total
// all withdraw the wait). A cancelled wait completes the way Asio operations do: co_await
// throws boost::system::system_error(operation_aborted). FillOptions::stop is ignored here.
//
// Time: `clock.now()` is read when the lookup starts and again when the fill completes (the
// stored value's TTL counts from completion; stale windows are judged then).
//
// Lifetime: the cache, the clock and whatever `fill` refers to must outlive the fill, which
// may run after every caller has gone (cancelled).
//
// Example:
//   net::awaitable<void> handle(Cache<std::string, Page>& pages, const std::string& path) {
//     auto page = co_await bulwark::asio::get_or_fill(
//         pages, path, bulwark::SystemClock::instance(),
//         [&]() -> net::awaitable<bulwark::Result<Page>> { co_return co_await load(path); });
//   }
#pragma once

#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <utility>

#include "bulwark/cache/cache.h"
#include "bulwark/core/clock.h"

namespace bulwark::asio {

namespace net = boost::asio;

namespace detail {

// One caller's pending wait for an outcome: completed exactly once, by the outcome or by a
// cancellation, whichever comes first. The handler always runs on its own executor.
template <class V, class Handler>
class OutcomeWait : public std::enable_shared_from_this<OutcomeWait<V, Handler>> {
 public:
  using Outcome = Result<cache::Cached<V>>;

  explicit OutcomeWait(Handler h)
      : work_(net::get_associated_executor(h)), handler_(std::move(h)) {}

  // Connects the handler's cancellation slot, if it has one.
  void arm() {
    auto slot = net::get_associated_cancellation_slot(*handler_);
    if (slot.is_connected()) {
      std::weak_ptr<OutcomeWait> weak = this->shared_from_this();
      slot.assign([weak](net::cancellation_type) {
        if (auto self = weak.lock()) self->finish(net::error::operation_aborted, std::nullopt);
      });
    }
  }

  void deliver(const Outcome& o) { finish({}, o); }

 private:
  void finish(boost::system::error_code ec, std::optional<Outcome> o) {
    std::optional<Handler> taken;
    {
      std::lock_guard lock(mu_);
      if (!handler_) return;
      taken.emplace(std::move(*handler_));
      handler_.reset();
    }
    auto ex = work_.get_executor();
    // Posted, never run inline: the cancellation slot is cleared on the handler's executor,
    // and an outcome that arrives from another thread does not run the caller's code there.
    net::post(ex, [h = std::move(*taken), ec, o = std::move(o), work = std::move(work_)]() mutable {
      net::get_associated_cancellation_slot(h).clear();
      std::move(h)(ec, o ? std::move(*o) : Outcome(make_error_code(errc::cancelled)));
    });
  }

  net::executor_work_guard<net::associated_executor_t<Handler>> work_;
  std::mutex mu_;
  std::optional<Handler> handler_;
};

template <class V, class Initiate, class Token>
auto async_outcome(Initiate&& init, Token&& token) {
  using Outcome = Result<cache::Cached<V>>;
  return net::async_initiate<Token, void(boost::system::error_code, Outcome)>(
      [init = std::forward<Initiate>(init)](auto handler) mutable {
        using H = decltype(handler);
        auto wait = std::make_shared<OutcomeWait<V, H>>(std::move(handler));
        wait->arm();
        init([wait](const Outcome& o) { wait->deliver(o); });
      },
      token);
}

template <class CacheT, class F>
net::awaitable<void> run_fill(typename CacheT::FillLease lease, Clock& clock, F fill,
                              std::function<void(const typename CacheT::Outcome&)> done) {
  using Outcome = typename CacheT::Outcome;
  std::optional<Outcome> out;
  try {
    auto r = co_await fill();
    out.emplace(lease.complete(std::move(r), clock.now()));
  } catch (...) {
    if (lease.pending())
      out.emplace(lease.complete(make_error_code(errc::call_failed), clock.now()));
  }
  if (!out) out.emplace(make_error_code(errc::call_failed));  // complete() itself threw
  done(*out);
}

}  // namespace detail

template <class K, class V, class H, class E, class F>
net::awaitable<Result<cache::Cached<V>>> get_or_fill(cache::Cache<K, V, H, E>& c, K key,
                                                     Clock& clock, F fill,
                                                     cache::FillOptions options = {}) {
  using CacheT = cache::Cache<K, V, H, E>;
  using Outcome = typename CacheT::Outcome;
  options.stop = {};
  typename CacheT::FillStart start = c.begin_fill(key, clock.now(), options);
  if (start.hit) co_return Outcome(std::move(start.hit));
  // The operations are named locals, not temporaries inside the co_await expression: GCC 12
  // mishandles the lifetime of such temporaries in coroutines.
  if (start.follow) {
    auto follow = [flight = std::move(start.follow)](auto deliver) {
      flight->on_complete(std::move(deliver));
    };
    auto wait = detail::async_outcome<V>(std::move(follow), net::use_awaitable);
    Outcome out = co_await std::move(wait);
    co_return out;
  }
  auto ex = co_await net::this_coro::executor;
  auto lead = [ex, lease = std::make_shared<typename CacheT::FillLease>(std::move(*start.lead)),
               &clock, fill = std::move(fill)](auto deliver) mutable {
    net::co_spawn(
        ex, detail::run_fill<CacheT>(std::move(*lease), clock, std::move(fill), std::move(deliver)),
        net::detached);
  };
  auto wait = detail::async_outcome<V>(std::move(lead), net::use_awaitable);
  Outcome out = co_await std::move(wait);
  co_return out;
}

}  // namespace bulwark::asio
