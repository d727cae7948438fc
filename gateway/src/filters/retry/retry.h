// Retry: a call policy that sends a failed attempt again, on libbulwark's RetryPolicy (the
// decision: attempts, backoff with jitter, Retry-After, deadline) and the cluster's RetryBudget
// (how many retries the cluster may take over a window). The gateway re-implements none of it;
// this filter only says which failures may be sent again safely.
//
// An attempt is tried again only when all of these hold (may_send_again, then the library):
//   1. the failure is in the route's `retry.on` set (retry::HttpClassifier: connect-failure,
//      reset, per-try-timeout, 5xx, gateway-error, listed statuses; 400, 401, 403, 404, 416
//      never) — an answer that is not HTTP is never retried;
//   2. the request can be sent again byte for byte: it has no body, or its body was read whole
//      and kept within the 64 KiB replay buffer (upstream/exchange.h kReplayBytes);
//   3. the method is idempotent (RFC 9110 §9.2.2), or no byte of the request can have reached
//      the upstream (a connect failure), or the route opts in with `retry.non_idempotent`;
//   4. the library agrees: attempts left, the backoff (or the answer's Retry-After, capped at
//      `retry.max_retry_after`) ends with at least 1 ms of the route's deadline left, and the
//      budget grants a retry.
// Nothing of the answer has reached the client when the question is asked (the exchange asks
// before relaying), so a retry never follows a response byte. The exchange sends the retry to
// another endpoint when the cluster has one (upstream/exchange_rules.h pick_endpoint). A
// stale pooled connection replaced before any answer byte is not an attempt here (exchange).
// Retries stay within the route's cluster: an attempt on a fallback cluster is never retried
// (the exchange moves on to the next fallback instead).
//
// Config (binding: bind_retry):
//   routes[].retry.attempts           1 .. 10, counts the first try (default 3)
//   routes[].retry.on                 list (default connect-failure, reset, per-try-timeout,
//                                     502, 503, 504)
//   routes[].retry.backoff            base, max, multiplier, jitter (library BackoffOptions)
//   routes[].retry.max_retry_after    cap on an upstream's Retry-After (default 10s)
//   routes[].retry.budget             ratio (0.2), min_per_second (10): per cluster
//   routes[].retry.non_idempotent     false
//   routes[].timeouts.request         the deadline every attempt and wait fits in
//
// Metrics:
//   bulwark_route_retries_total{route}                counter  attempts after the first
//   bulwark_route_retries_denied_total{route,reason}  counter  retries_exhausted |
//       budget_exhausted | deadline_exceeded | not_replayable | not_idempotent
//   bulwark_retry_budget_*{target=<cluster>}          the library's budget series
//                                                     (route/policy_store.h)
//
// Thread-safety: immutable; per-request state (the library's Attempts) lives in FilterState.
#pragma once

#include <memory>
#include <optional>

#include "bulwark/retry/classifier.h"
#include "bulwark/retry/retry_budget.h"
#include "bulwark/retry/retry_policy.h"
#include "config/config.h"
#include "filter/filter.h"
#include "observe/gateway_metrics.h"

namespace bulwark::gateway::filters {

// Why a retryable failure may not be sent again (index into observe::kRetryDenials), or none.
enum class RetryDenial : uint8_t {
  retries_exhausted,
  budget_exhausted,
  deadline_exceeded,
  not_replayable,
  not_idempotent,
  none,
};

// Rules 2 and 3 above. Pure.
constexpr RetryDenial may_send_again(const filter::AttemptOutcome& outcome,
                                     bool non_idempotent_allowed) noexcept {
  if (!outcome.replayable) return RetryDenial::not_replayable;
  if (!outcome.idempotent && outcome.request_sent && !non_idempotent_allowed) {
    return RetryDenial::not_idempotent;
  }
  return RetryDenial::none;
}

// The library's judgement of one attempt (rule 1). Pure.
Outcome classify_attempt(const retry::HttpClassifier& classifier,
                         const filter::AttemptOutcome& outcome) noexcept;

class Retry final : public filter::CallPolicy {
 public:
  // Throws std::invalid_argument (from the library) for options it refuses.
  Retry(const config::RetrySpec& spec, Duration request_timeout,
        std::shared_ptr<retry::RetryBudget> budget, observe::RouteMetrics& metrics);

  std::string_view name() const noexcept override { return "retry"; }
  filter::LocalReply before_attempt(const filter::AttemptStart& start,
                                    filter::FilterState& state) const override;
  void after_attempt(const filter::AttemptOutcome& outcome,
                     filter::FilterState& state) const override;
  filter::RetryAdvice retry(const filter::AttemptOutcome& outcome,
                            filter::FilterState& state) const override;

 private:
  using Attempts = std::optional<retry::RetryPolicy::Attempts>;
  void count_denial(RetryDenial denial) const noexcept;

  retry::RetryPolicy policy_;
  retry::HttpClassifier classifier_;
  Duration request_timeout_;
  bool non_idempotent_;
  std::shared_ptr<retry::RetryBudget> budget_;
  observe::RouteMetrics& metrics_;
};

// The config binding: the route's retry over its cluster's budget; null without `retry`.
std::unique_ptr<filter::CallPolicy> bind_retry(const config::Route& route,
                                               std::shared_ptr<retry::RetryBudget> budget,
                                               observe::RouteMetrics& metrics);

}  // namespace bulwark::gateway::filters
