// Micro-benchmarks of the gateway's JWT authentication (gateway/src/filters/jwt), side by side:
//   BM_Jwt_Chain_NoAuth        a route's request chain walked by one request, no filter in it
//                              (the baseline: what an unchecked request pays for the chain)
//   BM_Jwt_Chain_Hs256         the same chain holding the JWT filter, the request carrying an
//                              HS256 token (Authorization: Bearer, iss/aud/sub/exp/iat claims,
//                              sub forwarded as X-User-Id, the token stripped): the difference
//                              is what authentication adds to a request
//   BM_Jwt_Chain_Es256         the same with an ES256 token sent again and again: the filter's
//                              cache of verified tokens spares the signature check, every
//                              other step runs
//   BM_Jwt_Verify_<alg>        the decision alone (jwt::Verifier::verify, no cache) for HS256,
//                              RS256 (2048-bit), ES256 and EdDSA tokens
// Each JWT benchmark reports `openssl_allocs`: OpenSSL's own allocations per iteration, counted
// through CRYPTO_set_mem_functions (OpenSSL 3.0's HMAC re-initialisation allocates inside the
// library; the gateway's code allocates nothing for HS256 once its per-thread scratch is warm).
// Keys are made once with OpenSSL; time is fixed.
#include <benchmark/benchmark.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rsa.h>

#include <atomic>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "filter/chain.h"
#include "filters/jwt/jwt.h"
#include "filters/jwt/keys.h"
#include "filters/jwt/verify.h"

namespace {

namespace jwt = bulwark::gateway::filters::jwt;
namespace filter = bulwark::gateway::filter;
using SysTime = std::chrono::system_clock::time_point;

// ---- OpenSSL's allocations, counted ---------------------------------------------------------

std::atomic<uint64_t> openssl_allocs{0};

void* counting_malloc(size_t n, const char*, int) {
  openssl_allocs.fetch_add(1, std::memory_order_relaxed);
  return std::malloc(n);
}
void* counting_realloc(void* p, size_t n, const char*, int) {
  openssl_allocs.fetch_add(1, std::memory_order_relaxed);
  return std::realloc(p, n);
}
void counting_free(void* p, const char*, int) { std::free(p); }

// Installed before main, before OpenSSL allocates anything (it refuses once it has).
const bool counting_installed =
    CRYPTO_set_mem_functions(counting_malloc, counting_realloc, counting_free) == 1;

// ---- tokens -------------------------------------------------------------------------------------

constexpr int64_t kNow = 1'700'000'000;
constexpr std::string_view kSecret = "an-hs256-secret-of-at-least-32-bytes!";

SysTime fixed_now() noexcept { return SysTime(std::chrono::seconds(kNow)); }

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

std::string bn_bytes(EVP_PKEY* key, const char* name, int pad = 0) {
  BIGNUM* bn = nullptr;
  EVP_PKEY_get_bn_param(key, name, &bn);
  std::string out(static_cast<std::size_t>(pad > 0 ? pad : BN_num_bytes(bn)), '\0');
  BN_bn2binpad(bn, reinterpret_cast<unsigned char*>(out.data()), static_cast<int>(out.size()));
  BN_free(bn);
  return out;
}

const std::string kClaims = R"({"iss":"https://idp.example","aud":"api","sub":"user-1234",)"
                            R"("exp":)" +
                            std::to_string(kNow + 3600) + R"(,"iat":)" + std::to_string(kNow - 60) +
                            "}";

struct Fixture {
  EVP_PKEY* rsa = EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", static_cast<size_t>(2048));
  EVP_PKEY* ec = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
  EVP_PKEY* ed = EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519");
  std::shared_ptr<jwt::KeySet> keys = std::make_shared<jwt::KeySet>();
  std::string hs256, rs256, es256, eddsa;

