#include "bulwark/pipeline/pipeline.h"

#include <gtest/gtest.h>

#include <cstddef>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "bulwark/testing/gate_stage.h"
#include "bulwark/testing/manual_clock.h"

namespace bulwark {
namespace {

using namespace std::chrono_literals;
using circuit::CircuitBreaker;
using circuit::State;
using testing::ManualClock;

retry::RetryOptions no_jitter(uint32_t attempts, Duration base = 25ms, Duration max = 250ms) {
  retry::RetryOptions o;
  o.max_attempts = attempts;
  o.backoff.base = base;
  o.backoff.max = max;
  o.backoff.jitter = retry::Jitter::none;
  return o;
}

Result<int> fail(errc e = errc::call_failed) { return make_error_code(e); }

TEST(Pipeline, EmptyPipelinePassesValuesAndErrorsThrough) {
  ManualClock clock;
  auto p = Pipeline::Builder(clock).build();
  EXPECT_EQ(*p.execute([] { return 7; }), 7);
  auto r = p.execute([] { return fail(errc::rejected); });
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), errc::rejected);
  Result<void> v = p.execute([] {});
  EXPECT_TRUE(v);
  std::string s = *p.execute([](const CallContext& ctx) { return std::to_string(ctx.attempt); });
  EXPECT_EQ(s, "1");
}

TEST(Pipeline, ExceptionBecomesCallFailedAndIsKept) {
  ManualClock clock;
  auto p = Pipeline::Builder(clock).build();
  ExecutionInfo info;
  auto r = p.execute([]() -> int { throw std::runtime_error("boom"); }, {.info = &info});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), errc::call_failed);
  ASSERT_TRUE(info.exception);
  EXPECT_THROW(std::rethrow_exception(info.exception), std::runtime_error);
  EXPECT_EQ(info.attempts, 1u);
}

TEST(Pipeline, RetriesUntilSuccessSleepingTheBackoffOnTheClock) {
  ManualClock clock;
  const TimePoint t0 = clock.now();
  auto p = Pipeline::Builder(clock).retry(no_jitter(4)).build();
  std::vector<TimePoint> starts;
  ExecutionInfo info;
  auto r = p.execute(
      [&](const CallContext& ctx) -> Result<int> {
        starts.push_back(clock.now());
        EXPECT_EQ(ctx.attempt, starts.size());
        if (starts.size() < 3) return fail();
        return 42;
      },
      {.info = &info});
  ASSERT_TRUE(r);
  EXPECT_EQ(*r, 42);
  EXPECT_EQ(info.attempts, 3u);
  EXPECT_FALSE(info.policy_reason);
  // Exponential backoff without jitter: 25 ms, then 50 ms.
  EXPECT_EQ(starts, (std::vector<TimePoint>{t0, t0 + 25ms, t0 + 75ms}));
}

TEST(Pipeline, ExhaustedRetriesReturnTheLastResultAndTheReason) {
  ManualClock clock;
  auto p = Pipeline::Builder(clock).retry(no_jitter(3)).build();
  ExecutionInfo info;
  int calls = 0;
  auto r = p.execute([&] { return ++calls == 3 ? fail(errc::rejected) : fail(); }, {.info = &info});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), errc::rejected);  // the last attempt's own error
  EXPECT_EQ(info.policy_reason, errc::retries_exhausted);
  EXPECT_EQ(info.attempts, 3u);
  auto* stage = dynamic_cast<const RetryStage*>(p.stages()[0].get());
  ASSERT_NE(stage, nullptr);
  EXPECT_EQ(stage->stats().calls, 1u);
  EXPECT_EQ(stage->stats().retries, 2u);
  EXPECT_EQ(stage->stats().exhausted, 1u);
}

TEST(Pipeline, CallerErrorsAndFinalFailuresAreNotRetried) {
  ManualClock clock;
  auto p = Pipeline::Builder(clock).retry(no_jitter(5)).build();
  for (Outcome o : {Outcome::caller_error, Outcome::final_failure}) {
    int calls = 0;
    auto r = p.execute_classified(
        [&] {
          ++calls;
          return 404;
        },
        [o](const Result<int>&) { return o; });
    EXPECT_EQ(calls, 1) << to_string(o);
    ASSERT_TRUE(r);
    EXPECT_EQ(*r, 404);
  }
}

