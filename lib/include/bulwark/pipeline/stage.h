// The stage protocol: how one policy takes part in a pipeline, without doing any I/O itself.
//
// A pipeline is a list of stages, outermost first (e.g. timeout -> retry -> circuit breaker ->
// the call). For each call, every stage creates a StageRun: a small state machine that the
// executors (the synchronous one in pipeline.h and the Asio one in bulwark/asio/pipeline.h)
// drive through the same three steps:
//
//   enter(ctx, now)          -> proceed (maybe narrowing ctx.deadline), finish with a result,
//                               or wait on a Waiter (e.g. for a bulkhead permit) and then
//                               enter() again
//   ... the inner stages and the call run ...
//   leave(ctx, result, now)  -> finish with a (maybe changed) result, or run again after a delay
//   abandon()                -> the inner run was cancelled or threw: release what enter() took
//
// Stages decide; executors act (wait, cancel, sleep). That is what lets one retry policy or
// breaker serve both a blocking caller and a coroutine, and be tested on a ManualClock.
//
// Deadlines: stages only narrow ctx.deadline; the executor enforces the effective deadline
// once, innermost, around the wrapped call. A timeout therefore reaches every stage's leave()
// as an ordinary retryable failure (errc::timeout): the breaker records it, the retry stage may
// retry it. The Asio executor cancels the call when the deadline passes; the synchronous
// executor cannot pre-empt a blocking call, so it discards a result that arrives at or after
// the deadline and reports errc::timeout instead (the callable can honour ctx.deadline and
// ctx.stop cooperatively to return early).
//
// Where runs live: a stage that reports run_size() > 0 has its runs constructed in place, with
// start_in(), in storage the executor provides: one buffer per call holds the runs of every
// stage (its layout is fixed when the Pipeline is built), so a call through built-in stages
// allocates nothing. A stage whose run_size() is 0 (the default, e.g. a user's stage written
// against start() only) has its runs allocated by start() and still works unchanged; each of its
// runs costs one allocation per call. Either way a run lives from the first enter() of the
// inner run it belongs to until that inner run finished (or was abandoned): a stage inside a
// retry stage gets a fresh run for every attempt.
//
// Thread-safety: a Stage is shared by concurrent calls and must be thread-safe; a StageRun is
// used by one call at a time.
#pragma once

#include <cstddef>
#include <exception>
#include <functional>
#include <memory>
#include <new>
#include <optional>
#include <stop_token>
#include <string_view>
#include <utility>

#include "bulwark/core/clock.h"
#include "bulwark/core/deadline.h"
#include "bulwark/core/error.h"

namespace bulwark {

// What the policies need to know about the result of one attempt, whatever its type.
struct AttemptResult {
  Outcome outcome = Outcome::success;
  // The call's own result code when the classifier extracted one (an HTTP status such as 429,
  // a gRPC status code), for stage predicates that judge by it; 0 when none. Policies never set
  // it.
  uint32_t status = 0;
  // Set when the attempt failed with an error (from the call or from a policy).
  boost::system::error_code error;
  // A server's hint (e.g. HTTP Retry-After) or a breaker's time until it may admit again.
  std::optional<Duration> retry_after;
  // True when the result was produced by the wrapped call; false when a policy produced it
  // (circuit open, timeout, deadline exceeded) without the call's value.
  bool from_call = true;
  // Why a policy stopped the call even though the call produced this result (e.g. a retryable
  // 503 that was not retried because the budget was exhausted). Empty otherwise.
  boost::system::error_code policy_reason;

  static AttemptResult from_policy(errc e, Outcome o, std::optional<Duration> retry_after = {}) {
    AttemptResult r;
    r.outcome = o;
    r.error = make_error_code(e);
    r.retry_after = retry_after;
    r.from_call = false;
    return r;
  }
};

// Something a stage waits for without blocking a thread itself (a bulkhead permit, a queue
// slot). The stage creates it; the executor runs the wait: the synchronous executor blocks the
// calling thread, the Asio executor suspends the coroutine. Either way the wait ends at the
// earlier of the step's wait deadline and ctx.deadline, or when the caller cancels.
//
// Contract for implementations:
//  - start(ready) begins the wait; `ready(granted)` is called exactly once, from any thread
//    (possibly inside start()), unless cancel() returned true first.
//  - cancel() withdraws the wait (deadline passed, caller cancelled). It returns true if the
//    wait was withdrawn before `ready` was called (then `ready` is never called and nothing is
//    held), false if `ready` was or is being called (the stage then holds whatever was
//    granted, and its enter()/abandon() must deal with it). cancel() may be called without
//    start() when the deadline had already passed; it must then withdraw whatever the stage
//    queued when it created the Waiter.
//  - The executors call cancel() exactly when the wait did not end by `ready`, and then call
//    enter() again (deadline) or abandon() (caller cancellation).
class Waiter {
 public:
  virtual ~Waiter() = default;
  virtual void start(std::function<void(bool granted)> ready) = 0;
  virtual bool cancel() noexcept = 0;
};

// Where the typed adapters (Pipeline::execute, asio::run) keep the call's typed result, so that
// a stage can answer a call with a value of its own instead of the call's (FallbackStage<T> in
// bulwark/fallback/fallback_stage.h). The adapters point CallContext::value_slot at one for
// each call; a stage writes through get<T>() only when the call's value type is T (otherwise
// get<T>() is null). Nothing else needs it: the wrapped callable never does.
class ValueSlot {
 public:
  template <class T>
  ValueSlot(std::optional<Result<T>>& value, std::exception_ptr& exception) noexcept
      : type_(type_tag<T>()), value_(&value), exception_(&exception) {}

