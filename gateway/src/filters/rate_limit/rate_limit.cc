#include "filters/rate_limit/rate_limit.h"

#include <charconv>

#include "filter/reasons.h"
#include "http/head_writer.h"
#include "redis/gcra_script.h"

namespace bulwark::gateway::filters {

namespace {

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
                                      RefusalText& text) noexcept {
  filter::LocalReply reply = filter::refuse(429, reason::kRateLimited);
  const uint64_t retry_after = whole_seconds_up(decision.retry_after);
  reply.retry_after_seconds =
      retry_after < 1 ? 1 : static_cast<uint32_t>(std::min<uint64_t>(retry_after, UINT32_MAX));
  reply.add_header("RateLimit-Limit", format(text.limit, decision.limit));
  reply.add_header("RateLimit-Remaining", format(text.remaining, decision.remaining));
  reply.add_header("RateLimit-Reset", format(text.reset, whole_seconds_up(decision.reset)));
  return reply;
}

limit::RateDecision global_decision(const filter::RemoteDecision& answer,
                                    uint64_t burst) noexcept {
  limit::RateDecision d;
  d.allowed = answer.allowed;
  d.limit = burst;
  d.remaining = std::min(answer.remaining, burst);
  d.reset = answer.reset;
  d.retry_after = answer.allowed ? Duration::zero() : answer.retry_after;
  return d;
}

filter::LocalReply RateLimitFilter::on_request(const filter::RequestInfo& request,
                                               filter::FilterState& state) const {
  const RateLimitKeyChoice key = rate_limit_key(options_.key, options_.header, options_.route,
                                                options_.max_key_bytes, request);
  if (key.bad) return filter::refuse(400, reason::kBadClientKey, request.has_body);
  State& s = state.state<State>();
  if (!options_.global) return decide(limiter_->limiter->try_acquire(key.key, request.now), request, s);
  if (s.asked.waiting) return take_answer(request, key.key, s);
  return ask_redis(request, key.key, s);
}

filter::LocalReply RateLimitFilter::decide(const limit::RateDecision& decision,
                                           const filter::RequestInfo& request,
                                           State& state) const noexcept {
  if (decision.allowed || options_.dry_run) return {};
  filter::LocalReply reply = rate_limited_reply(decision, state.text);
  reply.close = request.has_body;  // its body was not read
  return reply;
}

filter::LocalReply RateLimitFilter::ask_redis(const filter::RequestInfo& request,
                                              std::string_view key, State& state) const {
  const Global& global = *options_.global;
  if (request.remote == nullptr) return without_redis(request, key, state);
  const circuit::Admission admission = global.breaker->try_acquire(request.now);
  if (!admission.allowed) return without_redis(request, key, state);
  thread_local std::string store_key;
  redis::format_limit_key(store_key, global.key_prefix, limiter_->name, key);
  const uint64_t ticket = request.remote->start(store_key, global.rate, *request.wake);
  if (ticket == 0) {
    global.breaker->on_failure(admission.permit, request.now);
    return without_redis(request, key, state);
  }
  state.asked = {request.remote, ticket, admission.permit, true};
  return filter::wait_until(request.now + global.timeout);
}

filter::LocalReply RateLimitFilter::take_answer(const filter::RequestInfo& request,
                                                std::string_view key, State& state) const {
  const Global& global = *options_.global;
  Asked& asked = state.asked;
  asked.waiting = false;
  filter::RemoteDecision answer;
  const auto status = asked.remote->take(asked.ticket, answer);
  if (status == filter::RemoteRateLimiter::Status::answered) {
    global.breaker->on_success(asked.permit, request.now);
    if (global.metrics != nullptr) {
      observe::Counter* counted = answer.allowed ? global.metrics->allowed : global.metrics->limited;
      if (counted != nullptr) counted->inc();
    }
    return decide(global_decision(answer, global.rate.burst), request, state);
  }
  // No answer within redis.timeout, or a failed one: Redis counts as failing.
  if (status == filter::RemoteRateLimiter::Status::pending) asked.remote->forget(asked.ticket);
  global.breaker->on_failure(asked.permit, request.now);
  return without_redis(request, key, state);
}

filter::LocalReply RateLimitFilter::without_redis(const filter::RequestInfo& request,
                                                  std::string_view key, State& state) const {
  const Global& global = *options_.global;
  const auto mode = static_cast<std::size_t>(global.on_failure);
  if (global.metrics != nullptr && global.metrics->fallbacks[mode] != nullptr) {
    global.metrics->fallbacks[mode]->inc();
  }
  switch (global.on_failure) {
    case config::RedisFailureMode::allow:
      return {};
    case config::RedisFailureMode::deny:
      if (options_.dry_run) return {};
      return filter::refuse(503, reason::kLimiterUnavailable, request.has_body);
    case config::RedisFailureMode::local:
      break;
  }
  return decide(limiter_->limiter->try_acquire(key, request.now), request, state);
}

void RateLimitFilter::on_complete(const filter::Completion& done, filter::FilterState& state) const {
  (void)done;
  if (!options_.global) return;
  Asked& asked = state.state<State>().asked;
  if (!asked.waiting) return;
  // Abandoned while it waited for Redis: the answer is not wanted, the permit goes back.
  asked.waiting = false;
  asked.remote->forget(asked.ticket);
  options_.global->breaker->release(asked.permit);
}

}  // namespace bulwark::gateway::filters
