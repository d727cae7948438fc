#include "bulwark/limit/adaptive_limit.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

namespace bulwark::limit {

namespace {

[[noreturn]] void invalid(const char* type, const char* field, const char* what) {
  throw std::invalid_argument(std::string(type) + "." + field + ": " + what);
}

template <class Options>
void validate_bounds(const char* type, const Options& o) {
  if (o.min_limit < 1) invalid(type, "min_limit", "must be >= 1");
  if (o.max_limit < o.min_limit) invalid(type, "max_limit", "must be >= min_limit");
  if (o.initial_limit < o.min_limit || o.initial_limit > o.max_limit) {
    invalid(type, "initial_limit", "must be within [min_limit, max_limit]");
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// AIMD

AimdLimit::AimdLimit(AimdOptions options) : options_(options), limit_(options.initial_limit) {
  validate_bounds("AimdOptions", options_);
  if (!(options_.backoff_ratio >= 0.5 && options_.backoff_ratio < 1.0)) {
    invalid("AimdOptions", "backoff_ratio", "must be in [0.5, 1)");
  }
  if (options_.timeout <= Duration::zero()) invalid("AimdOptions", "timeout", "must be > 0");
}

uint32_t AimdLimit::on_sample(TimePoint, Duration rtt, uint32_t in_flight, bool dropped) {
  uint64_t next = limit_;
  if (dropped || rtt > options_.timeout) {
    next = static_cast<uint64_t>(static_cast<double>(limit_) * options_.backoff_ratio);
  } else if (static_cast<uint64_t>(in_flight) * 2 >= limit_) {
    // Grow only while the limit is actually in use; an idle client proves nothing about
    // what the dependency could take.
    next = static_cast<uint64_t>(limit_) + 1;
  }
  limit_ =
      static_cast<uint32_t>(std::clamp<uint64_t>(next, options_.min_limit, options_.max_limit));
  return limit_;
}

// ---------------------------------------------------------------------------------------------
// Gradient2

Gradient2Limit::Gradient2Limit(Gradient2Options options)
    : options_(options), estimate_(options.initial_limit) {
  validate_bounds("Gradient2Options", options_);
  if (!(options_.smoothing > 0 && options_.smoothing <= 1)) {
    invalid("Gradient2Options", "smoothing", "must be in (0, 1]");
  }
  if (!(options_.rtt_tolerance >= 1) || !std::isfinite(options_.rtt_tolerance)) {
    invalid("Gradient2Options", "rtt_tolerance", "must be a finite number >= 1");
  }
  if (options_.long_window < 1) invalid("Gradient2Options", "long_window", "must be >= 1");
  if (options_.warmup < 1) invalid("Gradient2Options", "warmup", "must be >= 1");
}

uint32_t Gradient2Limit::on_sample(TimePoint, Duration rtt, uint32_t in_flight, bool dropped) {
  // An RTT of 0 (a clock that did not move) would make the ratio infinite; 1 ns is as good.
  const double short_rtt = static_cast<double>(std::max<int64_t>(1, rtt.count()));

  // Long-term RTT: the plain mean during warm-up, then an EWMA over ~long_window samples.
  ++samples_;
  if (samples_ <= options_.warmup) {
    long_rtt_ += (short_rtt - long_rtt_) / static_cast<double>(samples_);
  } else {
    const double factor = 2.0 / (static_cast<double>(options_.long_window) + 1.0);
    long_rtt_ = long_rtt_ * (1 - factor) + short_rtt * factor;
  }
  // After a long overload the long-term RTT is inflated and would hide the next one; when
  // latency is back to well below it, pull it down faster than the EWMA would.
  if (long_rtt_ / short_rtt > 2) long_rtt_ *= 0.95;

  double gradient;
  if (dropped) {
    gradient = 0.5;
  } else {
    // Application-limited: too few calls in flight to say anything about the limit.
    if (static_cast<double>(in_flight) < estimate_ / 2) return limit();
    // Never cut by more than half per sample: one outlier must not collapse the limit.
    gradient = std::clamp(options_.rtt_tolerance * long_rtt_ / short_rtt, 0.5, 1.0);
  }
  double next = estimate_ * gradient + options_.queue_size;
  next = estimate_ * (1 - options_.smoothing) + next * options_.smoothing;
  estimate_ = std::clamp(next, static_cast<double>(options_.min_limit),
                         static_cast<double>(options_.max_limit));
  return limit();
}

// ---------------------------------------------------------------------------------------------
// AdaptiveConcurrency

AdaptiveConcurrency::AdaptiveConcurrency(std::unique_ptr<AdaptiveLimit> algorithm, Apply apply,
                                         TimePoint now)
    : algorithm_(std::move(algorithm)), apply_(std::move(apply)) {
  if (!algorithm_) throw std::invalid_argument("AdaptiveConcurrency: algorithm is null");
  applied_ = algorithm_->limit();
  if (apply_) apply_(applied_, now);
}

uint32_t AdaptiveConcurrency::record(TimePoint now, Duration rtt, uint32_t in_flight,
                                     bool dropped) {
  std::lock_guard lock(mu_);
  ++samples_;
  const uint32_t limit = algorithm_->on_sample(now, rtt, in_flight, dropped);
  if (limit != applied_) {
    applied_ = limit;
    if (apply_) apply_(limit, now);
  }
  return limit;
}

uint32_t AdaptiveConcurrency::limit() const {
  std::lock_guard lock(mu_);
  return applied_;
}

uint64_t AdaptiveConcurrency::samples() const {
  std::lock_guard lock(mu_);
  return samples_;
}

}  // namespace bulwark::limit
