// JWT authentication: a request filter that lets a request go on only when it carries a JSON
// Web Token (RFC 7519, a compact JWS) that the route accepts — signed by one of its keys with
// one of its algorithms, in its validity window, from its issuer, for one of its audiences,
// with its required claims. Off by default; a route turns it on with `auth.jwt`.
//
// The token: `Authorization: Bearer <token>` (the scheme in any case), or, when there is no
// Bearer credential and `cookie` is set, that cookie's value. Several Authorization lines, or
// a Bearer scheme with nothing after it, make the request's token malformed.
//
// Answers (filter/reasons.h; docs/auth.md):
//   401 jwt_missing        no token; with `WWW-Authenticate: Bearer realm="<route>"`
//   403 jwt_malformed      not three base64url parts, bad base64url or JSON, a header that is
//                          not an object, longer than max_token_bytes, a `crit` header, a
//                          duplicate member, a non-numeric exp/nbf/iat, or a forwarded claim
//                          that cannot be a header value (an object, an array, control
//                          characters, or more than the request's header-edit storage)
//   403 jwt_algorithm      alg not among `algorithms` (`none` never is), or the key named by
//                          `kid` is of another type (RS256 → HS256 confusion)
//   403 jwt_unknown_key    the `kid` is not in the key set, or no key fits the alg
//   403 jwt_signature      the signature does not verify
//   403 jwt_expired / jwt_not_yet_valid / jwt_issuer / jwt_audience / jwt_missing_claim
//   431 headers_too_large  the token came in a cookie and the request's other cookies, sent
//                          on without it, do not fit the request's header-edit storage (2 KiB)
// The decision itself is filters/jwt/verify.h (pure, `now` an argument).
//
// On success the request goes upstream with:
//   - the token removed (strip_token, default true): the Authorization line, or the token's
//     cookie (the other cookies go on in one Cookie line);
//   - each forward_claims header set from its claim (a string as it is, a number as written,
//     true/false); the client's own lines of those names are always removed, so a client can
//     never pass off its own X-User-Id, even when the token lacks the claim.
//
// Order (route/runtime.cc): listener filters, then per route: overload shedding, block
// patterns, **JWT**, the cluster's concurrency limit, the route's rate limit, fault injection.
// A request without a valid token never takes a cluster slot or a rate-limit permit.
//
// Time: the decision needs the wall clock (exp, nbf and iat are seconds since the Unix epoch)
// where every other filter uses the steady `RequestInfo::now`. The filter reads it through the
// WallClock it was built with — std::chrono::system_clock in the gateway, a fixed time in tests
// — once per request that carries a token; the decision below takes it as an argument.
//
// Cost: the per-thread Scratch (verify.h) keeps the decoded token, the parsed members and the
// HMAC contexts, so an HS256 token costs no allocation in this code in steady state
// (measured by bench/micro/jwt_bench.cc; docs/auth.md has the numbers). On a route that accepts
// a public-key algorithm, tokens whose signature verified are remembered in a bounded cache
// (libbulwark's Cache, keyed by the whole token text, per route and config snapshot: a reload
// starts empty) for min(exp - now, 5 minutes), at most 10000 tokens and 16 MiB: a client that
// sends the same RS256/ES256/EdDSA token again skips the public-key operation. Every other step
// — the header, the algorithm, exp, nbf, iat, iss, aud, the required claims — runs on every
// request, cached or not. HMAC tokens are never cached (checking one costs less than a lookup).
//
// Config (binding: bind_jwt; docs/auth.md, docs/config.md):
//   routes[].auth.jwt: {issuer, audiences, algorithms (required), jwks_file, secret, leeway: 30s,
//                       required_claims, forward_claims: {claim: Header}, strip_token: true,
//                       cookie, max_token_bytes: 8KiB}
//
// Metrics (handles resolved when the snapshot is built):
//   bulwark_auth_results_total{route,result}   counter  result: ok or the reason above
//   bulwark_gateway_responses_total{code="401"|"403",reason="jwt_..."}  (the LocalReply path)
//
// Thread-safety: immutable once built; the key set is shared read-only; scratch is per thread.
#pragma once

#include <array>
#include <chrono>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "bulwark/cache/cache.h"
#include "config/config.h"
#include "filter/filter.h"
#include "filters/jwt/verify.h"
#include "observe/gateway_metrics.h"

namespace bulwark::gateway::filters {

// Where a request's token is. Pure.
struct TokenFound {
  enum class From : uint8_t { none, header, cookie };
  From from = From::none;
  std::string_view token;
  bool malformed = false;  // several Authorization lines, or "Bearer" and nothing else
};
TokenFound find_token(std::span<const filter::HeaderLine> headers,
                      std::string_view cookie) noexcept;

// The request's cookies other than `name`, as one Cookie value ("a=1; b=2") into `out`. Pure.
void cookies_without(std::span<const filter::HeaderLine> headers, std::string_view name,
                     std::string& out);

// A claim's value as a header value into `out`. Pure.
enum class ClaimText : uint8_t { absent, ok, unusable };
ClaimText claim_header_value(const jwt::JsonValue& value, std::string& out);

using AuthCounters = std::array<observe::Counter*, jwt::kResultCount>;

// Tokens whose public-key signature verified (see above): the token text, and nothing else.
using VerifiedTokenCache = bulwark::cache::Cache<std::string, char>;
inline constexpr std::size_t kVerifiedTokensMax = 10'000;
inline constexpr std::size_t kVerifiedTokenBytes = std::size_t{16} << 20;
inline constexpr Duration kVerifiedTokenTtl = std::chrono::minutes(5);

class JwtFilter final : public filter::RequestFilter {
 public:
  using WallClock = std::chrono::system_clock::time_point (*)() noexcept;
  static std::chrono::system_clock::time_point system_now() noexcept;

  // `counters`: one per jwt::Result (null entries count nothing).
  JwtFilter(const config::JwtSpec& spec, std::string_view route, AuthCounters counters,
            WallClock clock = &system_now);

  std::string_view name() const noexcept override { return "jwt"; }
  filter::LocalReply on_request(const filter::RequestInfo& request,
                                filter::FilterState& state) const override;

 private:
  // Applies strip_token and forward_claims for a verified token; a refusal when they cannot be.
  filter::LocalReply edit_upstream(const filter::RequestInfo& request, const TokenFound& found,
                                   jwt::Scratch& scratch, jwt::Result& result) const;
  filter::LocalReply answer(jwt::Result result, const filter::RequestInfo& request) const;

  jwt::Verifier verifier_;
  std::string cookie_;
  bool strip_token_ = true;
  struct Forward {
    std::string claim;
    std::string header;   // as the config writes it: the added line's name
    std::string lowered;  // the client's lines of that name are removed (matched lower-case)
  };
  std::vector<Forward> forward_;
  std::string www_authenticate_;  // Bearer realm="<route>"
  AuthCounters counters_;
  WallClock clock_;
  std::unique_ptr<VerifiedTokenCache> verified_;  // null: the route accepts HMAC only
};

// The route's filter, or null when the route has no auth.jwt.
std::unique_ptr<filter::RequestFilter> bind_jwt(const config::Route& route,
                                                observe::RouteMetrics& metrics);

}  // namespace bulwark::gateway::filters
