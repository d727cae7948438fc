// Writing heads: every byte the gateway puts in front of a body is appended here to one
// reusable per-connection buffer (a std::string that keeps its capacity), then sent with the
// body in one gather write. No Beast serializer, no field containers.
//
//   write_local_reply      the gateway's own answer (filter/local_reply.h), head and JSON body
//   append_request_head    the request as it goes upstream: hop-by-hop fields out, forwarding
//                          fields in (X-Forwarded-For, X-Forwarded-Proto, X-Request-Id, Host)
//   append_response_head   the upstream's answer as it goes to the client, re-framed for it
//   append_chunk / kLastChunk   chunked framing of one body piece
//
// Hop-by-hop fields (RFC 9110 §7.6.1): Connection, every field Connection names (except the
// framing fields and Host, which stay whatever Connection says: requests naming them are
// refused earlier as smuggling), Keep-Alive, Proxy-Connection, TE, Trailer, Upgrade,
// Proxy-Authenticate, Proxy-Authorization.
#pragma once

#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "filter/local_reply.h"
#include "http/hygiene.h"

namespace bulwark::gateway::http {

inline constexpr std::string_view kLastChunk = "0\r\n\r\n";
inline constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";

bool iequals(std::string_view a, std::string_view b) noexcept;

// The tokens of every Connection field of `fields`, into `tokens` (cleared first).
void connection_tokens(std::span<const HeaderField> fields, std::vector<std::string_view>& tokens);

// Whether `name` is hop-by-hop given the Connection tokens of its message.
bool is_hop_by_hop(std::string_view name, std::span<const std::string_view> tokens) noexcept;

// The value of the first field called `lowered_name` (given in lower case; the fields' names
// match in any case), or empty.
std::string_view field_value(std::span<const HeaderField> fields,
                             std::string_view lowered_name) noexcept;

// The gateway's own answer, as HTTP/1.1. `head_only` (a HEAD request) writes the head with the
// Content-Length the body would have and no body (RFC 9110 §9.3.2).
void write_local_reply(std::string& out, const filter::LocalReply& reply,
                       std::string_view request_id, bool keep_alive, bool head_only);

struct UpstreamRequestHead {
  std::string_view method;
  std::string_view path;  // normalised; "*" for asterisk-form
  std::string_view query;
  bool has_query = false;
  std::span<const HeaderField> fields;  // as the client sent them
  std::string_view authority;           // absolute-form authority: replaces Host
  std::string_view default_host;        // when the request has no Host (HTTP/1.0)
  std::string_view client_ip;           // appended to X-Forwarded-For
  std::string_view request_id;
  std::string_view forwarded_proto = "http";  // X-Forwarded-Proto: "https" behind TLS
  // From request filters (filter::UpstreamEdits): lines added after the client's, and names
  // of the client's lines left out (case-insensitive).
  std::span<const HeaderField> added;
  std::span<const std::string_view> removed;
};

// The request head as it goes upstream, always HTTP/1.1 with keep-alive. The client's framing
// fields are kept (the body is relayed in the same framing).
void append_request_head(std::string& out, const UpstreamRequestHead& head,
                         std::vector<std::string_view>& scratch_tokens);

// How the answer's body goes to the client (decide_response_framing).
struct ResponseFraming {
  bool no_body = false;        // HEAD, 1xx, 204, 304: a head only
  bool chunk_out = false;      // the gateway frames the body as chunked
  bool unchunk = false;        // a chunked upstream body goes out raw (HTTP/1.0 client)
  bool drop_te = false;        // remove Transfer-Encoding (HTTP/1.0 client, no body)
  bool close_after = false;    // the client connection closes after this answer
  bool reusable = true;        // the upstream connection may carry another request
};

struct ResponseFacts {
  int status = 0;
  bool head_request = false;
  bool has_content_length = false;
  bool upstream_chunked = false;
  int client_version = 11;  // 10 or 11
  bool client_keep_alive = true;  // the client asked for it, its body was read, no drain
};

// The framing decision, as a pure function (http/head_writer_test.cc pins every case).
ResponseFraming decide_response_framing(const ResponseFacts& facts) noexcept;

struct ClientResponseHead {
  int status = 0;
  std::string_view reason;  // the upstream's reason phrase (the standard one when empty)
  int version = 11;         // the client's
  std::span<const HeaderField> fields;  // as the upstream sent them
  std::string_view request_id;          // added when the upstream sent none
  std::span<const filter::HeaderLine> added;  // response filters' lines
  ResponseFraming framing;
};

void append_response_head(std::string& out, const ClientResponseHead& head,
                          std::vector<std::string_view>& scratch_tokens);

// One body piece as a chunk (`piece` must not be empty: an empty chunk ends the body).
void append_chunk(std::string& out, std::string_view piece);
// The size line of a chunk (the caller sends the piece and "\r\n" after it).
void append_chunk_header(std::string& out, std::size_t size);

// The standard reason phrase of a status ("OK", "Not Found", ...), or "Unknown".
std::string_view reason_phrase(int status) noexcept;

}  // namespace bulwark::gateway::http
