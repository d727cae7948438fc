// The keys a route checks JWT signatures with, and the algorithms they serve (RFC 7518).
//
// A KeySet is built once, when the config is loaded (config/config.cc), from the route's
// `jwks_file` (a JWK Set, RFC 7517 §5) and its `secret` (an HMAC key: the string's bytes). It is
// immutable afterwards and shared by every worker; the OpenSSL keys in it are only read.
//
// Keys (kty):
//   RSA  n, e            RS256/384/512, PS256/384/512; at least 2048 bits (RFC 7518 §3.3, §3.5)
//   EC   crv, x, y       P-256 → ES256, P-384 → ES384, P-521 → ES512
//   OKP  crv Ed25519, x  EdDSA
//   oct  k               HS256/384/512; at least 32 bytes (RFC 7518 §3.2), like `secret`
// A key's `alg`, when given, is the only algorithm it verifies; `use` other than "sig" and
// `key_ops` without "verify" leave a key out (an encryption key beside the signing keys). Other
// members (x5c, x5t, ...) are ignored. Private members (`d`, `p`, ...) are refused: a key set
// for verification must not hold private keys. An unknown kty or curve is an error rather than
// silently ignored, so a typo never leaves a route with fewer keys than its operator believes.
//
// Public keys are made with EVP_PKEY_fromdata from OSSL_PARAMs (n/e, group/point, raw x) and
// checked with EVP_PKEY_public_check where OpenSSL has such a check (RSA, EC).
#pragma once

#include <openssl/types.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace bulwark::gateway::filters::jwt {

enum class Algorithm : uint8_t {
  HS256,
  HS384,
  HS512,
  RS256,
  RS384,
  RS512,
  PS256,
  PS384,
  PS512,
  ES256,
  ES384,
  ES512,
  EdDSA,
};
inline constexpr std::size_t kAlgorithmCount = 13;

// The JWA name ("RS256"), and back; "none" and unknown names give nullopt.
std::string_view algorithm_name(Algorithm alg) noexcept;
std::optional<Algorithm> parse_algorithm(std::string_view name) noexcept;

// A set of algorithms (a route's `algorithms`).
class AlgorithmSet {
 public:
  constexpr void add(Algorithm alg) noexcept { bits_ |= bit(alg); }
  constexpr bool contains(Algorithm alg) const noexcept { return (bits_ & bit(alg)) != 0; }
  constexpr bool empty() const noexcept { return bits_ == 0; }

 private:
  static constexpr uint32_t bit(Algorithm alg) noexcept {
    return uint32_t{1} << static_cast<unsigned>(alg);
  }
  uint32_t bits_ = 0;
};

enum class KeyType : uint8_t { oct, rsa, ec, okp };
enum class Curve : uint8_t { none, p256, p384, p521, ed25519 };

struct PkeyFree {
  void operator()(EVP_PKEY* key) const noexcept;
};
using Pkey = std::unique_ptr<EVP_PKEY, PkeyFree>;

struct Key {
  std::string kid;  // empty: the key has none
  KeyType type = KeyType::oct;
  Curve curve = Curve::none;
  std::optional<Algorithm> alg;  // the JWK's `alg`: the only algorithm it verifies
  Pkey pkey;                     // RSA, EC, OKP
  std::string secret;            // oct: the key's bytes
  // Unique in the process, never reused: per-thread HMAC contexts are keyed by it (a reload's
  // new key never meets an old key's context).
  uint64_t id = 0;

  // Whether this key can verify `alg`: its type (and curve) is the algorithm's and its own
  // `alg`, if any, is that one. A token whose alg does not fit the key is refused before any
  // signature check, which is what defeats RS256 → HS256 confusion (an RSA public key is never
  // used as an HMAC secret).
  bool fits(Algorithm alg) const noexcept;
};

class KeySet {
 public:
  std::vector<Key> keys;

  // Whether some key can verify `alg`.
  bool can_verify(Algorithm alg) const noexcept;
};

// The smallest HMAC key accepted, in bytes (RFC 7518 §3.2 for HS256).
inline constexpr std::size_t kMinSecretBytes = 32;

// Adds the keys of a JWK Set document to `set`. On failure returns false and sets `error` to
// a message that names the key ("keys[2]: EC key without 'y'"); `set` is then unspecified.
bool add_jwks(KeySet& set, std::string_view json_text, std::string& error);

// Adds `secret` (its bytes) as an HMAC key without a kid. False (and `error`) when shorter than
// kMinSecretBytes.
bool add_secret(KeySet& set, std::string_view secret, std::string& error);

// Unpadded base64url (RFC 7515 §2) of `in` into `out`. False for a byte outside the alphabet,
// for '=' padding, for a length of 4k+1, and for non-zero unused bits (one text per value).
bool base64url_decode(std::string_view in, std::string& out);

}  // namespace bulwark::gateway::filters::jwt