  Fixture() {
    std::string raw(32, '\0');
    std::size_t len = raw.size();
    EVP_PKEY_get_raw_public_key(ed, reinterpret_cast<unsigned char*>(raw.data()), &len);
    const std::string jwks =
        R"({"keys":[{"kty":"RSA","kid":"rsa","n":")" + b64url(bn_bytes(rsa, "n")) + R"(","e":")" +
        b64url(bn_bytes(rsa, "e")) + R"("},{"kty":"EC","crv":"P-256","kid":"ec",)" + R"("x":")" +
        b64url(bn_bytes(ec, OSSL_PKEY_PARAM_EC_PUB_X, 32)) + R"(","y":")" +
        b64url(bn_bytes(ec, OSSL_PKEY_PARAM_EC_PUB_Y, 32)) +
        R"("},{"kty":"OKP","crv":"Ed25519","kid":"ed","x":")" + b64url(raw) + R"("}]})";
    std::string error;
    if (!jwt::add_jwks(*keys, jwks, error) || !jwt::add_secret(*keys, kSecret, error)) {
      std::abort();
    }
    hs256 = token(R"({"alg":"HS256","typ":"JWT"})", nullptr, "SHA256");
    rs256 = token(R"({"alg":"RS256","kid":"rsa"})", rsa, "SHA256");
    es256 = token(R"({"alg":"ES256","kid":"ec"})", ec, "SHA256");
    eddsa = token(R"({"alg":"EdDSA","kid":"ed"})", ed, nullptr);
  }

  std::string token(const std::string& header, EVP_PKEY* key, const char* digest) const {
    const std::string input = b64url(header) + "." + b64url(kClaims);
    std::string sig;
    if (key == nullptr) {
      unsigned char mac[EVP_MAX_MD_SIZE];
      unsigned int n = 0;
      HMAC(EVP_sha256(), kSecret.data(), static_cast<int>(kSecret.size()),
           reinterpret_cast<const unsigned char*>(input.data()), input.size(), mac, &n);
      sig.assign(reinterpret_cast<char*>(mac), n);
    } else {
      EVP_MD_CTX* ctx = EVP_MD_CTX_new();
      EVP_DigestSignInit_ex(ctx, nullptr, digest, nullptr, nullptr, key, nullptr);
      std::size_t n = 0;
      const auto* in = reinterpret_cast<const unsigned char*>(input.data());
      EVP_DigestSign(ctx, nullptr, &n, in, input.size());
      sig.resize(n);
      EVP_DigestSign(ctx, reinterpret_cast<unsigned char*>(sig.data()), &n, in, input.size());
      sig.resize(n);
      EVP_MD_CTX_free(ctx);
      if (key == ec) {  // DER → r||s
        const auto* der = reinterpret_cast<const unsigned char*>(sig.data());
        ECDSA_SIG* parsed = d2i_ECDSA_SIG(nullptr, &der, static_cast<long>(sig.size()));
        std::string rs(64, '\0');
        BN_bn2binpad(ECDSA_SIG_get0_r(parsed), reinterpret_cast<unsigned char*>(rs.data()), 32);
        BN_bn2binpad(ECDSA_SIG_get0_s(parsed), reinterpret_cast<unsigned char*>(rs.data()) + 32,
                     32);
        ECDSA_SIG_free(parsed);
        sig = rs;
      }
    }
    return input + "." + b64url(sig);
  }

  jwt::Settings settings() const {
    jwt::Settings s;
    for (std::size_t i = 0; i < jwt::kAlgorithmCount; ++i) {
      s.algorithms.add(static_cast<jwt::Algorithm>(i));
    }
    s.issuer = "https://idp.example";
    s.audiences = {"api"};
    s.required_claims = {"sub"};
    return s;
  }
};

const Fixture& fixture() {
  static const Fixture f;
  return f;
}