  // The adapter's holder of the call's result when its value type is T; null otherwise.
  template <class T>
  std::optional<Result<T>>* get() const noexcept {
    return type_ == type_tag<T>() ? static_cast<std::optional<Result<T>>*>(value_) : nullptr;
  }
  // The exception kept with the value (ExecutionInfo::exception): a stage that replaces the
  // value sets it to the replacement's own (usually null).
  std::exception_ptr& exception() const noexcept { return *exception_; }
  // A stage replaced the call's value (ExecutionInfo::fallback).
  bool replaced = false;

 private:
  template <class T>
  static const void* type_tag() noexcept {
    static const char tag = 0;
    return &tag;
  }
  const void* type_;
  void* value_;
  std::exception_ptr* exception_;
};

// Per-call context seen by stages and by the wrapped callable.
struct CallContext {
  Deadline deadline;     // the call must finish by then (narrowed by timeout stages)
  uint32_t attempt = 1;  // 1-based attempt number, set by a retry stage
  std::stop_token stop;  // cooperative cancellation requested by the caller
  // What keyed stages (KeyedRateLimitStage) key the call by: a client id, a tenant, a route.
  // Empty when the caller gave none (ExecuteOptions::key). A view: the characters belong to the
  // caller and must stay valid until the call (execute() or the awaited asio::run()) returns.
  std::string_view key;
  // Set by the typed adapters for stages that answer with a value (see ValueSlot); null when
  // the pipeline runs untyped (Pipeline::run, asio::run_attempts).
  ValueSlot* value_slot = nullptr;
};

struct Step {
  enum class Kind { proceed, finish, again, wait };
  Kind kind = Kind::proceed;
  AttemptResult result;            // finish
  Duration delay{};                // again: wait this long, then enter() again
  std::shared_ptr<Waiter> waiter;  // wait: run this wait, then enter() again
  Deadline wait_deadline;          // wait: give up waiting at this instant (and at ctx.deadline)

  static Step proceed() { return Step{}; }
  static Step finish(AttemptResult r) {
    Step s;
    s.kind = Kind::finish;
    s.result = std::move(r);
    return s;
  }
  static Step again(Duration delay) {
    Step s;
    s.kind = Kind::again;
    s.delay = delay;
    return s;
  }
  // After the wait ends (granted, refused, timed out or cancelled) the executor calls enter()
  // again with the same context; the stage learns the wait's fate from its own Waiter.
  static Step wait(std::shared_ptr<Waiter> waiter, Deadline wait_deadline = Deadline::never()) {
    Step s;
    s.kind = Kind::wait;
    s.waiter = std::move(waiter);
    s.wait_deadline = wait_deadline;
    return s;
  }
};

// enter() is called again after a wait step; abandon() is called if the wait or the inner run
// ends by cancellation or an exception, so a permit granted at the last moment is released.
class StageRun {
 public:
  virtual ~StageRun() = default;
  virtual Step enter(CallContext& ctx, TimePoint now) = 0;
  virtual Step leave(CallContext& ctx, AttemptResult result, TimePoint now) = 0;
  virtual void abandon() noexcept {}
};

class Stage {
 public:
  virtual ~Stage() = default;

  // A run on the heap. Every stage implements it; the executors call it only for stages whose
  // run_size() is 0.
  virtual std::unique_ptr<StageRun> start() const = 0;

  // In-place runs (optional, see the file comment). run_size() > 0 promises that start_in(p)
  // constructs a run in the run_size() bytes at p, aligned to run_align() (a power of two), and
  // returns it; the executor ends such a run with `run->~StageRun()` and never deletes it. Both
  // sizes are read once, when the Pipeline is built, and must not change afterwards.
  virtual std::size_t run_size() const noexcept { return 0; }
  virtual std::size_t run_align() const noexcept { return alignof(std::max_align_t); }
  // Default: throws std::logic_error (a stage that reports run_size() > 0 must override it).
  virtual StageRun* start_in(void* storage) const;

  virtual std::string_view kind() const noexcept = 0;
};

// Implements the in-place members for a stage whose run type `Run` is constructed from the
// stage (`Run(const S&)`). In the stage's source file, where Run is complete:
//
//   std::size_t MyStage::run_size() const noexcept { return sizeof(Run); }
//   std::size_t MyStage::run_align() const noexcept { return alignof(Run); }
//   StageRun* MyStage::start_in(void* p) const { return emplace_run<Run>(p, *this); }
template <class Run, class... Args>
StageRun* emplace_run(void* storage, Args&&... args) {
  return ::new (storage) Run(std::forward<Args>(args)...);
}

// Result the executors synthesise when the deadline passes before the call ends.
inline AttemptResult timeout_result() {
  return AttemptResult::from_policy(errc::timeout, Outcome::retryable_failure);
}

// Result of a call that ended because the caller asked to stop (not retried).
inline AttemptResult cancelled_result() {
  return AttemptResult::from_policy(errc::cancelled, Outcome::final_failure);
}

}  // namespace bulwark
