// Test utilities shared by the rate limiter tests (not part of the library).
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <utility>

#include "bulwark/core/random.h"
#include "bulwark/limit/rate_limit.h"

namespace bulwark::limit::testing {

// Takes `n` permits at `now` until refused; returns the number of permits granted.
template <class Limiter>
uint64_t drain(Limiter& limiter, TimePoint now, uint64_t n = 1, uint64_t cap = 10'000'000) {
  uint64_t granted = 0;
  while (granted < cap && limiter.try_acquire(now, n).allowed) granted += n;
  return granted;
}

// Checks that a refused decision's retry_after is exact: the same request is still refused one
// nanosecond before it and allowed at it. Takes the permits at now + retry_after (so the caller
// must continue from that instant).
inline void expect_exact_retry_after(RateLimiter& limiter, TimePoint now, uint64_t n,
                                     const RateDecision& refused) {
  ASSERT_FALSE(refused.allowed);
  ASSERT_GT(refused.retry_after, Duration::zero());
  ASSERT_NE(refused.retry_after, Duration::max());
  const TimePoint at = now + refused.retry_after;
  EXPECT_FALSE(limiter.try_acquire(at - Duration(1), n).allowed)
      << "allowed 1 ns before retry_after (" << refused.retry_after.count() << " ns)";
  EXPECT_TRUE(limiter.try_acquire(at, n).allowed)
      << "refused at retry_after (" << refused.retry_after.count() << " ns)";
}

// A named factory, for tests that run against each algorithm.
struct LimiterCase {
  const char* name;
  std::function<std::unique_ptr<RateLimiter>()> make;
  // Permits the limiter grants in a run of `seconds` of saturating demand starting full.
  double expected_per_run;
};

}  // namespace bulwark::limit::testing
