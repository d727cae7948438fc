// CircuitBreaker: stops calling a dependency that keeps failing, and probes it to find out when
// it has recovered.
//
// States and transitions (every arrow bumps the generation and emits a TransitionEvent):
//
//            trip rule fires                     open_duration elapsed
//   closed ------------------------> open ---------------------------------> half_open
//     ^                               ^   (lazily, in try_acquire or poll)      |   |
//     |                               |                                         |   |
//     |                               +---- probe failed / probe slow / -------+   |
//     |                                     half_open_max_wait elapsed              |
//     +-------------------- success_threshold probe successes ----------------------+
//
//   From any state: force_open() -> forced_open, disable() -> disabled,
//   metrics_only() -> metrics_only, reset() -> closed (window cleared, open duration reset).
//
// Trip rules (closed and metrics_only; any one fires):
//   - failure rate  : failures / calls >= failure_rate over the window, once the window holds at
//                     least min_calls calls. failure_rate > 1.0 disables the rule.
//   - slow-call rate: slow calls / calls >= slow_call_rate over the window (same min_calls),
//                     where slow means duration > slow_call_duration. slow_call_duration ==
//                     Duration::max() (the default) disables slow tracking; slow_call_rate > 1.0
//                     disables only this rule.
//   - consecutive   : consecutive_failures failures in a row (no min_calls); 0 disables it.
//   The window is either the last window_size calls (WindowType::count) or the last window_size
//   seconds in 1 s buckets (WindowType::time; the bucket holding `now` counts as one second).
//   Rules are evaluated only when a failure or a slow call is recorded: a fast success cannot
//   make a rate rise, and not evaluating keeps the success path cheap.
//
// Open: rejects with errc::circuit_open and retry_after = open_until - now. The first open lasts
//   open_duration; each re-open from half-open multiplies the previous duration by
//   open_multiplier, capped at max_open_duration; closing (or reset) returns it to
//   open_duration.
// Half-open: admits at most half_open_probes probe calls (a released probe gives its slot back;
//   a probe that returned a result keeps it). Further calls are rejected with
//   errc::half_open_full and retry_after 0 (unknown). success_threshold probe successes close
//   the breaker; one probe failure re-opens it, and so does a slow probe success when slow
//   tracking is on (a dependency that answers slowly has not recovered). If probes are in flight
//   and none of the conditions above happened within half_open_max_wait of the moment the
//   first of them was admitted, the next try_acquire or poll re-opens the breaker: a half-open
//   breaker whose probes never report back is never stuck. With no probe in flight there is
//   nothing to wait for, so an idle half-open breaker simply admits the next call as a probe.
// disabled: admits everything, records nothing into the window, never trips.
// forced_open: rejects everything with errc::circuit_open and retry_after 0.
// metrics_only: admits everything and records into the window like closed; when a rule would
//   trip it emits one TransitionEvent{from = to = metrics_only, cause = "threshold_exceeded"}
//   and does not change state. The event is re-armed once an evaluation finds no rule firing.
//   It is not a transition: it does not bump the generation or stats().transitions.
//
// Generations: every transition increments the generation. A Permit remembers the generation
// it was issued in; a result or release whose permit is from another generation is dropped (and
// counted in stats().dropped_stale), so a late result of a call that began before the last
// transition changes nothing. A default-constructed Permit is always stale.
//
// Thread-safety: every member is safe to call from any thread.
//   - try_acquire in closed, disabled or metrics_only state is one atomic load (no lock);
//     rejecting in open or forced_open state is lock-free too.
//   - Recording a result in closed or metrics_only state is lock-free: the count window is a
//     ring of generation-tagged words (fetch_add index, CAS on the slot) with running
//     failure/slow/call counters, and a fast success into a full window of fast successes
//     changes nothing and writes nothing (the steady state makes no shared writes); the time
//     window is per-second buckets whose words pack a stamp (second + generation) with the
//     count, so expired buckets and buckets of an earlier generation read as zero and nothing
//     ever has to be cleared.
//   - Transitions, half-open bookkeeping and listener registration take an internal mutex;
//     they are rare, and every transition re-checks the state under the mutex.
//   - Accuracy under concurrency: rate checks read the counters without a snapshot, so a rule
//     can see a window that is off by the results being recorded at that instant; results of
//     calls in flight across a transition (their permit was current when recording started)
//     are tagged with the old generation and therefore invisible to the new window — they
//     count in stats() as successes/failures, but change no rule. A result in the time window
//     whose `now` is a whole window older than its bucket's newest second is dropped. A fast
//     success racing with a failure that enters a full all-success window may be ordered
//     before it (and skipped). None of these accumulate; single-threaded use is exact.
//
// Listeners: called OUTSIDE the internal mutex, one event at a time, in transition order. If
// another thread is already delivering events, a new event is queued and delivered by that
// thread, so a listener may run on a different thread than the one that caused the transition.
// A listener may call back into the breaker (state(), try_acquire(), even force_open()): events
// it causes are queued and delivered after it returns. Exceptions thrown by a listener are
// caught and ignored. Listeners cannot be removed; register them before traffic starts.
//
// Time: try_acquire() reads the Clock given to the constructor; every other time-dependent
// member takes `now` explicitly (use the same clock). Nothing runs in the background: the
// open -> half-open move happens in the first try_acquire or poll at or after open_until, so
// state() may still report `open` after open_until has passed.
//
// Example:
//   bulwark::circuit::CircuitBreaker breaker(
//       "users", {.min_calls = 10, .failure_rate = 0.5, .open_duration = 5s}, clock);
//   auto adm = breaker.try_acquire();
//   if (!adm.allowed) return make_error_code(adm.reason);   // fail fast, adm.retry_after
//   auto r = call_users_service();
//   breaker.record(adm.permit, r ? Outcome::success : Outcome::retryable_failure, clock.now());
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "bulwark/core/clock.h"
#include "bulwark/core/error.h"
#include "bulwark/core/striped_counter.h"

