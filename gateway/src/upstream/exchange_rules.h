// The decisions of an upstream exchange, as small pure functions (no I/O, no clock: time comes
// in as arguments), so that each is pinned by unit tests on ManualClock time points
// (exchange_rules_test.cc). upstream/exchange.cc only acts on what they say.
//
//   pick_endpoint            round_robin / least_request over a cluster's usable endpoints,
//                            away from the one a retry leaves
//   may_replace_stale        whether a reused connection found dead may be replaced by a new one
//   should_fall_back         whether a failed call moves on to the route's next fallback cluster
//   can_pool                 whether an upstream connection goes back to the pool
//   connect_deadline, first_byte_deadline, body_read_deadline, stream_read_deadline
//                            which deadline binds an operation, and the status and reason the
//                            client gets when it passes
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

#include "bulwark/core/clock.h"
#include "config/config.h"
#include "filter/reasons.h"

namespace bulwark::gateway::upstream {

// The endpoint a new attempt goes to, or nullopt when none is usable (503
// no_healthy_endpoint). Only endpoints for which `usable(i)` holds are candidates (not ejected
// by outlier detection, not down by health checks); `avoid` (the endpoint of the attempt
// before, or kNoEndpoint) is taken only when it is the one usable endpoint, so a retry goes
// elsewhere when it can.
//   round_robin    the first candidate from the cursor on
//   least_request  the candidate with the fewest requests in flight from this worker
//                  (`active_of(i)`), ties broken in round-robin order from the cursor
inline constexpr std::size_t kNoEndpoint = SIZE_MAX;

template <class ActiveOf, class Usable>
std::optional<std::size_t> pick_endpoint(config::LoadBalancing lb, uint64_t cursor,
                                         std::size_t endpoints, ActiveOf&& active_of,
                                         Usable&& usable, std::size_t avoid = kNoEndpoint) {
  std::optional<std::size_t> pick;
  bool pick_avoided = false;
  uint32_t best = UINT32_MAX;
  for (std::size_t k = 0; k < endpoints; ++k) {
    const std::size_t i = (cursor + k) % endpoints;
    if (!usable(i)) continue;
    const bool avoided = i == avoid;
    if (pick && !pick_avoided && avoided) continue;  // anything beats the endpoint to avoid
    const uint32_t active = lb == config::LoadBalancing::least_request ? active_of(i) : 0;
    const bool better = !pick || (pick_avoided && !avoided) || active < best;
    if (!better) continue;
    pick = i;
    pick_avoided = avoided;
    best = active;
    if (lb != config::LoadBalancing::least_request && !avoided) break;
  }
  return pick;
}

// Whether a call that ended on one of a route's clusters moves on to its next fallback
// cluster: the call failed — the gateway's own 502, 503 (circuit_open, no_healthy_endpoint,
// pool_exhausted, connect_failure, upstream_reset, bad_response) or 504 other than the route's
// deadline (request_timeout: nothing is left for another cluster), or the upstream answered
// 502, 503 or 504 — and the request may be sent again (replayable, and idempotent or never sent
// or the route's retry.non_idempotent).
struct FallbackFacts {
  bool failed_locally = false;  // the gateway made the reply (reply_status, reply_reason)
  int reply_status = 0;
  std::string_view reply_reason;
  int upstream_status = 0;  // the upstream's answer otherwise
  bool replayable = true;
  bool idempotent = true;
  bool sent = false;
  bool non_idempotent_allowed = false;
};
constexpr bool should_fall_back(const FallbackFacts& f) noexcept {
  const bool failed = f.failed_locally
                          ? (f.reply_status == 502 || f.reply_status == 503 ||
                             (f.reply_status == 504 && f.reply_reason != reason::kRequestTimeout))
                          : (f.upstream_status >= 502 && f.upstream_status <= 504);
  const bool safe = f.replayable && (f.idempotent || !f.sent || f.non_idempotent_allowed);
  return failed && safe;
}

// RFC 9110 §9.2.2.
constexpr bool is_idempotent(std::string_view method) noexcept {
  return method == "GET" || method == "HEAD" || method == "OPTIONS" || method == "PUT" ||
         method == "DELETE" || method == "TRACE";
}

// A pooled connection that turns out to be dead before any answer byte is replaced once by a
// fresh one — not a retry (no policy counts it) — when nothing can have been processed twice:
// the request is idempotent and has no body, nothing at all came back, and the failure is not
// a timeout (a slow upstream is not a dead connection).
struct StaleFacts {
  bool reused = false;
  bool has_body = false;
  bool idempotent = false;
  bool nothing_received = true;
  bool timed_out = false;
};
constexpr bool may_replace_stale(const StaleFacts& f) noexcept {
  return f.reused && !f.has_body && f.idempotent && f.nothing_received && !f.timed_out;
}

// The upstream connection may carry another request: the answer ended cleanly, its framing
// did not depend on the connection closing, the upstream keeps it alive, no stray bytes
// followed, and the worker is not draining.
struct PoolFacts {
  bool clean = false;
  bool reusable_framing = true;
  bool upstream_keep_alive = true;
  bool unread_bytes = false;
  bool draining = false;
};
constexpr bool can_pool(const PoolFacts& f) noexcept {
  return f.clean && f.reusable_framing && f.upstream_keep_alive && !f.unread_bytes && !f.draining;
}

// A deadline and what the client is told when it passes.
struct Binding {
  TimePoint at;
  int status = 504;
  std::string_view reason;
};

// connect_timeout from now, unless the route's deadline comes first.
constexpr Binding connect_deadline(TimePoint now, Duration connect_timeout,
                                   TimePoint route_deadline) noexcept {
  const TimePoint own = now + connect_timeout;
  if (route_deadline <= own) return {route_deadline, 504, reason::kRequestTimeout};
  return {own, 504, reason::kConnectTimeout};
}

// The answer's head must start within first_byte (or, when unset, per_try) of the request
// being sent, and within the route's deadline.
inline Binding first_byte_deadline(TimePoint sent, std::optional<Duration> budget,
                                   TimePoint route_deadline) noexcept {
  if (budget && sent + *budget < route_deadline) {
    return {sent + *budget, 504, reason::kFirstByteTimeout};
  }
  return {route_deadline, 504, reason::kRequestTimeout};
}

// The client's body must arrive within the listener's request timeout (408 body_timeout) and
// the route's deadline (504 request_timeout), whichever is earlier.
constexpr Binding body_read_deadline(TimePoint route_deadline,
                                     TimePoint listener_deadline) noexcept {
  if (route_deadline < listener_deadline) return {route_deadline, 504, reason::kRequestTimeout};
  return {listener_deadline, 408, reason::kBodyTimeout};
}

// Each read of a streamed answer waits at most stream_idle, and the whole stream ends at
// stream_total.
constexpr Binding stream_read_deadline(TimePoint now, Duration stream_idle,
                                       TimePoint stream_deadline) noexcept {
  if (stream_deadline <= now + stream_idle) {
    return {stream_deadline, 502, reason::kStreamTotalTimeout};
  }
  return {now + stream_idle, 502, reason::kStreamIdleTimeout};
}

}  // namespace bulwark::gateway::upstream
