// One worker's keep-alive connections to upstream endpoints.
//
// EndpointPool holds the idle connections to one endpoint (LIFO: the most recently used
// connection is the warmest and the least likely to have been closed by the upstream) and
// counts the busy ones. The pool never blocks: when max_per_endpoint connections are busy,
// acquire() says so and the caller answers 503 pool_exhausted.
//
// Idle connections expire after idle_timeout: expired ones are closed whenever the pool is
// used (a pool nobody uses any more keeps at most max_idle of them until drain). One that the
// upstream has closed meanwhile is detected without blocking (a peek on the socket, skipped
// for connections used within the last second) and discarded when taken.
//
// Pools are per worker and keyed by endpoint address, so they carry over config reloads that
// keep the endpoint. Thread-safety: none; a pool is only touched on its worker's thread.
#pragma once

#include <sys/socket.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <chrono>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <unordered_map>

#include "bulwark/core/clock.h"
#include "http/stream.h"
#include "observe/gateway_metrics.h"

namespace bulwark::gateway::upstream {

using tcp = boost::asio::ip::tcp;
using SteadyTime = bulwark::TimePoint;
// Sockets of a worker's io_context (a concrete executor type: no type-erased executor copies
// on the data path).
using Executor = boost::asio::io_context::executor_type;
using Socket = boost::asio::basic_stream_socket<tcp, Executor>;
// A pooled connection: TCP, or TLS over it (http/stream.h).
using Stream = http::Stream;

class EndpointPool {
 public:
  // Idle connections younger than this are not checked with a peek when taken.
  static constexpr std::chrono::milliseconds kTrustedIdle{1000};

  EndpointPool() = default;
  EndpointPool(const EndpointPool&) = delete;
  EndpointPool& operator=(const EndpointPool&) = delete;
  ~EndpointPool() {
    close_idle();
    if (session_ != nullptr) SSL_SESSION_free(session_);
  }

  // TLS: the last resumable session of a connection to this endpoint (owned by the pool), for
  // the next connection's handshake; null when none.
  SSL_SESSION* tls_session() const noexcept { return session_; }
  void keep_tls_session(SSL* ssl) noexcept {
    SSL_SESSION* current = SSL_get0_session(ssl);
    if (current == nullptr || SSL_SESSION_is_resumable(current) != 1) return;
    // A copy: OpenSSL marks a connection's own session unusable when the connection is freed
    // without a TLS shutdown, which is how pooled connections end.
    SSL_SESSION* copy = SSL_SESSION_dup(current);
    if (copy == nullptr) return;
    if (session_ != nullptr) SSL_SESSION_free(session_);
    session_ = copy;
  }

  void bind_metrics(observe::EndpointMetrics* m) noexcept { metrics_ = m; }

  // Reserves a busy slot. False when max_per_endpoint connections are already busy.
  bool reserve(uint32_t max_per_endpoint) noexcept {
    if (busy_ >= max_per_endpoint) return false;
    ++busy_;
    if (metrics_ && metrics_->pool_busy) metrics_->pool_busy->inc();
    return true;
  }
  // Gives back a busy slot (the connection itself goes to put_idle() or is closed).
  void release() noexcept {
    --busy_;
    if (metrics_ && metrics_->pool_busy) metrics_->pool_busy->dec();
  }

  // An idle connection that is still open, or nothing. Expired and closed ones are dropped.
  std::optional<Stream> take_idle(SteadyTime now, std::chrono::nanoseconds idle_timeout) {
    sweep(now, idle_timeout);
    while (!idle_.empty()) {
      Idle entry = std::move(idle_.back());
      idle_.pop_back();
      if (metrics_ && metrics_->pool_idle) metrics_->pool_idle->dec();
      // The peek costs a system call per request; a connection used moments ago is taken on
      // trust (the gateway replaces one found dead before any answer byte, see upstream/exchange.h),
      // unless it was put back with `verify`.
      if (now - entry.since <= idle_timeout &&
          ((!entry.verify && now - entry.since < kTrustedIdle) || still_open(entry.socket))) {
        return std::move(entry.socket);
      }
      boost::system::error_code ignored;
      entry.socket.socket().close(ignored);
    }
    return std::nullopt;
  }

  // `verify`: the connection is peeked when taken however recently it was used. For answers
  // without a body (HEAD, 204, 304), where an upstream that wrongly sends one anyway leaves
  // bytes that would be read as the next request's answer.
  void put_idle(Stream socket, SteadyTime now, uint32_t max_idle,
                std::chrono::nanoseconds idle_timeout = std::chrono::nanoseconds::max(),
                bool verify = false) {
    sweep(now, idle_timeout);
    if (idle_.size() >= max_idle) {
      boost::system::error_code ignored;
      socket.socket().close(ignored);
      return;
    }
    idle_.push_back({std::move(socket), now, verify});
    if (metrics_ && metrics_->pool_idle) metrics_->pool_idle->inc();
  }

  void close_idle() {
    for (auto& e : idle_) {
      boost::system::error_code ignored;
      e.socket.socket().close(ignored);
      if (metrics_ && metrics_->pool_idle) metrics_->pool_idle->dec();
    }
    idle_.clear();
  }

  uint32_t busy() const noexcept { return busy_; }
  std::size_t idle() const noexcept { return idle_.size(); }
  // Requests in flight to this endpoint from this worker (least_request reads it).
  uint32_t active = 0;

 private:
  struct Idle {
    Stream socket;
    SteadyTime since;
    bool verify = false;
  };

  // Closes expired connections from the old end. Reuse is LIFO, so without this the oldest
  // entries would never be looked at again and would sit half-closed until max_idle pushed
  // them out.
  void sweep(SteadyTime now, std::chrono::nanoseconds idle_timeout) {
    while (!idle_.empty() && now - idle_.front().since > idle_timeout) {
      boost::system::error_code ignored;
      idle_.front().socket.socket().close(ignored);
      idle_.pop_front();
      if (metrics_ && metrics_->pool_idle) metrics_->pool_idle->dec();
    }
  }

  // An idle HTTP connection must have nothing to read: data or EOF means the upstream closed
  // it (or sent something unsolicited), so it cannot carry another request.
  static bool still_open(Stream& s) noexcept {
    char byte;
    const ssize_t n = ::recv(s.socket().native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
  }

  std::deque<Idle> idle_;
  SSL_SESSION* session_ = nullptr;
  uint32_t busy_ = 0;
  observe::EndpointMetrics* metrics_ = nullptr;
};

// Every endpoint pool of one worker, by endpoint address.
class WorkerPools {
 public:
  EndpointPool& at(const std::string& address, observe::EndpointMetrics* metrics) {
    auto& pool = pools_[address];
    pool.bind_metrics(metrics);
    return pool;
  }
  void close_idle() {
    for (auto& [_, pool] : pools_) pool.close_idle();
  }

 private:
  std::unordered_map<std::string, EndpointPool> pools_;
};

}  // namespace bulwark::gateway::upstream
