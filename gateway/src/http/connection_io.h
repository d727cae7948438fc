// The I/O primitives every connection of a worker uses, client or upstream:
//
//   Executor, Socket, Task<T>, kTuple   concrete executor types (no any_io_executor copies)
//   ReadBuffer      the bytes read from one socket and not yet consumed; heads are parsed in
//                   place in it (views stay valid until compact() or release())
//   BufferPool      a worker's spare read-buffer storage: an idle keep-alive connection gives
//                   its storage back, so it holds no buffer while it waits
//   DeadlineTimer   the one timer of a connection. Each operation names the socket it waits on
//                   and its deadline; the timer is re-armed only when a deadline comes earlier
//                   than the armed one, and a later deadline is picked up when the timer fires
//                   (lazy re-arm: no timer system call per request in steady state). On expiry
//                   it cancels the guarded socket's operations and fired() says so.
//
// Thread-safety: none; everything belongs to one worker thread.
#pragma once

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <cstddef>
#include <memory>
#include <string_view>
#include <vector>

#include "bulwark/core/clock.h"

namespace bulwark::gateway::http {

using Executor = boost::asio::io_context::executor_type;
using Socket = boost::asio::basic_stream_socket<boost::asio::ip::tcp, Executor>;
using Acceptor = boost::asio::basic_socket_acceptor<boost::asio::ip::tcp, Executor>;
template <class T>
using Task = boost::asio::awaitable<T, Executor>;
// Named so that co_await expressions take an lvalue (GCC 12 mishandles some temporaries inside
// co_await operands). `deferred` rather than `use_awaitable`: the coroutine awaits the
// operation itself, without a coroutine frame of Asio's own per operation.
inline constexpr auto kTuple = boost::asio::as_tuple(boost::asio::deferred);

class BufferPool {
 public:
  // Storage of at least `bytes`; reuses a spare block when one is big enough.
  std::unique_ptr<char[]> take(std::size_t bytes, std::size_t& capacity);
  void give(std::unique_ptr<char[]> block, std::size_t capacity);

 private:
  static constexpr std::size_t kMaxSpare = 64;
  struct Block {
    std::unique_ptr<char[]> data;
    std::size_t capacity = 0;
  };
  std::vector<Block> spare_;
};

class ReadBuffer {
 public:
  ReadBuffer() = default;
  ReadBuffer(const ReadBuffer&) = delete;
  ReadBuffer& operator=(const ReadBuffer&) = delete;

  std::string_view data() const noexcept { return {storage_.get() + begin_, end_ - begin_}; }
  std::size_t size() const noexcept { return end_ - begin_; }
  bool empty() const noexcept { return begin_ == end_; }
  void consume(std::size_t n) noexcept;

  // Free space at the end for a read, after moving the unread bytes to the front when that
  // is needed to get `min_free` bytes (invalidates views). Takes storage from `pool` if none.
  boost::asio::mutable_buffer prepare(BufferPool& pool, std::size_t capacity,
                                      std::size_t min_free);
  void commit(std::size_t n) noexcept { end_ += n; }
  // Gives the storage back to the pool (only when empty).
  void release(BufferPool& pool) noexcept;

 private:
  std::unique_ptr<char[]> storage_;
  std::size_t capacity_ = 0;
  std::size_t begin_ = 0;
  std::size_t end_ = 0;
};

class DeadlineTimer {
 public:
  explicit DeadlineTimer(const Executor& executor);
  ~DeadlineTimer();
  DeadlineTimer(const DeadlineTimer&) = delete;
  DeadlineTimer& operator=(const DeadlineTimer&) = delete;

  // The next operation waits on `socket` until `deadline` (TimePoint::max(): no deadline).
  void guard(Socket& socket, TimePoint deadline);
  // The guarded operation was cancelled by the deadline.
  bool fired() const noexcept;

 private:
  struct State;
  void arm(TimePoint at);
  static void arm_state(const std::shared_ptr<State>& state, TimePoint at);
  std::shared_ptr<State> state_;  // shared with the pending wait, which may outlive *this
};

}  // namespace bulwark::gateway::http
