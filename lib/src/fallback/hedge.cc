#include "bulwark/fallback/hedge.h"

#include <stdexcept>

namespace bulwark::fallback {
namespace {

void validate(const HedgeOptions& o) {
  if (o.delay < Duration::zero()) throw std::invalid_argument("hedge.delay: must be >= 0");
  if (o.max_attempts < 1 || o.max_attempts > HedgeRun::kMaxAttempts) {
    throw std::invalid_argument("hedge.max_attempts: must be between 1 and 64");
  }
}

constexpr uint64_t bit(uint32_t i) noexcept { return uint64_t{1} << i; }

}  // namespace

// ---------------------------------------------------------------------------------------------
// HedgePolicy

HedgePolicy::HedgePolicy(HedgeOptions options, retry::RetryBudget* budget, Clock& clock,
                         EventListener* listener, std::string name)
    : options_(options),
      budget_(budget),
      clock_(clock),
      listener_(listener),
      name_(std::move(name)) {
  validate(options_);
}

HedgeRun HedgePolicy::start(Deadline deadline, FailureChoice report) const {
  return HedgeRun(*this, deadline, report);
}

HedgePolicy::Stats HedgePolicy::stats() const noexcept {
  return {calls_.value(), hedges_.value(), hedge_wins_.value(), budget_refused_.value()};
}

// ---------------------------------------------------------------------------------------------
// HedgeRun

HedgeRun::HedgeRun(const HedgeOptions& options, retry::RetryBudget* budget, Deadline deadline,
                   FailureChoice report)
    : options_(options), budget_(budget), deadline_(deadline), report_(report) {
  validate(options_);
}

// The policy's options were validated by its constructor.
HedgeRun::HedgeRun(const HedgePolicy& policy, Deadline deadline, FailureChoice report)
    : options_(policy.options_),
      budget_(policy.budget_),
      policy_(&policy),
      deadline_(deadline),
      report_(report) {}

HedgeRun HedgeRun::parallel(uint32_t branches, FailureChoice report) {
  HedgeOptions o;
  o.delay = Duration::zero();
  o.max_attempts = branches;
  o.hedge_on_failure = false;  // irrelevant: every branch starts before any result
  o.record_requests = false;
  return HedgeRun(o, nullptr, Deadline::never(), report);
}

RaceAction HedgeRun::on_start(TimePoint now) {
  if (started_ != 0 || done_) return RaceAction::none();
  if (budget_ != nullptr && options_.record_requests) budget_->record_request(now);
  if (policy_ != nullptr) policy_->calls_.add();
  started_ = 1;
  running_ = bit(0);
  arm(now);
  return RaceAction::start(0);
}

void HedgeRun::arm(TimePoint from) noexcept {
  if (!hedging_ || started_ >= options_.max_attempts || options_.delay == Duration::max()) {
    next_at_.reset();
    return;
  }
  next_at_ = saturating_add(from, options_.delay);
}

RaceAction HedgeRun::try_start_next(TimePoint now) {
  next_at_.reset();
  if (done_ || !hedging_ || started_ >= options_.max_attempts) return RaceAction::none();
  if (deadline_.expired(now)) {
    policy_reason_ = make_error_code(errc::deadline_exceeded);
    stop_hedging();
    return RaceAction::none();
  }
  // Withdraw only at the moment of starting, so a hedge that is never needed costs nothing.
  if (budget_ != nullptr && !budget_->try_withdraw(now)) {
    policy_reason_ = make_error_code(errc::budget_exhausted);
    if (policy_ != nullptr) policy_->budget_refused_.add();
    stop_hedging();
    return RaceAction::none();
  }
  const uint32_t k = started_++;
  running_ |= bit(k);
  if (policy_ != nullptr) policy_->hedges_.add();
  arm(now);
  return RaceAction::start(k);
}

RaceAction HedgeRun::on_timer(TimePoint now) {
  if (done_ || !next_at_ || now < *next_at_) return RaceAction::none();
  return try_start_next(now);
}

RaceAction HedgeRun::on_result(uint32_t index, Outcome outcome, TimePoint now) {
  if (done_ || !is_running(index)) return RaceAction::none();
  running_ &= ~bit(index);
  if (!is_failure(outcome)) return finish(index, true);

  if (!any_failed_) first_failed_ = index;
  any_failed_ = true;
  last_failed_ = index;
  if (index < lowest_failed_) lowest_failed_ = index;

  if (outcome == Outcome::final_failure) {
    // Retrying cannot help; the attempts already running may still answer.
    stop_hedging();
  } else if (options_.hedge_on_failure) {
    const RaceAction next = try_start_next(now);
    if (next.kind == RaceAction::Kind::start) return next;
  } else if (running_ == 0) {
    stop_hedging();
  }
  if (running_ == 0) return finish(chosen_failure(), false);
  return RaceAction::none();
}

void HedgeRun::abort() noexcept {
  stop_hedging();
  done_ = true;
  answer_.reset();
}

RaceAction HedgeRun::finish(uint32_t index, bool answered) noexcept {
  stop_hedging();
  done_ = true;
  answered_ = answered;
  answer_ = index;
  if (answered && index > 0 && policy_ != nullptr) policy_->hedge_wins_.add();
  return RaceAction::finish(index);
}

uint32_t HedgeRun::chosen_failure() const noexcept {
  switch (report_) {
    case FailureChoice::first_to_fail:
      return first_failed_;
    case FailureChoice::lowest_index:
      return lowest_failed_;
    case FailureChoice::last_to_fail:
      break;
  }
  return last_failed_;
}

}  // namespace bulwark::fallback
