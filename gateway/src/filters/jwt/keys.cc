#include "filters/jwt/keys.h"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>

#include <algorithm>
#include <atomic>
#include <nlohmann/json.hpp>

namespace bulwark::gateway::filters::jwt {
namespace {

constexpr std::array<std::string_view, kAlgorithmCount> kNames = {
    "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256",
    "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"};

std::atomic<uint64_t> next_key_id{1};

// -1 for a byte outside the base64url alphabet.
constexpr std::array<int8_t, 256> kBase64Url = [] {
  std::array<int8_t, 256> t{};
  t.fill(-1);
  for (int i = 0; i < 26; ++i) {
    t[static_cast<std::size_t>('A' + i)] = static_cast<int8_t>(i);
    t[static_cast<std::size_t>('a' + i)] = static_cast<int8_t>(26 + i);
  }
  for (int i = 0; i < 10; ++i) t[static_cast<std::size_t>('0' + i)] = static_cast<int8_t>(52 + i);
  t[static_cast<std::size_t>('-')] = 62;
  t[static_cast<std::size_t>('_')] = 63;
  return t;
}();

struct BnFree {
  void operator()(BIGNUM* bn) const noexcept { BN_free(bn); }
};
struct BldFree {
  void operator()(OSSL_PARAM_BLD* bld) const noexcept { OSSL_PARAM_BLD_free(bld); }
};
struct ParamsFree {
  void operator()(OSSL_PARAM* params) const noexcept { OSSL_PARAM_free(params); }
};
struct PkeyCtxFree {
  void operator()(EVP_PKEY_CTX* ctx) const noexcept { EVP_PKEY_CTX_free(ctx); }
};

// A public key of `type` ("RSA", "EC", "ED25519") from the parameters `build` pushes.
template <class Build>
Pkey public_key(const char* type, Build build) {
  std::unique_ptr<OSSL_PARAM_BLD, BldFree> bld(OSSL_PARAM_BLD_new());
  if (!bld || !build(bld.get())) return nullptr;
  std::unique_ptr<OSSL_PARAM, ParamsFree> params(OSSL_PARAM_BLD_to_param(bld.get()));
  std::unique_ptr<EVP_PKEY_CTX, PkeyCtxFree> ctx(
      EVP_PKEY_CTX_new_from_name(nullptr, type, nullptr));
  if (!params || !ctx || EVP_PKEY_fromdata_init(ctx.get()) != 1) return nullptr;
  EVP_PKEY* made = nullptr;
  if (EVP_PKEY_fromdata(ctx.get(), &made, EVP_PKEY_PUBLIC_KEY, params.get()) != 1) return nullptr;
  return Pkey(made);
}

// RSA and EC keys are checked as OpenSSL checks a peer's public key (an EC point on its curve,
// an odd modulus with no small factors and a sane exponent).
bool public_check(const Pkey& key) {
  std::unique_ptr<EVP_PKEY_CTX, PkeyCtxFree> ctx(
      EVP_PKEY_CTX_new_from_pkey(nullptr, key.get(), nullptr));
  return ctx && EVP_PKEY_public_check(ctx.get()) == 1;
}

using json = nlohmann::json;

// Member `name` of a JWK as decoded base64url bytes; an error when absent or not base64url.
bool b64_member(const json& jwk, const char* name, std::string& out, std::string& error) {
  const auto it = jwk.find(name);
  if (it == jwk.end()) {
    error = std::string("missing '") + name + "'";
    return false;
  }
  if (!it->is_string() || !base64url_decode(it->get_ref<const std::string&>(), out) ||
      out.empty()) {
    error = std::string("'") + name + "' is not unpadded base64url";
    return false;
  }
  return true;
}

bool load_rsa(const json& jwk, Key& key, std::string& error) {
  std::string n;
  std::string e;
  if (!b64_member(jwk, "n", n, error) || !b64_member(jwk, "e", e, error)) return false;
  std::unique_ptr<BIGNUM, BnFree> bn_n(BN_bin2bn(reinterpret_cast<const unsigned char*>(n.data()),
                                                 static_cast<int>(n.size()), nullptr));
  std::unique_ptr<BIGNUM, BnFree> bn_e(BN_bin2bn(reinterpret_cast<const unsigned char*>(e.data()),
                                                 static_cast<int>(e.size()), nullptr));
  if (!bn_n || !bn_e) {
    error = "cannot read 'n' and 'e'";
    return false;
  }
  const int bits = BN_num_bits(bn_n.get());
  if (bits < 2048) {
    error = "RSA key of " + std::to_string(bits) + " bits; at least 2048 are required";
    return false;
  }
  key.pkey = public_key("RSA", [&](OSSL_PARAM_BLD* bld) {
    return OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn_n.get()) == 1 &&
           OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, bn_e.get()) == 1;
  });
  if (!key.pkey || !public_check(key.pkey)) {
    error = "not a valid RSA public key";
    return false;
  }
  key.type = KeyType::rsa;
  return true;
}