TEST(Pipeline, ClassifierRetryAfterReplacesBackoff) {
  ManualClock clock;
  const TimePoint t0 = clock.now();
  auto p = Pipeline::Builder(clock).retry(no_jitter(2)).build();
  std::vector<TimePoint> starts;
  auto r = p.execute_classified(
      [&] {
        starts.push_back(clock.now());
        return starts.size() == 1 ? 503 : 200;
      },
      [](const Result<int>& r) {
        if (*r == 503) return Classification{Outcome::retryable_failure, 2s};
        return Classification{Outcome::success, std::nullopt};
      });
  EXPECT_EQ(*r, 200);
  EXPECT_EQ(starts, (std::vector<TimePoint>{t0, t0 + 2s}));
}

TEST(Pipeline, TotalTimeoutDiscardsALateResult) {
  ManualClock clock;
  auto p = Pipeline::Builder(clock).timeout(1s).build();
  auto r = p.execute([&] {
    clock.advance(1500ms);  // the call takes longer than the timeout
    return 1;
  });
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), errc::timeout);
  auto* stage = dynamic_cast<const TimeoutStage*>(p.stages()[0].get());
  EXPECT_EQ(stage->stats().timeouts, 1u);
}

TEST(Pipeline, PerTryTimeoutIsRetriedAndTheCallSeesItsDeadline) {
  ManualClock clock;
  auto opts = no_jitter(3, 10ms, 10ms);
  opts.per_try_timeout = 500ms;
  auto p = Pipeline::Builder(clock).timeout(5s).retry(opts).build();
  std::vector<Duration> budgets;
  ExecutionInfo info;
  auto r = p.execute(
      [&](const CallContext& ctx) {
        budgets.push_back(ctx.deadline.remaining(clock.now()));
        if (budgets.size() == 1) clock.advance(600ms);  // first try hangs past its 500 ms
        return 9;
      },
      {.info = &info});
  ASSERT_TRUE(r);
  EXPECT_EQ(*r, 9);
  EXPECT_EQ(info.attempts, 2u);
  EXPECT_EQ(budgets, (std::vector<Duration>{500ms, 500ms}));
}

TEST(Pipeline, PerTryTimeoutIsClampedByTheRemainingDeadline) {
  ManualClock clock;
  auto opts = no_jitter(3, 10ms, 10ms);
  opts.per_try_timeout = 500ms;
  auto p = Pipeline::Builder(clock).timeout(700ms).retry(opts).build();
  std::vector<Duration> budgets;
  auto r = p.execute([&](const CallContext& ctx) -> Result<int> {
    budgets.push_back(ctx.deadline.remaining(clock.now()));
    clock.advance(100ms);
    return fail();
  });
  ASSERT_FALSE(r);
  // 500 (per try), then 700-110=590 -> 500, then 700-220=480 left: clamped to the deadline.
  EXPECT_EQ(budgets, (std::vector<Duration>{500ms, 500ms, 480ms}));
}

TEST(Pipeline, DeadlineShorterThanBackoffStopsWithoutSleeping) {
  ManualClock clock;
  const TimePoint t0 = clock.now();
  auto p = Pipeline::Builder(clock).retry(no_jitter(5, 200ms, 1s)).build();
  ExecutionInfo info;
  auto r =
      p.execute([] { return fail(); }, {.deadline = Deadline::after(t0, 100ms), .info = &info});
  ASSERT_FALSE(r);
  EXPECT_EQ(info.attempts, 1u);
  EXPECT_EQ(info.policy_reason, errc::deadline_exceeded);
  EXPECT_EQ(clock.now(), t0);  // no useless 200 ms sleep
}

TEST(Pipeline, BudgetExhaustionStopsRetries) {
  ManualClock clock;
  retry::RetryBudget budget({.ratio = 0.0, .min_per_second = 0.2, .window = 10s});  // 2 retries
  auto p = Pipeline::Builder(clock).retry(no_jitter(10, 1ms, 1ms), &budget).build();
  ExecutionInfo info;
  auto r = p.execute([] { return fail(); }, {.info = &info});
  ASSERT_FALSE(r);
  EXPECT_EQ(info.attempts, 3u);
  EXPECT_EQ(info.policy_reason, errc::budget_exhausted);
  auto* stage = dynamic_cast<const RetryStage*>(p.stages()[0].get());
  EXPECT_EQ(stage->stats().budget_exhausted, 1u);
}

