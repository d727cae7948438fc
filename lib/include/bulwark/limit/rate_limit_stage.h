// RateLimitStage: a rate limiter as a pipeline stage.
//
// Each call that enters the stage asks the limiter for `permits` permits at the pipeline
// clock's `now`. Granted: the call proceeds (nothing is given back when it finishes; a rate
// limiter counts starts, not calls in flight). Refused: the call finishes at once, without
// running the inner stages, with
//
//     AttemptResult::from_policy(errc::rate_limited, Outcome::final_failure, retry_after)
//
// where retry_after is the limiter's exact time until the permits would be available. The
// outcome is final, so a retry stage around this one does not retry it: retrying a refused
// call at once cannot succeed, and retrying after retry_after would hide the limit from the
// caller, who should see it (HTTP 429 with Retry-After) and decide.
//
// Placement (outermost first, as pipeline.h): put the stage OUTSIDE retry to limit calls, or
// INSIDE retry to limit attempts (then every retry needs a permit too, which bounds the load
// retries add to the target). Put it outside any circuit breaker: a breaker inside sees only
// admitted calls, while a breaker outside would count rate_limited as a failure
// (Outcome::final_failure is a breaker failure) and could open because of the limiter.
//
// The limiter is shared by every call through the stage (and may be shared with other
// stages). For one limit per client or per key, use KeyedRateLimitStage
// (keyed_rate_limit_stage.h), which limits each call under its ExecuteOptions::key.
//
// Thread-safety: the stage is immutable apart from its striped statistics; share it freely.
// The limiter must outlive every pipeline that uses the stage.
//
// Example:
//   bulwark::limit::TokenBucket bucket({.rate = bulwark::limit::Rate::per_second(100),
//                                       .burst = 20});
//   auto pipeline = bulwark::Pipeline::Builder(clock)
//                       .rate_limit(bucket)   // a RateLimitStage
//                       .retry({.max_attempts = 3})
//                       .circuit_breaker(breaker)
//                       .build();
//   auto r = pipeline.execute(call);   // r.error() == bulwark::errc::rate_limited when refused
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "bulwark/core/striped_counter.h"
#include "bulwark/limit/rate_limit.h"
#include "bulwark/pipeline/events.h"
#include "bulwark/pipeline/stage.h"

namespace bulwark::limit {

struct RateLimitStageOptions {
  // Taken by each call, 1..limiter.limit() (std::invalid_argument otherwise: a call needing
  // more than the limit could never run).
  uint64_t permits = 1;
  // Told of every refusal (EventListener::on_rejected) when not null, as `name`.
  EventListener* listener = nullptr;
  std::string name;
};

class RateLimitStage final : public Stage {
 public:
  // permits: taken by each call, 1..limiter.limit() (std::invalid_argument otherwise: a call
  // needing more than the limit could never run).
  explicit RateLimitStage(RateLimiter& limiter, uint64_t permits = 1);
  RateLimitStage(RateLimiter& limiter, RateLimitStageOptions options);

  std::unique_ptr<StageRun> start() const override;
  std::size_t run_size() const noexcept override;
  std::size_t run_align() const noexcept override;
  StageRun* start_in(void* storage) const override;
  std::string_view kind() const noexcept override { return "rate_limit"; }

  RateLimiter& limiter() const noexcept { return limiter_; }
  uint64_t permits() const noexcept { return permits_; }

  struct Stats {
    uint64_t calls;     // calls that entered the stage
    uint64_t admitted;  // calls that got their permits
    uint64_t rejected;  // calls refused with errc::rate_limited
  };
  Stats stats() const noexcept;

 private:
  class Run;
  RateLimiter& limiter_;
  uint64_t permits_;
  EventListener* listener_ = nullptr;
  std::string name_;
  mutable StripedCounter admitted_;
  mutable StripedCounter rejected_;
};

}  // namespace bulwark::limit
