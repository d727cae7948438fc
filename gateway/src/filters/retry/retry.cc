#include "filters/retry/retry.h"

namespace bulwark::gateway::filters {

namespace {

retry::RetryOptions options_of(const config::RetrySpec& spec) {
  retry::RetryOptions o;
  o.max_attempts = spec.attempts;
  o.backoff = spec.backoff;
  o.honour_retry_after = true;
  o.max_retry_after = spec.max_retry_after;
  return o;
}

RetryDenial denial_of(errc reason) noexcept {
  switch (reason) {
    case errc::budget_exhausted:
      return RetryDenial::budget_exhausted;
    case errc::deadline_exceeded:
      return RetryDenial::deadline_exceeded;
    default:
      return RetryDenial::retries_exhausted;
  }
}

}  // namespace

Outcome classify_attempt(const retry::HttpClassifier& classifier,
                         const filter::AttemptOutcome& outcome) noexcept {
  using Kind = filter::AttemptOutcome::Kind;
  switch (outcome.kind) {
    case Kind::response:
      return classifier.classify(outcome.status);
    case Kind::connect_failure:
      return classifier.classify(retry::TransportFailure::connect_failure);
    case Kind::reset:
      return classifier.classify(retry::TransportFailure::reset);
    case Kind::timeout:
      return classifier.classify(retry::TransportFailure::per_try_timeout);
    case Kind::bad_response:
      break;
  }
  return Outcome::final_failure;
}

Retry::Retry(const config::RetrySpec& spec, Duration request_timeout,
             std::shared_ptr<retry::RetryBudget> budget, observe::RouteMetrics& metrics)
    : policy_(options_of(spec)),
      classifier_(spec.on),
      request_timeout_(request_timeout),
      non_idempotent_(spec.non_idempotent),
      budget_(std::move(budget)),
      metrics_(metrics) {}

filter::LocalReply Retry::before_attempt(const filter::AttemptStart& start,
                                         filter::FilterState& state) const {
  const TimePoint now = start.now;
  Attempts& attempts = state.state<Attempts>();
  // The first attempt starts the call (and counts one request in the budget).
  if (!attempts)
    attempts.emplace(policy_.start(now, Deadline::after(now, request_timeout_), budget_.get()));
  return {};
}

void Retry::after_attempt(const filter::AttemptOutcome& outcome, filter::FilterState& state) const {
  (void)outcome;
  (void)state;
}

filter::RetryAdvice Retry::retry(const filter::AttemptOutcome& outcome,
                                 filter::FilterState& state) const {
  Attempts& attempts = state.state<Attempts>();
  if (!attempts || outcome.cluster != 0) return {};
  const Outcome judged = classify_attempt(classifier_, outcome);
  if (judged != Outcome::retryable_failure) return {};
  if (const RetryDenial denial = may_send_again(outcome, non_idempotent_);
      denial != RetryDenial::none) {
    count_denial(denial);
    return {};
  }
  const retry::RetryDecision decision =
      attempts->on_outcome(judged, outcome.now, *outcome.random, outcome.retry_after);
  if (decision.action == retry::RetryAction::retry) {
    if (metrics_.retries != nullptr) metrics_.retries->inc();
    return {true, decision.delay};
  }
  if (decision.action == retry::RetryAction::stop) count_denial(denial_of(decision.reason));
  return {};
}

void Retry::count_denial(RetryDenial denial) const noexcept {
  observe::Counter* c = metrics_.retries_denied[static_cast<std::size_t>(denial)];
  if (c != nullptr) c->inc();
}

}  // namespace bulwark::gateway::filters