namespace bulwark::circuit {

enum class State : uint8_t { closed, open, half_open, disabled, forced_open, metrics_only };

// "closed", "open", "half_open", "disabled", "forced_open", "metrics_only".
std::string_view to_string(State s) noexcept;

enum class WindowType { count, time };

// Largest accepted window_size for each window type.
inline constexpr uint32_t kMaxCountWindow = 1'000'000;  // calls (8 bytes each)
inline constexpr uint32_t kMaxTimeWindow = 3600;        // seconds (rules sum every bucket)

struct BreakerOptions {
  WindowType window_type = WindowType::count;
  // Calls (count window) or seconds in 1 s buckets (time window). 1..kMaxCountWindow or
  // 1..kMaxTimeWindow.
  uint32_t window_size = 100;
  // No rate-based trip before this many calls are in the window. >= 1; for a count window also
  // <= window_size (otherwise the rate rules could never fire).
  uint32_t min_calls = 20;
  // Fraction in (0, 1]: trip when failures / calls >= this. > 1.0 disables the rule.
  double failure_rate = 0.5;
  // A call is slow when its duration (result time - permit.start) is > this. Duration::max()
  // disables slow tracking (no slow-call rule, and slow probes do not re-open). > 0.
  Duration slow_call_duration = Duration::max();
  // Fraction in (0, 1]: trip when slow calls / calls >= this. > 1.0 disables the rule.
  double slow_call_rate = 1.0;
  // Trip after this many failures in a row; 0 disables the rule.
  uint32_t consecutive_failures = 0;
  // How long the first open lasts. > 0.
  Duration open_duration = std::chrono::seconds(30);
  // Each re-open (half-open -> open) multiplies the previous open duration by this. >= 1.0.
  double open_multiplier = 1.0;
  // Cap of the grown open duration. >= open_duration.
  Duration max_open_duration = std::chrono::minutes(5);
  // Probe calls admitted in half-open. >= 1.
  uint32_t half_open_probes = 3;
  // Probe successes that close the breaker. 1..half_open_probes.
  uint32_t success_threshold = 2;
  // Longest wait for half-open probes to decide (see the header comment). > 0.
  Duration half_open_max_wait = std::chrono::seconds(10);
};

// Throws std::invalid_argument whose message names the offending field
// ("BreakerOptions.min_calls: ...") when `options` break a constraint documented above.
void validate(const BreakerOptions& options);

// Proof of admission. Pass it back to exactly one of on_success/on_failure/record/release.
struct Permit {
  uint64_t generation = 0;  // generation the permit was issued in
  TimePoint start{};        // `now` of the try_acquire that issued it
  bool probe = false;       // issued in half-open
};

struct Admission {
  bool allowed = false;
  Permit permit;                // valid when allowed
  State state = State::closed;  // state that decided
  Duration retry_after{};       // when rejected: time until the breaker may admit again (0 if
                                // unknown)
  errc reason{};                // when rejected: errc::circuit_open or errc::half_open_full
};

struct TransitionEvent {
  std::string_view breaker;  // name()
  State from;
  State to;
  TimePoint at;
  uint64_t generation;     // generation after the transition
  std::string_view cause;  // see kCause* below
};

// Causes carried by TransitionEvent (stable strings, usable as metric labels).
inline constexpr std::string_view kCauseFailureRate = "failure_rate";
inline constexpr std::string_view kCauseSlowCallRate = "slow_call_rate";
inline constexpr std::string_view kCauseConsecutiveFailures = "consecutive_failures";
inline constexpr std::string_view kCauseOpenElapsed = "open_elapsed";
inline constexpr std::string_view kCauseProbeFailure = "probe_failure";
inline constexpr std::string_view kCauseProbeSlow = "probe_slow";
inline constexpr std::string_view kCauseHalfOpenTimeout = "half_open_timeout";
inline constexpr std::string_view kCauseProbesSucceeded = "probes_succeeded";
inline constexpr std::string_view kCauseForcedOpen = "forced_open";
inline constexpr std::string_view kCauseDisabled = "disabled";
inline constexpr std::string_view kCauseMetricsOnly = "metrics_only";
inline constexpr std::string_view kCauseReset = "reset";
inline constexpr std::string_view kCauseThresholdExceeded = "threshold_exceeded";

// Counters since construction. Each admitted call ends in exactly one of successes, failures,
// dropped_stale, released or ignored (once its result, release or ignore is reported), so
//   successes + failures + dropped_stale + released + ignored + rejected == calls attempted
// once every permit has been returned. Outcomes count in every state, including disabled.
struct BreakerStats {
  uint64_t successes;      // results counted as success (incl. slow successes)
  uint64_t failures;       // results counted as failure
  uint64_t slow_calls;     // of successes + failures, those slower than slow_call_duration
  uint64_t rejected;       // try_acquire refusals
  uint64_t dropped_stale;  // results whose permit was from an earlier generation
  uint64_t released;       // release() calls
  uint64_t ignored;        // ignore() calls
  uint64_t transitions;    // state transitions (threshold_exceeded events not included)
  State state;
};

// What the current window holds (for metrics and tests).
struct WindowSnapshot {
  uint32_t calls = 0;
  uint32_t failures = 0;
  uint32_t slow_calls = 0;
};

class CircuitBreaker {
 public:
  // Validates `options` (std::invalid_argument). `clock` must outlive the breaker.
  CircuitBreaker(std::string name, BreakerOptions options, Clock& clock);
  ~CircuitBreaker();
  CircuitBreaker(const CircuitBreaker&) = delete;
  CircuitBreaker& operator=(const CircuitBreaker&) = delete;