circuit::BreakerOptions small_breaker() {
  circuit::BreakerOptions o;
  o.window_size = 4;
  o.min_calls = 4;
  o.failure_rate = 0.5;
  o.open_duration = 10s;
  o.half_open_probes = 1;
  o.success_threshold = 1;
  return o;
}

TEST(Pipeline, BreakerInsideRetrySeesEveryTryAndRejectsFastWhenOpen) {
  ManualClock clock;
  CircuitBreaker breaker("b", small_breaker(), clock);
  auto p = Pipeline::Builder(clock).retry(no_jitter(4, 1ms, 1ms)).circuit_breaker(breaker).build();
  int calls = 0;
  ExecutionInfo info;
  auto r = p.execute(
      [&] {
        ++calls;
        return fail();
      },
      {.info = &info});
  // 4 failures trip the breaker on the 4th try... all 4 tries reached the call.
  EXPECT_EQ(calls, 4);
  EXPECT_EQ(breaker.state(), State::open);
  // The next call is rejected without reaching the dependency, with a retry hint.
  calls = 0;
  ExecutionInfo info2;
  r = p.execute(
      [&] {
        ++calls;
        return 1;
      },
      {.info = &info2});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), errc::circuit_open);
  EXPECT_EQ(calls, 0);
  EXPECT_EQ(info2.attempts, 0u);
  EXPECT_EQ(breaker.stats().rejected, 1u);  // circuit_open is final: not retried
}

TEST(Pipeline, BreakerRecordsTimeoutsAsFailures) {
  ManualClock clock;
  auto bo = small_breaker();
  bo.min_calls = 2;
  bo.window_size = 2;
  CircuitBreaker breaker("b", bo, clock);
  auto opts = no_jitter(2, 1ms, 1ms);
  opts.per_try_timeout = 100ms;
  auto p = Pipeline::Builder(clock).retry(opts).circuit_breaker(breaker).build();
  auto r = p.execute([&] {
    clock.advance(200ms);
    return 1;
  });
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), errc::timeout);
  EXPECT_EQ(breaker.stats().failures, 2u);
  EXPECT_EQ(breaker.state(), State::open);
}

TEST(Pipeline, BreakerOutsideRetrySeesOneResultPerCall) {
  ManualClock clock;
  CircuitBreaker breaker("b", small_breaker(), clock);
  auto p = Pipeline::Builder(clock).circuit_breaker(breaker).retry(no_jitter(3, 1ms, 1ms)).build();
  int calls = 0;
  (void)p.execute([&] {
    ++calls;
    return fail();
  });
  EXPECT_EQ(calls, 3);
  EXPECT_EQ(breaker.stats().failures, 1u);
  EXPECT_EQ(breaker.state(), State::closed);
}

TEST(Pipeline, HalfOpenProbeReleasedWhenTheCallThrowsThroughAStage) {
  // An exception that escapes the stages (not the callable's own, which is caught) must not
  // leak a half-open probe permit.
  class Throwing final : public Stage {
    class Run final : public StageRun {
      Step enter(CallContext&, TimePoint) override { throw std::runtime_error("stage"); }
      Step leave(CallContext&, AttemptResult r, TimePoint) override { return Step::finish(r); }
    };

   public:
    std::unique_ptr<StageRun> start() const override { return std::make_unique<Run>(); }
    std::string_view kind() const noexcept override { return "throwing"; }
  };
  ManualClock clock;
  CircuitBreaker breaker("b", small_breaker(), clock);
  for (int i = 0; i < 4; ++i) {
    auto a = breaker.try_acquire(clock.now());
    breaker.on_failure(a.permit, clock.now());
  }
  ASSERT_EQ(breaker.state(), State::open);
  clock.advance(10s);
  auto p =
      Pipeline::Builder(clock).circuit_breaker(breaker).stage(std::make_shared<Throwing>()).build();
  EXPECT_THROW((void)p.execute([] { return 1; }), std::runtime_error);
  EXPECT_EQ(breaker.state(), State::half_open);
  // The single probe slot is free again.
  EXPECT_TRUE(breaker.try_acquire(clock.now()).allowed);
}

TEST(Pipeline, StopRequestedCancelsBeforeTheCall) {
  ManualClock clock;
  auto p = Pipeline::Builder(clock).retry(no_jitter(3)).build();
  std::stop_source stop;
  stop.request_stop();
  int calls = 0;
  auto r = p.execute(
      [&] {
        ++calls;
        return 1;
      },
      {.stop = stop.get_token()});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), errc::cancelled);
  EXPECT_EQ(calls, 0);
}

