#include "filters/jwt/verify.h"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>

#include <algorithm>

#include "filter/reasons.h"

namespace bulwark::gateway::filters::jwt {
namespace {

enum class Family : uint8_t { hmac, pkcs1, pss, ecdsa, eddsa };

struct AlgorithmFacts {
  Family family;
  const char* digest;      // OpenSSL's name; null for EdDSA
  std::size_t hash_bytes;  // HMAC output; ECDSA coordinate size for ES*
};

AlgorithmFacts facts(Algorithm alg) noexcept {
  switch (alg) {
    case Algorithm::HS256:
      return {Family::hmac, "SHA256", 32};
    case Algorithm::HS384:
      return {Family::hmac, "SHA384", 48};
    case Algorithm::HS512:
      return {Family::hmac, "SHA512", 64};
    case Algorithm::RS256:
      return {Family::pkcs1, "SHA256", 32};
    case Algorithm::RS384:
      return {Family::pkcs1, "SHA384", 48};
    case Algorithm::RS512:
      return {Family::pkcs1, "SHA512", 64};
    case Algorithm::PS256:
      return {Family::pss, "SHA256", 32};
    case Algorithm::PS384:
      return {Family::pss, "SHA384", 48};
    case Algorithm::PS512:
      return {Family::pss, "SHA512", 64};
    case Algorithm::ES256:
      return {Family::ecdsa, "SHA256", 32};
    case Algorithm::ES384:
      return {Family::ecdsa, "SHA384", 48};
    case Algorithm::ES512:
      return {Family::ecdsa, "SHA512", 66};
    case Algorithm::EdDSA:
      return {Family::eddsa, nullptr, 0};
  }
  return {Family::hmac, "SHA256", 32};
}

// The HMAC implementation, fetched once for the process.
EVP_MAC* hmac() {
  static EVP_MAC* const mac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
  return mac;
}

bool verify_hmac(const Key& key, Algorithm alg, std::string_view input, std::string_view signature,
                 Scratch& scratch) {
  const AlgorithmFacts f = facts(alg);
  if (signature.size() != f.hash_bytes) return false;
  EVP_MAC_CTX* ctx = scratch.mac_context(key, alg);
  if (ctx == nullptr) return false;
  unsigned char mac[EVP_MAX_MD_SIZE];
  std::size_t mac_len = 0;
  // A NULL key re-initialises the context with the key it holds.
  if (EVP_MAC_init(ctx, nullptr, 0, nullptr) != 1 ||
      EVP_MAC_update(ctx, reinterpret_cast<const unsigned char*>(input.data()), input.size()) !=
          1 ||
      EVP_MAC_final(ctx, mac, &mac_len, sizeof mac) != 1 || mac_len != signature.size()) {
    return false;
  }
  return CRYPTO_memcmp(mac, signature.data(), mac_len) == 0;
}

struct EcdsaSigFree {
  void operator()(ECDSA_SIG* sig) const noexcept { ECDSA_SIG_free(sig); }
};

// JOSE's r||s (RFC 7518 §3.4) as the DER ECDSA-Sig-Value OpenSSL verifies.
bool jose_to_der(std::string_view raw, std::size_t coordinate, std::string& der) {
  if (raw.size() != 2 * coordinate) return false;
  const auto* bytes = reinterpret_cast<const unsigned char*>(raw.data());
  BIGNUM* r = BN_bin2bn(bytes, static_cast<int>(coordinate), nullptr);
  BIGNUM* s = BN_bin2bn(bytes + coordinate, static_cast<int>(coordinate), nullptr);
  std::unique_ptr<ECDSA_SIG, EcdsaSigFree> sig(ECDSA_SIG_new());
  if (r == nullptr || s == nullptr || !sig || ECDSA_SIG_set0(sig.get(), r, s) != 1) {
    BN_free(r);
    BN_free(s);
    return false;
  }
  const int len = i2d_ECDSA_SIG(sig.get(), nullptr);
  if (len <= 0) return false;
  der.resize(static_cast<std::size_t>(len));
  auto* out = reinterpret_cast<unsigned char*>(der.data());
  return i2d_ECDSA_SIG(sig.get(), &out) == len;
}

bool verify_public(const Key& key, Algorithm alg, std::string_view input,
                   std::string_view signature, EVP_MD_CTX* md, std::string& der) {
  const AlgorithmFacts f = facts(alg);
  std::string_view sig = signature;
  if (f.family == Family::ecdsa) {
    if (!jose_to_der(signature, f.hash_bytes, der)) return false;
    sig = der;
  } else if (f.family == Family::pkcs1 || f.family == Family::pss) {
    if (signature.size() != static_cast<std::size_t>(EVP_PKEY_get_size(key.pkey.get()))) {
      return false;
    }
  } else if (f.family == Family::eddsa && signature.size() != 64) {
    return false;
  }
  EVP_MD_CTX_reset(md);
  EVP_PKEY_CTX* pctx = nullptr;  // owned by md
  if (EVP_DigestVerifyInit_ex(md, &pctx, f.digest, nullptr, nullptr, key.pkey.get(), nullptr) !=
      1) {
    return false;
  }
  if (f.family == Family::pss &&
      (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) != 1 ||
       EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) != 1)) {
    return false;
  }
  const int verdict =
      EVP_DigestVerify(md, reinterpret_cast<const unsigned char*>(sig.data()), sig.size(),
                       reinterpret_cast<const unsigned char*>(input.data()), input.size());
  EVP_MD_CTX_reset(md);
  return verdict == 1;
}

