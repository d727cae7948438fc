#include "filters/jwt/jwt.h"

#include <algorithm>

#include "filter/reasons.h"
#include "http/head_writer.h"

namespace bulwark::gateway::filters {
namespace {

static_assert(config::kMaxForwardClaims + 1 <= filter::UpstreamEdits::kMaxRemoved,
              "each forwarded claim and the token take one header removal");
static_assert(config::kMaxForwardClaims + 1 <= filter::UpstreamEdits::kMaxAdded);

char lower(char c) noexcept { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c; }

using http::iequals;

bool is_blank(char c) noexcept { return c == ' ' || c == '\t'; }

std::string_view trim(std::string_view s) noexcept {
  while (!s.empty() && is_blank(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_blank(s.back())) s.remove_suffix(1);
  return s;
}

// Calls f(name, value) for each cookie of each Cookie line (RFC 6265 §4.2.1, leniently: pairs
// separated by ';', blanks around them ignored, a value in double quotes unquoted).
template <class F>
void for_each_cookie(std::span<const filter::HeaderLine> headers, F&& f) {
  for (const filter::HeaderLine& line : headers) {
    if (!iequals(line.name, "cookie")) continue;
    std::string_view rest = line.value;
    while (!rest.empty()) {
      const std::size_t semi = rest.find(';');
      const std::string_view pair = trim(rest.substr(0, semi));
      rest = semi == std::string_view::npos ? std::string_view() : rest.substr(semi + 1);
      if (pair.empty()) continue;
      const std::size_t eq = pair.find('=');
      if (eq == std::string_view::npos) continue;
      const std::string_view name = trim(pair.substr(0, eq));
      std::string_view value = trim(pair.substr(eq + 1));
      if (value.size() >= 2 && value.front() == '"' && value.back() == '"') {
        value = value.substr(1, value.size() - 2);
      }
      if (!f(name, pair, value)) return;
    }
  }
}

// The header-safe characters of a value: no control characters (CR and LF above all).
bool header_safe(std::string_view text) noexcept {
  for (const char c : text) {
    const auto u = static_cast<unsigned char>(c);
    if ((u < 0x20 && c != '\t') || u == 0x7F) return false;
  }
  return true;
}

// The cache of verified tokens as verify() consults it, for one request (at its steady `now`).
class RequestMemo final : public jwt::SignatureMemo {
 public:
  RequestMemo(VerifiedTokenCache& cache, TimePoint now) noexcept : cache_(cache), now_(now) {}
  bool known(std::string_view token) const override {
    return cache_.get(std::string(token), now_) != nullptr;
  }
  void remember(std::string_view token, std::optional<Duration> valid_for) const override {
    const Duration ttl = valid_for ? std::min(*valid_for, kVerifiedTokenTtl) : kVerifiedTokenTtl;
    if (ttl > Duration::zero()) cache_.put(std::string(token), char{1}, now_, ttl);
  }

 private:
  VerifiedTokenCache& cache_;
  TimePoint now_;
};

bool is_public_key(jwt::Algorithm alg) noexcept {
  return alg != jwt::Algorithm::HS256 && alg != jwt::Algorithm::HS384 &&
         alg != jwt::Algorithm::HS512;
}

jwt::Scratch& thread_scratch() {
  thread_local jwt::Scratch scratch;
  return scratch;
}

}  // namespace

TokenFound find_token(std::span<const filter::HeaderLine> headers,
                      std::string_view cookie) noexcept {
  TokenFound found;
  std::size_t authorizations = 0;
  std::string_view credentials;
  for (const filter::HeaderLine& line : headers) {
    if (iequals(line.name, "authorization")) {
      ++authorizations;
      credentials = line.value;
    }
  }
  if (authorizations > 1) {
    found.malformed = true;
    return found;
  }
  if (authorizations == 1) {
    credentials = trim(credentials);
    const std::size_t space = credentials.find_first_of(" \t");
    const std::string_view scheme = credentials.substr(0, space);
    if (iequals(scheme, "bearer")) {
      const std::string_view token =
          space == std::string_view::npos ? std::string_view() : trim(credentials.substr(space));
      found.from = TokenFound::From::header;
      found.token = token;
      found.malformed = token.empty();
      return found;
    }
    // Another scheme (Basic, ...) is not ours: look for the cookie.
  }
  if (!cookie.empty()) {
    for_each_cookie(headers, [&](std::string_view name, std::string_view, std::string_view value) {
      if (name != cookie) return true;
      if (!value.empty()) {
        found.from = TokenFound::From::cookie;
        found.token = value;
      }
      return false;  // the first cookie of that name decides
    });
  }
  return found;
}

void cookies_without(std::span<const filter::HeaderLine> headers, std::string_view name,
                     std::string& out) {
  out.clear();
  for_each_cookie(headers, [&](std::string_view cookie, std::string_view pair, std::string_view) {
    if (cookie != name) {
      if (!out.empty()) out.append("; ");
      out.append(pair);
    }
    return true;
  });
}

ClaimText claim_header_value(const jwt::JsonValue& value, std::string& out) {
  out.clear();
  switch (value.type) {
    case jwt::JsonType::null:
      return ClaimText::absent;
    case jwt::JsonType::string:
      if (!jwt::decode_string(value.text, out)) return ClaimText::unusable;
      break;
    case jwt::JsonType::number:
    case jwt::JsonType::boolean:
      out.assign(value.text);
      break;
    case jwt::JsonType::array:
    case jwt::JsonType::object:
      return ClaimText::unusable;
  }
  return header_safe(out) ? ClaimText::ok : ClaimText::unusable;
}

std::chrono::system_clock::time_point JwtFilter::system_now() noexcept {
  return std::chrono::system_clock::now();
}

JwtFilter::JwtFilter(const config::JwtSpec& spec, std::string_view route, AuthCounters counters,
                     WallClock clock)
    : verifier_(
          [&] {
            jwt::Settings s;
            for (const std::string& name : spec.algorithms) {
              if (const auto alg = jwt::parse_algorithm(name)) s.algorithms.add(*alg);
            }
            s.issuer = spec.issuer;
            s.audiences = spec.audiences;
            s.leeway = spec.leeway;
            s.required_claims = spec.required_claims;
            s.max_token_bytes = spec.max_token_bytes;
            return s;
          }(),
          spec.keys),
      cookie_(spec.cookie),
      strip_token_(spec.strip_token),
      counters_(counters),
      clock_(clock) {
  bool public_key = false;
  for (const std::string& name : spec.algorithms) {
    const auto alg = jwt::parse_algorithm(name);
    public_key = public_key || (alg && is_public_key(*alg));
  }
  if (public_key) {
    bulwark::cache::CacheOptions options;
    options.max_entries = kVerifiedTokensMax;
    options.max_bytes = kVerifiedTokenBytes;
    options.ttl = kVerifiedTokenTtl;
    verified_ = std::make_unique<VerifiedTokenCache>(options);
  }
  for (const auto& [claim, header] : spec.forward_claims) {
    std::string lowered(header);
    for (char& c : lowered) c = lower(c);
    forward_.push_back({claim, header, std::move(lowered)});
  }
  // A quoted-string (RFC 9110 §5.6.4): quotes and backslashes escaped.
  www_authenticate_ = "Bearer realm=\"";
  for (const char c : route) {
    if (c == '"' || c == '\\') www_authenticate_.push_back('\\');
    www_authenticate_.push_back(header_safe(std::string_view(&c, 1)) ? c : '?');
  }
  www_authenticate_.push_back('"');
}

filter::LocalReply JwtFilter::on_request(const filter::RequestInfo& request,
                                         filter::FilterState& state) const {
  (void)state;
  const TokenFound found = find_token(request.headers, cookie_);
  jwt::Result result = jwt::Result::missing;
  filter::LocalReply reply;
  if (found.malformed) {
    result = jwt::Result::malformed;
  } else if (found.from != TokenFound::From::none) {
    jwt::Scratch& scratch = thread_scratch();
    if (verified_) {
      const RequestMemo memo(*verified_, request.now);
      result = verifier_.verify(found.token, clock_(), scratch, &memo);
    } else {
      result = verifier_.verify(found.token, clock_(), scratch);
    }
    if (result == jwt::Result::ok) reply = edit_upstream(request, found, scratch, result);
  }
  if (observe::Counter* counter = counters_[static_cast<std::size_t>(result)]) counter->inc();
  if (result != jwt::Result::ok) return answer(result, request);
  return reply;
}

filter::LocalReply JwtFilter::edit_upstream(const filter::RequestInfo& request,
                                            const TokenFound& found, jwt::Scratch& scratch,
                                            jwt::Result& result) const {
  filter::UpstreamEdits& edits = *request.edits;
  if (strip_token_ && found.from == TokenFound::From::header) {
    edits.remove("authorization");
  } else if (strip_token_ && found.from == TokenFound::From::cookie) {
    edits.remove("cookie");
    std::string& rest = scratch.text();
    cookies_without(request.headers, cookie_, rest);
    if (!rest.empty()) {
      const auto kept = edits.keep(rest);
      if (!kept) return filter::refuse(431, reason::kHeadersTooLarge, request.has_body);
      edits.add("Cookie", *kept);
    }
  }
  for (const Forward& forward : forward_) {
    edits.remove(forward.lowered);  // whatever the client sent under that name
    const jwt::MemberLookup found_claim =
        jwt::find_member(scratch.claims(), forward.claim, scratch.name());
    if (found_claim.duplicate) {
      result = jwt::Result::malformed;
      return {};
    }
    if (found_claim.member == nullptr) continue;
    std::string& text = scratch.text();
    const ClaimText made = claim_header_value(found_claim.member->value, text);
    if (made == ClaimText::absent) continue;
    const auto kept = made == ClaimText::ok ? edits.keep(text) : std::nullopt;
    if (!kept || !edits.add(forward.header, *kept)) {
      result = jwt::Result::malformed;
      return {};
    }
  }
  return {};
}

filter::LocalReply JwtFilter::answer(jwt::Result result, const filter::RequestInfo& request) const {
  if (result == jwt::Result::missing) {
    filter::LocalReply reply = filter::refuse(401, reason::kJwtMissing, request.has_body);
    reply.add_header("WWW-Authenticate", www_authenticate_);
    return reply;
  }
  return filter::refuse(403, jwt::result_name(result), request.has_body);
}

}  // namespace bulwark::gateway::filters
