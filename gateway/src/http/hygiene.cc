#include "http/hygiene.h"

#include "filter/reasons.h"

#include <array>
#include <boost/url/parse.hpp>
#include <cstring>
#include <vector>

namespace bulwark::gateway::http {
namespace {

constexpr Verdict refuse(int status, std::string_view reason) { return Verdict{status, reason}; }

constexpr Verdict kUriTooLong = refuse(414, reason::kUriTooLong);
constexpr Verdict kBadTarget = refuse(400, reason::kBadRequestTarget);
constexpr Verdict kBadCharacters = refuse(400, reason::kBadCharacters);
constexpr Verdict kBadEncoding = refuse(400, reason::kBadEncoding);
constexpr Verdict kEncodedNull = refuse(400, reason::kEncodedNull);
constexpr Verdict kTraversal = refuse(400, reason::kPathTraversal);

int hex_value(char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

char lower(char c) noexcept { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c; }

bool iequals(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (lower(a[i]) != lower(b[i])) return false;
  }
  return true;
}

bool istarts_with(std::string_view s, std::string_view prefix) noexcept {
  return s.size() >= prefix.size() && iequals(s.substr(0, prefix.size()), prefix);
}

// Decodes %XX once. The caller has already checked that every '%' starts a valid escape.
std::string decode_once(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && hex_value(s[i + 1]) >= 0 && hex_value(s[i + 2]) >= 0) {
      out += static_cast<char>(hex_value(s[i + 1]) * 16 + hex_value(s[i + 2]));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

// True for UTF-8 sequences that encode a character in more bytes than needed: the classic way
// to write '.' as C0 AE and '/' as C0 AF past a filter that only looks for the short form.
bool has_overlong_utf8(std::string_view s) noexcept {
  for (std::size_t i = 0; i < s.size(); ++i) {
    const auto b = static_cast<unsigned char>(s[i]);
    if (b == 0xC0 || b == 0xC1) return true;
    if (i + 1 < s.size()) {
      const auto n = static_cast<unsigned char>(s[i + 1]);
      if (b == 0xE0 && n < 0xA0) return true;
      if (b == 0xF0 && n < 0x90) return true;
    }
  }
  return false;
}

// `%25` followed by the escape of '.', '/', '\', NUL or '%' itself: a path meant to be decoded
// twice (or more) so that the second decoding produces what the first check refused.
bool has_double_encoding(std::string_view s) noexcept {
  for (std::size_t i = 0; i + 4 < s.size(); ++i) {
    if (s[i] != '%' || s[i + 1] != '2' || s[i + 2] != '5') continue;
    const char a = s[i + 3];
    const char b = lower(s[i + 4]);
    if ((a == '2' && (b == 'e' || b == 'f' || b == '5')) || (a == '5' && b == 'c') ||
        (a == '0' && b == '0')) {
      return true;
    }
  }
  return false;
}

// Calls `each(item)` for every element of a comma-separated header list, trimmed of spaces and
// tabs (empty elements included, so callers can refuse them). Stops early if `each` returns
// false; returns whether it went through the whole list.
template <class Each>
bool for_each_list_item(std::string_view list, Each each) {
  std::size_t p = 0;
  for (;;) {
    const std::size_t comma = list.find(',', p);
    std::string_view item = list.substr(p, comma == std::string_view::npos ? comma : comma - p);
    while (!item.empty() && (item.front() == ' ' || item.front() == '\t')) item.remove_prefix(1);
    while (!item.empty() && (item.back() == ' ' || item.back() == '\t')) item.remove_suffix(1);
    if (!each(item)) return false;
    if (comma == std::string_view::npos) return true;
    p = comma + 1;
  }
}

// RFC 9110 tchar: DIGIT / ALPHA / "!#$%&'*+-.^_`|~".
constexpr std::array<bool, 256> kTokenChars = [] {
  std::array<bool, 256> t{};
  for (int c = '0'; c <= '9'; ++c) t[static_cast<std::size_t>(c)] = true;
  for (int c = 'a'; c <= 'z'; ++c) t[static_cast<std::size_t>(c)] = true;
  for (int c = 'A'; c <= 'Z'; ++c) t[static_cast<std::size_t>(c)] = true;
  for (char c : std::string_view("!#$%&'*+-.^_`|~")) t[static_cast<unsigned char>(c)] = true;
  return t;
}();

// A field value may hold any byte but the controls other than HTAB, and DEL. Branch-free, so
// the compiler vectorises it.
bool has_control_characters(std::string_view value) noexcept {
  unsigned bad = 0;
  for (char ch : value) {
    const auto c = static_cast<unsigned char>(ch);
    bad |= static_cast<unsigned>(c < 0x20 && c != '\t') | static_cast<unsigned>(c == 0x7F);
  }
  return bad != 0;
}

bool is_unreserved_or_allowed(unsigned char c) noexcept {
  if (c <= 0x20 || c >= 0x7F) return false;
  switch (c) {
    case '"':
    case '<':
    case '>':
    case '^':
    case '`':
    case '{':
    case '|':
    case '}':
      return false;
    default:
      return true;
  }
}

}  // namespace

bool is_token(std::string_view s) noexcept {
  if (s.empty()) return false;
  bool ok = true;
  for (char ch : s) ok &= kTokenChars[static_cast<unsigned char>(ch)];
  return ok;
}

namespace {

// True when `path` has no empty segment ("//") and no segment that starts with a dot: such a
// path normalises to itself.
bool is_plain_path(std::string_view path) noexcept {
  return path.find("//") == std::string_view::npos && path.find("/.") == std::string_view::npos;
}

// Resolves dot segments (RFC 3986 §5.2.4) of an escaped path into `out`, judging each segment
// by its decoded value; refuses a climb above the root.
Verdict resolve_dot_segments(std::string_view path, std::string& out);

}  // namespace

namespace {

Verdict check_target_impl(std::string_view target, std::string_view method,
                          std::size_t max_uri_bytes, NormalizedTarget& out, bool allow_plain) {
  out.path.clear();
  out.query.clear();
  out.authority.clear();
  out.has_query = false;
  out.asterisk = false;
  if (target.size() > max_uri_bytes) return kUriTooLong;
  if (target.empty()) return kBadTarget;
  if (target == "*") {
    if (method != "OPTIONS") return kBadTarget;
    out.asterisk = true;
    out.path = "*";
    return kAccepted;
  }
  bool escaped = false;
  for (std::size_t i = 0; i < target.size(); ++i) {
    const auto c = static_cast<unsigned char>(target[i]);
    escaped = escaped || c == '%';
    if (c == '\\') return kTraversal;  // only ever sent to smuggle a separator
    if (!is_unreserved_or_allowed(c)) return kBadCharacters;
    if (c == '%') {
      if (i + 2 >= target.size() || hex_value(target[i + 1]) < 0 || hex_value(target[i + 2]) < 0) {
        return kBadEncoding;
      }
      if (target[i + 1] == '0' && target[i + 2] == '0') return kEncodedNull;
      const char a = target[i + 1];
      const char b = lower(target[i + 2]);
      if (a == '5' && b == 'c') return kTraversal;  // encoded backslash
    }
  }
  if (escaped && has_double_encoding(target)) return kTraversal;

  // absolute-form: take the authority out, keep the path (a proxy must accept it, RFC 9112 §3.2.2).
  std::string_view origin = target;
  if (istarts_with(target, "http://") || istarts_with(target, "https://")) {
    const std::size_t start = target.find("://") + 3;
    const std::size_t end = target.find_first_of("/?", start);
    out.authority.assign(target.substr(start, end - start));
    if (out.authority.empty()) return kBadTarget;
    origin = end == std::string_view::npos ? std::string_view("/") : target.substr(end);
    if (origin.front() == '?') return kBadTarget;
  } else if (target.front() != '/') {
    return kBadTarget;
  }
  const std::size_t q = origin.find('?');
  const std::string_view path = origin.substr(0, q);
  // The common case — no escapes, no empty or dot segments — is already normal: it is copied
  // as it is, and the origin-form grammar reduces to three characters the loop above let
  // through (every other byte was checked there; hygiene_fuzz compares both paths).
  if (allow_plain && !escaped && is_plain_path(path)) {
    if (origin.find_first_of("#[]") != std::string_view::npos) return kBadTarget;
    out.path.assign(path);
  } else {
    if (!boost::urls::parse_origin_form(origin)) return kBadTarget;
    if (const Verdict v = resolve_dot_segments(path, out.path)) return v;
  }
  if (q != std::string_view::npos) {
    out.has_query = true;
    out.query.assign(origin.substr(q + 1));
  }
  return kAccepted;
}

Verdict resolve_dot_segments(std::string_view path, std::string& out) {
  if (has_overlong_utf8(decode_once(path))) return kTraversal;

  // Resolve dot segments on the encoded path, judging each segment by its decoded value.
  std::vector<std::string_view> stack;
  bool trailing_slash = false;
  std::size_t pos = 1;  // path starts with '/'
  for (;;) {
    const std::size_t slash = path.find('/', pos);
    const std::string_view seg =
        path.substr(pos, slash == std::string_view::npos ? std::string_view::npos : slash - pos);
    const bool last = slash == std::string_view::npos;
    const std::string decoded = decode_once(seg);
    if (decoded.find('/') != std::string::npos) {
      // An encoded '/' inside a segment: harmless unless the pieces it separates climb.
      std::size_t p = 0;
      for (;;) {
        const std::size_t s = decoded.find('/', p);
        if (decoded.substr(p, s == std::string::npos ? std::string::npos : s - p) == "..") {
          return kTraversal;
        }
        if (s == std::string::npos) break;
        p = s + 1;
      }
    }
    if (decoded == ".") {
      trailing_slash = last;
    } else if (decoded == "..") {
      if (stack.empty()) return kTraversal;
      stack.pop_back();
      trailing_slash = last;
    } else if (seg.empty()) {
      trailing_slash = last;  // "//" collapses; a final "/" is kept
    } else {
      stack.push_back(seg);
      trailing_slash = false;
    }
    if (last) break;
    pos = slash + 1;
  }
  out.reserve(path.size());
  for (std::string_view seg : stack) {
    out += '/';
    out += seg;
  }
  if (out.empty() || trailing_slash) out += '/';
  return kAccepted;
}

}  // namespace

Verdict check_target_into(std::string_view target, std::string_view method,
                          std::size_t max_uri_bytes, NormalizedTarget& out) {
  return check_target_impl(target, method, max_uri_bytes, out, /*allow_plain=*/true);
}

Verdict check_target_reference(std::string_view target, std::string_view method,
                               std::size_t max_uri_bytes, NormalizedTarget& out) {
  return check_target_impl(target, method, max_uri_bytes, out, /*allow_plain=*/false);
}

TargetResult check_target(std::string_view target, std::string_view method,
                          std::size_t max_uri_bytes) {
  TargetResult r;
  r.verdict = check_target_into(target, method, max_uri_bytes, r.target);
  if (r.verdict) r.target = {};
  return r;
}

namespace {

// Host = uri-host [ ":" port ] (RFC 9110 §7.2): a reg-name (unreserved, sub-delims, pct-encoded)
// or an IP literal in brackets, then an optional decimal port of at most 65535.
bool valid_host_value(std::string_view v) {
  if (v.empty()) return false;
  std::string_view host = v;
  std::string_view port;
  if (v.front() == '[') {
    const auto close = v.find(']');
    if (close == std::string_view::npos || close < 3) return false;
    for (char c : v.substr(1, close - 1)) {
      const bool ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') ||
                      c == ':' || c == '.';
      if (!ok) return false;
    }
    const std::string_view rest = v.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') return false;
      port = rest.substr(1);
      if (port.empty()) return false;
    }
    host = {};
  } else if (const auto colon = v.find(':'); colon != std::string_view::npos) {
    host = v.substr(0, colon);
    port = v.substr(colon + 1);
    if (port.empty() || host.empty()) return false;
  }
  for (char c : host) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    std::string_view("-._~%!$&'()*+,;=").find(c) != std::string_view::npos;
    if (!ok) return false;
  }
  if (port.size() > 5) return false;
  uint32_t p = 0;
  for (char c : port) {
    if (c < '0' || c > '9') return false;
    p = p * 10 + static_cast<uint32_t>(c - '0');
  }
  return p <= 65535;
}

}  // namespace