// A NumericDate claim: absent (ok, no value), a finite number, or malformed.
enum class Date : uint8_t { absent, present, bad };
Date numeric_date(std::span<const JsonMember> claims, std::string_view name, double& out,
                  std::string& scratch) {
  const MemberLookup found = find_member(claims, name, scratch);
  if (found.duplicate) return Date::bad;
  if (found.member == nullptr || found.member->value.type == JsonType::null) return Date::absent;
  const auto value = number_value(found.member->value);
  if (!value) return Date::bad;
  out = *value;
  return Date::present;
}

bool is_string_in(const JsonValue& value, std::span<const std::string> accepted,
                  std::string& scratch) {
  if (value.type != JsonType::string) return false;
  return std::any_of(accepted.begin(), accepted.end(),
                     [&](const std::string& a) { return string_equals(value.text, a, scratch); });
}

}  // namespace

std::string_view result_name(Result result) noexcept {
  switch (result) {
    case Result::ok:
      return "ok";
    case Result::missing:
      return reason::kJwtMissing;
    case Result::malformed:
      return reason::kJwtMalformed;
    case Result::algorithm:
      return reason::kJwtAlgorithm;
    case Result::unknown_key:
      return reason::kJwtUnknownKey;
    case Result::signature:
      return reason::kJwtSignature;
    case Result::expired:
      return reason::kJwtExpired;
    case Result::not_yet_valid:
      return reason::kJwtNotYetValid;
    case Result::issuer:
      return reason::kJwtIssuer;
    case Result::audience:
      return reason::kJwtAudience;
    case Result::missing_claim:
      return reason::kJwtMissingClaim;
  }
  return reason::kJwtMalformed;
}

Scratch::Scratch() : md_(EVP_MD_CTX_new()) {}

Scratch::~Scratch() {
  EVP_MD_CTX_free(md_);
  for (MacSlot& slot : macs_) EVP_MAC_CTX_free(slot.ctx);
}

