// Adaptive concurrency limits: find the concurrency a dependency can take from the latency and
// the drops it shows, instead of configuring a number.
//
// Two algorithms, as published in Netflix's concurrency-limits library (docs/adaptive-
// concurrency.md explains them with their parameters):
//
//   AimdLimit       additive increase, multiplicative decrease. On a drop (or an RTT above
//                   `timeout`) the limit is multiplied by backoff_ratio; on a success while the
//                   limit is actually used (in_flight >= limit / 2) it grows by 1.
//   Gradient2Limit  compares a long-term EWMA of the RTT with the latest RTT:
//                     gradient  = clamp(rtt_tolerance * long_rtt / rtt, 0.5, 1.0)
//                     new_limit = limit * gradient + queue_size
//                     limit     = limit * (1 - smoothing) + new_limit * smoothing
//                   so the limit grows by about smoothing * queue_size per sample while latency
//                   stays within the tolerance and shrinks when it rises.
//
// Both are pure state machines: on_sample(now, rtt, in_flight, dropped) returns the new limit,
// always within [min_limit, max_limit]. They are not thread-safe; AdaptiveConcurrency wraps
// one for concurrent callers and applies each new limit (e.g. to Bulkhead::set_limit).
//
// What counts as a sample: one finished call. `rtt` is its latency, `in_flight` the calls in
// flight when it started (including itself), `dropped` whether it was dropped or timed out
// (a sign of overload). Calls that failed for reasons unrelated to load should not be fed.
//
// Example:
//   bulwark::limit::Bulkhead bulkhead("api", {.max_concurrent = 20, .max_queue = 100});
//   bulwark::limit::AdaptiveConcurrency adaptive(
//       std::make_unique<bulwark::limit::Gradient2Limit>(bulwark::limit::Gradient2Options{}),
//       [&](uint32_t limit, bulwark::TimePoint now) { bulkhead.set_limit(limit, now); });
//   ... after each call: adaptive.record(now, latency, permit.in_flight_at_start(), timed_out);
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>

#include "bulwark/core/clock.h"

namespace bulwark::limit {

// An adaptive limit algorithm. Not thread-safe.
class AdaptiveLimit {
 public:
  virtual ~AdaptiveLimit() = default;
  // Feeds one finished call; returns the (possibly unchanged) limit.
  virtual uint32_t on_sample(TimePoint now, Duration rtt, uint32_t in_flight, bool dropped) = 0;
  virtual uint32_t limit() const noexcept = 0;
};

struct AimdOptions {
  uint32_t initial_limit = 20;  // min_limit <= initial_limit <= max_limit
  uint32_t min_limit = 20;      // >= 1
  uint32_t max_limit = 200;     // >= min_limit
  // Factor applied on a drop. In [0.5, 1).
  double backoff_ratio = 0.9;
  // An RTT above this counts as a drop. > 0.
  Duration timeout = std::chrono::seconds(5);
};

class AimdLimit final : public AdaptiveLimit {
 public:
  // Throws std::invalid_argument ("AimdOptions.min_limit: ...") for invalid options.
  explicit AimdLimit(AimdOptions options = {});
  uint32_t on_sample(TimePoint now, Duration rtt, uint32_t in_flight, bool dropped) override;
  uint32_t limit() const noexcept override { return limit_; }
  const AimdOptions& options() const noexcept { return options_; }

 private:
  AimdOptions options_;
  uint32_t limit_;
};

struct Gradient2Options {
  uint32_t initial_limit = 20;  // min_limit <= initial_limit <= max_limit
  uint32_t min_limit = 20;      // >= 1
  uint32_t max_limit = 200;     // >= min_limit
  // Weight of each new estimate in the limit. (0, 1].
  double smoothing = 0.2;
  // How much the RTT may exceed the long-term RTT before the limit shrinks. >= 1.
  double rtt_tolerance = 1.5;
  // Samples averaged by the long-term RTT EWMA (weight 2 / (long_window + 1)). >= 1.
  uint32_t long_window = 600;
  // Samples averaged plainly before the EWMA takes over (warm-up). >= 1.
  uint32_t warmup = 10;
  // Headroom added each update: lets the limit grow while latency is flat. >= 0.
  uint32_t queue_size = 4;
};

class Gradient2Limit final : public AdaptiveLimit {
 public:
  // Throws std::invalid_argument ("Gradient2Options.smoothing: ...") for invalid options.
  explicit Gradient2Limit(Gradient2Options options = {});
  // A drop is taken as the strongest congestion signal: gradient 0.5 (Netflix's Gradient2
  // ignores drops; feeding them makes the limit react to timeouts, not only to latency).
  uint32_t on_sample(TimePoint now, Duration rtt, uint32_t in_flight, bool dropped) override;
  uint32_t limit() const noexcept override { return static_cast<uint32_t>(estimate_); }
  // The long-term RTT average (0 before the first sample).
  Duration long_rtt() const noexcept { return Duration(static_cast<int64_t>(long_rtt_)); }
  const Gradient2Options& options() const noexcept { return options_; }

 private:
  Gradient2Options options_;
  double estimate_;
  double long_rtt_ = 0;  // nanoseconds
  uint64_t samples_ = 0;
};

// Thread-safe driver: feeds samples to an AdaptiveLimit under a mutex and calls `apply` with
// the new limit whenever it changes (and once at construction with the initial limit). `apply`
// runs under that mutex, so limits are applied in the order they were computed; it must not
// call back into this object.
class AdaptiveConcurrency {
 public:
  using Apply = std::function<void(uint32_t limit, TimePoint now)>;

  // `apply` may be empty (then read limit()). Throws std::invalid_argument if algorithm is null.
  AdaptiveConcurrency(std::unique_ptr<AdaptiveLimit> algorithm, Apply apply,
                      TimePoint now = SystemClock::instance().now());

  uint32_t record(TimePoint now, Duration rtt, uint32_t in_flight, bool dropped);
  uint32_t limit() const;
  uint64_t samples() const;

 private:
  mutable std::mutex mu_;
  std::unique_ptr<AdaptiveLimit> algorithm_;
  Apply apply_;
  uint32_t applied_;
  uint64_t samples_ = 0;
};

}  // namespace bulwark::limit
