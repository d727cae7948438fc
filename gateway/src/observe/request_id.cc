#include "observe/request_id.h"

#include <array>
#include <cstdint>

namespace bulwark::gateway::observe {
namespace {

constexpr bool is_id_char(char c) noexcept {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '_' || c == ':' || c == '-';
}

}  // namespace

bool is_valid_request_id(std::string_view id) noexcept {
  if (id.empty() || id.size() > kMaxRequestIdBytes) return false;
  for (char c : id) {
    if (!is_id_char(c)) return false;
  }
  return true;
}

void format_request_id(Random& random, std::string& out) {
  std::array<uint8_t, 16> bytes{};
  const uint64_t hi = random.next_u64();
  const uint64_t lo = random.next_u64();
  for (std::size_t i = 0; i < 8; ++i) {
    bytes[i] = static_cast<uint8_t>(hi >> (56 - 8 * i));
    bytes[8 + i] = static_cast<uint8_t>(lo >> (56 - 8 * i));
  }
  // RFC 9562 section 5.4: version 4 in the high nibble of octet 6, variant 0b10 in the two
  // high bits of octet 8.
  bytes[6] = static_cast<uint8_t>((bytes[6] & 0x0f) | 0x40);
  bytes[8] = static_cast<uint8_t>((bytes[8] & 0x3f) | 0x80);

  static constexpr char kHex[] = "0123456789abcdef";
  std::array<char, 36> text{};
  std::size_t n = 0;
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) text[n++] = '-';
    text[n++] = kHex[bytes[i] >> 4];
    text[n++] = kHex[bytes[i] & 0x0f];
  }
  out.assign(text.data(), text.size());
}

std::string generate_request_id(Random& random) {
  std::string out;
  out.reserve(36);
  format_request_id(random, out);
  return out;
}

}  // namespace bulwark::gateway::observe