EVP_MAC_CTX* Scratch::mac_context(const Key& key, Algorithm alg) {
  for (MacSlot& slot : macs_) {
    if (slot.ctx != nullptr && slot.key_id == key.id && slot.alg == alg) return slot.ctx;
  }
  // A key this thread has not used yet (or not lately): it takes the next slot.
  MacSlot& slot = macs_[next_mac_];
  next_mac_ = (next_mac_ + 1) % macs_.size();
  EVP_MAC_CTX_free(slot.ctx);
  slot = {};
  EVP_MAC* mac = hmac();
  if (mac == nullptr) return nullptr;
  EVP_MAC_CTX* ctx = EVP_MAC_CTX_new(mac);
  if (ctx == nullptr) return nullptr;
  OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST,
                                                          const_cast<char*>(facts(alg).digest), 0),
                         OSSL_PARAM_construct_end()};
  if (EVP_MAC_init(ctx, reinterpret_cast<const unsigned char*>(key.secret.data()),
                   key.secret.size(), params) != 1) {
    EVP_MAC_CTX_free(ctx);
    return nullptr;
  }
  slot = {key.id, alg, ctx};
  return ctx;
}

bool verify_signature(const Key& key, Algorithm alg, std::string_view signing_input,
                      std::string_view signature, Scratch& scratch) {
  if (!key.fits(alg)) return false;
  if (facts(alg).family == Family::hmac) {
    return verify_hmac(key, alg, signing_input, signature, scratch);
  }
  if (!key.pkey || scratch.md_ == nullptr) return false;
  return verify_public(key, alg, signing_input, signature, scratch.md_, scratch.der_);
}

Verifier::Verifier(Settings settings, std::shared_ptr<const KeySet> keys)
    : settings_(std::move(settings)), keys_(std::move(keys)) {
  if (!keys_) keys_ = std::make_shared<KeySet>();
}

Result Verifier::verify(std::string_view token, std::chrono::system_clock::time_point now,
                        Scratch& scratch, const SignatureMemo* memo) const {
  // 1. Shape.
  if (token.size() > settings_.max_token_bytes) return Result::malformed;
  const std::size_t dot1 = token.find('.');
  if (dot1 == std::string_view::npos) return Result::malformed;
  const std::size_t dot2 = token.find('.', dot1 + 1);
  if (dot2 == std::string_view::npos || token.find('.', dot2 + 1) != std::string_view::npos) {
    return Result::malformed;
  }
  const std::string_view header_b64 = token.substr(0, dot1);
  const std::string_view payload_b64 = token.substr(dot1 + 1, dot2 - dot1 - 1);
  const std::string_view signature_b64 = token.substr(dot2 + 1);
  // An empty signature is a shape, not a malformation: `alg: none` tokens have one, and are
  // refused for their algorithm below.
  if (header_b64.empty() || payload_b64.empty() || !base64url_decode(header_b64, scratch.header_) ||
      !base64url_decode(payload_b64, scratch.payload_) ||
      !base64url_decode(signature_b64, scratch.signature_)) {
    return Result::malformed;
  }

  // 2. Header.
  if (!parse_object(scratch.header_, scratch.header_members_)) return Result::malformed;
  const auto& members = scratch.header_members_;
  const MemberLookup alg_member = find_member(members, "alg", scratch.name_);
  const MemberLookup kid_member = find_member(members, "kid", scratch.name_);
  const MemberLookup crit_member = find_member(members, "crit", scratch.name_);
  if (alg_member.duplicate || kid_member.duplicate || crit_member.duplicate ||
      crit_member.member != nullptr || alg_member.member == nullptr ||
      alg_member.member->value.type != JsonType::string ||
      (kid_member.member != nullptr && kid_member.member->value.type != JsonType::string)) {
    return Result::malformed;
  }

  // 3. Algorithm.
  if (!decode_string(alg_member.member->value.text, scratch.text_)) return Result::malformed;
  const auto alg = parse_algorithm(scratch.text_);
  if (!alg || !settings_.algorithms.contains(*alg)) return Result::algorithm;

  // 4 and 5. Key and signature (unless the memo has seen this token verified).
  const std::string_view signing_input = token.substr(0, dot2);
  const bool memo_applies = memo != nullptr && facts(*alg).family != Family::hmac;
  const bool remembered = memo_applies && memo->known(token);
  bool kid_known = remembered;
  bool fitted = remembered;
  bool verified = remembered;
  if (kid_member.member != nullptr) {
    if (!decode_string(kid_member.member->value.text, scratch.text_)) return Result::malformed;
  }
  for (const Key& key : keys_->keys) {
    if (remembered) break;
    if (kid_member.member != nullptr) {
      if (key.kid != scratch.text_) continue;
      kid_known = true;
    }
    if (!key.fits(*alg)) continue;
    fitted = true;
    if (verify_signature(key, *alg, signing_input, scratch.signature_, scratch)) {
      verified = true;
      break;
    }
  }
  if (kid_member.member != nullptr && !kid_known) return Result::unknown_key;
  if (!fitted) return kid_member.member != nullptr ? Result::algorithm : Result::unknown_key;
  if (!verified) return Result::signature;

  // 6. Claims.
  if (!parse_object(scratch.payload_, scratch.claims_)) return Result::malformed;
  const double now_seconds = std::chrono::duration<double>(now.time_since_epoch()).count();
  std::optional<double> exp;
  const Result result = check_claims(scratch.claims_, now_seconds, scratch.name_, exp);
  if (result == Result::ok && memo_applies && !remembered) {
    std::optional<Duration> valid_for;
    if (exp) {
      // Whole milliseconds, saturated well inside Duration's range.
      const double ms = std::min((*exp - now_seconds) * 1e3, 1e12);
      valid_for = std::chrono::milliseconds(static_cast<int64_t>(std::max(ms, 0.0)));
    }
    memo->remember(token, valid_for);
  }
  return result;
}