TEST(Pipeline, StopRequestedDuringACallEndsRetrying) {
  ManualClock clock;
  auto p = Pipeline::Builder(clock).retry(no_jitter(5)).build();
  std::stop_source stop;
  int calls = 0;
  auto r = p.execute(
      [&] {
        ++calls;
        stop.request_stop();
        return fail();
      },
      {.stop = stop.get_token()});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), errc::cancelled);
  EXPECT_EQ(calls, 1);
}

TEST(Pipeline, ExpiredDeadlineNeverStartsTheCall) {
  ManualClock clock;
  auto p = Pipeline::Builder(clock).build();
  int calls = 0;
  auto r = p.execute(
      [&] {
        ++calls;
        return 1;
      },
      {.deadline = Deadline::after(clock.now(), 0ns)});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), errc::timeout);
  EXPECT_EQ(calls, 0);
}

TEST(Pipeline, SeededJitterIsReproducible) {
  auto run_once = [] {
    ManualClock clock;
    retry::RetryOptions o;
    o.max_attempts = 4;  // full jitter by default
    auto p = Pipeline::Builder(clock).retry(o, nullptr, 1234).build();
    std::vector<TimePoint> starts;
    (void)p.execute([&] {
      starts.push_back(clock.now());
      return fail();
    });
    return starts;
  };
  EXPECT_EQ(run_once(), run_once());
}

// --- per-stage judgement: a 429 retried without counting against the breaker -----------------

// An HTTP-like reply: 429 carries a status the stages can judge by.
struct Reply {
  uint32_t status;
};

Classification classify_reply(const Result<Reply>& r) {
  if (!r) return {Outcome::retryable_failure};
  if (r->status == 429) return {Outcome::retryable_failure, std::nullopt, 429};
  if (r->status >= 500) return {Outcome::retryable_failure, std::nullopt, r->status};
  return {Outcome::success, std::nullopt, r->status};
}

BreakerVerdict ignore_429(const AttemptResult& r) {
  return r.status == 429 ? BreakerVerdict::ignore : default_breaker_verdict(r);
}

TEST(PipelineJudge, A429IsRetriedAndTheBreakerCountsNothingForIt) {
  ManualClock clock;
  auto bo = small_breaker();
  bo.consecutive_failures = 2;  // two counted failures in a row would open it
  CircuitBreaker breaker("b", bo, clock);
  auto p = Pipeline::Builder(clock)
               .retry(no_jitter(3, 1ms, 1ms))
               .circuit_breaker(breaker, {.judge = ignore_429})
               .build();
  int calls = 0;
  ExecutionInfo info;
  auto r = p.execute_classified([&] { return Result<Reply>(Reply{++calls < 3 ? 429u : 200u}); },
                                classify_reply, {.info = &info});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200u);
  EXPECT_EQ(info.attempts, 3u);  // both 429s were retried
  const circuit::BreakerStats st = breaker.stats();
  EXPECT_EQ(st.ignored, 2u);
  EXPECT_EQ(st.failures, 0u);
  EXPECT_EQ(st.successes, 1u);
  EXPECT_EQ(breaker.window(clock.now()).calls, 1u);
  EXPECT_EQ(breaker.state(), State::closed);
}

TEST(PipelineJudge, WithoutAJudgeEveryRetryableFailureCountsAsBefore) {
  ManualClock clock;
  auto bo = small_breaker();
  bo.consecutive_failures = 2;
  CircuitBreaker breaker("b", bo, clock);
  auto p = Pipeline::Builder(clock).retry(no_jitter(3, 1ms, 1ms)).circuit_breaker(breaker).build();
  int calls = 0;
  auto r = p.execute_classified([&] { return Result<Reply>(Reply{++calls < 3 ? 429u : 200u}); },
                                classify_reply);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), errc::circuit_open);  // two failures opened it before the third try
  EXPECT_EQ(calls, 2);
  EXPECT_EQ(breaker.stats().failures, 2u);
  EXPECT_EQ(breaker.stats().ignored, 0u);
  EXPECT_EQ(breaker.state(), State::open);
}

