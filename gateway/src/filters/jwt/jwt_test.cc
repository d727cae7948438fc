#include "filters/jwt/jwt.h"

#include <gtest/gtest.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "filter/chain.h"
#include "filter/reasons.h"
#include "filters/jwt/json.h"
#include "filters/jwt/keys.h"
#include "filters/jwt/verify.h"
#include "http/head_writer.h"

namespace bulwark::gateway::filters {
namespace {

using jwt::Algorithm;
using jwt::Result;
using SysTime = std::chrono::system_clock::time_point;

// ---- helpers: base64url, keys and signatures made with OpenSSL -------------------------------

std::string b64url(std::string_view bytes) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string out;
  uint32_t acc = 0;
  int bits = 0;
  for (const char c : bytes) {
    acc = (acc << 8) | static_cast<unsigned char>(c);
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      out.push_back(kAlphabet[(acc >> bits) & 0x3F]);
    }
  }
  if (bits > 0) out.push_back(kAlphabet[(acc << (6 - bits)) & 0x3F]);
  return out;
}

std::string decoded(std::string_view b64) {
  std::string out;
  EXPECT_TRUE(jwt::base64url_decode(b64, out)) << b64;
  return out;
}

SysTime at(int64_t seconds) { return SysTime(std::chrono::seconds(seconds)); }

jwt::Pkey generate(const char* type) {
  if (std::string_view(type) == "RSA") {
    return jwt::Pkey(EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", static_cast<size_t>(2048)));
  }
  if (std::string_view(type) == "EC") {
    return jwt::Pkey(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
  }
  return jwt::Pkey(EVP_PKEY_Q_keygen(nullptr, nullptr, type));
}

std::string bn_bytes(EVP_PKEY* key, const char* name, int pad = 0) {
  BIGNUM* bn = nullptr;
  EXPECT_EQ(EVP_PKEY_get_bn_param(key, name, &bn), 1) << name;
  std::string out(static_cast<std::size_t>(pad > 0 ? pad : BN_num_bytes(bn)), '\0');
  BN_bn2binpad(bn, reinterpret_cast<unsigned char*>(out.data()), static_cast<int>(out.size()));
  BN_free(bn);
  return out;
}

std::string rsa_jwk(EVP_PKEY* key, const std::string& kid) {
  return R"({"kty":"RSA","kid":")" + kid + R"(","n":")" + b64url(bn_bytes(key, "n")) +
         R"(","e":")" + b64url(bn_bytes(key, "e")) + R"("})";
}

std::string ec_jwk(EVP_PKEY* key, const std::string& kid) {
  return R"({"kty":"EC","crv":"P-256","kid":")" + kid + R"(","x":")" +
         b64url(bn_bytes(key, OSSL_PKEY_PARAM_EC_PUB_X, 32)) + R"(","y":")" +
         b64url(bn_bytes(key, OSSL_PKEY_PARAM_EC_PUB_Y, 32)) + R"("})";
}

std::string ed_jwk(EVP_PKEY* key, const std::string& kid) {
  std::string raw(32, '\0');
  std::size_t len = raw.size();
  EXPECT_EQ(EVP_PKEY_get_raw_public_key(key, reinterpret_cast<unsigned char*>(raw.data()), &len),
            1);
  return R"({"kty":"OKP","crv":"Ed25519","kid":")" + kid + R"(","x":")" + b64url(raw) + R"("})";
}

std::string pem_public_key(EVP_PKEY* key) {
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_PUBKEY(bio, key);
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio, &data);
  std::string out(data, static_cast<std::size_t>(len));
  BIO_free(bio);
  return out;
}

std::string hmac(std::string_view secret, std::string_view input, const char* digest = "SHA256") {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_get_digestbyname(digest), secret.data(), static_cast<int>(secret.size()),
       reinterpret_cast<const unsigned char*>(input.data()), input.size(), out, &len);
  return std::string(reinterpret_cast<char*>(out), len);
}

// A signature of `input` by `key` with a public-key algorithm, in the JOSE form.
std::string sign(EVP_PKEY* key, Algorithm alg, std::string_view input) {
  const bool eddsa = alg == Algorithm::EdDSA;
  const bool pss = alg == Algorithm::PS256;
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  EVP_PKEY_CTX* pctx = nullptr;
  EXPECT_EQ(
      EVP_DigestSignInit_ex(ctx, &pctx, eddsa ? nullptr : "SHA256", nullptr, nullptr, key, nullptr),
      1);
  if (pss) {
    EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING);
    EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST);
  }
  std::size_t len = 0;
  const auto* in = reinterpret_cast<const unsigned char*>(input.data());
  EVP_DigestSign(ctx, nullptr, &len, in, input.size());
  std::string sig(len, '\0');
  EXPECT_EQ(
      EVP_DigestSign(ctx, reinterpret_cast<unsigned char*>(sig.data()), &len, in, input.size()), 1);
  sig.resize(len);
  EVP_MD_CTX_free(ctx);
  if (alg != Algorithm::ES256) return sig;
  // DER ECDSA-Sig-Value → r||s, 32 bytes each.
  const auto* der = reinterpret_cast<const unsigned char*>(sig.data());
  ECDSA_SIG* parsed = d2i_ECDSA_SIG(nullptr, &der, static_cast<long>(sig.size()));
  std::string raw(64, '\0');
  BN_bn2binpad(ECDSA_SIG_get0_r(parsed), reinterpret_cast<unsigned char*>(raw.data()), 32);
  BN_bn2binpad(ECDSA_SIG_get0_s(parsed), reinterpret_cast<unsigned char*>(raw.data()) + 32, 32);
  ECDSA_SIG_free(parsed);
  return raw;
}

std::shared_ptr<jwt::KeySet> key_set(const std::string& jwks, std::string_view secret = {}) {
  auto set = std::make_shared<jwt::KeySet>();
  std::string error;
  EXPECT_TRUE(jwt::add_jwks(*set, jwks, error)) << error;
  if (!secret.empty()) {
    EXPECT_TRUE(jwt::add_secret(*set, secret, error)) << error;
  }
  return set;
}

jwt::Settings all_algorithms() {
  jwt::Settings s;
  for (std::size_t i = 0; i < jwt::kAlgorithmCount; ++i)
    s.algorithms.add(static_cast<Algorithm>(i));
  return s;
}

// ---- base64url and the JSON reader ------------------------------------------------------------

TEST(JwtBase64Url, DecodesUnpaddedAndRefusesEverythingElse) {
  std::string out;
  EXPECT_TRUE(jwt::base64url_decode("", out));
  EXPECT_EQ(out, "");
  EXPECT_TRUE(jwt::base64url_decode("Zm9vYmFy", out));
  EXPECT_EQ(out, "foobar");
  EXPECT_TRUE(jwt::base64url_decode("Zm9vYg", out));
  EXPECT_EQ(out, "foob");
  EXPECT_TRUE(jwt::base64url_decode("_-8", out));
  EXPECT_EQ(out, "\xff\xef");
  EXPECT_FALSE(jwt::base64url_decode("Zm9vYg==", out));  // padding
  EXPECT_FALSE(jwt::base64url_decode("Zm9v+g", out));    // base64, not base64url
  EXPECT_FALSE(jwt::base64url_decode("Zm9vY", out));     // 4k+1 characters
  EXPECT_FALSE(jwt::base64url_decode("Zm9vYh", out));    // unused bits set
  EXPECT_FALSE(jwt::base64url_decode("Zm 9v", out));
}