Result Verifier::check_claims(std::span<const JsonMember> claims, double now, std::string& scratch,
                              std::optional<double>& exp_out) const {
  const double leeway = std::chrono::duration<double>(settings_.leeway).count();
  // 7. Time.
  double exp = 0;
  double nbf = 0;
  double iat = 0;
  const Date has_exp = numeric_date(claims, "exp", exp, scratch);
  const Date has_nbf = numeric_date(claims, "nbf", nbf, scratch);
  const Date has_iat = numeric_date(claims, "iat", iat, scratch);
  if (has_exp == Date::bad || has_nbf == Date::bad || has_iat == Date::bad) {
    return Result::malformed;
  }
  if (has_exp == Date::present && now >= exp + leeway) return Result::expired;
  if (has_exp == Date::present) exp_out = exp;
  if (has_nbf == Date::present && now + leeway < nbf) return Result::not_yet_valid;
  if (has_iat == Date::present && iat > now + leeway) return Result::not_yet_valid;

  // 8. Issuer.
  if (!settings_.issuer.empty()) {
    const MemberLookup iss = find_member(claims, "iss", scratch);
    if (iss.duplicate) return Result::malformed;
    if (iss.member == nullptr || iss.member->value.type != JsonType::string ||
        !string_equals(iss.member->value.text, settings_.issuer, scratch)) {
      return Result::issuer;
    }
  }

  // 9. Audience.
  if (!settings_.audiences.empty()) {
    const MemberLookup aud = find_member(claims, "aud", scratch);
    if (aud.duplicate) return Result::malformed;
    bool accepted = false;
    if (aud.member != nullptr && aud.member->value.type == JsonType::array) {
      JsonArrayCursor cursor(aud.member->value.text);
      JsonValue element;
      while (!accepted && cursor.next(element)) {
        accepted = is_string_in(element, settings_.audiences, scratch);
      }
    } else if (aud.member != nullptr) {
      accepted = is_string_in(aud.member->value, settings_.audiences, scratch);
    }
    if (!accepted) return Result::audience;
  }

  // 10. Required claims.
  for (const std::string& name : settings_.required_claims) {
    const MemberLookup claim = find_member(claims, name, scratch);
    if (claim.duplicate) return Result::malformed;
    if (claim.member == nullptr || claim.member->value.type == JsonType::null) {
      return Result::missing_claim;
    }
  }
  return Result::ok;
}

}  // namespace bulwark::gateway::filters::jwt
