// Hedge: when the first attempt of a request has not begun to answer `delay` after it was sent,
// the same request goes to another endpoint too (a hedge), up to `max_attempts` attempts in all;
// the first to answer wins and the others are cancelled — their connections closed, never
// returned to the pool half-read. Hedging trims the tail a slow replica or a lost packet adds;
// it costs extra upstream requests, which draw on the cluster's retry budget (the one the
// route's retries use), so retries and hedges together stay within the budget's share.
//
// The decisions are the library's (fallback/hedge.h HedgeRun: when the next hedge is due, the
// budget, the deadline, which result ends the race); this folder binds them to the config and
// says which requests may be hedged and what counts as an answer. The exchange runs the race
// (upstream/exchange.h).
//
// A request is hedged only when all of these hold (may_hedge):
//   - its method is idempotent (RFC 9110 §9.2.2): the request may reach several upstreams;
//   - it can be sent again byte for byte: no body, or a body read whole and kept within the
//     64 KiB replay buffer;
//   - no byte of the first attempt's answer has arrived (an answer on its way is waited for);
//   - the call is on the route's own cluster (a fallback cluster's attempt is not hedged).
// Each hedge goes to an endpoint other than those already tried when the cluster has one (else
// to the same one over a new connection), asks the call policies first (an open breaker
// refuses it; the attempts already running go on), and has its own first-byte deadline.
//
// The race: a response head with a status below 500 answers (the request is over: the others
// are cancelled); a 5xx, a reset, a connect failure, a non-HTTP answer or a first-byte timeout
// leaves the race to the attempts still running (no hedge is started early for it: failures
// are the retry policy's business). When every attempt has failed, the last failure is the
// attempt's result, which the route's retry policy may retry: a hedged round counts as one
// attempt of `retry.attempts`.
//
// Config (binding: bind_hedge):
//   routes[].hedge: {delay: 50ms, max_attempts: 2}   delay > 0; max_attempts 2..10
// Budget: the cluster's retry budget for the route's retry.budget (the default budget without
// `retry`); every hedge withdraws one retry; with no `retry` the hedge records each request.
//
// Metrics:
//   bulwark_route_hedges_total{route}       hedges started
//   bulwark_route_hedge_wins_total{route}   requests answered by a hedge, not the first attempt
//   bulwark_retry_budget_exhausted_total{target=<cluster>}   hedges the budget refused (with
//                                            the retries it refused)
//
// Thread-safety: immutable after construction (the policy's statistics are striped counters);
// one HedgeRun per request.
#pragma once

#include <memory>

#include "bulwark/fallback/hedge.h"
#include "bulwark/retry/retry_budget.h"
#include "config/config.h"
#include "filter/filter.h"
#include "observe/gateway_metrics.h"

namespace bulwark::gateway::filters {

struct HedgeFacts {
  bool idempotent = false;
  bool replayable = false;      // no body, or a body read whole and kept for replay
  bool answer_started = false;  // a byte of the first attempt's answer has arrived
  bool on_fallback = false;     // the call is on one of the route's fallback clusters
};

// The rules above. Pure.
constexpr bool may_hedge(const HedgeFacts& f) noexcept {
  return f.idempotent && f.replayable && !f.answer_started && !f.on_fallback;
}

// Whether an attempt's outcome answers the request (ends the race) or is a failure. Pure.
constexpr bool answers(const filter::AttemptOutcome& outcome) noexcept {
  return outcome.kind == filter::AttemptOutcome::Kind::response && outcome.status < 500;
}

class Hedge {
 public:
  // `records_requests`: true when no retry policy of the route records its requests in the
  // budget already. Throws std::invalid_argument (from the library) for options it refuses.
  Hedge(const config::HedgeSpec& spec, std::shared_ptr<retry::RetryBudget> budget,
        bool records_requests, Clock& clock, observe::RouteMetrics& metrics);

  // One request's race, bounded by the route's deadline.
  fallback::HedgeRun start(TimePoint deadline) const { return policy_.start(Deadline::at(deadline)); }
  uint32_t max_attempts() const noexcept { return policy_.options().max_attempts; }

  void count_hedge() const noexcept;
  void count_win() const noexcept;

 private:
  std::shared_ptr<retry::RetryBudget> budget_;  // outlives policy_
  fallback::HedgePolicy policy_;
  observe::RouteMetrics& metrics_;
};

// The config binding: the route's hedging over its cluster's retry budget; null without
// `hedge`.
std::unique_ptr<Hedge> bind_hedge(const config::Route& route,
                                  std::shared_ptr<retry::RetryBudget> budget, Clock& clock,
                                  observe::RouteMetrics& metrics);

}  // namespace bulwark::gateway::filters