void verify(benchmark::State& state, const std::string Fixture::*token) {
  const Fixture& f = fixture();
  const jwt::Verifier verifier(f.settings(), f.keys);
  jwt::Scratch scratch;
  const std::string& t = f.*token;
  if (verifier.verify(t, fixed_now(), scratch) != jwt::Result::ok) {
    state.SkipWithError("the token does not verify");
    return;
  }
  const uint64_t before = openssl_allocs.load();
  for (auto _ : state) {
    benchmark::DoNotOptimize(verifier.verify(t, fixed_now(), scratch));
  }
  state.counters["openssl_allocs"] = benchmark::Counter(
      static_cast<double>(openssl_allocs.load() - before), benchmark::Counter::kAvgIterations);
  state.counters["counting"] = counting_installed ? 1 : 0;
}

void BM_Jwt_Verify_Hs256(benchmark::State& state) { verify(state, &Fixture::hs256); }
void BM_Jwt_Verify_Rs256(benchmark::State& state) { verify(state, &Fixture::rs256); }
void BM_Jwt_Verify_Es256(benchmark::State& state) { verify(state, &Fixture::es256); }
void BM_Jwt_Verify_EdDSA(benchmark::State& state) { verify(state, &Fixture::eddsa); }
BENCHMARK(BM_Jwt_Verify_Hs256);
BENCHMARK(BM_Jwt_Verify_Rs256);
BENCHMARK(BM_Jwt_Verify_Es256);
BENCHMARK(BM_Jwt_Verify_EdDSA);

// One request through a route chain, with or without the JWT filter in it.
void chain(benchmark::State& state, const std::string Fixture::*token) {
  const bool with_auth = token != nullptr;
  const Fixture& f = fixture();
  filter::FilterChain route_chain;
  if (with_auth) {
    bulwark::gateway::config::JwtSpec spec;
    spec.issuer = "https://idp.example";
    spec.audiences = {"api"};
    spec.algorithms = {"HS256", "ES256"};
    spec.required_claims = {"sub"};
    spec.forward_claims = {{"sub", "X-User-Id"}};
    spec.keys = f.keys;
    bulwark::gateway::filters::AuthCounters counters{};
    route_chain.add(
        std::make_unique<bulwark::gateway::filters::JwtFilter>(spec, "api", counters, &fixed_now));
  }
  const std::string authorization = "Bearer " + (with_auth ? f.*token : f.hs256);
  const std::vector<filter::HeaderLine> headers = {{"Host", "api.example"},
                                                   {"User-Agent", "bench/1.0"},
                                                   {"Accept", "application/json"},
                                                   {"Authorization", authorization},
                                                   {"X-Request-Id", "0123456789abcdef"}};
  filter::UpstreamEdits edits;
  filter::RequestInfo request;
  request.method = "GET";
  request.path = "/v1/items";
  request.headers = headers;
  request.edits = &edits;
  request.now = bulwark::TimePoint(std::chrono::hours(1));
  filter::ChainRun run;
  const uint64_t before = openssl_allocs.load();
  for (auto _ : state) {
    edits.clear();
    run.begin(nullptr, &route_chain);
    const filter::LocalReply reply = run.on_request(request);
    if (reply) {
      state.SkipWithError("refused");
      break;
    }
    run.complete({200, {}, {}});
    benchmark::DoNotOptimize(edits.added().size());
  }
  state.counters["openssl_allocs"] = benchmark::Counter(
      static_cast<double>(openssl_allocs.load() - before), benchmark::Counter::kAvgIterations);
}

void BM_Jwt_Chain_NoAuth(benchmark::State& state) { chain(state, nullptr); }
void BM_Jwt_Chain_Hs256(benchmark::State& state) { chain(state, &Fixture::hs256); }
void BM_Jwt_Chain_Es256(benchmark::State& state) { chain(state, &Fixture::es256); }
BENCHMARK(BM_Jwt_Chain_NoAuth);
BENCHMARK(BM_Jwt_Chain_Hs256);
BENCHMARK(BM_Jwt_Chain_Es256);

}  // namespace
