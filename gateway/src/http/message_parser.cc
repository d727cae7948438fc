#include "http/message_parser.h"

#include <boost/beast/http/error.hpp>

namespace bulwark::gateway::http {

namespace {
std::string_view view(boost::core::string_view s) noexcept { return {s.data(), s.size()}; }
}  // namespace

template <bool R>
void MessageParser<R>::on_request_impl(boost::beast::http::verb v, string_view method,
                                       string_view target, int version, error_code& /*ec*/) {
  verb_ = v;
  method_ = view(method);
  target_ = view(target);
  version_ = version;
}

template <bool R>
void MessageParser<R>::on_response_impl(int status, string_view reason, int version,
                                        error_code& /*ec*/) {
  status_ = status;
  reason_ = view(reason);
  version_ = version;
}

template <bool R>
void MessageParser<R>::on_field_impl(boost::beast::http::field /*f*/, string_view name,
                                     string_view value, error_code& /*ec*/) {
  if (head_done_ || fields_.size() > max_fields_) return;  // trailers, or past the limit
  fields_.push_back({view(name), view(value)});
}

template <bool R>
void MessageParser<R>::on_header_impl(error_code& /*ec*/) {
  head_done_ = true;
}

template <bool R>
void MessageParser<R>::on_body_init_impl(const boost::optional<std::uint64_t>& /*length*/,
                                         error_code& /*ec*/) {}

template <bool R>
std::size_t MessageParser<R>::on_body_impl(string_view body, error_code& /*ec*/) {
  piece_ = view(body);
  return body.size();
}

template <bool R>
void MessageParser<R>::on_chunk_header_impl(std::uint64_t size, string_view /*extensions*/,
                                            error_code& ec) {
  if (max_chunk_ != 0 && size > max_chunk_) {
    chunk_too_big_ = true;
    ec = boost::beast::http::error::body_limit;
    return;
  }
  if (size != 0 && max_chunks_ != 0 && ++chunks_ > max_chunks_) {
    too_many_chunks_ = true;
    ec = boost::beast::http::error::body_limit;
  }
}

template <bool R>
std::size_t MessageParser<R>::on_chunk_body_impl(std::uint64_t /*remain*/, string_view body,
                                                 error_code& /*ec*/) {
  piece_ = view(body);
  return body.size();
}

template <bool R>
void MessageParser<R>::on_finish_impl(error_code& /*ec*/) {}

template class MessageParser<true>;
template class MessageParser<false>;

}  // namespace bulwark::gateway::http
