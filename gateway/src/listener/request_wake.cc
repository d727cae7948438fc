#include "listener/request_wake.h"

namespace bulwark::gateway::listener {

void RequestWake::wake(uint64_t wait) noexcept {
  try {
    hub_->post([self = shared_from_this(), wait] { self->woken(wait); });
  } catch (...) {
    // Out of memory for the post: the wait ends at its deadline instead, and the filter then
    // finds its decision made (or withdraws it).
  }
}

void RequestWake::woken(uint64_t wait) noexcept {
  if (wait != wait_) return;  // a token of a wait that is over
  woken_ = true;
  if (timer_ != nullptr) timer_->cancel();
}

http::Task<bool> RequestWake::wait_for(http::Executor executor, std::chrono::nanoseconds delay) {
  // A wake posted by another thread runs on this one only once this coroutine is suspended, so
  // the timer is there to cancel; one that ran before (woken_) ends the wait at once.
  if (!woken_ && delay > std::chrono::nanoseconds::zero()) {
    // The timer is the wait's own (not a member: a context outlives its worker's loop).
    Timer timer(executor);
    timer.expires_after(delay);
    timer_ = &timer;
    auto [ec] = co_await timer.async_wait(http::kTuple);
    (void)ec;
    timer_ = nullptr;
  }
  const bool was_woken = woken_;
  woken_ = false;
  ++wait_;
  co_return was_woken;
}

}  // namespace bulwark::gateway::listener