TEST(PipelineJudge, TheBreakerJudgeCanCountWhatTheClassifierCallsASuccess) {
  ManualClock clock;
  CircuitBreaker breaker("b", small_breaker(), clock);
  auto p = Pipeline::Builder(clock)
               .circuit_breaker(breaker, {.judge =
                                              [](const AttemptResult& r) {
                                                return r.status == 299 ? BreakerVerdict::failure
                                                                       : default_breaker_verdict(r);
                                              }})
               .build();
  auto r = p.execute_classified([] { return Result<Reply>(Reply{299}); }, classify_reply);
  ASSERT_TRUE(r);  // the caller still gets the reply: the judge is the breaker's alone
  EXPECT_EQ(breaker.stats().failures, 1u);
}

TEST(PipelineJudge, TheRetryJudgeRetriesWhatTheClassifierCallsFinal) {
  ManualClock clock;
  CircuitBreaker breaker("b", small_breaker(), clock);
  // The classifier says 429 is the caller's fault (not retried, a success for breakers).
  auto classify = [](const Result<Reply>& r) {
    return r->status == 429 ? Classification{Outcome::caller_error, std::nullopt, 429}
                            : Classification{Outcome::success, std::nullopt, r->status};
  };
  auto retry_429 = [](const AttemptResult& r) {
    return r.status == 429 ? Outcome::retryable_failure : r.outcome;
  };
  for (bool judged : {false, true}) {
    SCOPED_TRACE(judged ? "with judge" : "without");
    RetryStageOptions so;
    if (judged) so.judge = retry_429;
    auto p = Pipeline::Builder(clock).retry(no_jitter(3, 1ms, 1ms), so).build();
    int calls = 0;
    ExecutionInfo info;
    auto r = p.execute_classified([&] { return Result<Reply>(Reply{++calls < 3 ? 429u : 200u}); },
                                  classify, {.info = &info});
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, judged ? 200u : 429u);
    EXPECT_EQ(info.attempts, judged ? 3u : 1u);
    // The result passed on keeps the classifier's judgement.
    EXPECT_EQ(info.outcome, judged ? Outcome::success : Outcome::caller_error);
  }
}

TEST(PipelineJudge, RetryStageOptionsCarryBudgetAndSeed) {
  ManualClock clock;
  retry::RetryBudget budget({.ratio = 0.0, .min_per_second = 0.1, .window = 10s});  // 1 retry
  auto p = Pipeline::Builder(clock)
               .retry(no_jitter(5, 1ms, 1ms), {.budget = &budget, .seed = 7})
               .build();
  ExecutionInfo info;
  (void)p.execute([] { return fail(); }, {.info = &info});
  EXPECT_EQ(info.attempts, 2u);
  EXPECT_EQ(info.policy_reason, errc::budget_exhausted);
}

// Logs every step of its runs, to pin when executors construct, enter, leave, abandon and
// destroy them. `in_place` chooses between start_in() and start().
class TracingStage final : public Stage {
 public:
  TracingStage(std::string name, std::vector<std::string>& log, bool in_place = true,
               bool throw_on_enter = false)
      : name_(std::move(name)), log_(log), in_place_(in_place), throw_(throw_on_enter) {}

  class Run final : public StageRun {
   public:
    explicit Run(const TracingStage& s) : s_(s) { s_.log("ctor"); }
    ~Run() override { s_.log("dtor"); }
    Step enter(CallContext&, TimePoint) override {
      s_.log("enter");
      if (s_.throw_) throw std::runtime_error("enter");
      return Step::proceed();
    }
    Step leave(CallContext&, AttemptResult r, TimePoint) override {
      s_.log("leave");
      return Step::finish(r);
    }
    void abandon() noexcept override { s_.log("abandon"); }

   private:
    const TracingStage& s_;
  };

  std::unique_ptr<StageRun> start() const override { return std::make_unique<Run>(*this); }
  std::size_t run_size() const noexcept override { return in_place_ ? sizeof(Run) : 0; }
  std::size_t run_align() const noexcept override { return alignof(Run); }
  StageRun* start_in(void* p) const override { return emplace_run<Run>(p, *this); }
  std::string_view kind() const noexcept override { return "tracing"; }

 private:
  void log(const char* what) const { log_.push_back(std::string(what) + " " + name_); }
  std::string name_;
  std::vector<std::string>& log_;
  bool in_place_;
  bool throw_;
};

using Log = std::vector<std::string>;