  // Asks to make a call. Uses clock.now().
  Admission try_acquire();
  Admission try_acquire(TimePoint now) noexcept;

  // Report the result of an admitted call; the call's duration is now - p.start.
  void on_success(const Permit& p, TimePoint now) noexcept;
  void on_failure(const Permit& p, TimePoint now) noexcept;
  // is_breaker_failure(o) ? on_failure : on_success (caller_error counts as a success).
  void record(const Permit& p, Outcome o, TimePoint now) noexcept;
  // The call ended without a result (cancelled): frees a half-open probe slot, records nothing.
  void release(const Permit& p) noexcept;
  // The call ended with a result that is none of the breaker's business (e.g. an HTTP 429
  // the caller retries, Resilience4j's ignoreExceptions): exactly like release() — frees a
  // half-open probe slot, records nothing into the window, changes no state — but counted in
  // stats().ignored instead of released.
  void ignore(const Permit& p) noexcept;

  State state() const noexcept;
  uint64_t generation() const noexcept;

  // Applies the time-driven transitions (open -> half_open at open_until, half-open max wait).
  // Calling it is optional: try_acquire applies them too.
  void poll(TimePoint now);

  void force_open();
  void disable();
  void metrics_only();
  // -> closed from any state (also from closed: the window is cleared), open duration reset.
  void reset();

