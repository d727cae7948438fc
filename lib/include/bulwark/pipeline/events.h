// Policy events: what the policies tell a program as they act — a retry is about to happen, a
// call was rejected (by a breaker, a bulkhead or a rate limiter), a hedge started, a fallback
// answered, a breaker changed state. The hooks Polly calls OnRetry / OnHedging / OnFallback /
// OnOpened and Resilience4j publishes as onRetry / onCallNotPermitted / onStateTransition.
//
// Shape: one interface, EventListener, with one virtual member per event and empty defaults;
// override the ones you want. A listener is registered when the policy is built (a stage's
// options, Pipeline::Builder::listener, HedgePolicy's constructor, fallback::RunOptions), never
// per call, and events are plain structs on the emitting thread's stack: emitting one costs a
// virtual call and allocates nothing. String views in an event are valid only during the call.
//
// Who emits what:
//   on_retry              RetryStage, when it has decided to run the stages inside it again
//                         (before the backoff wait)
//   on_rejected           BreakerStage (circuit_open, half_open_full), BulkheadStage
//                         (queue_full, wait_timeout, throttled, rejected),
//                         RateLimitStage and KeyedRateLimitStage (rate_limited; rejected for a
//                         call without a key when the stage refuses those)
//   on_hedge              asio::hedge (and asio::run_hedged), when it starts an attempt after
//                         the first
//   on_fallback           FallbackStage, fallback::sequential and asio::sequential, when a
//                         fallback alternative is about to answer for a failed call
//   on_breaker_transition CircuitBreaker transitions, once forwarded with forward_transitions()
//
// Thread-safety: a listener is shared by every call of the policies it is registered with and
// is called concurrently from their threads, synchronously, on the thread running the policy's
// decision: the caller's thread for Pipeline::execute and fallback::sequential, the
// coroutine's executor thread for the Asio adapters. Breaker transitions follow
// CircuitBreaker's listener rules (outside its lock, in order, possibly on the thread of a
// later transition). Members must be thread-safe, quick (they run inside the call) and must
// not throw (they are noexcept: an exception terminates the program). A listener must outlive
// every policy it is registered with.
//
// Example:
//   class LogRetries final : public bulwark::EventListener {
//    public:
//     void on_retry(const bulwark::RetryEvent& e) noexcept override {
//       log.warn("retry {} of {} in {} ms: {}", e.attempt + 1, e.name, to_ms(e.delay),
//                e.result.error.message());
//     }
//     void on_rejected(const bulwark::RejectionEvent& e) noexcept override {
//       rejections.with({std::string(e.stage), std::string(to_string(e.reason))}).inc();
//     }
//   };
//   LogRetries events;
//   auto pipeline = bulwark::Pipeline::Builder(clock)
//                       .listener(events)   // the stages added after it report to `events`
//                       .retry({.max_attempts = 3}, {.name = "users"})
//                       .circuit_breaker(breaker)
//                       .build();
//   bulwark::forward_transitions(breaker, events);
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

#include "bulwark/circuit/circuit_breaker.h"
#include "bulwark/core/clock.h"
#include "bulwark/core/error.h"
#include "bulwark/pipeline/stage.h"

namespace bulwark {

// A retry stage is about to run its inner stages again.
struct RetryEvent {
  std::string_view name;        // RetryStageOptions::name ("" when unnamed)
  uint32_t attempt = 0;         // the attempt that failed, 1-based; the next one is attempt + 1
  Duration delay{};             // the wait before the next attempt (backoff or Retry-After)
  const AttemptResult& result;  // the failed attempt: outcome, error, status, retry_after
  TimePoint at{};               // when the retry was decided
};

// A stage refused a call (or an attempt) without running what is inside it.
struct RejectionEvent {
  std::string_view stage;  // Stage::kind(): "circuit_breaker", "bulkhead", "rate_limit",
                           // "keyed_rate_limit"
  std::string_view name;   // the breaker's or bulkhead's name, or the stage's name option
  errc reason{};           // circuit_open, half_open_full, queue_full, wait_timeout, throttled,
                           // rejected, rate_limited
  std::optional<Duration> retry_after;  // the policy's hint, when it has one
  std::string_view key;                 // keyed_rate_limit: the call's key; "" otherwise
  TimePoint at{};
};

// A hedged call started another attempt.
struct HedgeEvent {
  std::string_view name;    // HedgePolicy's name ("" when unnamed)
  uint32_t attempt = 0;     // the attempt started, 1-based (2 = the first hedge)
  bool on_failure = false;  // started at once because an attempt failed (hedge_on_failure),
                            // not because the delay passed
  TimePoint at{};
};

// A fallback is about to answer for a call that failed.
struct FallbackEvent {
  std::string_view name;         // the fallback's name option ("" when unnamed)
  std::size_t alternative = 0;   // which fallback: 1 = the first after the primary
  const AttemptResult& failure;  // what failed before it (outcome, error, status); for the
                                 // sequential helpers, the failed alternative's judged outcome
                                 // and error
  TimePoint at{};
};

class EventListener {
 public:
  virtual ~EventListener() = default;
  virtual void on_retry(const RetryEvent&) noexcept {}
  virtual void on_rejected(const RejectionEvent&) noexcept {}
  virtual void on_hedge(const HedgeEvent&) noexcept {}
  virtual void on_fallback(const FallbackEvent&) noexcept {}
  virtual void on_breaker_transition(const circuit::TransitionEvent&) noexcept {}
};

// Registers a breaker listener that calls listener.on_breaker_transition for each of the
// breaker's transition events (and metrics_only threshold events). Like every breaker
// listener it cannot be removed: `listener` must outlive `breaker`.
void forward_transitions(circuit::CircuitBreaker& breaker, EventListener& listener);

}  // namespace bulwark