TEST(PipelineRuns, AStageInsideRetryGetsAFreshRunPerAttempt) {
  for (bool in_place : {true, false}) {
    SCOPED_TRACE(in_place ? "in place" : "heap");
    ManualClock clock;
    Log log;
    auto p = Pipeline::Builder(clock)
                 .stage(std::make_shared<TracingStage>("A", log, in_place))
                 .retry(no_jitter(3, 1ms, 1ms))
                 .stage(std::make_shared<TracingStage>("B", log, in_place))
                 .build();
    int calls = 0;
    auto r = p.execute([&]() -> Result<int> {
      log.push_back("call");
      return ++calls < 2 ? fail() : Result<int>(calls);
    });
    ASSERT_TRUE(r);
    EXPECT_EQ(log, (Log{"ctor A", "enter A", "ctor B", "enter B", "call", "leave B", "dtor B",
                        "ctor B", "enter B", "call", "leave B", "dtor B", "leave A", "dtor A"}));
  }
}

TEST(PipelineRuns, AnExceptionFromTheCallAbandonsEveryStageInnermostFirst) {
  for (bool in_place : {true, false}) {
    SCOPED_TRACE(in_place ? "in place" : "heap");
    ManualClock clock;
    Log log;
    auto p = Pipeline::Builder(clock)
                 .stage(std::make_shared<TracingStage>("A", log, in_place))
                 .stage(std::make_shared<TracingStage>("B", log, in_place))
                 .build();
    // Pipeline::run is the untyped core: the call's exception is not caught for it.
    EXPECT_THROW(
        (void)p.run({}, [](CallContext&) -> AttemptResult { throw std::logic_error("x"); }),
        std::logic_error);
    EXPECT_EQ(log, (Log{"ctor A", "enter A", "ctor B", "enter B", "abandon B", "dtor B",
                        "abandon A", "dtor A"}));
  }
}

TEST(PipelineRuns, AnExceptionFromAStageAbandonsTheStagesOutsideIt) {
  ManualClock clock;
  Log log;
  auto p = Pipeline::Builder(clock)
               .stage(std::make_shared<TracingStage>("A", log))
               .stage(std::make_shared<TracingStage>("B", log, false, /*throw_on_enter=*/true))
               .build();
  EXPECT_THROW((void)p.execute([] { return 1; }), std::runtime_error);
  EXPECT_EQ(log, (Log{"ctor A", "enter A", "ctor B", "enter B", "dtor B", "abandon A", "dtor A"}));
}

// PipelineCall driven by hand, as an executor for another event loop would.
TEST(PipelineCallProtocol, AnExecutorOnlyRunsCallsSleepsAndWaitsItIsAskedFor) {
  ManualClock clock;
  Log log;
  auto p = Pipeline::Builder(clock)
               .stage(std::make_shared<TracingStage>("A", log))
               .retry(no_jitter(3, 10ms, 10ms))
               .stage(std::make_shared<TracingStage>("B", log))
               .build();
  std::vector<std::byte> storage(p.call_storage_size() + p.call_storage_align());
  void* aligned = storage.data();
  std::size_t space = storage.size();
  ASSERT_NE(std::align(p.call_storage_align(), p.call_storage_size(), aligned, space), nullptr);
  using Kind = PipelineCall::Kind;
  {
    PipelineCall walk(p, CallContext{}, aligned);
    PipelineCall::Action a = walk.start();
    ASSERT_EQ(a.kind, Kind::call);
    EXPECT_EQ(walk.call_context().attempt, 1u);
    a = walk.on_call(AttemptResult::from_policy(errc::call_failed, Outcome::retryable_failure));
    ASSERT_EQ(a.kind, Kind::sleep);
    EXPECT_EQ(a.delay, 10ms);
    a = walk.on_sleep_end();
    ASSERT_EQ(a.kind, Kind::call);
    EXPECT_EQ(walk.call_context().attempt, 2u);
    a = walk.on_call(AttemptResult{});
    ASSERT_EQ(a.kind, Kind::done);
    EXPECT_EQ(walk.take_result().outcome, Outcome::success);
  }
  EXPECT_EQ(log, (Log{"ctor A", "enter A", "ctor B", "enter B", "leave B", "dtor B", "ctor B",
                      "enter B", "leave B", "dtor B", "leave A", "dtor A"}));

  // A sleep that fails (say, the coroutine was cancelled while backing off): the stages outside
  // the retry stage are abandoned, nothing is left alive.
  log.clear();
  {
    PipelineCall walk(p, CallContext{}, aligned);
    ASSERT_EQ(walk.start().kind, Kind::call);
    ASSERT_EQ(
        walk.on_call(AttemptResult::from_policy(errc::call_failed, Outcome::retryable_failure))
            .kind,
        Kind::sleep);
    walk.fail();
  }
  EXPECT_EQ(log, (Log{"ctor A", "enter A", "ctor B", "enter B", "leave B", "dtor B", "abandon A",
                      "dtor A"}));
}

