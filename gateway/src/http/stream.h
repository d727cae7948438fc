// Stream: one connection's bytes, plain TCP or TLS over it, chosen when the connection is made
// (a listener with `tls`, a cluster with `tls`) and the same type either way, so the stations
// read and write without knowing which.
//
//   async_read_some / async_write_some   the operations Asio's composed reads and writes use
//                                        (net::async_write(stream, ...) works); on TLS they
//                                        go through the SSL engine
//   async_handshake                      TLS only: the server or client handshake
//   socket()                             the TCP socket under it: options, the one deadline
//                                        timer's cancellation, shutdown, close, readiness waits
//   has_buffered_input()                 TLS may hold decrypted bytes the socket no longer
//                                        signals: a readiness wait must not start then
//
// Completions go straight to the awaiting coroutine (async_initiate; no coroutine frame and
// no allocation of its own per operation). Thread-safety: none; one worker's thread.
#pragma once

#include <openssl/ssl.h>

#include <boost/asio/async_result.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <memory>
#include <utility>

#include "http/connection_io.h"

namespace bulwark::gateway::http {

namespace ssl = boost::asio::ssl;

class Stream {
 public:
  using executor_type = Executor;
  using lowest_layer_type = Socket;

  // Plain TCP.
  explicit Stream(Socket socket) : plain_(std::move(socket)) {}
  explicit Stream(const Executor& executor) : plain_(executor) {}
  // TLS over `socket`, with `context` (which must outlive the stream); the handshake is the
  // caller's next step.
  Stream(Socket socket, ssl::context& context)
      : plain_(socket.get_executor()),
        tls_(std::make_unique<ssl::stream<Socket>>(std::move(socket), context)) {}

  Stream(Stream&&) noexcept = default;
  Stream& operator=(Stream&&) noexcept = default;

  executor_type get_executor() noexcept { return socket().get_executor(); }
  Socket& socket() noexcept { return tls_ ? tls_->next_layer() : plain_; }
  const Socket& socket() const noexcept { return tls_ ? tls_->next_layer() : plain_; }
  Socket& lowest_layer() noexcept { return socket(); }
  bool secure() const noexcept { return tls_ != nullptr; }
  // The TLS session (null for plain TCP).
  SSL* ssl_handle() noexcept { return tls_ ? tls_->native_handle() : nullptr; }
  bool has_buffered_input() const noexcept {
    return tls_ && SSL_pending(tls_->native_handle()) > 0;
  }

  template <class MutableBuffers, class Token>
  auto async_read_some(const MutableBuffers& buffers, Token&& token) {
    return boost::asio::async_initiate<Token, void(boost::system::error_code, std::size_t)>(
        [this](auto handler, const MutableBuffers& b) {
          if (tls_) {
            tls_->async_read_some(b, std::move(handler));
          } else {
            plain_.async_read_some(b, std::move(handler));
          }
        },
        token, buffers);
  }

  template <class ConstBuffers, class Token>
  auto async_write_some(const ConstBuffers& buffers, Token&& token) {
    return boost::asio::async_initiate<Token, void(boost::system::error_code, std::size_t)>(
        [this](auto handler, const ConstBuffers& b) {
          if (tls_) {
            tls_->async_write_some(b, std::move(handler));
          } else {
            plain_.async_write_some(b, std::move(handler));
          }
        },
        token, buffers);
  }

  template <class Token>
  auto async_handshake(ssl::stream_base::handshake_type type, Token&& token) {
    return tls_->async_handshake(type, std::forward<Token>(token));
  }

 private:
  Socket plain_;  // the connection without TLS (moved-from, unused, with it)
  // TLS over the socket: on the heap, so that a plain connection (and a pooled one) stays a
  // socket and a pointer.
  std::unique_ptr<ssl::stream<Socket>> tls_;
};

}  // namespace bulwark::gateway::http
