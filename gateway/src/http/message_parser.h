// MessageParser: Beast's HTTP/1.1 parser (boost::beast::http::basic_parser, the same strict
// grammar, limits and chunk decoding) with callbacks that keep positions instead of copies: the
// start line and every header field are string_views into the caller's read buffer, and each
// body piece is a view of the bytes just parsed. No basic_fields nodes, no allocation.
//
// Contract with the caller (listener/connection.cc, upstream/exchange.cc):
//   - the bytes given to put() stay where they are while the views are used (the head is parsed
//     in one piece: Beast waits for the empty line before it reads any field);
//   - eager(false) is set, so each put() after the head yields at most one body piece, taken
//     with take_piece();
//   - `fields` is the caller's reusable vector; at most `max_fields` + 1 are kept (one more than
//     the limit, so that hygiene can say too_many_headers), and fields after the head (chunked
//     trailers) are dropped.
// A parser is one message; the caller emplaces a new one (an inline std::optional) per message.
#pragma once

#include <boost/beast/http/basic_parser.hpp>
#include <cstdint>
#include <string_view>
#include <vector>

#include "http/hygiene.h"

namespace bulwark::gateway::http {

template <bool isRequest>
class MessageParser final : public boost::beast::http::basic_parser<isRequest> {
 public:
  using error_code = boost::beast::error_code;
  using string_view = boost::core::string_view;

  MessageParser(std::vector<HeaderField>& fields, std::size_t max_fields) noexcept
      : fields_(fields), max_fields_(max_fields) {
    fields_.clear();
    this->eager(false);
  }

  // Request line (requests) or status line (responses).
  std::string_view method() const noexcept { return method_; }
  std::string_view target() const noexcept { return target_; }
  boost::beast::http::verb verb() const noexcept { return verb_; }
  int status() const noexcept { return status_; }
  std::string_view reason() const noexcept { return reason_; }
  int version() const noexcept { return version_; }  // 10 or 11

  // A chunk larger than this refuses the message (0: no limit).
  void max_chunk_bytes(uint64_t n) noexcept { max_chunk_ = n; }
  bool chunk_too_big() const noexcept { return chunk_too_big_; }
  // More chunks than this refuse the message (0: no limit); the last chunk does not count.
  void max_chunks(uint64_t n) noexcept { max_chunks_ = n; }
  bool too_many_chunks() const noexcept { return too_many_chunks_; }

  // The body piece parsed by the last put(), or empty; taking it clears it.
  std::string_view take_piece() noexcept { return std::exchange(piece_, {}); }

 private:
  void on_request_impl(boost::beast::http::verb v, string_view method, string_view target,
                       int version, error_code& ec) override;
  void on_response_impl(int status, string_view reason, int version, error_code& ec) override;
  void on_field_impl(boost::beast::http::field f, string_view name, string_view value,
                     error_code& ec) override;
  void on_header_impl(error_code& ec) override;
  void on_body_init_impl(const boost::optional<std::uint64_t>& length, error_code& ec) override;
  std::size_t on_body_impl(string_view body, error_code& ec) override;
  void on_chunk_header_impl(std::uint64_t size, string_view extensions, error_code& ec) override;
  std::size_t on_chunk_body_impl(std::uint64_t remain, string_view body, error_code& ec) override;
  void on_finish_impl(error_code& ec) override;

  std::vector<HeaderField>& fields_;
  std::size_t max_fields_;
  bool head_done_ = false;
  std::string_view method_;
  std::string_view target_;
  boost::beast::http::verb verb_ = boost::beast::http::verb::unknown;
  int status_ = 0;
  std::string_view reason_;
  int version_ = 11;
  uint64_t max_chunk_ = 0;
  bool chunk_too_big_ = false;
  uint64_t max_chunks_ = 0;
  uint64_t chunks_ = 0;
  bool too_many_chunks_ = false;
  std::string_view piece_;
};

using RequestParser = MessageParser<true>;
using ResponseParser = MessageParser<false>;

extern template class MessageParser<true>;
extern template class MessageParser<false>;

}  // namespace bulwark::gateway::http