TEST(JwtJson, ParsesOneObjectStrictly) {
  std::vector<jwt::JsonMember> m;
  ASSERT_TRUE(jwt::parse_object(
      R"( {"a":1, "b":"x\"y", "c":[true,false,null,{"d":-0.5e+3}], "e":{}} )", m));
  ASSERT_EQ(m.size(), 4u);
  EXPECT_EQ(m[0].name, "\"a\"");
  EXPECT_EQ(m[0].value.type, jwt::JsonType::number);
  EXPECT_EQ(m[1].value.text, R"("x\"y")");
  EXPECT_EQ(m[2].value.type, jwt::JsonType::array);
  EXPECT_EQ(m[3].value.type, jwt::JsonType::object);
  for (const char* bad : {"",
                          "[]",
                          "1",
                          "{",
                          "{\"a\":1,}",
                          "{\"a\" 1}",
                          "{a:1}",
                          "{\"a\":01}",
                          "{\"a\":1.}",
                          "{\"a\":.5}",
                          "{\"a\":tru}",
                          "{\"a\":\"\x01\"}",
                          "{\"a\":\"\\x\"}",
                          "{\"a\":\"\\u12\"}",
                          "{\"a\":1} x",
                          "{\"a\":1}{}",
                          "{'a':1}",
                          "{\"a\":[1,]}",
                          "{\"a\":NaN}",
                          "{\"a\":+1}"}) {
    EXPECT_FALSE(jwt::parse_object(bad, m)) << bad;
  }
}

TEST(JwtJson, BoundsNesting) {
  std::string deep = "{\"a\":";
  for (std::size_t i = 0; i < jwt::kMaxJsonDepth; ++i) deep += "[";
  for (std::size_t i = 0; i < jwt::kMaxJsonDepth; ++i) deep += "]";
  deep += "}";
  std::vector<jwt::JsonMember> m;
  EXPECT_FALSE(jwt::parse_object(deep, m));
  std::string ok = "{\"a\":";
  for (std::size_t i = 0; i < jwt::kMaxJsonDepth - 1; ++i) ok += "[";
  for (std::size_t i = 0; i < jwt::kMaxJsonDepth - 1; ++i) ok += "]";
  ok += "}";
  EXPECT_TRUE(jwt::parse_object(ok, m));
}

TEST(JwtJson, DecodesStringsAndFindsMembersByDecodedName) {
  std::string out;
  EXPECT_TRUE(jwt::decode_string(R"("a\u00e9\ud83d\ude00\n\/")", out));
  EXPECT_EQ(out, "a\xc3\xa9\xf0\x9f\x98\x80\n/");
  EXPECT_FALSE(jwt::decode_string(R"("\ud83d")", out));        // lone high surrogate
  EXPECT_FALSE(jwt::decode_string(R"("\ude00")", out));        // lone low surrogate
  EXPECT_FALSE(jwt::decode_string(R"("\ud83d\u0041")", out));  // not a low surrogate
  std::vector<jwt::JsonMember> m;
  ASSERT_TRUE(jwt::parse_object(R"({"\u0061lg":"HS256","b":1,"b":2})", m));
  std::string scratch;
  const auto alg = jwt::find_member(m, "alg", scratch);
  ASSERT_NE(alg.member, nullptr);
  EXPECT_FALSE(alg.duplicate);
  EXPECT_TRUE(jwt::find_member(m, "b", scratch).duplicate);
  EXPECT_EQ(jwt::find_member(m, "c", scratch).member, nullptr);
  jwt::JsonArrayCursor cursor(R"([ "x" , 2,[3]])");
  jwt::JsonValue v;
  std::vector<std::string> seen;
  while (cursor.next(v)) seen.emplace_back(v.text);
  EXPECT_EQ(seen, (std::vector<std::string>{"\"x\"", "2", "[3]"}));
  jwt::JsonArrayCursor empty("[]");
  EXPECT_FALSE(empty.next(v));
}

// ---- RFC 7515 Appendix A and RFC 7520 §4: published examples ---------------------------------

// RFC 7515 A.1-A.3 share this payload: {"iss":"joe",\r\n "exp":1300819380,\r\n
// "http://example.com/is_root":true}.
constexpr std::string_view kA_Payload =
    "eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlf"
    "Q";

constexpr std::string_view kA1_Token =
    "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9."
    "eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ"
    "."
    "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
constexpr std::string_view kA1_Jwks = R"({"keys":[{"kty":"oct",
  "k":"AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow"}]})";

constexpr std::string_view kA2_Signature =
    "cC4hiUPoj9Eetdgtv3hF80EGrhuB__dzERat0XF9g2VtQgr9PJbu3XOiZj5RZmh7AAuHIm4Bh-0Qc_lF5YKt_O8W2Fp5"
    "jujGbds9uJdbF9CUAr7t1dnZcAcQjbKBYNX4BAynRFdiuB--f_nZLgrnbyTyWzO75vRK5h6xBArLIARNPvkSjtQBMHlb1"
    "L07Qe7K0GarZRmB_eSN9383LcOLn6_dO--xi12jzDwusC-eOkHWEsqtFZESc6BfI7noOPqvhJ1phCnvWh6IeYI2w9QOY"
    "EUipUTI8np6LbgGY9Fs98rqVt5AXLIhWkWywlVmtVrBp0igcN_IoypGlUPQGe77Rw";
constexpr std::string_view kA2_Jwks = R"({"keys":[{"kty":"RSA",
  "n":"ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp-Vaw-4qPCJrcS2mJPMEzP1Pt0Bm4d4QlL-yRT-SFd2lZS-pCgNMsD1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpaSHSXndS5z5rexMdbBYUsLA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFvUK-DWNmoudF8NAco9_h9iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQ",
  "e":"AQAB"}]})";

constexpr std::string_view kA3_Signature =
    "DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q";
constexpr std::string_view kA3_Jwks = R"({"keys":[{"kty":"EC","crv":"P-256",
  "x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
  "y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]})";

constexpr int64_t kA_Exp = 1300819380;

Result verify_at(std::string_view token, const std::string_view jwks, int64_t now) {
  const jwt::Verifier verifier(all_algorithms(), key_set(std::string(jwks)));
  jwt::Scratch scratch;
  return verifier.verify(token, at(now), scratch);
}

TEST(JwtRfc7515, AppendixA1Hs256Verifies) {
  EXPECT_EQ(verify_at(kA1_Token, kA1_Jwks, kA_Exp - 100), Result::ok);
  EXPECT_EQ(verify_at(kA1_Token, kA1_Jwks, kA_Exp + 31), Result::expired);
  EXPECT_EQ(verify_at(kA1_Token, kA1_Jwks, kA_Exp + 29), Result::ok);  // the default leeway
}

