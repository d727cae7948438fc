#include "http/head_writer.h"

#include <algorithm>

#include <charconv>
#include <cstring>

namespace bulwark::gateway::http {

namespace {

char lower(char c) noexcept { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c; }

// One size check and two copies per line (instead of four appends).
void append_line(std::string& out, std::string_view name, std::string_view value) {
  const std::size_t at = out.size();
  out.resize(at + name.size() + value.size() + 4);
  char* p = out.data() + at;
  std::memcpy(p, name.data(), name.size());
  p += name.size();
  *p++ = ':';
  *p++ = ' ';
  std::memcpy(p, value.data(), value.size());
  p += value.size();
  *p++ = '\r';
  *p = '\n';
}

// `name` is a field name (an RFC 9110 token: the parser refused anything else) and `lowered`
// a lower-case constant of letters, digits and '-': OR-ing 0x20 folds the case of letters and
// leaves every other token character that could match one of those unchanged.
bool is_named(std::string_view name, std::string_view lowered) noexcept {
  if (name.size() != lowered.size()) return false;
  for (std::size_t i = 0; i < name.size(); ++i) {
    if ((static_cast<unsigned char>(name[i]) | 0x20U) != static_cast<unsigned char>(lowered[i])) {
      return false;
    }
  }
  return true;
}

void append_number(std::string& out, uint64_t n) {
  char digits[24];
  const auto end = std::to_chars(digits, digits + sizeof digits, n).ptr;
  out.append(digits, static_cast<std::size_t>(end - digits));
}

void append_status_line(std::string& out, int version, int status, std::string_view reason) {
  out.append(version >= 11 ? "HTTP/1.1 " : "HTTP/1.0 ");
  append_number(out, static_cast<uint64_t>(status));
  out.push_back(' ');
  out.append(reason.empty() ? reason_phrase(status) : reason).append("\r\n");
}

constexpr std::string_view kFixedHopByHop[] = {
    "connection", "keep-alive", "proxy-connection", "te", "trailer", "upgrade",
    "proxy-authenticate", "proxy-authorization"};

// Trims optional white space around a list element.
std::string_view trim(std::string_view s) noexcept {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Transfer-Encoding without its final "chunked" (empty when that was the only coding).
std::string_view without_chunked(std::string_view te) noexcept {
  te = trim(te);
  const auto comma = te.rfind(',');
  const std::string_view last = trim(comma == std::string_view::npos ? te : te.substr(comma + 1));
  if (!iequals(last, "chunked")) return te;
  return comma == std::string_view::npos ? std::string_view{} : trim(te.substr(0, comma));
}

}  // namespace

bool iequals(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (lower(a[i]) != lower(b[i])) return false;
  }
  return true;
}

void connection_tokens(std::span<const HeaderField> fields, std::vector<std::string_view>& tokens) {
  tokens.clear();
  for (const auto& f : fields) {
    if (!is_named(f.name, "connection")) continue;
    std::string_view rest = f.value;
    while (!rest.empty()) {
      const auto comma = rest.find(',');
      const std::string_view token = trim(rest.substr(0, comma));
      if (!token.empty()) tokens.push_back(token);
      if (comma == std::string_view::npos) break;
      rest.remove_prefix(comma + 1);
    }
  }
}

bool is_hop_by_hop(std::string_view name, std::span<const std::string_view> tokens) noexcept {
  // The fixed list, by length first: most names are not compared at all.
  switch (name.size()) {
    case 2:
    case 7:
    case 10:
    case 16:
    case 18:
    case 19:
      for (const auto fixed : kFixedHopByHop) {
        if (is_named(name, fixed)) return true;
      }
      break;
    default:
      break;
  }
  if (tokens.empty()) return false;
  // Framing and Host are never hop-by-hop, whatever Connection says.
  if (is_named(name, "content-length") || is_named(name, "transfer-encoding") ||
      is_named(name, "host")) {
    return false;
  }
  for (const auto token : tokens) {
    if (iequals(name, token)) return true;
  }
  return false;
}

std::string_view field_value(std::span<const HeaderField> fields,
                             std::string_view lowered_name) noexcept {
  for (const auto& f : fields) {
    if (is_named(f.name, lowered_name)) return f.value;
  }
  return {};
}

void write_local_reply(std::string& out, const filter::LocalReply& reply,
                       std::string_view request_id, bool keep_alive, bool head_only) {
  const std::string_view phrase = reason_phrase(reply.status);
  // {"error":"<phrase>","reason":"<reason>","request_id":"<id>"}: reasons are snake_case
  // constants and ids are [A-Za-z0-9._:-], so nothing needs escaping.
  const std::size_t body_bytes = 40 + phrase.size() + reply.reason.size() + request_id.size();
  append_status_line(out, 11, reply.status, phrase);
  append_line(out, "Server", "bulwark");
  append_line(out, "Content-Type", "application/json");
  append_line(out, "x-bulwark-reason", reply.reason);
  append_line(out, "x-request-id", request_id);
  if (reply.retry_after_seconds != 0 || reply.status == 503) {
    out.append("Retry-After: ");
    append_number(out, reply.retry_after_seconds != 0 ? reply.retry_after_seconds : 1);
    out.append("\r\n");
  }
  for (std::size_t i = 0; i < reply.extra_count; ++i) {
    append_line(out, reply.extra[i].name, reply.extra[i].value);
  }
  if (!keep_alive) append_line(out, "Connection", "close");
  out.append("Content-Length: ");
  append_number(out, body_bytes);
  out.append("\r\n\r\n");
  if (head_only) return;
  out.append("{\"error\":\"").append(phrase).append("\",\"reason\":\"").append(reply.reason);
  out.append("\",\"request_id\":\"").append(request_id).append("\"}");
}

void append_request_head(std::string& out, const UpstreamRequestHead& head,
                         std::vector<std::string_view>& scratch_tokens) {
  out.append(head.method).push_back(' ');
  out.append(head.path);
  if (head.has_query) out.append("?").append(head.query);
  out.append(" HTTP/1.1\r\n");
  connection_tokens(head.fields, scratch_tokens);
  bool has_host = false;
  std::size_t xff_lines = 0;
  for (const auto& f : head.fields) {
    if (is_hop_by_hop(f.name, scratch_tokens) || is_named(f.name, "expect") ||
        is_named(f.name, "x-forwarded-proto") || is_named(f.name, "x-request-id")) {
      continue;
    }
    if (is_named(f.name, "x-forwarded-for")) {
      ++xff_lines;
      continue;
    }
    if (std::any_of(head.removed.begin(), head.removed.end(),
                    [&](std::string_view name) { return iequals(f.name, name); })) {
      continue;
    }
    if (is_named(f.name, "host")) {
      if (!head.authority.empty() || f.value.empty()) continue;
      has_host = true;
    }
    append_line(out, f.name, f.value);
  }
  // Every X-Forwarded-For line the client sent, in order, then the client itself.
  out.append("x-forwarded-for: ");
  if (xff_lines != 0) {
    for (const auto& f : head.fields) {
      if (!is_named(f.name, "x-forwarded-for") || f.value.empty()) continue;
      out.append(f.value).append(", ");
    }
  }
  out.append(head.client_ip).append("\r\n");
  append_line(out, "x-forwarded-proto", head.forwarded_proto);
  append_line(out, "x-request-id", head.request_id);
  for (const auto& line : head.added) append_line(out, line.name, line.value);
  if (!head.authority.empty()) {
    append_line(out, "Host", head.authority);
  } else if (!has_host) {
    // HTTP/1.0 may omit Host; the request goes upstream as HTTP/1.1, which requires it.
    append_line(out, "Host", head.default_host);
  }
  out.append("\r\n");
}

ResponseFraming decide_response_framing(const ResponseFacts& facts) noexcept {
  ResponseFraming f;
  f.no_body = facts.head_request || facts.status == 204 || facts.status == 304 ||
              facts.status < 200;
  f.close_after = !facts.client_keep_alive;
  const bool http10 = facts.client_version < 11;
  if (f.no_body) {
    // HTTP/1.0 has no Transfer-Encoding; an answer without a body just loses the field.
    f.drop_te = http10;
  } else if (!facts.has_content_length && !facts.upstream_chunked) {
    // Delimited by the upstream closing: re-framed as chunked for HTTP/1.1 clients, delimited
    // by closing again for HTTP/1.0 ones.
    f.reusable = false;
    if (http10) {
      f.close_after = true;
    } else {
      f.chunk_out = true;
    }
  } else if (facts.upstream_chunked) {
    if (http10) {
      f.unchunk = true;
      f.close_after = true;
    } else {
      f.chunk_out = true;
    }
  }
  return f;
}

void append_response_head(std::string& out, const ClientResponseHead& head,
                          std::vector<std::string_view>& scratch_tokens) {
  append_status_line(out, head.version, head.status, head.reason);
  connection_tokens(head.fields, scratch_tokens);
  bool has_request_id = false;
  bool te_written = false;
  for (const auto& f : head.fields) {
    if (is_hop_by_hop(f.name, scratch_tokens)) continue;
    if (is_named(f.name, "transfer-encoding")) {
      if (head.framing.drop_te) continue;
      if (head.framing.unchunk) {
        const std::string_view rest = without_chunked(f.value);
        if (!rest.empty()) append_line(out, f.name, rest);
        continue;
      }
      if (head.framing.chunk_out && !te_written) {
        // A close-delimited body with a coding other than chunked gets chunked appended.
        const std::string_view rest = without_chunked(f.value);
        out.append(f.name).append(": ");
        if (!rest.empty()) out.append(rest).append(", ");
        out.append("chunked\r\n");
        te_written = true;
        continue;
      }
      if (te_written) continue;
    }
    if (is_named(f.name, "x-request-id")) {
      if (f.value.empty()) continue;  // replaced by the gateway's id below
      has_request_id = true;
    }
    append_line(out, f.name, f.value);
  }
  if (head.framing.chunk_out && !te_written) append_line(out, "Transfer-Encoding", "chunked");
  if (!has_request_id) append_line(out, "x-request-id", head.request_id);
  for (const auto& line : head.added) append_line(out, line.name, line.value);
  if (head.version >= 11) {
    if (head.framing.close_after) append_line(out, "Connection", "close");
  } else if (!head.framing.close_after) {
    append_line(out, "Connection", "keep-alive");
  }
  out.append("\r\n");
}

void append_chunk_header(std::string& out, std::size_t size) {
  char digits[20];
  const auto end = std::to_chars(digits, digits + sizeof digits, size, 16).ptr;
  out.append(digits, static_cast<std::size_t>(end - digits)).append("\r\n");
}

void append_chunk(std::string& out, std::string_view piece) {
  append_chunk_header(out, piece.size());
  out.append(piece).append("\r\n");
}

namespace {

struct Phrase {
  int status;
  std::string_view text;
};

// RFC 9110 §15 and the registered extensions (IANA HTTP Status Code Registry).
constexpr Phrase kPhrases[] = {
    {100, "Continue"},
    {101, "Switching Protocols"},
    {102, "Processing"},
    {200, "OK"},
    {201, "Created"},
    {202, "Accepted"},
    {203, "Non-Authoritative Information"},
    {204, "No Content"},
    {205, "Reset Content"},
    {206, "Partial Content"},
    {207, "Multi-Status"},
    {208, "Already Reported"},
    {226, "IM Used"},
    {300, "Multiple Choices"},
    {301, "Moved Permanently"},
    {302, "Found"},
    {303, "See Other"},
    {304, "Not Modified"},
    {305, "Use Proxy"},
    {307, "Temporary Redirect"},
    {308, "Permanent Redirect"},
    {400, "Bad Request"},
    {401, "Unauthorized"},
    {402, "Payment Required"},
    {403, "Forbidden"},
    {404, "Not Found"},
    {405, "Method Not Allowed"},
    {406, "Not Acceptable"},
    {407, "Proxy Authentication Required"},
    {408, "Request Timeout"},
    {409, "Conflict"},
    {410, "Gone"},
    {411, "Length Required"},
    {412, "Precondition Failed"},
    {413, "Payload Too Large"},
    {414, "URI Too Long"},
    {415, "Unsupported Media Type"},
    {416, "Range Not Satisfiable"},
    {417, "Expectation Failed"},
    {421, "Misdirected Request"},
    {422, "Unprocessable Entity"},
    {423, "Locked"},
    {424, "Failed Dependency"},
    {426, "Upgrade Required"},
    {428, "Precondition Required"},
    {429, "Too Many Requests"},
    {431, "Request Header Fields Too Large"},
    {444, "Connection Closed Without Response"},
    {451, "Unavailable For Legal Reasons"},
    {499, "Client Closed Request"},
    {500, "Internal Server Error"},
    {501, "Not Implemented"},
    {502, "Bad Gateway"},
    {503, "Service Unavailable"},
    {504, "Gateway Timeout"},
    {505, "HTTP Version Not Supported"},
    {506, "Variant Also Negotiates"},
    {507, "Insufficient Storage"},
    {508, "Loop Detected"},
    {510, "Not Extended"},
    {511, "Network Authentication Required"},
};

}  // namespace

std::string_view reason_phrase(int status) noexcept {
  for (const Phrase& p : kPhrases) {
    if (p.status == status) return p.text;
  }
  return "<unknown-status>";
}

}  // namespace bulwark::gateway::http