TEST(PipelineRuns, CallStorageHoldsEveryInPlaceRun) {
  ManualClock clock;
  CircuitBreaker breaker("b", {}, clock);
  auto empty = Pipeline::Builder(clock).build();
  auto full =
      Pipeline::Builder(clock).timeout(1s).retry(no_jitter(2)).circuit_breaker(breaker).build();
  EXPECT_GT(full.call_storage_size(), empty.call_storage_size());
  EXPECT_EQ(full.call_storage_size() % full.call_storage_align(), 0u);
  EXPECT_LE(full.call_storage_size(), Pipeline::kInlineCallStorage);
}

TEST(PipelineBuilder, RejectsBadStages) {
  ManualClock clock;
  Pipeline::Builder b(clock);
  EXPECT_THROW(b.timeout(0ns), std::invalid_argument);
  EXPECT_THROW(b.stage(nullptr), std::invalid_argument);
  EXPECT_THROW(b.retry({.max_attempts = 0}), std::invalid_argument);
}

}  // namespace
}  // namespace bulwark

// --- Step::wait in the synchronous executor (real threads; waits are bounded, never slept) ---

namespace bulwark {
namespace {

TEST(PipelineWait, GrantFromAnotherThreadLetsTheCallThrough) {
  auto gate = std::make_shared<testing::GateStage>();
  auto p = Pipeline::Builder().stage(gate).build();
  std::thread opener([&] {
    ASSERT_TRUE(gate->wait_for_waiters(1));
    gate->open_next(true);
  });
  auto r = p.execute([] { return 3; });
  opener.join();
  ASSERT_TRUE(r);
  EXPECT_EQ(*r, 3);
  EXPECT_EQ(gate->passed.load(), 1);
  EXPECT_EQ(gate->cancelled.load(), 0);
}

TEST(PipelineWait, RefusalFinishesWithoutCalling) {
  auto gate = std::make_shared<testing::GateStage>();
  auto p = Pipeline::Builder().stage(gate).build();
  std::thread opener([&] {
    ASSERT_TRUE(gate->wait_for_waiters(1));
    gate->open_next(false);
  });
  int calls = 0;
  auto r = p.execute([&] { return ++calls; });
  opener.join();
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), errc::rejected);
  EXPECT_EQ(calls, 0);
}

TEST(PipelineWait, WaitDeadlineWithdrawsTheWaiter) {
  auto gate = std::make_shared<testing::GateStage>(20ms);  // nobody opens the gate
  auto p = Pipeline::Builder().stage(gate).build();
  int calls = 0;
  auto r = p.execute([&] { return ++calls; });
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), errc::wait_timeout);
  EXPECT_EQ(calls, 0);
  EXPECT_EQ(gate->cancelled.load(), 1);
  EXPECT_FALSE(gate->open_next());  // nothing left waiting
}

TEST(PipelineWait, AlreadyExpiredDeadlineWithdrawsWithoutStarting) {
  ManualClock clock;
  auto gate = std::make_shared<testing::GateStage>();
  auto p = Pipeline::Builder(clock).stage(gate).build();
  auto r = p.execute([] { return 1; }, {.deadline = Deadline::after(clock.now(), 0ns)});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), errc::wait_timeout);
  EXPECT_EQ(gate->started.load(), 0);
  EXPECT_EQ(gate->cancelled.load(), 1);
}

TEST(PipelineWait, StopRequestedWhileWaitingAbandons) {
  auto gate = std::make_shared<testing::GateStage>();
  auto p = Pipeline::Builder().stage(gate).build();
  std::stop_source stop;
  std::thread stopper([&] {
    ASSERT_TRUE(gate->wait_for_waiters(1));
    stop.request_stop();
  });
  auto r = p.execute([] { return 1; }, {.stop = stop.get_token()});
  stopper.join();
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), errc::cancelled);
  EXPECT_EQ(gate->cancelled.load(), 1);
  EXPECT_EQ(gate->abandoned.load(), 1);
}

}  // namespace
}  // namespace bulwark
