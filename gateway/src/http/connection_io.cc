#include "http/connection_io.h"

#include <algorithm>
#include <cstring>

namespace bulwark::gateway::http {

namespace net = boost::asio;

std::unique_ptr<char[]> BufferPool::take(std::size_t bytes, std::size_t& capacity) {
  for (std::size_t i = spare_.size(); i-- > 0;) {
    if (spare_[i].capacity >= bytes) {
      Block b = std::move(spare_[i]);
      spare_[i] = std::move(spare_.back());
      spare_.pop_back();
      capacity = b.capacity;
      return std::move(b.data);
    }
  }
  capacity = bytes;
  // Not value-initialised: every byte is written by a read before it is looked at.
  return std::unique_ptr<char[]>(new char[bytes]);  // NOLINT(cppcoreguidelines-owning-memory)
}

void BufferPool::give(std::unique_ptr<char[]> block, std::size_t capacity) {
  if (spare_.size() >= kMaxSpare) return;  // freed: the worker keeps a bounded reserve
  spare_.push_back({std::move(block), capacity});
}

void ReadBuffer::consume(std::size_t n) noexcept {
  begin_ += std::min(n, size());
  if (begin_ == end_) begin_ = end_ = 0;
}

net::mutable_buffer ReadBuffer::prepare(BufferPool& pool, std::size_t capacity,
                                        std::size_t min_free) {
  if (!storage_) storage_ = pool.take(capacity, capacity_);
  if (capacity_ - end_ < min_free && begin_ > 0) {
    std::memmove(storage_.get(), storage_.get() + begin_, end_ - begin_);
    end_ -= begin_;
    begin_ = 0;
  }
  return {storage_.get() + end_, capacity_ - end_};
}

void ReadBuffer::release(BufferPool& pool) noexcept {
  if (!storage_ || !empty()) return;
  pool.give(std::move(storage_), capacity_);
  storage_.reset();
  capacity_ = 0;
  begin_ = end_ = 0;
}

struct DeadlineTimer::State {
  explicit State(const Executor& executor) : timer(executor) {}
  net::basic_waitable_timer<std::chrono::steady_clock, net::wait_traits<std::chrono::steady_clock>,
                            Executor>
      timer;
  Socket* guarded = nullptr;
  TimePoint deadline = TimePoint::max();
  TimePoint armed_at = TimePoint::max();  // max: not armed
  bool fired = false;
  bool closed = false;
};

DeadlineTimer::DeadlineTimer(const Executor& executor)
    : state_(std::make_shared<State>(executor)) {}

DeadlineTimer::~DeadlineTimer() {
  state_->closed = true;
  state_->guarded = nullptr;
  state_->timer.cancel();
}

void DeadlineTimer::guard(Socket& socket, TimePoint deadline) {
  State& s = *state_;
  s.guarded = &socket;
  s.deadline = deadline;
  s.fired = false;
  if (deadline < s.armed_at) arm(deadline);
}

bool DeadlineTimer::fired() const noexcept { return state_->fired; }

void DeadlineTimer::arm(TimePoint at) { arm_state(state_, at); }

void DeadlineTimer::arm_state(const std::shared_ptr<State>& state, TimePoint at) {
  state->armed_at = at;
  // The timer runs on the steady clock that SystemClock reads; `at` is one of its points.
  state->timer.expires_at(at);
  state->timer.async_wait([state, at](boost::system::error_code ec) {
    // A newer arm replaced this wait, or the connection is gone.
    if (ec || state->closed || state->armed_at != at) return;
    state->armed_at = TimePoint::max();
    if (state->guarded == nullptr || state->deadline == TimePoint::max()) return;
    if (state->deadline > at) {
      // The deadline moved later since this wait was armed: wait on for it.
      arm_state(state, state->deadline);
      return;
    }
    state->fired = true;
    boost::system::error_code ignored;
    state->guarded->cancel(ignored);
  });
}

}  // namespace bulwark::gateway::http