  using Listener = std::function<void(const TransitionEvent&)>;
  void add_listener(Listener l);

  BreakerStats stats() const noexcept;
  const std::string& name() const noexcept;
  const BreakerOptions& options() const noexcept;

  // When the current (or last) open period ends; meaningful in state open.
  TimePoint open_until() const noexcept;
  // Length of the current (or next) open period: open_duration grown by re-opens.
  Duration current_open_duration() const noexcept;
  // Calls, failures and slow calls in the window of the current generation as seen at `now`.
  WindowSnapshot window(TimePoint now) const noexcept;

 private:
  struct PendingEvent {
    State from;
    State to;
    TimePoint at;
    uint64_t generation;
    std::string_view cause;
  };
  class Window;

  void record_result(const Permit& p, bool failure, TimePoint now) noexcept;
  void free_probe(const Permit& p) noexcept;
  void record_half_open(const Permit& p, bool failure, bool slow, TimePoint now) noexcept;
  // The cause of the first rule that fires for the window of `generation`, or "".
  std::string_view evaluate(uint64_t generation, uint32_t run, TimePoint now) const noexcept;
  void on_rule_fired(const Permit& p, std::string_view cause, TimePoint now) noexcept;
  Admission admit_slow(TimePoint now) noexcept;
  // Requires mu_. Publishes `to` with generation + 1 and queues the event.
  void transition_locked(State to, TimePoint at, std::string_view cause);
  void reopen_locked(TimePoint at, std::string_view cause);
  void poll_locked(TimePoint now);
  void set_state(State to, std::string_view cause);
  // Delivers queued events unless another call (on any thread) is already delivering them.
  void deliver_events() noexcept;
  bool slow(const Permit& p, TimePoint now) const noexcept {
    return slow_tracking_ && now - p.start > options_.slow_call_duration;
  }

  const std::string name_;
  const BreakerOptions options_;
  Clock& clock_;
  const bool slow_tracking_;

  // state (low 8 bits) | generation (high 56 bits); its own cache line because every admission
  // reads it and it changes only on transitions.
  alignas(64) std::atomic<uint64_t> word_;
  std::atomic<int64_t> open_until_ns_{0};  // written before word_ is published
  // metrics_only: threshold_exceeded was emitted and no evaluation has found the rules quiet
  // since. Set under mu_, cleared lock-free.
  std::atomic<bool> threshold_latched_{false};

  std::unique_ptr<Window> window_;

  alignas(64) mutable std::mutex mu_;
  // Guarded by mu_.
  Duration open_duration_now_;
  uint32_t probes_admitted_ = 0;   // slots taken in this half-open period (released give back)
  uint32_t probes_in_flight_ = 0;  // admitted, neither resolved nor released
  uint32_t probe_successes_ = 0;
  TimePoint probes_waiting_since_{};  // when probes_in_flight_ went from 0 to 1
  bool delivering_ = false;           // a call is delivering pending_ to listeners
  std::deque<PendingEvent> pending_;
  std::shared_ptr<const std::vector<Listener>> listeners_;

  StripedCounter successes_;
  StripedCounter failures_;
  StripedCounter slow_calls_;
  StripedCounter rejected_;
  StripedCounter dropped_stale_;
  StripedCounter released_;
  StripedCounter ignored_;
  StripedCounter transitions_;
};

}  // namespace bulwark::circuit
