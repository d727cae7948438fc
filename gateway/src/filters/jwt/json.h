// A strict, allocation-free JSON reader for the two small objects of a JWT (its header and its
// claims): it checks that a text is exactly one JSON object (RFC 8259: no comments, no trailing
// commas, no control characters or bad escapes in strings, nesting at most kMaxJsonDepth deep)
// and lists its members as views into the text. Values are not converted until asked for, so
// a token's claims cost one pass over the decoded payload; nothing is allocated once the
// caller's member vector and scratch string have grown to their working size.
//
// Pure; every function is safe on any input (fuzzed through jwt_fuzz.cc).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace bulwark::gateway::filters::jwt {

inline constexpr std::size_t kMaxJsonDepth = 32;

enum class JsonType : uint8_t { null, boolean, number, string, array, object };

// One value as it is written: a string's text keeps its quotes and escapes.
struct JsonValue {
  JsonType type = JsonType::null;
  std::string_view text;
};

struct JsonMember {
  std::string_view name;  // the name's JSON string text, quotes included
  JsonValue value;
};

// Parses `text` as exactly one JSON object (surrounding white space allowed) and replaces
// `members` with its members in order. False for anything else.
bool parse_object(std::string_view text, std::vector<JsonMember>& members);

// The characters of a JSON string text (quotes included), escapes decoded to UTF-8, into `out`.
// False for a malformed string or a lone surrogate.
bool decode_string(std::string_view quoted, std::string& out);

// Whether a JSON string text (quotes included) denotes exactly `plain`. Decodes into `scratch`
// only when the text holds an escape.
bool string_equals(std::string_view quoted, std::string_view plain, std::string& scratch);

// The member named `name`: null when there is none; `duplicate` when the name occurs more than
// once (RFC 7515 §4 allows refusing such a token, and this gateway does: two `exp` claims must
// never mean whichever one a reader happens to pick).
struct MemberLookup {
  const JsonMember* member = nullptr;
  bool duplicate = false;
};
MemberLookup find_member(std::span<const JsonMember> members, std::string_view name,
                         std::string& scratch);

// A number's value; nullopt for another type or a number out of double's range.
std::optional<double> number_value(const JsonValue& value) noexcept;

// The elements of an array value, one at a time:
//   JsonArrayCursor cursor(value.text); JsonValue element; while (cursor.next(element)) {...}
// `text` must be an array text that parse_object accepted (the cursor stops, returning false,
// at anything unexpected, so it is safe on other input too).
class JsonArrayCursor {
 public:
  explicit JsonArrayCursor(std::string_view text) noexcept;
  bool next(JsonValue& element) noexcept;

 private:
  std::string_view text_;
  std::size_t at_ = 0;
  bool done_ = false;
};

}  // namespace bulwark::gateway::filters::jwt