TEST(JwtRfc7515, AppendixA2Rs256Verifies) {
  const std::string token =
      "eyJhbGciOiJSUzI1NiJ9." + std::string(kA_Payload) + "." + std::string(kA2_Signature);
  EXPECT_EQ(verify_at(token, kA2_Jwks, kA_Exp - 100), Result::ok);
  std::string tampered = token;
  tampered[tampered.size() - 3] = tampered[tampered.size() - 3] == 'A' ? 'B' : 'A';
  EXPECT_EQ(verify_at(tampered, kA2_Jwks, kA_Exp - 100), Result::signature);
}

TEST(JwtRfc7515, AppendixA3Es256Verifies) {
  const std::string token =
      "eyJhbGciOiJFUzI1NiJ9." + std::string(kA_Payload) + "." + std::string(kA3_Signature);
  EXPECT_EQ(verify_at(token, kA3_Jwks, kA_Exp - 100), Result::ok);
  // The same key under the HS256 name is a key of the wrong type.
  const std::string confused =
      "eyJhbGciOiJIUzI1NiJ9." + std::string(kA_Payload) + "." + std::string(kA3_Signature);
  EXPECT_EQ(verify_at(confused, kA3_Jwks, kA_Exp - 100), Result::unknown_key);
}

// RFC 7520 §3: the keys of "bilbo.baggins@hobbiton.example", and §4's payload (not JSON: these
// examples are signatures, so the signature step is what they check).
constexpr std::string_view kR_Payload =
    "SXTigJlzIGEgZGFuZ2Vyb3VzIGJ1c2luZXNzLCBGcm9kbywgZ29pbmcgb3V0IHlvdXIgZG9vci4gWW91IHN0ZXAgb250"
    "byB0aGUgcm9hZCwgYW5kIGlmIHlvdSBkb24ndCBrZWVwIHlvdXIgZmVldCwgdGhlcmXigJlzIG5vIGtub3dpbmcgd2hl"
    "cmUgeW91IG1pZ2h0IGJlIHN3ZXB0IG9mZiB0by4";
constexpr std::string_view kR_Keys = R"({"keys":[
  {"kty":"RSA","kid":"bilbo.baggins@hobbiton.example","use":"sig",
   "n":"n4EPtAOCc9AlkeQHPzHStgAbgs7bTZLwUBZdR8_KuKPEHLd4rHVTeT-O-XV2jRojdNhxJWTDvNd7nqQ0VEiZQHz_AJmSCpMaJMRBSFKrKb2wqVwGU_NsYOYL-QtiWN2lbzcEe6XC0dApr5ydQLrHqkHHig3RBordaZ6Aj-oBHqFEHYpPe7Tpe-OfVfHd1E6cS6M1FZcD1NNLYD5lFHpPI9bTwJlsde3uhGqC0ZCuEHg8lhzwOHrtIQbS0FVbb9k3-tVTU4fg_3L_vniUFAKwuCLqKnS2BYwdq_mzSnbLY7h_qixoR7jig3__kRhuaxwUkRz5iaiQkqgc5gHdrNP5zw",
   "e":"AQAB"},
  {"kty":"EC","kid":"bilbo.baggins@hobbiton.example","use":"sig","crv":"P-521",
   "x":"AHKZLLOsCOzz5cY97ewNUajB957y-C-U88c3v13nmGZx6sYl_oJXu9A5RkTKqjqvjyekWF-7ytDyRXYgCF5cj0Kt",
   "y":"AdymlHvOiLxXkEhayXQnNCvDX4h9htZaCJN34kfmC6pV5OhQHiraVySsUdaQkAgDPrwQrJmbnX9cwlGfP-HqHZR1"},
  {"kty":"oct","kid":"018c0ae5-4d9b-471b-bfd6-eef314bc7037","use":"sig","alg":"HS256",
   "k":"hJtXIZ2uSN5kbQfbtTNWbpdmhkV8FJG-Onbc6mxCcYg"},
  {"kty":"oct","kid":"1e571774-2e08-40da-8308-e8d68773842d","use":"enc","alg":"A256GCM",
   "k":"AAPapAv4LbFbiVawEjagUBluYqN5rhna-8nuldDvOx8"}]})";

struct R7520 {
  const char* section;
  Algorithm alg;
  std::size_t key;  // index in the key set (the encryption key is left out)
  std::string_view header;
  std::string_view signature;
};

TEST(JwtRfc7520, Section4SignaturesVerify) {
  const auto keys = key_set(std::string(kR_Keys));
  ASSERT_EQ(keys->keys.size(), 3u);  // the "use":"enc" key is not a verification key
  const R7520 cases[] = {
      {"4.1 RS256", Algorithm::RS256, 0,
       "eyJhbGciOiJSUzI1NiIsImtpZCI6ImJpbGJvLmJhZ2dpbnNAaG9iYml0b24uZXhhbXBsZSJ9",
       "MRjdkly7_-"
       "oTPTS3AXP41iQIGKa80A0ZmTuV5MEaHoxnW2e5CZ5NlKtainoFmKZopdHM1O2U4mwzJdQx996ivp83xugl"
       "II7PNDi84wnB-BDkoBwA78185hX-Es4JIwmDLJK3lfWRa-XtL0RnltuYv746iYTh_qHRD68BNt1uSNCrUCTJDt5aAE6"
       "x8wW1Kt9eRo4QPocSadnHXFxnt8Is9UzpERV0ePPQdLuW3IS_de3xyIrDaLGdjluPxUAhb6L2aXic1U12podGU0KLUQ"
       "SE_oI-ZnmKJ3F4uOZDnd6QZWJushZ41Axf_fcIe8u9ipH84ogoree7vjbU5y18kDquDg"},
      {"4.2 PS384", Algorithm::PS384, 0,
       "eyJhbGciOiJQUzM4NCIsImtpZCI6ImJpbGJvLmJhZ2dpbnNAaG9iYml0b24uZXhhbXBsZSJ9",
       "cu22eBqkYDKgIlTpzDXGvaFfz6WGoz7fUDcfT0kkOy42miAh2qyBzk1xEsnk2IpN6-tPid6VrklHkqsGqDqHCdP6O8T"
       "TB5dDDItllVo6_1OLPpcbUrhiUSMxbbXUvdvWXzg-UD8biiReQFlfz28zGWVsdiNAUf8ZnyPEgVFn442ZdNqiVJRmBq"
       "rYRXe8P_ijQ7p8Vdz0TTrxUeT3lm8d9shnr2lfJT8ImUjvAA2Xez2Mlp8cBE5awDzT0qI0n6uiP1aCN_2_jLAeQTlqR"
       "Htfa64QQSUmFAAjVKPbByi7xho0uTOcbH510a6GYmJUAfmWjwZ6oD4ifKo8DYM-X72Eaw"},
      {"4.3 ES512", Algorithm::ES512, 1,
       "eyJhbGciOiJFUzUxMiIsImtpZCI6ImJpbGJvLmJhZ2dpbnNAaG9iYml0b24uZXhhbXBsZSJ9",
       "AE_R_YZCChjn4791jSQCrdPZCNYqHXCTZH0-JZGYNlaAjP2kqaluUIIUnC9qvbu9Plon7KRTzoNEuT4Va2cmL1eJAQy"
       "3mtPBu_u_sDDyYjnAMDxXPn7XrT0lw-kvAD890jl8e2puQens_IEKBpHABlsbEPX6sFY8OcGDqoRuBomu9xQ2"},
      {"4.4 HS256", Algorithm::HS256, 2,
       "eyJhbGciOiJIUzI1NiIsImtpZCI6IjAxOGMwYWU1LTRkOWItNDcxYi1iZmQ2LWVlZjMxNGJjNzAzNyJ9",
       "s0h6KThzkfBBBkLspW1h84VsJZFTsPPqMDA7g1Md7p0"},
  };
  jwt::Scratch scratch;
  for (const R7520& c : cases) {
    const std::string input = std::string(c.header) + "." + std::string(kR_Payload);
    const std::string signature = decoded(c.signature);
    const jwt::Key& key = keys->keys[c.key];
    EXPECT_TRUE(jwt::verify_signature(key, c.alg, input, signature, scratch)) << c.section;
    // One byte of the input changed: no longer the signed text.
    std::string other = input;
    other.back() = 'X';
    EXPECT_FALSE(jwt::verify_signature(key, c.alg, other, signature, scratch)) << c.section;
  }
  // RS256 and PS384 signatures are not interchangeable under the same key.
  const std::string input = std::string(cases[0].header) + "." + std::string(kR_Payload);
  EXPECT_FALSE(jwt::verify_signature(keys->keys[0], Algorithm::PS256, input,
                                     decoded(cases[0].signature), scratch));
  // The HS256 key says alg HS256: it verifies nothing else.
  EXPECT_FALSE(keys->keys[2].fits(Algorithm::HS384));
}