Verdict check_headers(std::span<const HeaderField> fields, int http_minor,
                      const HeaderLimits& limits, Framing* framing) {
  if (fields.size() > limits.max_headers) return refuse(431, reason::kTooManyHeaders);
  std::size_t bytes = 0;
  for (const HeaderField& f : fields) bytes += f.name.size() + f.value.size() + 4;  // ": " CRLF
  if (bytes > limits.max_header_bytes) return refuse(431, reason::kHeadersTooLarge);

  int hosts = 0;
  int content_lengths = 0;
  std::optional<uint64_t> length;
  std::vector<std::string_view> codings;
  for (const HeaderField& f : fields) {
    if (!is_token(f.name)) return refuse(400, reason::kBadHeaderName);
    if (has_control_characters(f.value)) return refuse(400, reason::kBadHeaderValue);
    if (iequals(f.name, "host")) {
      ++hosts;
      const std::string_view v = f.value;
      if (!valid_host_value(v)) return refuse(400, reason::kBadHost);
    } else if (iequals(f.name, "content-length")) {
      ++content_lengths;
      // A list ("5, 5") is a duplicate in disguise; anything but digits is malformed.
      int items = 0;
      bool differs = false;
      const bool digits = for_each_list_item(f.value, [&](std::string_view item) {
        if (item.empty() || item.size() > 19) return false;
        uint64_t v = 0;
        for (char ch : item) {
          if (ch < '0' || ch > '9') return false;
          v = v * 10 + static_cast<uint64_t>(ch - '0');
        }
        differs = differs || (length && *length != v);
        length = v;
        ++items;
        return true;
      });
      if (!digits || differs) return refuse(400, reason::kBadContentLength);
      if (items > 1) return refuse(400, reason::kDuplicateContentLength);
    } else if (iequals(f.name, "transfer-encoding")) {
      for_each_list_item(f.value, [&](std::string_view item) {
        if (!item.empty()) codings.push_back(item);
        return true;
      });
      if (codings.empty()) return refuse(400, reason::kBadTransferEncoding);
    } else if (iequals(f.name, "connection")) {
      // Connection names hop-by-hop fields that a proxy removes. Naming a framing field (or
      // Host) would make the next hop frame the body differently from us: a smuggling shape.
      bool framing_named = false;
      for_each_list_item(f.value, [&](std::string_view item) {
        framing_named = framing_named || iequals(item, "content-length") ||
                        iequals(item, "transfer-encoding") || iequals(item, "host");
        return true;
      });
      if (framing_named) return refuse(400, reason::kSmuggling);
    }
  }
  if (content_lengths > 1) return refuse(400, reason::kDuplicateContentLength);
  if (hosts > 1) return refuse(400, reason::kDuplicateHost);
  if (hosts == 0 && http_minor >= 1) return refuse(400, reason::kMissingHost);

  bool chunked = false;
  if (!codings.empty()) {
    if (length) return refuse(400, reason::kSmuggling);
    if (http_minor < 1) return refuse(400, reason::kBadTransferEncoding);  // HTTP/1.0 has no TE
    for (std::size_t i = 0; i < codings.size(); ++i) {
      const bool is_chunked = iequals(codings[i], "chunked");
      if (!is_token(codings[i])) return refuse(400, reason::kBadTransferEncoding);
      if (is_chunked && i + 1 != codings.size()) return refuse(400, reason::kBadTransferEncoding);
      chunked = chunked || is_chunked;
    }
    if (!chunked) return refuse(400, reason::kBadTransferEncoding);
  }
  if (framing) {
    framing->content_length = length;
    framing->chunked = chunked;
  }
  return kAccepted;
}

