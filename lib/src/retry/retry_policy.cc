#include "bulwark/retry/retry_policy.h"

#include <algorithm>
#include <stdexcept>
#include <string>

namespace bulwark::retry {
namespace {

const RetryOptions& validated(const RetryOptions& o) {
  auto fail = [](const std::string& what) { throw std::invalid_argument("retry: " + what); };
  if (o.max_attempts == 0) fail("max_attempts must be at least 1 (it counts the first call)");
  if (o.per_try_timeout <= Duration::zero()) {
    fail("per_try_timeout must be positive (got " + std::to_string(o.per_try_timeout.count()) +
         "ns)");
  }
  if (o.min_per_try < Duration::zero()) {
    fail("min_per_try must not be negative (got " + std::to_string(o.min_per_try.count()) + "ns)");
  }
  if (o.max_retry_after < Duration::zero()) {
    fail("max_retry_after must not be negative (got " + std::to_string(o.max_retry_after.count()) +
         "ns)");
  }
  return o;
}

}  // namespace

std::string_view to_string(RetryAction a) noexcept {
  switch (a) {
    case RetryAction::done:
      return "done";
    case RetryAction::retry:
      return "retry";
    case RetryAction::stop:
      return "stop";
  }
  return "unknown";
}

RetryPolicy::RetryPolicy(RetryOptions options)
    : options_(validated(options)), backoff_(options_.backoff) {}

RetryPolicy::Attempts RetryPolicy::start(TimePoint now, Deadline deadline,
                                         RetryBudget* budget) const {
  if (budget != nullptr) budget->record_request(now);
  return Attempts(*this, deadline, budget);
}

bool RetryPolicy::Attempts::may_start(TimePoint now) const noexcept {
  return deadline_.remaining(now) >= policy_->options_.min_per_try;
}

Duration RetryPolicy::Attempts::per_try_timeout(TimePoint now) const noexcept {
  return deadline_.clamp(now, policy_->options_.per_try_timeout);
}

RetryDecision RetryPolicy::Attempts::on_outcome(Outcome outcome, TimePoint now, Random& rng,
                                                std::optional<Duration> retry_after) {
  if (finished_) return *finished_;
  const RetryOptions& o = policy_->options_;

  auto finish = [this](RetryDecision d) {
    finished_ = d;
    return d;
  };
  if (outcome != Outcome::retryable_failure) return finish({RetryAction::done});
  if (attempt_ >= o.max_attempts) {
    return finish({RetryAction::stop, Duration::zero(), errc::retries_exhausted});
  }

  // The backoff is always advanced, even when a Retry-After hint replaces it, so that
  // decorrelated backoff keeps its own sequence.
  const Duration backoff = policy_->backoff_.delay(attempt_, previous_backoff_, rng);
  Duration delay = backoff;
  if (o.honour_retry_after && retry_after) {
    delay = std::clamp(*retry_after, Duration::zero(), o.max_retry_after);
  }

  if (!deadline_.is_never()) {
    // Sleeping `delay` must leave at least min_per_try for the next attempt; otherwise the
    // sleep is useless and the caller learns now rather than after it.
    const Duration remaining = deadline_.remaining(now);
    if (remaining < delay || remaining - delay < o.min_per_try) {
      return finish({RetryAction::stop, Duration::zero(), errc::deadline_exceeded});
    }
  }

  if (budget_ != nullptr && !budget_->try_withdraw(now)) {
    return finish({RetryAction::stop, Duration::zero(), errc::budget_exhausted});
  }

  previous_backoff_ = backoff;
  ++attempt_;
  return {RetryAction::retry, delay};
}

}  // namespace bulwark::retry