// ---- tokens made here, with keys made here ---------------------------------------------------

constexpr int64_t kNow = 1'700'000'000;
constexpr std::string_view kSecret = "0123456789abcdef0123456789abcdef-hs256-secret";

class JwtTokens : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    rsa_ = generate("RSA").release();
    ec_ = generate("EC").release();
    ed_ = generate("ED25519").release();
    jwks_ = R"({"keys":[)" + rsa_jwk(rsa_, "rsa") + "," + ec_jwk(ec_, "ec") + "," +
            ed_jwk(ed_, "ed") + "]}";
  }
  static void TearDownTestSuite() {
    EVP_PKEY_free(rsa_);
    EVP_PKEY_free(ec_);
    EVP_PKEY_free(ed_);
  }

  static std::string default_claims(int64_t now = kNow) {
    return R"({"iss":"https://idp.example","aud":"api","sub":"user-1","exp":)" +
           std::to_string(now + 300) + R"(,"iat":)" + std::to_string(now - 10) + "}";
  }

  // A token of `alg` over `header` and `claims` (JSON texts), signed by this suite's keys.
  static std::string token(Algorithm alg, const std::string& header, const std::string& claims) {
    const std::string input = b64url(header) + "." + b64url(claims);
    std::string sig;
    switch (alg) {
      case Algorithm::HS256:
        sig = hmac(kSecret, input);
        break;
      case Algorithm::RS256:
      case Algorithm::PS256:
        sig = sign(rsa_, alg, input);
        break;
      case Algorithm::ES256:
        sig = sign(ec_, alg, input);
        break;
      case Algorithm::EdDSA:
        sig = sign(ed_, alg, input);
        break;
      default:
        ADD_FAILURE() << "no signer for this algorithm";
    }
    return input + "." + b64url(sig);
  }
  static std::string hs256(const std::string& claims,
                           const std::string& header = R"({"alg":"HS256","typ":"JWT"})") {
    return token(Algorithm::HS256, header, claims);
  }

  jwt::Settings settings() const {
    jwt::Settings s = all_algorithms();
    s.issuer = "https://idp.example";
    s.audiences = {"api"};
    s.required_claims = {"sub"};
    return s;
  }
  Result check(const std::string& token, jwt::Settings s, int64_t now = kNow) {
    const jwt::Verifier verifier(std::move(s), key_set(jwks_, kSecret));
    return verifier.verify(token, at(now), scratch_);
  }
  Result check(const std::string& token) { return check(token, settings()); }

  static EVP_PKEY* rsa_;
  static EVP_PKEY* ec_;
  static EVP_PKEY* ed_;
  static std::string jwks_;
  jwt::Scratch scratch_;
};

EVP_PKEY* JwtTokens::rsa_ = nullptr;
EVP_PKEY* JwtTokens::ec_ = nullptr;
EVP_PKEY* JwtTokens::ed_ = nullptr;
std::string JwtTokens::jwks_;

TEST_F(JwtTokens, EachAlgorithmVerifies) {
  const std::string claims = default_claims();
  EXPECT_EQ(check(hs256(claims)), Result::ok);
  EXPECT_EQ(check(token(Algorithm::RS256, R"({"alg":"RS256","kid":"rsa"})", claims)), Result::ok);
  EXPECT_EQ(check(token(Algorithm::RS256, R"({"alg":"RS256"})", claims)), Result::ok);  // no kid
  EXPECT_EQ(check(token(Algorithm::PS256, R"({"alg":"PS256","kid":"rsa"})", claims)), Result::ok);
  EXPECT_EQ(check(token(Algorithm::ES256, R"({"alg":"ES256","kid":"ec"})", claims)), Result::ok);
  EXPECT_EQ(check(token(Algorithm::EdDSA, R"({"alg":"EdDSA","kid":"ed"})", claims)), Result::ok);
  // PKCS#1 v1.5 and PSS signatures are not interchangeable.
  const std::string rs = token(Algorithm::RS256, R"({"alg":"PS256","kid":"rsa"})", claims);
  EXPECT_EQ(check(rs), Result::signature);
}

struct Case {
  const char* what;
  std::string token;
  Result expected;
};

