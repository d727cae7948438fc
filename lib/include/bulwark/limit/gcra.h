// Gcra: the generic cell rate algorithm, with the exact state and arithmetic of the Redis
// script that shares a limit between gateways.
//
// Parameters: emission interval T = rate.period / rate.count, in whole microseconds (rounded
// to the nearest), and tolerance tau = (burst - 1) * T. State: one integer, the theoretical
// arrival time TAT, in microseconds. A request for n permits at now_us = floor(now / 1 us):
//
//     tat     = max(TAT, now_us)
//     new_tat = tat + n * T
//     allowed = new_tat - now_us <= tau + T          (= burst * T)
//     if allowed: TAT = new_tat
//
// burst requests fit at one instant, and one more every T after that. The decision fields:
//     remaining   = floor((now_us + burst * T - TAT') / T)   TAT' = TAT after the decision
//     reset       = TAT' - now                               (0 when TAT' <= now)
//     retry_after = (new_tat - burst * T) - now              (refused requests)
// measured in nanoseconds from the exact `now` (TAT is a whole microsecond, so retry_after is
// the exact nanosecond at which the request fits). docs/rate-limiting.md has the Redis script
// that mirrors this; locally the time base is the steady clock, in the script Redis TIME.
//
// Precision: T is whole microseconds, so the long-run rate is off by at most 0.5 us / T
// (0.05 % at 1000/s, 0.5 % at 10,000/s). Rates whose T rounds to 0 (above 2,000,000/s) are
// rejected; use TokenBucket (nanosecond interval) for high local rates.
//
// Thread-safety: every member may be called from any thread. try_acquire is lock-free: one
// load and, only when granting, one compare-and-swap of the TAT. Concurrent requests at one
// instant never get more than burst permits in total.
//
// Example:
//   bulwark::limit::Gcra limiter({.rate = bulwark::limit::Rate::per_minute(600), .burst = 20});
//   auto d = limiter.try_acquire(clock.now());
#pragma once

#include <atomic>
#include <cstdint>

#include "bulwark/limit/rate_limit.h"

namespace bulwark::limit {

struct GcraOptions {
  // count > 0 and finite, period > 0, and period / count >= 0.5 us (T rounds to >= 1 us).
  Rate rate = Rate::per_second(100);
  // Permits at one instant: tau = (burst - 1) * T. >= 1; burst * T <= 2^52 us.
  uint64_t burst = 100;
};

class Gcra final : public RateLimiter {
 public:
  // Throws std::invalid_argument naming the option ("GcraOptions.rate: ...").
  explicit Gcra(GcraOptions options = {});

  Gcra(const Gcra&) = delete;
  Gcra& operator=(const Gcra&) = delete;

  RateDecision try_acquire(TimePoint now, uint64_t permits = 1) noexcept override;
  RateDecision peek(TimePoint now) const noexcept override;
  uint64_t limit() const noexcept override { return options_.burst; }
  void reset() noexcept override;
  RateAlgorithm algorithm() const noexcept override { return RateAlgorithm::gcra; }

  // Emission interval T and tolerance tau, in whole microseconds.
  int64_t interval_us() const noexcept { return interval_us_; }
  int64_t tolerance_us() const noexcept {
    return interval_us_ * static_cast<int64_t>(options_.burst - 1);
  }
  // The current TAT in microseconds (INT64_MIN for a limiter that never granted anything).
  int64_t tat_us() const noexcept;
  const GcraOptions& options() const noexcept { return options_; }

 private:
  GcraOptions options_;
  int64_t interval_us_;
  alignas(64) std::atomic<uint64_t> word_;
};

}  // namespace bulwark::limit
