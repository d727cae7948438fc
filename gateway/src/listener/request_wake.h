// RequestWake: the connection's side of a request filter's wait (filter/filter.h WakeTarget).
//
// A filter that cannot decide at once (a queued cluster permit) returns LocalReply::wait and
// hands the request's WakeToken to whatever will resolve it; that may happen on any thread (a
// permit released by a request on another worker). wake() posts to the request's worker, which
// ends the wait; the connection then asks the filter again (filter/chain.h resume).
//
//   WakeHub      one per worker: posts to the worker's loop while it runs; closed before the
//                loop is destroyed, so a late wake from another thread is dropped, never
//                posted to a dead loop
//   RequestWake  one per pooled RequestContext, reused request after request: the number of
//                the current wait (a token of an earlier wait wakes nothing) and the wait itself
//
// Thread-safety: wake() from any thread; everything else on the worker thread.
#pragma once

#include <boost/asio/basic_waitable_timer.hpp>
#include <boost/asio/post.hpp>
#include <chrono>
#include <memory>
#include <mutex>

#include "bulwark/core/clock.h"
#include "filter/filter.h"
#include "http/connection_io.h"

namespace bulwark::gateway::listener {

class WakeHub {
 public:
  explicit WakeHub(http::Executor executor) : executor_(executor) {}

  // Runs `fn` on the worker's loop, unless the hub is closed.
  template <class Fn>
  void post(Fn&& fn) {
    std::lock_guard lock(mu_);
    if (open_) boost::asio::post(executor_, std::forward<Fn>(fn));
  }
  // No post after this returns (the worker is about to destroy its loop).
  void close() {
    std::lock_guard lock(mu_);
    open_ = false;
  }

 private:
  std::mutex mu_;
  bool open_ = true;
  http::Executor executor_;
};

class RequestWake final : public filter::WakeTarget,
                          public std::enable_shared_from_this<RequestWake> {
 public:
  explicit RequestWake(std::shared_ptr<WakeHub> hub) : hub_(std::move(hub)) {}

  void wake(uint64_t wait) noexcept override;

  // The number of the wait a filter would start now (its WakeToken's `wait`).
  uint64_t current_wait() const noexcept { return wait_; }

  // Suspends until the current wait is woken or `delay` has passed, then moves on to the next
  // wait number (the current wait's tokens wake nothing from then on). True when woken.
  http::Task<bool> wait_for(http::Executor executor, std::chrono::nanoseconds delay);

 private:
  using Timer = boost::asio::basic_waitable_timer<std::chrono::steady_clock,
                                                  boost::asio::wait_traits<std::chrono::steady_clock>,
                                                  http::Executor>;
  void woken(uint64_t wait) noexcept;

  std::shared_ptr<WakeHub> hub_;
  // Worker thread only.
  uint64_t wait_ = 1;
  bool woken_ = false;
  Timer* timer_ = nullptr;  // the wait in progress, if any
};

}  // namespace bulwark::gateway::listener
