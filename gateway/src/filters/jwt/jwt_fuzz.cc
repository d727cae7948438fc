// Fuzzes the JWT decision and its parsers: whatever the bytes, verify() returns one of its
// results (never `missing`, never a crash); the JSON reader accepts only whole objects whose
// members it can walk again; base64url decoding never writes past what it promises; the token
// finder and the JWK Set loader survive any input. The seed corpus (fuzz/jwt/corpus) holds
// real tokens (RFC 7515 A.1 and A.3) and near misses.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "filters/jwt/json.h"
#include "filters/jwt/jwt.h"
#include "filters/jwt/keys.h"
#include "filters/jwt/verify.h"

namespace jwt = bulwark::gateway::filters::jwt;

namespace {

// RFC 7515 A.1 (HMAC) and A.3 (P-256) keys.
constexpr std::string_view kKeys = R"({"keys":[
  {"kty":"oct","k":"AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow"},
  {"kty":"EC","crv":"P-256","kid":"ec",
   "x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
   "y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]})";

const jwt::Verifier& verifier() {
  static const jwt::Verifier v = [] {
    auto keys = std::make_shared<jwt::KeySet>();
    std::string error;
    if (!jwt::add_jwks(*keys, kKeys, error)) std::abort();
    jwt::Settings s;
    for (std::size_t i = 0; i < jwt::kAlgorithmCount; ++i) {
      s.algorithms.add(static_cast<jwt::Algorithm>(i));
    }
    s.issuer = "joe";
    s.audiences = {"api", "web"};
    s.required_claims = {"sub"};
    return jwt::Verifier(s, keys);
  }();
  return v;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);

  static jwt::Scratch scratch;
  // Before the A.1 token's exp (1300819380): a valid signature reaches the claim checks.
  const auto now = std::chrono::system_clock::time_point(std::chrono::seconds(1300819000));
  const jwt::Result result = verifier().verify(input, now, scratch);
  if (result == jwt::Result::missing) std::abort();
  if (static_cast<std::size_t>(result) >= jwt::kResultCount) std::abort();

  std::vector<jwt::JsonMember> members;
  if (jwt::parse_object(input, members)) {
    std::string text;
    // A checked string may still hold a lone surrogate (\ude00): decode_string refuses it;
    // nothing else may fail.
    auto decodes = [&](std::string_view quoted) {
      return jwt::decode_string(quoted, text) || quoted.find("\\u") != std::string_view::npos;
    };
    for (const jwt::JsonMember& m : members) {
      if (!decodes(m.name)) std::abort();
      if (m.value.type == jwt::JsonType::array) {
        jwt::JsonArrayCursor cursor(m.value.text);
        jwt::JsonValue element;
        while (cursor.next(element)) {
          if (element.text.empty()) std::abort();
        }
      }
      if (m.value.type == jwt::JsonType::string && !decodes(m.value.text)) std::abort();
    }
  }

  std::string decoded;
  if (jwt::base64url_decode(input, decoded) && decoded.size() > input.size()) std::abort();

  const std::vector<bulwark::gateway::filter::HeaderLine> headers = {{"Authorization", input},
                                                                     {"Cookie", input}};
  (void)bulwark::gateway::filters::find_token(headers, "session");
  std::string rest;
  bulwark::gateway::filters::cookies_without(headers, "session", rest);

  jwt::KeySet set;
  std::string error;
  (void)jwt::add_jwks(set, input, error);
  return 0;
}
