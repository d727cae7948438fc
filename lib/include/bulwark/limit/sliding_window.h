// SlidingWindow: at most about `limit` permits in any `window`, estimated from two fixed
// windows weighted by overlap (the "sliding window counter").
//
// Time is cut into fixed windows [k*W, (k+1)*W) on the steady clock. The limiter counts the
// permits granted in the current window (cur) and remembers the count of the previous one
// (prev). At elapsed time e into the current window it estimates the permits granted in the
// last W as
//
//     estimate = prev * (1 - e / W) + cur
//
// and grants n permits iff estimate + n <= limit, evaluated exactly in integers as
// prev * (W - e) + (cur + n) * W <= limit * W. A new limiter (or one idle for two windows)
// grants `limit` at once; under steady demand it grants `limit` per window, spread over the
// window as the previous window's weight decays. It never grants more than `limit` within one
// fixed window, and at most 2 * limit in any interval of length W (the estimate assumes the
// previous window's permits were evenly spread).
//
// Decision fields: remaining = the most permits that would be granted now; reset = time until
// the estimate is exactly 0 (the end of the current window if cur == 0 and prev > 0, the end of
// the next one if cur > 0); retry_after = the exact nanosecond at which the request fits,
// solving the inequality above for e (possibly in the next window, where prev becomes cur).
//
// State: one 64-bit word [window index mod 2^28 | prev:18 | cur:18], so limit <= 262,143.
// Window indices are kept modulo 2^28: a limiter left completely unused for exactly a multiple
// of 2^28 windows (8.5 years with 1 s windows, 74 hours with 1 ms windows) and then used in
// one of the two matching windows sees its old
// counts again for at most two windows (more refusals, never more grants). A `now` older than
// the recorded window is decided at the start of the recorded window (conservatively).
//
// Thread-safety: every member may be called from any thread; try_acquire is lock-free (one
// load and, only when granting, one compare-and-swap). Concurrent requests at one instant never
// get more than the estimate allows in total.
//
// Example:
//   bulwark::limit::SlidingWindow limiter({.limit = 6000, .window = std::chrono::minutes(1)});
//   auto d = limiter.try_acquire(clock.now());
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>

#include "bulwark/limit/rate_limit.h"

namespace bulwark::limit {

struct SlidingWindowOptions {
  // Permits per window. 1..kMaxLimit.
  uint64_t limit = 100;
  // Window length. > 0 and <= 2^62 ns.
  Duration window = std::chrono::seconds(1);

  static constexpr uint64_t kMaxLimit = (uint64_t{1} << 18) - 1;
};

class SlidingWindow final : public RateLimiter {
 public:
  // Throws std::invalid_argument naming the option ("SlidingWindowOptions.limit: ...").
  explicit SlidingWindow(SlidingWindowOptions options = {});

  SlidingWindow(const SlidingWindow&) = delete;
  SlidingWindow& operator=(const SlidingWindow&) = delete;

  RateDecision try_acquire(TimePoint now, uint64_t permits = 1) noexcept override;
  RateDecision peek(TimePoint now) const noexcept override;
  uint64_t limit() const noexcept override { return options_.limit; }
  void reset() noexcept override;
  RateAlgorithm algorithm() const noexcept override { return RateAlgorithm::sliding_window; }

  // The estimate of permits granted in the last window at `now` (prev * (1 - e/W) + cur).
  double estimate(TimePoint now) const noexcept;
  const SlidingWindowOptions& options() const noexcept { return options_; }

 private:
  SlidingWindowOptions options_;
  alignas(64) std::atomic<uint64_t> word_;
};

}  // namespace bulwark::limit