bool load_ec(const json& jwk, Key& key, std::string& error) {
  const auto crv = jwk.find("crv");
  if (crv == jwk.end() || !crv->is_string()) {
    error = "missing 'crv'";
    return false;
  }
  const std::string& name = crv->get_ref<const std::string&>();
  std::size_t coordinate = 0;
  if (name == "P-256") {
    key.curve = Curve::p256;
    coordinate = 32;
  } else if (name == "P-384") {
    key.curve = Curve::p384;
    coordinate = 48;
  } else if (name == "P-521") {
    key.curve = Curve::p521;
    coordinate = 66;
  } else {
    error = "EC curve '" + name + "' is not supported (P-256, P-384, P-521)";
    return false;
  }
  std::string x;
  std::string y;
  if (!b64_member(jwk, "x", x, error) || !b64_member(jwk, "y", y, error)) return false;
  // RFC 7518 §6.2.1.2: each coordinate has the full size of the curve's field.
  if (x.size() != coordinate || y.size() != coordinate) {
    error = "'x' and 'y' must be " + std::to_string(coordinate) + " bytes each for " + name;
    return false;
  }
  std::string point;
  point.reserve(1 + 2 * coordinate);
  point.push_back('\x04');  // uncompressed (SEC 1 §2.3.3)
  point += x;
  point += y;
  key.pkey = public_key("EC", [&](OSSL_PARAM_BLD* bld) {
    return OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, name.c_str(), 0) == 1 &&
           OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, point.data(),
                                            point.size()) == 1;
  });
  if (!key.pkey || !public_check(key.pkey)) {
    error = "not a valid " + name + " public key (is the point on the curve?)";
    return false;
  }
  key.type = KeyType::ec;
  return true;
}

bool load_okp(const json& jwk, Key& key, std::string& error) {
  const auto crv = jwk.find("crv");
  if (crv == jwk.end() || !crv->is_string()) {
    error = "missing 'crv'";
    return false;
  }
  const std::string& name = crv->get_ref<const std::string&>();
  if (name != "Ed25519") {
    error = "OKP curve '" + name + "' is not supported (Ed25519)";
    return false;
  }
  std::string x;
  if (!b64_member(jwk, "x", x, error)) return false;
  if (x.size() != 32) {
    error = "'x' must be 32 bytes for Ed25519";
    return false;
  }
  key.pkey = public_key("ED25519", [&](OSSL_PARAM_BLD* bld) {
    return OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, x.data(), x.size()) == 1;
  });
  if (!key.pkey) {
    error = "not a valid Ed25519 public key";
    return false;
  }
  key.type = KeyType::okp;
  key.curve = Curve::ed25519;
  return true;
}

bool load_oct(const json& jwk, Key& key, std::string& error) {
  if (!b64_member(jwk, "k", key.secret, error)) return false;
  if (key.secret.size() < kMinSecretBytes) {
    error = "an HMAC key of " + std::to_string(key.secret.size()) + " bytes; at least " +
            std::to_string(kMinSecretBytes) + " are required";
    return false;
  }
  key.type = KeyType::oct;
  return true;
}

// Whether the JWK is meant for verifying signatures (RFC 7517 §4.2, §4.3).
bool for_signatures(const json& jwk) {
  if (const auto use = jwk.find("use"); use != jwk.end() && *use != "sig") return false;
  if (const auto ops = jwk.find("key_ops"); ops != jwk.end()) {
    if (!ops->is_array()) return false;
    return std::any_of(ops->begin(), ops->end(), [](const json& op) { return op == "verify"; });
  }
  return true;
}

// One JWK into `key`; false with `error` when it is unusable.
bool load_key(const json& jwk, Key& key, std::string& error) {
  if (!jwk.is_object()) {
    error = "expected a JSON object";
    return false;
  }
  const auto kty = jwk.find("kty");
  if (kty == jwk.end() || !kty->is_string()) {
    error = "missing 'kty'";
    return false;
  }
  if (const auto kid = jwk.find("kid"); kid != jwk.end()) {
    if (!kid->is_string()) {
      error = "'kid' is not a string";
      return false;
    }
    key.kid = kid->get<std::string>();
  }
  if (const auto alg = jwk.find("alg"); alg != jwk.end()) {
    const auto parsed =
        alg->is_string() ? parse_algorithm(alg->get_ref<const std::string&>()) : std::nullopt;
    if (!parsed) {
      error = "'alg' is not a supported signature algorithm";
      return false;
    }
    key.alg = parsed;
  }
  const std::string& type = kty->get_ref<const std::string&>();
  if (type != "oct") {
    for (const char* secret : {"d", "p", "q", "dp", "dq", "qi", "oth"}) {
      if (jwk.contains(secret)) {
        error = std::string("holds private key material ('") + secret +
                "'): a key set for verification must hold public keys only";
        return false;
      }
    }
  }
  bool ok = false;
  if (type == "RSA") {
    ok = load_rsa(jwk, key, error);
  } else if (type == "EC") {
    ok = load_ec(jwk, key, error);
  } else if (type == "OKP") {
    ok = load_okp(jwk, key, error);
  } else if (type == "oct") {
    ok = load_oct(jwk, key, error);
  } else {
    error = "kty '" + type + "' is not supported (RSA, EC, OKP, oct)";
    return false;
  }
  if (!ok) return false;
  if (key.alg && !key.fits(*key.alg)) {
    error = "'alg' " + std::string(algorithm_name(*key.alg)) + " does not match the key's type";
    return false;
  }
  key.id = next_key_id.fetch_add(1, std::memory_order_relaxed);
  return true;
}

}  // namespace