Verdict check_raw_header_block(std::string_view block) {
  // Line by line (memchr finds each LF): inside a line neither NUL nor CR may appear, except
  // the CR right before the LF; the LF must follow a CR, and a line may not start with white
  // space (obs-fold). The branch-free scan of a line is vectorised by the compiler.
  const char* const data = block.data();
  const std::size_t size = block.size();
  std::size_t pos = 0;
  while (pos < size) {
    const void* lf = std::memchr(data + pos, '\n', size - pos);
    const std::size_t end = lf ? static_cast<std::size_t>(static_cast<const char*>(lf) - data)
                               : size;
    const std::size_t scan_end = (lf && end > pos) ? end - 1 : end;
    unsigned bad = 0;
    for (std::size_t i = pos; i < scan_end; ++i) {
      const auto c = static_cast<unsigned char>(data[i]);
      bad |= static_cast<unsigned>(c == '\0') | static_cast<unsigned>(c == '\r');
    }
    if (bad != 0) return refuse(400, reason::kBadHeaderValue);  // NUL or bare CR
    if (!lf) break;
    if (end == 0 || data[end - 1] != '\r') return refuse(400, reason::kBadHeaderValue);  // bare LF
    if (end + 1 < size && (data[end + 1] == ' ' || data[end + 1] == '\t')) {
      return refuse(400, reason::kObsFold);
    }
    pos = end + 1;
  }
  if (!block.empty() && (block.front() == ' ' || block.front() == '\t')) {
    return refuse(400, reason::kObsFold);
  }
  return kAccepted;
}

