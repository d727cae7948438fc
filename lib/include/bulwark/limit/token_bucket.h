// TokenBucket: at most `burst` permits at once, refilled continuously at `rate`.
//
// The bucket holds up to `burst` tokens and gains one every rate.interval() (period / count,
// rounded to the nearest nanosecond). A request for n tokens is granted if n tokens are there
// and takes them; otherwise it is refused and takes nothing. A new bucket is full. Over any
// interval of length t the bucket grants at most burst + t / interval permits.
//
// Representation: one 64-bit word, the instant (ns, steady clock) at which the bucket would
// have been empty. The bucket holds min(burst, (now - word) / interval) tokens, so refilling
// needs no write: only granting moves the word, by n * interval. This is the GCRA of gcra.h
// expressed in nanoseconds (same admissions for the same rate and burst, up to rounding of
// the interval): the token bucket is the form with nanosecond precision for local use, GCRA
// the form whose state a Redis script can share between gateways.
//
// Precision: the interval is rounded to whole nanoseconds, so the long-run rate is off by at
// most 0.5 ns / interval (0.05 % at 1,000,000/s). Decisions are exact integer arithmetic on
// that interval; retry_after is the exact nanosecond at which the request would fit.
//
// Thread-safety: every member may be called from any thread. try_acquire is lock-free: one
// load and, only when granting, one compare-and-swap of the word (a refusal writes nothing, so
// refused callers do not contend). Concurrent requests at one instant never get more than
// burst permits in total.
//
// Example:
//   bulwark::limit::TokenBucket bucket({.rate = bulwark::limit::Rate::per_second(50),
//                                       .burst = 100});
//   if (auto d = bucket.try_acquire(clock.now()); !d.allowed) {
//     return reject(d.retry_after);
//   }
#pragma once

#include <atomic>
#include <cstdint>

#include "bulwark/limit/rate_limit.h"

namespace bulwark::limit {

struct TokenBucketOptions {
  // Refill rate. count > 0 and finite, period > 0, and period / count >= 1 ns.
  Rate rate = Rate::per_second(100);
  // Capacity: the most tokens granted at one instant. >= 1; burst * interval <= 2^62 ns.
  uint64_t burst = 100;
};

class TokenBucket final : public RateLimiter {
 public:
  // Throws std::invalid_argument naming the option ("TokenBucketOptions.burst: ...").
  explicit TokenBucket(TokenBucketOptions options = {});

  TokenBucket(const TokenBucket&) = delete;
  TokenBucket& operator=(const TokenBucket&) = delete;

  RateDecision try_acquire(TimePoint now, uint64_t permits = 1) noexcept override;
  RateDecision peek(TimePoint now) const noexcept override;
  uint64_t limit() const noexcept override { return options_.burst; }
  void reset() noexcept override;
  RateAlgorithm algorithm() const noexcept override { return RateAlgorithm::token_bucket; }

  // Tokens in the bucket at `now`, with the fraction of the one being refilled (0..burst).
  double tokens(TimePoint now) const noexcept;
  // Time for one token to come back.
  Duration interval() const noexcept { return Duration(interval_); }
  const TokenBucketOptions& options() const noexcept { return options_; }

 private:
  TokenBucketOptions options_;
  int64_t interval_;  // ns per token
  int64_t capacity_;  // burst * interval_, ns
  alignas(64) std::atomic<uint64_t> word_;
};

}  // namespace bulwark::limit