void PkeyFree::operator()(EVP_PKEY* key) const noexcept { EVP_PKEY_free(key); }

std::string_view algorithm_name(Algorithm alg) noexcept {
  return kNames[static_cast<std::size_t>(alg)];
}

std::optional<Algorithm> parse_algorithm(std::string_view name) noexcept {
  for (std::size_t i = 0; i < kNames.size(); ++i) {
    if (kNames[i] == name) return static_cast<Algorithm>(i);
  }
  return std::nullopt;
}

bool Key::fits(Algorithm a) const noexcept {
  if (alg && *alg != a) return false;
  switch (a) {
    case Algorithm::HS256:
    case Algorithm::HS384:
    case Algorithm::HS512:
      return type == KeyType::oct;
    case Algorithm::RS256:
    case Algorithm::RS384:
    case Algorithm::RS512:
    case Algorithm::PS256:
    case Algorithm::PS384:
    case Algorithm::PS512:
      return type == KeyType::rsa;
    case Algorithm::ES256:
      return type == KeyType::ec && curve == Curve::p256;
    case Algorithm::ES384:
      return type == KeyType::ec && curve == Curve::p384;
    case Algorithm::ES512:
      return type == KeyType::ec && curve == Curve::p521;
    case Algorithm::EdDSA:
      return type == KeyType::okp && curve == Curve::ed25519;
  }
  return false;
}

bool KeySet::can_verify(Algorithm alg) const noexcept {
  return std::any_of(keys.begin(), keys.end(), [&](const Key& k) { return k.fits(alg); });
}

bool add_jwks(KeySet& set, std::string_view json_text, std::string& error) {
  const json doc = json::parse(json_text.begin(), json_text.end(), nullptr, false);
  if (doc.is_discarded()) {
    error = "not valid JSON";
    return false;
  }
  if (!doc.is_object() || !doc.contains("keys") || !doc["keys"].is_array()) {
    error = "expected a JWK Set: {\"keys\": [...]}";
    return false;
  }
  const json& keys = doc["keys"];
  std::size_t usable = 0;
  for (std::size_t i = 0; i < keys.size(); ++i) {
    if (keys[i].is_object() && !for_signatures(keys[i])) continue;
    Key key;
    std::string why;
    if (!load_key(keys[i], key, why)) {
      error = "keys[" + std::to_string(i) + "]: " + why;
      return false;
    }
    set.keys.push_back(std::move(key));
    ++usable;
  }
  if (usable == 0) {
    error = "no signature verification key in the set";
    return false;
  }
  return true;
}

bool add_secret(KeySet& set, std::string_view secret, std::string& error) {
  if (secret.size() < kMinSecretBytes) {
    error = "an HMAC secret of " + std::to_string(secret.size()) + " bytes; at least " +
            std::to_string(kMinSecretBytes) + " are required (RFC 7518 §3.2)";
    return false;
  }
  Key key;
  key.type = KeyType::oct;
  key.secret = std::string(secret);
  key.id = next_key_id.fetch_add(1, std::memory_order_relaxed);
  set.keys.push_back(std::move(key));
  return true;
}

bool base64url_decode(std::string_view in, std::string& out) {
  if (in.size() % 4 == 1) return false;
  out.resize(in.size() / 4 * 3 + (in.size() % 4 == 0 ? 0 : in.size() % 4 - 1));
  std::size_t o = 0;
  uint32_t acc = 0;
  int bits = 0;
  for (const char c : in) {
    const int8_t v = kBase64Url[static_cast<unsigned char>(c)];
    if (v < 0) return false;
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[o++] = static_cast<char>((acc >> bits) & 0xFF);
    }
  }
  // The leftover bits (2 or 4) must be zero: each value has one encoding.
  if (bits > 0 && (acc & ((1u << bits) - 1)) != 0) return false;
  return o == out.size();
}

}  // namespace bulwark::gateway::filters::jwt