Verdict check_request_head(std::string_view head, const HeaderLimits& limits,
                           std::size_t max_uri_bytes) {
  auto next_line = [&head]() {
    const auto lf = head.find('\n');
    std::string_view line = head.substr(0, lf);
    head = lf == std::string_view::npos ? std::string_view() : head.substr(lf + 1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    return line;
  };
  const std::string_view request_line = next_line();
  if (const Verdict v = check_raw_header_block(head)) return v;
  const auto sp1 = request_line.find(' ');
  const auto sp2 = request_line.rfind(' ');
  // Not a request line at all: nothing more precise than the parser's "malformed".
  if (sp1 == std::string_view::npos || sp2 == sp1) return kAccepted;
  const std::string_view method = request_line.substr(0, sp1);
  const std::string_view target = request_line.substr(sp1 + 1, sp2 - sp1 - 1);
  const std::string_view version = request_line.substr(sp2 + 1);
  if (version != "HTTP/1.1" && version != "HTTP/1.0") return kAccepted;
  if (const Verdict v = check_target(target, method, max_uri_bytes).verdict) return v;
  std::vector<HeaderField> fields;
  while (!head.empty()) {
    const std::string_view line = next_line();
    if (line.empty()) break;
    const auto colon = line.find(':');
    if (colon == std::string_view::npos) return {400, reason::kBadHeaderName};
    std::string_view value = line.substr(colon + 1);
    while (!value.empty() && (value.front() == ' ' || value.front() == '\t'))
      value.remove_prefix(1);
    while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.remove_suffix(1);
    fields.push_back({line.substr(0, colon), value});
  }
  const int minor = version == "HTTP/1.0" ? 0 : 1;
  return check_headers(fields, minor, limits, nullptr);
}

}  // namespace bulwark::gateway::http