TEST_F(JwtTokens, EveryRefusalHasItsReason) {
  const std::string iat = R"(,"iat":)" + std::to_string(kNow - 10);
  auto claims = [&](const std::string& extra) {
    return R"({"iss":"https://idp.example","aud":"api","sub":"user-1")" + extra + "}";
  };
  const std::string exp_ok = R"(,"exp":)" + std::to_string(kNow + 300);
  const std::string good = hs256(default_claims());
  const std::string pem = pem_public_key(rsa_);
  const std::string confusion_input =
      b64url(R"({"alg":"HS256","kid":"rsa"})") + "." + b64url(default_claims());
  const std::string confusion_no_kid =
      b64url(R"({"alg":"HS256"})") + "." + b64url(default_claims());
  const std::vector<Case> cases = {
      {"valid", good, Result::ok},
      {"expired", hs256(claims(R"(,"exp":)" + std::to_string(kNow - 31))), Result::expired},
      {"expired within the leeway", hs256(claims(R"(,"exp":)" + std::to_string(kNow - 29))),
       Result::ok},
      {"expired at exactly exp + leeway", hs256(claims(R"(,"exp":)" + std::to_string(kNow - 30))),
       Result::expired},
      {"fractional exp", hs256(claims(R"(,"exp":)" + std::to_string(kNow) + ".5")), Result::ok},
      {"nbf in the future", hs256(claims(exp_ok + R"(,"nbf":)" + std::to_string(kNow + 31))),
       Result::not_yet_valid},
      {"nbf within the leeway", hs256(claims(exp_ok + R"(,"nbf":)" + std::to_string(kNow + 29))),
       Result::ok},
      {"iat in the future", hs256(claims(exp_ok + R"(,"iat":)" + std::to_string(kNow + 60))),
       Result::not_yet_valid},
      {"exp not a number", hs256(claims(R"(,"exp":"soon")")), Result::malformed},
      {"no exp at all", hs256(claims(iat)), Result::ok},
      {"wrong issuer",
       hs256(R"({"iss":"https://evil.example","aud":"api","sub":"u")" + exp_ok + "}"),
       Result::issuer},
      {"no issuer", hs256(R"({"aud":"api","sub":"u")" + exp_ok + "}"), Result::issuer},
      {"issuer of another type", hs256(R"({"iss":1,"aud":"api","sub":"u"})"), Result::issuer},
      {"wrong audience",
       hs256(R"({"iss":"https://idp.example","aud":"web","sub":"u")" + exp_ok + "}"),
       Result::audience},
      {"audience array holding ours",
       hs256(R"({"iss":"https://idp.example","aud":["web","api"],"sub":"u"})"), Result::ok},
      {"audience array without ours",
       hs256(R"({"iss":"https://idp.example","aud":["web",7],"sub":"u"})"), Result::audience},
      {"audience not a string", hs256(R"({"iss":"https://idp.example","aud":7,"sub":"u"})"),
       Result::audience},
      {"missing required claim", hs256(R"({"iss":"https://idp.example","aud":"api"})"),
       Result::missing_claim},
      {"required claim null", hs256(R"({"iss":"https://idp.example","aud":"api","sub":null})"),
       Result::missing_claim},
      {"duplicate claim", hs256(claims(exp_ok + exp_ok)), Result::malformed},
      {"alg none", b64url(R"({"alg":"none"})") + "." + b64url(default_claims()) + ".",
       Result::algorithm},
      {"alg unknown", hs256(default_claims(), R"({"alg":"HS999"})"), Result::algorithm},
      {"alg missing", hs256(default_claims(), R"({"typ":"JWT"})"), Result::malformed},
      {"alg not a string", hs256(default_claims(), R"({"alg":256})"), Result::malformed},
      {"crit header", hs256(default_claims(), R"({"alg":"HS256","crit":["exp"]})"),
       Result::malformed},
      {"RS256 -> HS256 with the RSA key's kid",
       confusion_input + "." + b64url(hmac(pem, confusion_input)), Result::algorithm},
      {"RS256 -> HS256 without a kid", confusion_no_kid + "." + b64url(hmac(pem, confusion_no_kid)),
       Result::signature},
      {"unknown kid", hs256(default_claims(), R"({"alg":"HS256","kid":"nope"})"),
       Result::unknown_key},
      {"kid not a string", hs256(default_claims(), R"({"alg":"HS256","kid":1})"),
       Result::malformed},
      {"two parts", good.substr(0, good.rfind('.')), Result::malformed},
      {"four parts", good + ".x", Result::malformed},
      {"truncated signature", good.substr(0, good.size() - 3), Result::signature},
      {"signature cut to 4k+1 characters", good.substr(0, good.size() - 2), Result::malformed},
      {"empty header", good.substr(good.find('.')), Result::malformed},
      {"bad base64url", "eyJhbGciOiJIUzI1NiJ9*." + good.substr(good.find('.') + 1),
       Result::malformed},
      {"padded base64", good.substr(0, good.find('.')) + "==" + good.substr(good.find('.')),
       Result::malformed},
      {"header not JSON", b64url("not json") + good.substr(good.find('.')), Result::malformed},
      {"header not an object", b64url("[\"HS256\"]") + good.substr(good.find('.')),
       Result::malformed},
      {"claims not JSON", hs256("{\"sub\":"), Result::malformed},
      {"claims not an object", hs256("[1,2,3]"), Result::malformed},
      {"garbage", "...", Result::malformed},
      {"empty", "", Result::malformed},
  };
  for (const Case& c : cases) EXPECT_EQ(check(c.token), c.expected) << c.what;
}

TEST_F(JwtTokens, SignatureTamperingIsCaught) {
  const std::string good = hs256(default_claims());
  // The claims of another token under this token's signature.
  const std::string other = hs256(R"({"iss":"https://idp.example","aud":"api","sub":"admin"})");
  const std::string spliced = good.substr(0, good.find('.')) +
                              other.substr(other.find('.'), other.rfind('.') - other.find('.')) +
                              good.substr(good.rfind('.'));
  EXPECT_EQ(check(spliced), Result::signature);
}

TEST_F(JwtTokens, AlgorithmsOutsideTheRoutesListAreRefused) {
  jwt::Settings s = settings();
  s.algorithms = {};
  s.algorithms.add(Algorithm::RS256);
  EXPECT_EQ(check(hs256(default_claims()), s), Result::algorithm);
  EXPECT_EQ(check(token(Algorithm::RS256, R"({"alg":"RS256","kid":"rsa"})", default_claims()), s),
            Result::ok);
}

TEST_F(JwtTokens, OversizedTokensAreMalformed) {
  jwt::Settings s = settings();
  const std::string good = hs256(default_claims());
  s.max_token_bytes = good.size();
  EXPECT_EQ(check(good, s), Result::ok);
  s.max_token_bytes = good.size() - 1;
  EXPECT_EQ(check(good, s), Result::malformed);
}

TEST_F(JwtTokens, NoKeyFitsGivesUnknownKey) {
  // Only the RSA key: an HS256 token without a kid has no key to be checked with.
  const jwt::Verifier verifier(settings(), key_set(R"({"keys":[)" + rsa_jwk(rsa_, "rsa") + "]}"));
  EXPECT_EQ(verifier.verify(hs256(default_claims()), at(kNow), scratch_), Result::unknown_key);
}

TEST_F(JwtTokens, ManyHmacKeysShareTheThreadsContexts) {
  // More keys than the scratch keeps HMAC contexts for: each still verifies, again and again.
  std::vector<std::shared_ptr<jwt::KeySet>> sets;
  std::vector<std::string> secrets;
  for (int i = 0; i < 12; ++i) {
    secrets.push_back(std::string(40, static_cast<char>('a' + i)));
    auto set = std::make_shared<jwt::KeySet>();
    std::string error;
    ASSERT_TRUE(jwt::add_secret(*set, secrets.back(), error));
    sets.push_back(set);
  }
  for (int round = 0; round < 3; ++round) {
    for (std::size_t i = 0; i < sets.size(); ++i) {
      const std::string input = b64url(R"({"alg":"HS256"})") + "." + b64url(R"({"sub":"x"})");
      const std::string t = input + "." + b64url(hmac(secrets[i], input));
      const jwt::Verifier verifier(all_algorithms(), sets[i]);
      EXPECT_EQ(verifier.verify(t, at(kNow), scratch_), Result::ok) << i;
      const jwt::Verifier other(all_algorithms(), sets[(i + 1) % sets.size()]);
      EXPECT_EQ(other.verify(t, at(kNow), scratch_), Result::signature) << i;
    }
  }
}

// A memo that records what the verifier asks and remembers.
class RecordingMemo final : public jwt::SignatureMemo {
 public:
  bool known(std::string_view token) const override {
    asked.emplace_back(token);
    return std::find(remembered.begin(), remembered.end(), token) != remembered.end();
  }
  void remember(std::string_view token, std::optional<Duration> valid_for) const override {
    remembered.emplace_back(token);
    last_valid_for = valid_for;
  }
  mutable std::vector<std::string> asked;
  mutable std::vector<std::string> remembered;
  mutable std::optional<Duration> last_valid_for;
};

TEST_F(JwtTokens, AMemoSparesTheSignatureOfAKnownPublicKeyTokenButNotTheClaims) {
  const jwt::Verifier verifier(settings(), key_set(jwks_, kSecret));
  RecordingMemo memo;
  const std::string es = token(Algorithm::ES256, R"({"alg":"ES256","kid":"ec"})", default_claims());
  EXPECT_EQ(verifier.verify(es, at(kNow), scratch_, &memo), Result::ok);
  ASSERT_EQ(memo.remembered, std::vector<std::string>{es});
  EXPECT_EQ(memo.last_valid_for, std::chrono::seconds(300));  // exp - now
  EXPECT_EQ(verifier.verify(es, at(kNow), scratch_, &memo), Result::ok);
  EXPECT_EQ(memo.remembered.size(), 1u);  // known: not remembered again
  // What the memo knows is trusted for the signature only: the claims are still checked at
  // every request, and so are the header and the algorithm.
  EXPECT_EQ(verifier.verify(es, at(kNow + 400), scratch_, &memo), Result::expired);
  const std::string alg_swapped =
      token(Algorithm::ES256, R"({"alg":"HS256","kid":"ec"})", default_claims());
  memo.remembered.push_back(alg_swapped);
  EXPECT_EQ(verifier.verify(alg_swapped, at(kNow), scratch_, &memo), Result::algorithm);
  // HMAC tokens never consult it.
  memo.asked.clear();
  EXPECT_EQ(verifier.verify(hs256(default_claims()), at(kNow), scratch_, &memo), Result::ok);
  EXPECT_TRUE(memo.asked.empty());
  // A refused token is not remembered.
  memo.remembered.clear();
  const std::string wrong_aud = token(Algorithm::RS256, R"({"alg":"RS256","kid":"rsa"})",
                                      R"({"iss":"https://idp.example","aud":"web","sub":"u"})");
  EXPECT_EQ(verifier.verify(wrong_aud, at(kNow), scratch_, &memo), Result::audience);
  EXPECT_TRUE(memo.remembered.empty());
  // A token without exp is remembered without a time bound of its own.
  const std::string no_exp = token(Algorithm::EdDSA, R"({"alg":"EdDSA","kid":"ed"})",
                                   R"({"iss":"https://idp.example","aud":"api","sub":"u"})");
  EXPECT_EQ(verifier.verify(no_exp, at(kNow), scratch_, &memo), Result::ok);
  EXPECT_EQ(memo.remembered, std::vector<std::string>{no_exp});
  EXPECT_EQ(memo.last_valid_for, std::nullopt);
}

// ---- key sets ------------------------------------------------------------------------------

std::string load_error(const std::string& jwks) {
  jwt::KeySet set;
  std::string error;
  EXPECT_FALSE(jwt::add_jwks(set, jwks, error)) << jwks;
  return error;
}

TEST(JwtKeys, BadKeySetsNameTheKey) {
  EXPECT_EQ(load_error("{"), "not valid JSON");
  EXPECT_EQ(load_error("[]"), R"(expected a JWK Set: {"keys": [...]})");
  EXPECT_EQ(load_error(R"({"keys":[]})"), "no signature verification key in the set");
  const std::string a1 =
      R"({"kty":"oct","k":"AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow"})";
  EXPECT_EQ(load_error(R"({"keys":[)" + a1 + R"(,{"kty":"XYZ"}]})"),
            "keys[1]: kty 'XYZ' is not supported (RSA, EC, OKP, oct)");
  EXPECT_EQ(load_error(R"({"keys":[{"kty":"oct","k":"c2hvcnQ"}]})"),
            "keys[0]: an HMAC key of 5 bytes; at least 32 are required");
  EXPECT_EQ(
      load_error(
          R"({"keys":[{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU"}]})"),
      "keys[0]: missing 'y'");
  EXPECT_EQ(load_error(R"({"keys":[{"kty":"EC","crv":"P-192","x":"AA","y":"AA"}]})"),
            "keys[0]: EC curve 'P-192' is not supported (P-256, P-384, P-521)");
  // A point that is not on the curve (A.3's x with y changed).
  EXPECT_NE(
      load_error(
          R"({"keys":[{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"y_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]})")
          .find("keys[0]: not a valid P-256 public key"),
      std::string::npos);
  EXPECT_EQ(load_error(R"({"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB"}]})"),
            "keys[0]: RSA key of 17 bits; at least 2048 are required");
  EXPECT_NE(load_error(R"({"keys":[{"kty":"EC","crv":"P-256","d":"AA","x":"AA","y":"AA"}]})")
                .find("private key material ('d')"),
            std::string::npos);
  EXPECT_EQ(
      load_error(
          R"({"keys":[{"kty":"oct","alg":"RS256","k":"AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow"}]})"),
      "keys[0]: 'alg' RS256 does not match the key's type");
  EXPECT_EQ(load_error(R"({"keys":[{"kty":"oct","k":"not base64!"}]})"),
            "keys[0]: 'k' is not unpadded base64url");
}

TEST(JwtKeys, SecretsHaveAFloorAndKeysForOtherUsesAreLeftOut) {
  jwt::KeySet set;
  std::string error;
  EXPECT_FALSE(jwt::add_secret(set, "short", error));
  EXPECT_NE(error.find("at least 32"), std::string::npos);
  EXPECT_TRUE(jwt::add_jwks(set,
                            R"({"keys":[{"kty":"oct","use":"enc","k":"AA"},
                                {"kty":"oct","key_ops":["sign"],"k":"AA"},
                                {"kty":"oct","key_ops":["verify"],"kid":"v",
                                 "k":"hJtXIZ2uSN5kbQfbtTNWbpdmhkV8FJG-Onbc6mxCcYg"}]})",
                            error))
      << error;
  ASSERT_EQ(set.keys.size(), 1u);
  EXPECT_EQ(set.keys[0].kid, "v");
  EXPECT_TRUE(set.can_verify(Algorithm::HS512));
  EXPECT_FALSE(set.can_verify(Algorithm::RS256));
  EXPECT_EQ(jwt::parse_algorithm("none"), std::nullopt);
  EXPECT_EQ(jwt::parse_algorithm("EdDSA"), Algorithm::EdDSA);
  EXPECT_EQ(jwt::algorithm_name(Algorithm::PS384), "PS384");
}

// ---- the filter ----------------------------------------------------------------------------

SysTime fixed_now() noexcept { return at(kNow); }

class JwtFilterTest : public JwtTokens {
 protected:
  config::JwtSpec spec() const {
    config::JwtSpec s;
    s.issuer = "https://idp.example";
    s.audiences = {"api"};
    s.algorithms = {"HS256", "RS256"};
    s.required_claims = {"sub"};
    s.forward_claims = {{"sub", "X-User-Id"}, {"admin", "X-Admin"}, {"n", "X-N"}};
    s.cookie = "session";
    s.keys = key_set(jwks_, kSecret);
    return s;
  }

  // Runs one request with `headers` through a chain holding the filter.
  // A chain holding the filter; it outlives the replies (a reply's header values live in the
  // filter, as they live in the snapshot in the gateway).
  filter::FilterChain& chain(const config::JwtSpec& s) {
    chains_.push_back(std::make_unique<filter::FilterChain>());
    AuthCounters counters{};
    for (std::size_t i = 0; i < counters.size(); ++i) counters[i] = &counts_[i];
    chains_.back()->add(std::make_unique<JwtFilter>(s, "api", counters, &fixed_now));
    return *chains_.back();
  }

  // Runs one request with `headers` through `c`.
  filter::LocalReply run_on(const filter::FilterChain& c, std::vector<filter::HeaderLine> headers,
                            bool has_body = false) {
    filter::ChainRun walk;
    walk.begin(nullptr, &c);
    edits_.clear();
    headers_ = std::move(headers);
    filter::RequestInfo request;
    request.headers = headers_;
    request.has_body = has_body;
    request.edits = &edits_;
    const filter::LocalReply reply = walk.on_request(request);
    walk.complete({reply.status, reply.reason, {}});
    return reply;
  }

  // Runs one request through a new chain holding a filter built from `s`.
  filter::LocalReply run(const config::JwtSpec& s, std::vector<filter::HeaderLine> headers,
                         bool has_body = false) {
    return run_on(chain(s), std::move(headers), has_body);
  }

  std::vector<std::string> removed() const {
    std::vector<std::string> out;
    for (std::string_view name : edits_.removed()) out.emplace_back(name);
    return out;
  }
  std::vector<std::pair<std::string, std::string>> added() const {
    std::vector<std::pair<std::string, std::string>> out;
    for (const auto& line : edits_.added()) out.emplace_back(line.name, line.value);
    return out;
  }
  double count(Result r) const { return counts_[static_cast<std::size_t>(r)].value(); }

  std::array<bulwark::observe::Counter, jwt::kResultCount> counts_;
  std::vector<std::unique_ptr<filter::FilterChain>> chains_;
  filter::UpstreamEdits edits_;
  std::vector<filter::HeaderLine> headers_;
};

TEST_F(JwtFilterTest, NoTokenIs401WithAChallenge) {
  const filter::LocalReply reply = run(spec(), {{"Accept", "*/*"}});
  EXPECT_EQ(reply.status, 401);
  EXPECT_EQ(reply.reason, reason::kJwtMissing);
  ASSERT_EQ(reply.extra_count, 1u);
  EXPECT_EQ(reply.extra[0].name, "WWW-Authenticate");
  EXPECT_EQ(reply.extra[0].value, "Bearer realm=\"api\"");
  EXPECT_FALSE(reply.close);
  // Another scheme is no Bearer token; a request whose body was not read closes its connection.
  const filter::LocalReply basic = run(spec(), {{"Authorization", "Basic dXNlcjpwYXNz"}}, true);
  EXPECT_EQ(basic.status, 401);
  EXPECT_TRUE(basic.close);
  EXPECT_EQ(count(Result::missing), 2);
}

TEST_F(JwtFilterTest, AVerifiedTokenGoesUpstreamAsClaimsWithoutTheToken) {
  const std::string t =
      hs256(R"({"iss":"https://idp.example","aud":"api","sub":"user-1","admin":true,"n":42.5})");
  const filter::LocalReply reply =
      run(spec(),
          {{"authorization", "bearer  " + t + " "}, {"X-User-Id", "spoofed"}, {"X-Other", "1"}});
  EXPECT_FALSE(reply) << reply.reason;
  EXPECT_EQ(removed(), (std::vector<std::string>{"authorization", "x-user-id", "x-admin", "x-n"}));
  EXPECT_EQ(added(), (std::vector<std::pair<std::string, std::string>>{
                         {"X-User-Id", "user-1"}, {"X-Admin", "true"}, {"X-N", "42.5"}}));
  EXPECT_EQ(count(Result::ok), 1);
}

TEST_F(JwtFilterTest, ClientHeadersOfForwardedNamesAreRemovedEvenWithoutTheClaim) {
  const std::string t = hs256(R"({"iss":"https://idp.example","aud":"api","sub":"u"})");
  ASSERT_FALSE(run(spec(), {{"Authorization", "Bearer " + t}, {"X-Admin", "true"}}));
  EXPECT_EQ(removed(), (std::vector<std::string>{"authorization", "x-user-id", "x-admin", "x-n"}));
  EXPECT_EQ(added(), (std::vector<std::pair<std::string, std::string>>{{"X-User-Id", "u"}}));
}

TEST_F(JwtFilterTest, TheUpstreamHeadCarriesTheClaimAndNeitherTheTokenNorTheSpoof) {
  // The edits as the exchange writes them (http/head_writer.h): the seam end to end.
  const std::string t = hs256(default_claims());
  const std::string authorization = "Bearer " + t;
  ASSERT_FALSE(run(spec(), {{"Host", "a.test"},
                            {"Authorization", authorization},
                            {"x-USER-id", "forged"},
                            {"Cookie", "session=abc"}}));
  http::UpstreamRequestHead head;
  head.method = "GET";
  head.path = "/";
  head.fields = headers_;
  head.client_ip = "127.0.0.1";
  head.request_id = "id";
  head.added = edits_.added();
  head.removed = edits_.removed();
  std::string out;
  std::vector<std::string_view> tokens;
  http::append_request_head(out, head, tokens);
  EXPECT_EQ(out,
            "GET / HTTP/1.1\r\nHost: a.test\r\nCookie: session=abc\r\n"
            "x-forwarded-for: 127.0.0.1\r\nx-forwarded-proto: http\r\n"
            "x-request-id: id\r\nX-User-Id: user-1\r\n\r\n");
}

TEST_F(JwtFilterTest, StripTokenFalseKeepsTheAuthorizationLine) {
  config::JwtSpec s = spec();
  s.strip_token = false;
  s.forward_claims.clear();
  const std::string t = hs256(default_claims());
  ASSERT_FALSE(run(s, {{"Authorization", "Bearer " + t}}));
  EXPECT_TRUE(removed().empty());
  EXPECT_TRUE(added().empty());
}

TEST_F(JwtFilterTest, TheCookieIsReadAndStrippedWhileTheOtherCookiesGoOn) {
  const std::string t = hs256(default_claims());
  ASSERT_FALSE(
      run(spec(), {{"Cookie", "theme=dark; session=" + t + "; lang=en"}, {"Cookie", "extra=1"}}));
  EXPECT_EQ(removed(), (std::vector<std::string>{"cookie", "x-user-id", "x-admin", "x-n"}));
  const auto lines = added();
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0],
            (std::pair<std::string, std::string>{"Cookie", "theme=dark; lang=en; extra=1"}));
  EXPECT_EQ(lines[1], (std::pair<std::string, std::string>{"X-User-Id", "user-1"}));
  // A quoted cookie value, and a Bearer header that wins over the cookie.
  ASSERT_FALSE(run(spec(), {{"Cookie", "session=\"" + t + "\""}}));
  EXPECT_EQ(added().size(), 1u);  // no other cookie: no Cookie line
  ASSERT_FALSE(run(spec(), {{"Authorization", "Bearer " + t}, {"Cookie", "session=junk"}}));
  EXPECT_EQ(removed()[0], "authorization");
}

TEST_F(JwtFilterTest, BadTokensAre403WithTheirReason) {
  struct Bad {
    std::vector<std::pair<std::string, std::string>> headers;
    std::string_view reason;
  };
  const std::string good = hs256(default_claims());
  const std::string expired = hs256(R"({"iss":"https://idp.example","aud":"api","sub":"u","exp":)" +
                                    std::to_string(kNow - 60) + "}");
  const std::string object_claim =
      hs256(R"({"iss":"https://idp.example","aud":"api","sub":{"id":1}})");
  const std::string newline_claim =
      hs256(R"({"iss":"https://idp.example","aud":"api","sub":"a\r\nX-Admin: true"})");
  const std::vector<Bad> cases = {
      {{{"Authorization", "Bearer " + expired}}, reason::kJwtExpired},
      {{{"Authorization", "Bearer"}}, reason::kJwtMalformed},
      {{{"Authorization", "Bearer " + good}, {"Authorization", "Bearer " + good}},
       reason::kJwtMalformed},
      {{{"Authorization", "Bearer not.a.token"}}, reason::kJwtMalformed},
      {{{"Cookie", "session=abc"}}, reason::kJwtMalformed},
      {{{"Authorization", "Bearer " + object_claim}}, reason::kJwtMalformed},
      {{{"Authorization", "Bearer " + newline_claim}}, reason::kJwtMalformed},
  };
  for (const Bad& b : cases) {
    std::vector<filter::HeaderLine> headers;
    for (const auto& [name, value] : b.headers) headers.push_back({name, value});
    const filter::LocalReply reply = run(spec(), headers);
    EXPECT_EQ(reply.status, 403) << b.reason;
    EXPECT_EQ(reply.reason, b.reason);
    EXPECT_EQ(reply.extra_count, 0u);
  }
  EXPECT_EQ(count(Result::expired), 1);
  EXPECT_EQ(count(Result::malformed), 6);
}

TEST_F(JwtFilterTest, WhatDoesNotFitTheRequestsHeaderEditsIsRefused) {
  // The other cookies, sent on without the token, are larger than the edits' storage: 431.
  const std::string t = hs256(default_claims());
  const std::string big(filter::UpstreamEdits::kStorageBytes, 'x');
  const std::string cookies = "big=" + big + "; session=" + t;
  const filter::LocalReply cookie = run(spec(), {{"Cookie", cookies}}, true);
  EXPECT_EQ(cookie.status, 431);
  EXPECT_EQ(cookie.reason, reason::kHeadersTooLarge);
  EXPECT_TRUE(cookie.close);
  EXPECT_EQ(count(Result::ok), 1);  // the token itself was good
  // A claim too long to be forwarded: the route's contract (X-User-Id is the verified sub)
  // cannot be kept, so the request is refused.
  const std::string long_sub =
      hs256(R"({"iss":"https://idp.example","aud":"api","sub":")" + big + R"(y"})");
  const std::string authorization = "Bearer " + long_sub;
  const filter::LocalReply claim = run(spec(), {{"Authorization", authorization}});
  EXPECT_EQ(claim.status, 403);
  EXPECT_EQ(claim.reason, reason::kJwtMalformed);
}

TEST_F(JwtFilterTest, APublicKeyTokenSeenAgainIsStillCheckedForEverythingButItsSignature) {
  const std::string t = token(Algorithm::RS256, R"({"alg":"RS256","kid":"rsa"})", default_claims());
  const std::string authorization = "Bearer " + t;
  const filter::FilterChain& c = chain(spec());  // one filter: one cache of verified tokens
  for (int i = 0; i < 3; ++i) {
    EXPECT_FALSE(run_on(c, {{"Authorization", authorization}})) << i;
    EXPECT_EQ(added().size(), 1u);  // the claims are read every time
  }
  // The same header and claims under another signature are another token text: checked.
  std::string forged = t;
  forged[forged.size() - 5] = forged[forged.size() - 5] == 'A' ? 'B' : 'A';
  const std::string forged_authorization = "Bearer " + forged;
  EXPECT_EQ(run_on(c, {{"Authorization", forged_authorization}}).reason, reason::kJwtSignature);
  EXPECT_EQ(count(Result::ok), 3);
}

TEST_F(JwtFilterTest, AnEmptyCookieIsNoToken) {
  EXPECT_EQ(run(spec(), {{"Cookie", "session=; other=1"}}).status, 401);
}

TEST(JwtFilterPure, FindsTheToken) {
  using From = TokenFound::From;
  const std::vector<filter::HeaderLine> h1 = {{"AUTHORIZATION", "BeArEr abc.def.ghi"}};
  EXPECT_EQ(find_token(h1, "").from, From::header);
  EXPECT_EQ(find_token(h1, "").token, "abc.def.ghi");
  const std::vector<filter::HeaderLine> h2 = {{"Cookie", "a=1;b=2 ; tok = x.y.z ;c"}};
  EXPECT_EQ(find_token(h2, "tok").token, "x.y.z");
  EXPECT_EQ(find_token(h2, "").from, From::none);
  EXPECT_EQ(find_token(h2, "nope").from, From::none);
  std::string rest;
  cookies_without(h2, "tok", rest);
  EXPECT_EQ(rest, "a=1; b=2");
}

TEST(JwtFilterPure, ClaimsBecomeHeaderValuesOrNothing) {
  std::string out;
  EXPECT_EQ(claim_header_value({jwt::JsonType::string, R"("caf\u00e9")"}, out), ClaimText::ok);
  EXPECT_EQ(out, "caf\xc3\xa9");
  EXPECT_EQ(claim_header_value({jwt::JsonType::number, "-1e3"}, out), ClaimText::ok);
  EXPECT_EQ(out, "-1e3");
  EXPECT_EQ(claim_header_value({jwt::JsonType::boolean, "false"}, out), ClaimText::ok);
  EXPECT_EQ(claim_header_value({jwt::JsonType::null, "null"}, out), ClaimText::absent);
  EXPECT_EQ(claim_header_value({jwt::JsonType::array, "[1]"}, out), ClaimText::unusable);
  EXPECT_EQ(claim_header_value({jwt::JsonType::string, R"("a\u0000b")"}, out), ClaimText::unusable);
}

TEST(JwtFilterBinding, NoAuthNoFilterAndEveryResultHasASeries) {
  bulwark::observe::Registry registry;
  observe::GatewayMetrics metrics(registry);
  config::Route route;
  route.name = "api";
  EXPECT_EQ(bind_jwt(route, metrics.route("api")), nullptr);
  config::JwtSpec spec;
  spec.algorithms = {"HS256"};
  spec.keys = key_set(std::string(kA1_Jwks));
  route.auth.jwt = spec;
  EXPECT_NE(bind_jwt(route, metrics.route("api")), nullptr);
  for (std::size_t i = 0; i < jwt::kResultCount; ++i) {
    EXPECT_EQ(metrics.route("api").auth_result(jwt::result_name(static_cast<Result>(i))).value(),
              0);
  }
  EXPECT_EQ(jwt::result_name(Result::not_yet_valid), "jwt_not_yet_valid");
}

}  // namespace
}  // namespace bulwark::gateway::filters
