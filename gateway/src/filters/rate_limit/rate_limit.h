// Rate limit: a request filter that takes one permit per request from a libbulwark
// KeyedLimiter (GCRA, one state per key, memory-bounded with idle-first eviction) and answers
// 429 rate_limited when the key has none left. Two bindings:
//   - per client on a listener (`listeners[].rate_limit.per_client`): the key is the client's
//     IP address; it runs after the listener's concurrency limit, before routing's filters;
//   - per route (`routes[].rate_limit`): the key is the client IP (`key: client_ip`), one
//     shared key for the whole route (`key: route`), or a request header's value
//     (`key: header:<name>`, e.g. an API key; a request without that header is keyed by its
//     client IP, so leaving the header out is no way around the limit).
//
// A header value longer than `max_key_bytes` (default 256) or with a byte outside visible
// ASCII is refused with 400 bad_client_key: keys are bounded before they reach the limiter.
//
// A refusal carries, in seconds (delta-seconds, rounded up):
//   Retry-After          when the same request would be allowed (at least 1)
//   RateLimit-Limit      the burst: the most requests the key may make at one instant
//   RateLimit-Remaining  0
//   RateLimit-Reset      when the key's allowance is whole again
// (the fields of draft-ietf-httpapi-ratelimit-headers, as Envoy and Kong send them).
// `dry_run: true` takes and counts as usual but refuses nothing: the decisions_total series
// shows what the limit would do before it is switched on.
//
// `scope: global` shares the limit between gateway instances through Redis
// (docs/distributed.md): the decision is the library's GCRA run by a Lua script in Redis
// (redis/gcra_script.h) on the worker's pipelined connection (redis/client.h), with the same
// limit, remaining, reset and retry-after as the local limiter, so 429s look the same. The
// request waits for the answer (LocalReply::wait) at most `redis.timeout`; a circuit breaker
// around Redis (shared by the workers) skips it while it is failing. Without an answer —
// breaker open, no connection, timeout, an error — `redis.on_failure` decides: `local` (this
// limiter, the same key and limit, per process), `allow`, or `deny` (503 limiter_unavailable).
// Never a 500, never a request waiting longer than the timeout.
//
// Config (bindings: bind_client_rate_limit, bind_route_rate_limit):
//   listeners[].rate_limit.per_client: {rate: "100/s", burst: N, dry_run: false}
//   routes[].rate_limit: {key, rate, burst, dry_run, max_key_bytes (1..4096), scope}
// The limiter's state outlives config snapshots (route/policy_store.h): a reload that keeps a
// limit's rate keeps its clients' state.
//
// Metrics (route/policy_store.h reports them at scrape time; limit = "<listener>/per_client"
// or the route's name; the local limiter's series count local decisions only):
//   bulwark_rate_limit_decisions_total{limit,result}  counter  allowed | limited (dry-run too)
//   bulwark_rate_limit_keys{limit}                    gauge
//   bulwark_rate_limit_evictions_total{limit,kind}    counter  idle | forced
//   bulwark_global_rate_limit_decisions_total{limit,result}  allowed | limited (by Redis)
//   bulwark_global_rate_limit_fallbacks_total{limit,mode}    local | allow | deny
//   bulwark_gateway_responses_total{code="429",reason="rate_limited"},
//   {code="400",reason="bad_client_key"} and {code="503",reason="limiter_unavailable"}
//                                                     the LocalReply path
//
// Thread-safety: immutable; the limiter is thread-safe; the refusal's header values are
// formatted into the request's FilterState.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "bulwark/circuit/circuit_breaker.h"
#include "config/config.h"
#include "filter/filter.h"
#include "observe/gateway_metrics.h"
#include "route/policy_store.h"

namespace bulwark::gateway::filters {

// The key of one request, or `bad` for a header value that cannot be a key. Pure.
struct RateLimitKeyChoice {
  std::string_view key;
  bool bad = false;
};
RateLimitKeyChoice rate_limit_key(config::RateLimitKey source, std::string_view header_name,
                                  std::string_view route_name, uint32_t max_key_bytes,
                                  const filter::RequestInfo& request) noexcept;

// Header values of one refusal, inline with the request.
struct RefusalText {
  static constexpr std::size_t kDigits = 20;
  std::array<char, kDigits> limit;
  std::array<char, kDigits> remaining;
  std::array<char, kDigits> reset;
};

// The refusal for a decision that was not allowed, its header values written into `text`.
filter::LocalReply rate_limited_reply(const limit::RateDecision& decision,
                                      RefusalText& text) noexcept;

// A global decision's answer as the local limiter's (limit = burst). Pure.
limit::RateDecision global_decision(const filter::RemoteDecision& answer, uint64_t burst) noexcept;

class RateLimitFilter final : public filter::RequestFilter {
 public:
  // scope: global (with `redis`).
  struct Global {
    std::shared_ptr<circuit::CircuitBreaker> breaker;  // around Redis
    filter::RemoteRate rate;
    Duration timeout{};
    config::RedisFailureMode on_failure = config::RedisFailureMode::local;
    std::string key_prefix;
    observe::GlobalLimitMetrics* metrics = nullptr;
  };
  struct Options {
    config::RateLimitKey key = config::RateLimitKey::client_ip;
    std::string header;  // lower case, for key: header
    std::string route;   // the key for key: route
    uint32_t max_key_bytes = 256;
    bool dry_run = false;
    std::optional<Global> global;
  };
  RateLimitFilter(std::shared_ptr<route::RateLimiterState> limiter, Options options)
      : limiter_(std::move(limiter)), options_(std::move(options)) {}

  std::string_view name() const noexcept override { return "rate_limit"; }
  filter::LocalReply on_request(const filter::RequestInfo& request,
                                filter::FilterState& state) const override;
  void on_complete(const filter::Completion& done, filter::FilterState& state) const override;

 private:
  // One request's global decision in flight, inline with it.
  struct Asked {
    filter::RemoteRateLimiter* remote;
    uint64_t ticket;
    circuit::Permit permit;
    bool waiting;
  };
  struct State {
    Asked asked;
    RefusalText text;
  };
  filter::LocalReply decide(const limit::RateDecision& decision, const filter::RequestInfo& request,
                            State& state) const noexcept;
  filter::LocalReply ask_redis(const filter::RequestInfo& request, std::string_view key,
                               State& state) const;
  filter::LocalReply take_answer(const filter::RequestInfo& request, std::string_view key,
                                 State& state) const;
  filter::LocalReply without_redis(const filter::RequestInfo& request, std::string_view key,
                                   State& state) const;

  std::shared_ptr<route::RateLimiterState> limiter_;
  Options options_;
};

// Null when the listener has no per-client limit. `redis`: the config's (for scope: global).
std::unique_ptr<filter::RequestFilter> bind_client_rate_limit(
    const config::Listener& listener, const std::optional<config::RedisSpec>& redis,
    route::PolicyStore& policies, observe::GatewayMetrics& metrics);
// Null when the route has no rate_limit.
std::unique_ptr<filter::RequestFilter> bind_route_rate_limit(
    const config::Route& route, const std::optional<config::RedisSpec>& redis,
    route::PolicyStore& policies, observe::GatewayMetrics& metrics);

}  // namespace bulwark::gateway::filters
