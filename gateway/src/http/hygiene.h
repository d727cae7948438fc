// Request hygiene: the checks a request must pass before anything of it reaches an upstream,
// as pure functions (no I/O, no allocation beyond the normalised path), so they are unit-tested
// exhaustively and fuzzed.
//
// Every refusal is a Verdict: the HTTP status the gateway answers with and a stable snake_case
// reason that goes into the `x-bulwark-reason` header, the JSON error body, the access log and
// metrics. Reasons:
//
//   400 bad_request_target   not origin-form / absolute-form / asterisk-form, or bad syntax
//   400 bad_characters       a character not allowed in a request target (space, control, `\`,
//                            non-ASCII)
//   400 bad_encoding         `%` not followed by two hex digits
//   400 encoded_null         `%00` anywhere in the target
//   400 path_traversal       `..` that would climb above the root, in any encoding: `../`,
//                            `..\`, `%2e%2e%2f`, `%2e%2e/`, double-encoded `%252e%252e%252f`
//                            (and any `%25` followed by the escape of `.` `/` `\` NUL or `%`),
//                            encoded backslash `%5c`, overlong UTF-8 (`%c0%ae`)
//   414 uri_too_long         target longer than max_uri_bytes
//   400 bad_header_name      a field name that is not an RFC 9110 token
//   400 bad_header_value     NUL, CR, LF or another control character (other than HTAB) in a value
//   400 obs_fold             a header line folded onto the next (obsolete line folding)
//   400 missing_host         HTTP/1.1 request without Host
//   400 duplicate_host       more than one Host field
//   400 bad_host             a Host value that is not host[:port]
//   400 smuggling            Content-Length together with Transfer-Encoding, or a Connection
//                            field naming Content-Length, Transfer-Encoding or Host (a proxy
//                            removes what Connection names: the body would lose its framing)
//   400 bad_content_length   Content-Length not a decimal number, or several differing values
//   400 duplicate_content_length   Content-Length given more than once
//   400 bad_transfer_encoding      Transfer-Encoding whose final coding is not `chunked`, or
//                                  `chunked` more than once
//   431 too_many_headers     more than max_headers fields
//   431 headers_too_large    header section larger than max_header_bytes
//
// Path normalisation (before routing, and what is forwarded): dot segments are resolved per
// RFC 3986 §5.2.4 (encoded dots, `%2e`, count as dots), runs of `/` collapse to one, and the
// rest of the path keeps its original percent-encoding; the query is passed through as is. A
// `..` that would climb above the root is refused rather than clamped (like nginx), because
// such a request is an attack, not a mistake.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "filter/local_reply.h"

namespace bulwark::gateway::http {

struct Verdict {
  int status = 0;           // 0: accepted
  std::string_view reason;  // stable snake_case, empty when accepted
  explicit operator bool() const noexcept { return status != 0; }  // true = refused
};

inline constexpr Verdict kAccepted{};

struct NormalizedTarget {
  std::string path;   // normalised, still percent-encoded, starts with '/'
  std::string query;  // without the '?', as received
  bool has_query = false;
  bool asterisk = false;  // "OPTIONS *"
  std::string authority;  // absolute-form only: host[:port] from the target
};

struct TargetResult {
  Verdict verdict;
  NormalizedTarget target;  // valid when verdict is accepted
};

// Checks and normalises a request target. `method` matters only for asterisk-form.
TargetResult check_target(std::string_view target, std::string_view method,
                          std::size_t max_uri_bytes);
// The same into `out`, whose strings keep their capacity from one request to the next (the
// data path's form: no allocation in steady state). `out` is unspecified when refused.
Verdict check_target_into(std::string_view target, std::string_view method,
                          std::size_t max_uri_bytes, NormalizedTarget& out);
// check_target_into without its shortcut for already-normal paths (the fuzz target checks
// that both always agree).
Verdict check_target_reference(std::string_view target, std::string_view method,
                               std::size_t max_uri_bytes, NormalizedTarget& out);

// A header field as views: the filter seam's HeaderLine (filter/ sits below http/, which writes
// its LocalReplies).
using HeaderField = filter::HeaderLine;

struct HeaderLimits {
  std::size_t max_headers = 100;
  std::size_t max_header_bytes = 8 * 1024UL;
};

struct Framing {
  std::optional<uint64_t> content_length;
  bool chunked = false;
};

// Checks the parsed header fields of a request (HTTP/1.`minor`). On success, `framing`
// says how the body is delimited.
Verdict check_headers(std::span<const HeaderField> fields, int http_minor,
                      const HeaderLimits& limits, Framing* framing = nullptr);

// Checks the raw header block (the bytes after the request line up to the empty line) for what
// a parser may silently accept: obsolete line folding and bare CR or NUL bytes.
Verdict check_raw_header_block(std::string_view block);

// All of the above on a raw request head (request line, fields, the empty line), split on
// line ends without interpreting anything else. The gateway parses requests with Beast; this
// is what it runs when Beast refuses a head, so that the answer names the precise rule
// (smuggling, bad_content_length, ...) instead of a generic parse error. Returns kAccepted
// when no rule applies (the caller then answers 400 malformed).
Verdict check_request_head(std::string_view head, const HeaderLimits& limits,
                           std::size_t max_uri_bytes);

// RFC 9110 token (field names, methods).
bool is_token(std::string_view s) noexcept;

}  // namespace bulwark::gateway::http
