#include "filters/block_patterns/block_patterns.h"

#include <array>
#include <cctype>

#include "filter/reasons.h"

namespace bulwark::gateway::filters {

namespace {

// What must come just before a shape for it to count.
enum class Before : uint8_t {
  anything,
  word_break,  // the start, or a byte that is not a letter, digit or '_'
  attribute,   // a space, '/', '"' or '\'' (an HTML attribute inside a tag)
};

struct Shape {
  std::string_view text;  // folded form: lower case, single spaces, none around '=' or '('
  Before before = Before::anything;
};

constexpr std::array kSqlShapes{
    Shape{"union select", Before::word_break},
    Shape{"union all select", Before::word_break},
    Shape{"union distinct select", Before::word_break},
    Shape{"' or '"},
    Shape{"' or 1"},
    Shape{"' or true"},
    Shape{"\" or \""},
    Shape{"\" or 1"},
    Shape{"' and '"},
    Shape{"' and 1"},
    Shape{"'--"},
    Shape{"' --"},
    Shape{"'#"},
    Shape{"';"},
    Shape{"\";"},
    Shape{"or 1=1", Before::word_break},
    Shape{"and 1=1", Before::word_break},
    Shape{"drop table", Before::word_break},
    Shape{"drop database", Before::word_break},
    Shape{"insert into", Before::word_break},
    Shape{"delete from", Before::word_break},
    Shape{"truncate table", Before::word_break},
    Shape{"alter table", Before::word_break},
    Shape{"select * from", Before::word_break},
    Shape{"sleep(", Before::word_break},
    Shape{"benchmark(", Before::word_break},
    Shape{"pg_sleep(", Before::word_break},
    Shape{"waitfor delay", Before::word_break},
    Shape{"xp_cmdshell", Before::word_break},
    Shape{"information_schema", Before::word_break},
    Shape{"load_file(", Before::word_break},
    Shape{"into outfile", Before::word_break},
    Shape{"into dumpfile", Before::word_break},
    Shape{"@@version"},
    Shape{"extractvalue(", Before::word_break},
    Shape{"updatexml(", Before::word_break},
};

constexpr std::array kXssShapes{
    Shape{"<script"},
    Shape{"</script"},
    Shape{"javascript:"},
    Shape{"vbscript:"},
    Shape{"livescript:"},
    Shape{"data:text/html"},
    Shape{"<iframe"},
    Shape{"<frame"},
    Shape{"<svg"},
    Shape{"<img"},
    Shape{"<object"},
    Shape{"<embed"},
    Shape{"<body"},
    Shape{"<math"},
    Shape{"<base"},
    Shape{"<meta"},
    Shape{"<link"},
    Shape{"<style"},
    Shape{"<form"},
    Shape{"<input"},
    Shape{"<video"},
    Shape{"<audio"},
    Shape{"<details"},
    Shape{"<marquee"},
    Shape{"onerror=", Before::attribute},
    Shape{"onload=", Before::attribute},
    Shape{"onmouseover=", Before::attribute},
    Shape{"onmouseenter=", Before::attribute},
    Shape{"onfocus=", Before::attribute},
    Shape{"onclick=", Before::attribute},
    Shape{"ontoggle=", Before::attribute},
    Shape{"onbegin=", Before::attribute},
    Shape{"onpageshow=", Before::attribute},
    Shape{"onanimationstart=", Before::attribute},
    Shape{"srcdoc=", Before::attribute},
    Shape{"document.cookie", Before::word_break},
    Shape{"document.write", Before::word_break},
    Shape{"document.domain", Before::word_break},
    Shape{"window.location", Before::word_break},
    Shape{"alert(", Before::word_break},
    Shape{"prompt(", Before::word_break},
    Shape{"confirm(", Before::word_break},
    Shape{"eval(", Before::word_break},
    Shape{"expression(", Before::word_break},
    Shape{"fromcharcode(", Before::word_break},
};

int hex_value(char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool escape_at(std::string_view s, std::size_t i) noexcept {
  return s[i] == '%' && i + 2 < s.size() && hex_value(s[i + 1]) >= 0 && hex_value(s[i + 2]) >= 0;
}

bool has_escape(std::string_view s) noexcept {
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (escape_at(s, i)) return true;
  }
  return false;
}

// Percent-decodes `s` in place (it only shrinks).
void decode_in_place(std::string& s, bool form) noexcept {
  std::size_t out = 0;
  for (std::size_t in = 0; in < s.size(); ++in) {
    char c = s[in];
    if (escape_at(s, in)) {
      c = static_cast<char>(hex_value(s[in + 1]) * 16 + hex_value(s[in + 2]));
      in += 2;
    } else if (form && c == '+') {
      c = ' ';
    }
    s[out++] = c;
  }
  s.resize(out);
}

bool is_blank(unsigned char c) noexcept { return c <= 0x20 || c == 0x7f; }
bool hugs_spaces(char c) noexcept { return c == '=' || c == '('; }

// Lower-cases in place and folds white space and closed /*...*/ comments into one space, none
// next to '=' or '('.
void fold_in_place(std::string& s) noexcept {
  std::size_t out = 0;
  bool blank = false;
  for (std::size_t in = 0; in < s.size(); ++in) {
    const auto c = static_cast<unsigned char>(s[in]);
    if (c == '/' && in + 1 < s.size() && s[in + 1] == '*') {
      const std::size_t close = s.find("*/", in + 2);
      if (close != std::string::npos) {
        in = close + 1;
        blank = true;
        continue;
      }
    }
    if (is_blank(c)) {
      blank = true;
      continue;
    }
    const char lower = static_cast<char>(std::tolower(c));
    if (blank && out > 0 && !hugs_spaces(lower) && !hugs_spaces(s[out - 1])) s[out++] = ' ';
    blank = false;
    s[out++] = lower;
  }
  s.resize(out);
}

bool word_byte(char c) noexcept {
  return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '_';
}

bool preceded_as_required(std::string_view text, std::size_t at, Before before) noexcept {
  switch (before) {
    case Before::anything:
      return true;
    case Before::word_break:
      return at == 0 || !word_byte(text[at - 1]);
    case Before::attribute: {
      if (at == 0) return false;
      const char c = text[at - 1];
      return c == ' ' || c == '/' || c == '"' || c == '\'';
    }
  }
  return false;
}

template <std::size_t N>
std::string_view find_shape(std::string_view text, const std::array<Shape, N>& shapes) noexcept {
  for (const Shape& shape : shapes) {
    for (std::size_t at = text.find(shape.text); at != std::string_view::npos;
         at = text.find(shape.text, at + 1)) {
      if (preceded_as_required(text, at, shape.before)) return shape.text;
    }
  }
  return {};
}

}  // namespace

void fold_for_scan(std::string_view text, bool form, std::string& out) {
  out.assign(text);
  decode_in_place(out, form);
  if (has_escape(out)) decode_in_place(out, false);
  fold_in_place(out);
}

PatternMatch find_pattern(std::string_view folded,
                          const config::BlockPatternsSpec& kinds) noexcept {
  if (kinds.sqli) {
    if (const std::string_view shape = find_shape(folded, kSqlShapes); !shape.empty()) {
      return {PatternKind::sqli, shape};
    }
  }
  if (kinds.xss) {
    if (const std::string_view shape = find_shape(folded, kXssShapes); !shape.empty()) {
      return {PatternKind::xss, shape};
    }
  }
  return {};
}

PatternMatch scan_target(std::string_view path, std::string_view query,
                         const config::BlockPatternsSpec& kinds, std::string& scratch) {
  fold_for_scan(path, false, scratch);
  if (const PatternMatch match = find_pattern(scratch, kinds)) return match;
  if (query.empty()) return {};
  fold_for_scan(query, true, scratch);
  return find_pattern(scratch, kinds);
}

filter::LocalReply BlockPatternsFilter::on_request(const filter::RequestInfo& request,
                                                   filter::FilterState& state) const {
  (void)state;
  thread_local std::string scratch;
  const PatternMatch match = scan_target(request.path, request.query, kinds_, scratch);
  if (!match) return {};
  observe::Counter* counter = match.kind == PatternKind::sqli ? sqli_blocked_ : xss_blocked_;
  if (counter != nullptr) counter->inc();
  return filter::refuse(400, reason::kBlockedPattern, request.has_body);
}

}  // namespace bulwark::gateway::filters
