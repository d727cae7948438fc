// Rate limiting vocabulary shared by every rate limiter: Rate, RateDecision, the header mapping
// and the RateLimiter interface.
//
// Three algorithms implement RateLimiter (see docs/rate-limiting.md for the arithmetic):
//   - TokenBucket   (token_bucket.h)   rate + burst, nanosecond precision, lock-free
//   - Gcra          (gcra.h)           rate + burst, one integer TAT in microseconds, lock-free;
//                                      the same state and arithmetic as the Redis script used
//                                      for limits shared between gateways
//   - SlidingWindow (sliding_window.h) at most `limit` per window, two fixed windows weighted
//                                      by overlap, lock-free
// and KeyedLimiter (keyed_limiter.h) keeps one state of any of them per key (client IP, route,
// header value) in a sharded table with a hard memory bound.
//
// Every decision carries what an HTTP server needs for the RateLimit-Limit, RateLimit-Remaining,
// RateLimit-Reset and Retry-After headers (to_headers()).
//
// Time: limiters never read a clock; every call takes `now` (a TimePoint of one steady clock,
// e.g. Clock::now()). Passing a `now` older than one already passed is allowed and is treated
// as that older instant (nothing is refunded or lost; the answer is what it would have been
// then, given what was admitted since).
//
// Example:
//   bulwark::limit::Gcra limiter({.rate = bulwark::limit::Rate::per_second(10), .burst = 20});
//   bulwark::limit::RateDecision d = limiter.try_acquire(clock.now());
//   auto h = bulwark::limit::to_headers(d);   // RateLimit-Limit: h.limit, ...
//   if (!d.allowed) return reply_429(h.retry_after_seconds);
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string_view>

#include "bulwark/core/clock.h"

namespace bulwark::limit {

// `count` permits per `period`, e.g. {100, 1s} ("100/s") or {6000, 1min} ("6000/m").
struct Rate {
  // Permits per period. > 0 and finite; fractional values are allowed (0.5/s = one per 2 s).
  double count = 100;
  // > 0.
  Duration period = std::chrono::seconds(1);

  static constexpr Rate per_second(double n) noexcept { return {n, std::chrono::seconds(1)}; }
  static constexpr Rate per_minute(double n) noexcept { return {n, std::chrono::minutes(1)}; }
  static constexpr Rate per_hour(double n) noexcept { return {n, std::chrono::hours(1)}; }

  // Permits per second.
  double per_second() const noexcept;
  // The emission interval period / count: the time one permit takes to come back, rounded to
  // the nearest nanosecond. Zero if the rate is not valid.
  Duration interval() const noexcept;
};

// The answer of a limiter to one request for `permits` permits at `now`.
struct RateDecision {
  // Whether the permits were granted (and taken).
  bool allowed = false;
  // The most permits the limiter can ever grant at one instant: the burst (token bucket, GCRA)
  // or the per-window limit (sliding window). RateLimit-Limit.
  uint64_t limit = 0;
  // Permits that could be granted at `now`, right after this decision (after taking the
  // permits when allowed). RateLimit-Remaining.
  uint64_t remaining = 0;
  // Time from `now` until the limiter has fully recovered (remaining == limit) if nothing more
  // is taken. Zero when it already is. RateLimit-Reset.
  Duration reset{};
  // Zero when allowed. Otherwise exactly the time from `now` until the same request (the same
  // number of permits) would be allowed if nothing else is taken meanwhile: one nanosecond
  // earlier it is still refused. Duration::max() if it can never be allowed (more permits than
  // `limit`). Retry-After.
  Duration retry_after{};
};

// Header values for a decision, in whole seconds (delta-seconds), rounded UP so that a client
// that waits the advertised time is admitted:
//   RateLimit-Limit: limit   RateLimit-Remaining: remaining   RateLimit-Reset: reset_seconds
//   Retry-After: *retry_after_seconds   (only when refused; absent when it can never succeed)
struct RateLimitHeaders {
  uint64_t limit = 0;
  uint64_t remaining = 0;
  uint64_t reset_seconds = 0;
  std::optional<uint64_t> retry_after_seconds;
};

// ceil(d / 1 s); 0 for d <= 0. Duration::max() maps to the largest value (about 292 years).
uint64_t ceil_seconds(Duration d) noexcept;
RateLimitHeaders to_headers(const RateDecision& d) noexcept;

// The algorithms, for configuration ("token_bucket", "gcra", "sliding_window").
enum class RateAlgorithm : uint8_t { token_bucket, gcra, sliding_window };
std::string_view to_string(RateAlgorithm a) noexcept;
std::optional<RateAlgorithm> parse_rate_algorithm(std::string_view name) noexcept;

// A limiter with one shared state (not keyed). Implementations are thread-safe and lock-free.
class RateLimiter {
 public:
  virtual ~RateLimiter() = default;

  // Takes `permits` permits at `now` if they are available; never blocks. permits == 0 is a
  // query (always allowed, takes nothing).
  virtual RateDecision try_acquire(TimePoint now, uint64_t permits = 1) noexcept = 0;
  // The decision a request for one permit would get at `now`, without taking anything. Use it
  // for RateLimit-* headers on responses that did not consume a permit.
  virtual RateDecision peek(TimePoint now) const noexcept = 0;
  // RateDecision::limit of every decision of this limiter.
  virtual uint64_t limit() const noexcept = 0;
  // Forgets everything taken: back to the state of a new limiter.
  virtual void reset() noexcept = 0;
  virtual RateAlgorithm algorithm() const noexcept = 0;
};

}  // namespace bulwark::limit
