// The JWT decision, pure: is this compact JWS (RFC 7515 §7.1) a token the route accepts at
// wall-clock time `now`? No I/O, no clock (`now` is an argument), no exception on any input;
// the answer is a Result, each refusal its own reason (filter/reasons.h).
//
// The steps, in order (the first failing one is the answer):
//   1. shape       at most max_token_bytes; three base64url parts (header and payload not
//                  empty)                                                         malformed
//   2. header      a JSON object with a string `alg`; `kid` a string if present;
//                  no `crit` (no extension is understood, RFC 7515 §4.1.11)       malformed
//   3. algorithm   `alg` is one of the route's algorithms (`none` never is)        algorithm
//   4. key         with a `kid`: the keys with that kid (none: unknown_key), of which one must
//                  fit the alg (else algorithm: an RS256 key asked to check an HS256 token);
//                  without: every key that fits the alg, the `secret` included   unknown_key
//   5. signature   checked with OpenSSL (HMAC compared with CRYPTO_memcmp)         signature
//   6. claims      a JSON object (parsed only once the signature holds)            malformed
//   7. time        exp: now < exp + leeway                                          expired
//                  nbf: now + leeway >= nbf; iat: iat <= now + leeway            not_yet_valid
//                  (NumericDates may be fractional; a non-number is malformed)
//   8. issuer      when configured, `iss` equals it                                 issuer
//   9. audience    when configured, `aud` (a string or an array of strings) holds one of them
//                                                                                   audience
//  10. claims      every required claim is present and not null                 missing_claim
// A member name that occurs twice in the header or the claims makes the token malformed.
//
// Signatures (RFC 7518): HS256/384/512 (HMAC), RS256/384/512 (RSASSA-PKCS1-v1_5),
// PS256/384/512 (RSASSA-PSS, MGF1 with the same hash, salt as long as the hash), ES256/384/512
// (the JOSE r||s form converted to a DER ECDSA-Sig-Value), EdDSA (Ed25519).
//
// Working memory lives in a Scratch the caller keeps (the filter: one per thread): its buffers
// and its per-key HMAC contexts are reused, so a steady stream of HS256 tokens makes the
// gateway's code allocate nothing. (OpenSSL 3.0 itself still allocates twice inside each HMAC
// re-initialisation: it frees and re-creates the digest state.)
#pragma once

#include <openssl/types.h>

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "bulwark/core/clock.h"
#include "filters/jwt/json.h"
#include "filters/jwt/keys.h"

namespace bulwark::gateway::filters::jwt {

enum class Result : uint8_t {
  ok,
  missing,    // 401: no token (decided by the filter, never by verify())
  malformed,  // 403 from here on
  algorithm,
  unknown_key,
  signature,
  expired,
  not_yet_valid,
  issuer,
  audience,
  missing_claim,
};
inline constexpr std::size_t kResultCount = 11;

// "ok", or the reason constant of filter/reasons.h ("jwt_expired").
std::string_view result_name(Result result) noexcept;

struct Settings {
  AlgorithmSet algorithms;
  std::string issuer;                  // empty: `iss` is not checked
  std::vector<std::string> audiences;  // empty: `aud` is not checked
  Duration leeway = std::chrono::seconds(30);
  std::vector<std::string> required_claims;
  std::size_t max_token_bytes = 8 * 1024;
};

// Per-thread working memory of verify(); see above. Not copyable (it owns OpenSSL contexts).
class Scratch {
 public:
  Scratch();
  ~Scratch();
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;

  // After verify() returned ok: the token's claims (views into this scratch), valid until the
  // next verify() with it.
  std::span<const JsonMember> claims() const noexcept { return claims_; }
  // Strings for the caller's own short-lived use (decoding a claim, matching a name).
  std::string& text() noexcept { return text_; }
  std::string& name() noexcept { return name_; }

  // The HMAC context of `key` and `alg` for this thread, keyed to the key; null on failure.
  EVP_MAC_CTX* mac_context(const Key& key, Algorithm alg);

 private:
  friend class Verifier;
  friend bool verify_signature(const Key& key, Algorithm alg, std::string_view signing_input,
                               std::string_view signature, Scratch& scratch);
  std::string header_;
  std::string payload_;
  std::string signature_;
  std::string der_;
  std::string text_;
  std::string name_;
  std::vector<JsonMember> header_members_;
  std::vector<JsonMember> claims_;
  EVP_MD_CTX* md_ = nullptr;

  struct MacSlot {
    uint64_t key_id = 0;
    Algorithm alg = Algorithm::HS256;
    EVP_MAC_CTX* ctx = nullptr;
  };
  static constexpr std::size_t kMacSlots = 8;
  std::array<MacSlot, kMacSlots> macs_{};
  std::size_t next_mac_ = 0;  // the slot a new key takes (round robin)
};

// What verify() may consult to skip steps 4 and 5 for a token whose signature it checked
// before with the same keys (the filter's cache of verified tokens). Asked only for public-key
// algorithms: an HMAC costs less than a lookup. The decision stays the verifier's: a known
// token still passes steps 1-3 and 6-10 on every request (its exp, above all).
class SignatureMemo {
 public:
  virtual ~SignatureMemo() = default;
  // Whether this exact token text passed the signature check before.
  virtual bool known(std::string_view token) const = 0;
  // This token passed every step; `valid_for` is the time left before its exp (none: no exp).
  virtual void remember(std::string_view token, std::optional<Duration> valid_for) const = 0;
};

class Verifier {
 public:
  Verifier(Settings settings, std::shared_ptr<const KeySet> keys);

  // The decision for `token` (the text after "Bearer ", or the cookie's value) at `now`.
  // `memo`, when given, may spare the signature check of a token seen before (see above).
  Result verify(std::string_view token, std::chrono::system_clock::time_point now, Scratch& scratch,
                const SignatureMemo* memo = nullptr) const;

  const Settings& settings() const noexcept { return settings_; }

 private:
  // `exp` is set to the token's exp when it has one.
  Result check_claims(std::span<const JsonMember> claims, double now_seconds, std::string& scratch,
                      std::optional<double>& exp) const;

  Settings settings_;
  std::shared_ptr<const KeySet> keys_;
};

// Step 5 alone: whether `signature` is `alg`'s signature of `signing_input` under `key`
// (which must fit `alg`). Exposed for tests and the benchmark.
bool verify_signature(const Key& key, Algorithm alg, std::string_view signing_input,
                      std::string_view signature, Scratch& scratch);

}  // namespace bulwark::gateway::filters::jwt
