#include "filters/rate_limit/rate_limit.h"

#include <charconv>

#include "filter/reasons.h"
#include "http/head_writer.h"

namespace bulwark::gateway::filters {

namespace {

// Header values of one refusal, inline with the request.
struct RefusalText {
  static constexpr std::size_t kDigits = 20;
  std::array<char, kDigits> limit;
  std::array<char, kDigits> remaining;
  std::array<char, kDigits> reset;
};

std::string_view format(std::array<char, RefusalText::kDigits>& out, uint64_t value) noexcept {
  const auto result = std::to_chars(out.data(), out.data() + out.size(), value);
  return {out.data(), static_cast<std::size_t>(result.ptr - out.data())};
}

uint64_t whole_seconds_up(Duration d) noexcept {
  if (d <= Duration::zero()) return 0;
  if (d == Duration::max()) return UINT32_MAX;
  return static_cast<uint64_t>(std::chrono::ceil<std::chrono::seconds>(d).count());
}

bool usable_as_key(std::string_view value) noexcept {
  for (const char c : value) {
    if (c <= 0x20 || c >= 0x7f) return false;
  }
  return true;
}

}  // namespace

RateLimitKeyChoice rate_limit_key(config::RateLimitKey source, std::string_view header_name,
                                  std::string_view route_name, uint32_t max_key_bytes,
                                  const filter::RequestInfo& request) noexcept {
  switch (source) {
    case config::RateLimitKey::route:
      return {route_name};
    case config::RateLimitKey::header: {
      std::string_view value;
      for (const filter::HeaderLine& line : request.headers) {
        if (http::iequals(line.name, header_name)) {
          value = line.value;
          break;
        }
      }
      if (value.empty()) return {request.client_ip};
      if (value.size() > max_key_bytes || !usable_as_key(value)) return {{}, true};
      return {value};
    }
    case config::RateLimitKey::client_ip:
      break;
  }
  return {request.client_ip};
}

filter::LocalReply rate_limited_reply(const limit::RateDecision& decision,
                                      filter::FilterState& state) noexcept {
  RefusalText& text = state.state<RefusalText>();
  filter::LocalReply reply = filter::refuse(429, reason::kRateLimited);
  const uint64_t retry_after = whole_seconds_up(decision.retry_after);
  reply.retry_after_seconds =
      retry_after < 1 ? 1 : static_cast<uint32_t>(std::min<uint64_t>(retry_after, UINT32_MAX));
  reply.add_header("RateLimit-Limit", format(text.limit, decision.limit));
  reply.add_header("RateLimit-Remaining", format(text.remaining, decision.remaining));
  reply.add_header("RateLimit-Reset", format(text.reset, whole_seconds_up(decision.reset)));
  return reply;
}

filter::LocalReply RateLimitFilter::on_request(const filter::RequestInfo& request,
                                               filter::FilterState& state) const {
  const RateLimitKeyChoice key = rate_limit_key(options_.key, options_.header, options_.route,
                                                options_.max_key_bytes, request);
  if (key.bad) return filter::refuse(400, reason::kBadClientKey, request.has_body);
  const limit::RateDecision decision = limiter_->limiter->try_acquire(key.key, request.now);
  if (decision.allowed || options_.dry_run) return {};
  filter::LocalReply reply = rate_limited_reply(decision, state);
  reply.close = request.has_body;  // its body was not read
  return reply;
}

}  // namespace bulwark::gateway::filters
