// KeyedRateLimitStage: a KeyedLimiter as a pipeline stage — one limit per call key.
//
// Each call that enters the stage asks the limiter for `permits` permits for the call's key
// (CallContext::key, which the adapters take from ExecuteOptions::key) at the pipeline clock's
// `now`. Granted: the call proceeds (nothing is given back when it finishes). Refused: the call
// finishes at once, without running the inner stages, exactly as RateLimitStage refuses:
//
//     AttemptResult::from_policy(errc::rate_limited, Outcome::final_failure, retry_after)
//
// with the key's exact retry_after (final: an outer retry stage does not retry it; the caller
// should see the limit, e.g. as HTTP 429 with Retry-After). Placement advice is RateLimitStage's
// (rate_limit_stage.h): outside retry to limit calls, inside to limit attempts, and outside any
// circuit breaker.
//
// A call without a key (an empty CallContext::key) is handled by options.missing_key:
//   MissingKey::shared (default)  every keyless call is limited under one shared key,
//                                 options.shared_key ("" by default): unidentified callers
//                                 share one limit between them, the usual "anonymous"
//                                 bucket. Nothing is refused for lack of a key.
//   MissingKey::refuse            a keyless call finishes at once with errc::rejected
//                                 (Outcome::final_failure, no retry_after): for pipelines
//                                 where every call must carry a key and a missing one is a bug.
// stats().missing_key counts keyless calls either way.
//
// Key lifetime: the stage reads the key only inside enter(); the limiter stores a hash of it,
// never the characters, so the key must merely stay valid for the call (CallContext::key).
//
// Thread-safety: the stage is immutable apart from its striped statistics; share it freely.
// The KeyedLimiter (thread-safe) must outlive every pipeline that uses the stage.
//
// Example:
//   bulwark::limit::KeyedLimiter per_client({.rate = bulwark::limit::Rate::per_second(10),
//                                            .burst = 20});
//   auto pipeline = bulwark::Pipeline::Builder(clock)
//                       .keyed_rate_limit(per_client)
//                       .retry({.max_attempts = 3})
//                       .build();
//   auto r = pipeline.execute(call, {.key = client_id});   // errc::rate_limited when refused
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "bulwark/core/striped_counter.h"
#include "bulwark/limit/keyed_limiter.h"
#include "bulwark/pipeline/events.h"
#include "bulwark/pipeline/stage.h"

namespace bulwark::limit {

// What a keyed stage does with a call that carries no key.
enum class MissingKey : uint8_t {
  shared,  // limit it under KeyedRateLimitStageOptions::shared_key
  refuse,  // finish it with errc::rejected
};

struct KeyedRateLimitStageOptions {
  // Permits each call takes: 1..limiter.limit() (std::invalid_argument otherwise).
  uint64_t permits = 1;
  MissingKey missing_key = MissingKey::shared;
  // The key keyless calls share (MissingKey::shared). Any string; "" is the empty key.
  std::string shared_key;
  // Told of every refusal (EventListener::on_rejected, with the call's key) when not null, as
  // `name`.
  EventListener* listener = nullptr;
  std::string name;
};

class KeyedRateLimitStage final : public Stage {
 public:
  explicit KeyedRateLimitStage(KeyedLimiter& limiter, KeyedRateLimitStageOptions options = {});

  std::unique_ptr<StageRun> start() const override;
  std::size_t run_size() const noexcept override;
  std::size_t run_align() const noexcept override;
  StageRun* start_in(void* storage) const override;
  std::string_view kind() const noexcept override { return "keyed_rate_limit"; }

  KeyedLimiter& limiter() const noexcept { return limiter_; }
  const KeyedRateLimitStageOptions& options() const noexcept { return options_; }

  struct Stats {
    uint64_t calls;           // calls that entered the stage
    uint64_t admitted;        // calls that got their permits
    uint64_t rejected;        // calls refused with errc::rate_limited
    uint64_t missing_key;     // calls without a key (admitted, rejected or refused among them)
    uint64_t refused_no_key;  // keyless calls refused with errc::rejected (MissingKey::refuse)
  };
  Stats stats() const noexcept;

 private:
  class Run;
  void notify(errc reason, std::optional<Duration> retry_after, std::string_view key,
              TimePoint now) const noexcept;
  KeyedLimiter& limiter_;
  KeyedRateLimitStageOptions options_;
  mutable StripedCounter admitted_, rejected_, missing_key_, refused_no_key_;
};

}  // namespace bulwark::limit
