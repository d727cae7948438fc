#include "filters/jwt/json.h"

#include <charconv>
#include <cmath>

namespace bulwark::gateway::filters::jwt {
namespace {

bool is_space(char c) noexcept { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
bool is_digit(char c) noexcept { return c >= '0' && c <= '9'; }

int hex_value(char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// One pass over a JSON text; every step checks its bounds, so any input is safe.
class Scanner {
 public:
  explicit Scanner(std::string_view text, std::size_t at = 0) noexcept : s_(text), i_(at) {}

  std::size_t position() const noexcept { return i_; }
  bool at_end() const noexcept { return i_ >= s_.size(); }
  char peek() const noexcept { return i_ < s_.size() ? s_[i_] : '\0'; }
  void skip_space() noexcept {
    while (i_ < s_.size() && is_space(s_[i_])) ++i_;
  }
  bool take(char c) noexcept {
    if (i_ < s_.size() && s_[i_] == c) {
      ++i_;
      return true;
    }
    return false;
  }

  // A value starting at the current position (white space already skipped).
  bool value(JsonValue& out, std::size_t depth) noexcept {
    const std::size_t start = i_;
    bool ok = false;
    switch (peek()) {
      case '"':
        out.type = JsonType::string;
        ok = string();
        break;
      case '{':
        out.type = JsonType::object;
        ok = depth < kMaxJsonDepth && object(depth + 1, nullptr);
        break;
      case '[':
        out.type = JsonType::array;
        ok = depth < kMaxJsonDepth && array(depth + 1);
        break;
      case 't':
        out.type = JsonType::boolean;
        ok = literal("true");
        break;
      case 'f':
        out.type = JsonType::boolean;
        ok = literal("false");
        break;
      case 'n':
        out.type = JsonType::null;
        ok = literal("null");
        break;
      default:
        out.type = JsonType::number;
        ok = number();
        break;
    }
    if (ok) out.text = s_.substr(start, i_ - start);
    return ok;
  }

  // An object at the current '{'; its members go to `members` when given.
  bool object(std::size_t depth, std::vector<JsonMember>* members) {
    if (!take('{')) return false;
    skip_space();
    if (take('}')) return true;
    while (true) {
      skip_space();
      const std::size_t name_start = i_;
      if (peek() != '"' || !string()) return false;
      const std::string_view name = s_.substr(name_start, i_ - name_start);
      skip_space();
      if (!take(':')) return false;
      skip_space();
      JsonValue v;
      if (!value(v, depth)) return false;
      if (members != nullptr) members->push_back({name, v});
      skip_space();
      if (take('}')) return true;
      if (!take(',')) return false;
    }
  }

 private:
  bool literal(std::string_view word) noexcept {
    if (s_.substr(i_, word.size()) != word) return false;
    i_ += word.size();
    return true;
  }

  bool string() noexcept {
    if (!take('"')) return false;
    while (i_ < s_.size()) {
      const auto c = static_cast<unsigned char>(s_[i_]);
      if (c == '"') {
        ++i_;
        return true;
      }
      if (c < 0x20) return false;
      if (c != '\\') {
        ++i_;
        continue;
      }
      if (++i_ >= s_.size()) return false;
      const char e = s_[i_];
      if (e == 'u') {
        if (i_ + 4 >= s_.size()) return false;
        for (std::size_t k = 1; k <= 4; ++k) {
          if (hex_value(s_[i_ + k]) < 0) return false;
        }
        i_ += 5;
        continue;
      }
      if (e != '"' && e != '\\' && e != '/' && e != 'b' && e != 'f' && e != 'n' && e != 'r' &&
          e != 't') {
        return false;
      }
      ++i_;
    }
    return false;
  }

  // -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
  bool number() noexcept {
    take('-');
    if (take('0')) {
      // no leading zeros
    } else if (is_digit(peek())) {
      while (is_digit(peek())) ++i_;
    } else {
      return false;
    }
    if (take('.')) {
      if (!is_digit(peek())) return false;
      while (is_digit(peek())) ++i_;
    }
    if (peek() == 'e' || peek() == 'E') {
      ++i_;
      if (peek() == '+' || peek() == '-') ++i_;
      if (!is_digit(peek())) return false;
      while (is_digit(peek())) ++i_;
    }
    return true;
  }

  bool array(std::size_t depth) noexcept {
    if (!take('[')) return false;
    skip_space();
    if (take(']')) return true;
    while (true) {
      skip_space();
      JsonValue v;
      if (!value(v, depth)) return false;
      skip_space();
      if (take(']')) return true;
      if (!take(',')) return false;
    }
  }

  std::string_view s_;
  std::size_t i_;
};

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

// Four hex digits at text[at..at+4); -1 when they are not.
int32_t hex4(std::string_view text, std::size_t at) noexcept {
  if (at + 4 > text.size()) return -1;
  int32_t v = 0;
  for (std::size_t k = 0; k < 4; ++k) {
    const int h = hex_value(text[at + k]);
    if (h < 0) return -1;
    v = v * 16 + h;
  }
  return v;
}

}  // namespace

bool parse_object(std::string_view text, std::vector<JsonMember>& members) {
  members.clear();
  Scanner scan(text);
  scan.skip_space();
  if (scan.peek() != '{' || !scan.object(1, &members)) {
    members.clear();
    return false;
  }
  scan.skip_space();
  if (!scan.at_end()) {
    members.clear();
    return false;
  }
  return true;
}

bool decode_string(std::string_view quoted, std::string& out) {
  out.clear();
  if (quoted.size() < 2 || quoted.front() != '"' || quoted.back() != '"') return false;
  const std::string_view body = quoted.substr(1, quoted.size() - 2);
  for (std::size_t i = 0; i < body.size(); ++i) {
    const char c = body[i];
    if (static_cast<unsigned char>(c) < 0x20 || c == '"') return false;
    if (c != '\\') {
      out.push_back(c);
      continue;
    }
    if (++i >= body.size()) return false;
    switch (body[i]) {
      case '"':
        out.push_back('"');
        break;
      case '\\':
        out.push_back('\\');
        break;
      case '/':
        out.push_back('/');
        break;
      case 'b':
        out.push_back('\b');
        break;
      case 'f':
        out.push_back('\f');
        break;
      case 'n':
        out.push_back('\n');
        break;
      case 'r':
        out.push_back('\r');
        break;
      case 't':
        out.push_back('\t');
        break;
      case 'u': {
        int32_t cp = hex4(body, i + 1);
        if (cp < 0) return false;
        i += 4;
        if (cp >= 0xDC00 && cp <= 0xDFFF) return false;  // a low surrogate first
        if (cp >= 0xD800 && cp <= 0xDBFF) {
          // A high surrogate must be followed by \u and a low one.
          if (i + 2 >= body.size() || body[i + 1] != '\\' || body[i + 2] != 'u') return false;
          const int32_t low = hex4(body, i + 3);
          if (low < 0xDC00 || low > 0xDFFF) return false;
          cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
          i += 6;
        }
        append_utf8(out, static_cast<uint32_t>(cp));
        break;
      }
      default:
        return false;
    }
  }
  return true;
}

bool string_equals(std::string_view quoted, std::string_view plain, std::string& scratch) {
  if (quoted.size() < 2 || quoted.front() != '"' || quoted.back() != '"') return false;
  const std::string_view body = quoted.substr(1, quoted.size() - 2);
  if (body.find('\\') == std::string_view::npos) return body == plain;
  return decode_string(quoted, scratch) && scratch == plain;
}

MemberLookup find_member(std::span<const JsonMember> members, std::string_view name,
                         std::string& scratch) {
  MemberLookup found;
  for (const JsonMember& m : members) {
    if (!string_equals(m.name, name, scratch)) continue;
    if (found.member != nullptr) {
      found.duplicate = true;
      return found;
    }
    found.member = &m;
  }
  return found;
}

std::optional<double> number_value(const JsonValue& value) noexcept {
  if (value.type != JsonType::number) return std::nullopt;
  double v = 0;
  const char* begin = value.text.data();
  const char* end = begin + value.text.size();
  const auto [ptr, ec] = std::from_chars(begin, end, v);
  if (ec != std::errc() || ptr != end || !std::isfinite(v)) return std::nullopt;
  return v;
}

JsonArrayCursor::JsonArrayCursor(std::string_view text) noexcept : text_(text) {
  Scanner scan(text_);
  scan.skip_space();
  if (!scan.take('[')) {
    done_ = true;
    return;
  }
  scan.skip_space();
  if (scan.take(']')) done_ = true;
  at_ = scan.position();
}

bool JsonArrayCursor::next(JsonValue& element) noexcept {
  if (done_) return false;
  Scanner scan(text_, at_);
  scan.skip_space();
  // The array was checked as a whole; the depth only bounds the element's own nesting.
  if (!scan.value(element, 1)) {
    done_ = true;
    return false;
  }
  scan.skip_space();
  if (scan.take(',')) {
    at_ = scan.position();
  } else {
    done_ = true;  // ']' or anything unexpected: the last element
  }
  return true;
}

}  // namespace bulwark::gateway::filters::jwt
