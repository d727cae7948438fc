// RESP, the Redis protocol, as far as the gateway speaks it: commands written into a buffer,
// replies read with hiredis's reader into one reusable Reply (no allocation per reply for the
// small replies the gateway gets: statuses, errors, bulk strings, arrays of integers).
//
//   append_command(out, {"EVALSHA", sha, "1", key, ...})   a RESP array of bulk strings
//   ReplyReader reader; reader.feed(bytes); while (auto r = reader.next()) ...
//
// Thread-safety: none; one reader per connection.
#pragma once

#include <array>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>

namespace bulwark::gateway::redis {

void append_command(std::string& out, std::initializer_list<std::string_view> args);

struct Reply {
  enum class Kind : uint8_t { status, error, integer, string, nil, array };
  static constexpr std::size_t kMaxIntegers = 8;

  Kind kind = Kind::nil;
  int64_t integer = 0;
  std::string text;  // status, error or string (the bulk string's bytes)
  // An array's elements that are integers (the rest are counted in `elements` only).
  std::array<int64_t, kMaxIntegers> integers{};
  std::size_t elements = 0;
  std::size_t integer_elements = 0;

  bool is_error() const noexcept { return kind == Kind::error; }
};

class ReplyReader {
 public:
  ReplyReader();
  ~ReplyReader();
  ReplyReader(const ReplyReader&) = delete;
  ReplyReader& operator=(const ReplyReader&) = delete;

  // False when the stream is not RESP (the connection must be dropped).
  bool feed(std::string_view bytes);
  // The next complete reply (valid until the next call), null when more bytes are needed or
  // the stream is broken (broken() then says so).
  const Reply* next();
  bool broken() const noexcept { return broken_; }
  void reset();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  bool broken_ = false;
};

}  // namespace bulwark::gateway::redis
