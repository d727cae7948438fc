#include "bulwark/circuit/circuit_breaker.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "bulwark/testing/manual_clock.h"

namespace bulwark::circuit {

// Readable states in test failure messages.
void PrintTo(State s, std::ostream* os) { *os << to_string(s); }

namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;

struct Seen {
  State from;
  State to;
  uint64_t generation;
  std::string cause;
  TimePoint at;
};

class BreakerTest : public ::testing::Test {
 protected:
  // Makes a breaker whose events land in events_.
  std::unique_ptr<CircuitBreaker> make(BreakerOptions o) {
    auto b = std::make_unique<CircuitBreaker>("svc", o, clock_);
    b->add_listener([this](const TransitionEvent& e) {
      EXPECT_EQ(e.breaker, "svc");
      events_.push_back({e.from, e.to, e.generation, std::string(e.cause), e.at});
    });
    return b;
  }

  // n calls that each fail (or succeed) at once.
  void fail(CircuitBreaker& b, int n) {
    for (int i = 0; i < n; ++i) {
      const Admission a = b.try_acquire();
      ASSERT_TRUE(a.allowed) << "call " << i << " in state " << to_string(a.state);
      b.on_failure(a.permit, clock_.now());
    }
  }
  void succeed(CircuitBreaker& b, int n) {
    for (int i = 0; i < n; ++i) {
      const Admission a = b.try_acquire();
      ASSERT_TRUE(a.allowed) << "call " << i << " in state " << to_string(a.state);
      b.on_success(a.permit, clock_.now());
    }
  }
  // One call that takes `d` and succeeds.
  void succeed_after(CircuitBreaker& b, Duration d) {
    const Admission a = b.try_acquire();
    ASSERT_TRUE(a.allowed);
    clock_.advance(d);
    b.on_success(a.permit, clock_.now());
  }

  // Count window of 10, trips at 50 % once 4 calls are in; 1 s open, one probe closes it.
  static BreakerOptions small() {
    BreakerOptions o;
    o.window_size = 10;
    o.min_calls = 4;
    o.failure_rate = 0.5;
    o.open_duration = 1s;
    o.max_open_duration = 1min;
    o.half_open_probes = 2;
    o.success_threshold = 1;
    return o;
  }

  // Trips `b` (configured with small()) and returns the time it opened.
  TimePoint trip(CircuitBreaker& b) {
    fail(b, 4);
    EXPECT_EQ(b.state(), State::open);
    return clock_.now();
  }

  testing::ManualClock clock_;
  std::vector<Seen> events_;
};

// --- names and options -----------------------------------------------------------------------

TEST(BreakerNames, StatesHaveStableNames) {
  EXPECT_EQ(to_string(State::closed), "closed");
  EXPECT_EQ(to_string(State::open), "open");
  EXPECT_EQ(to_string(State::half_open), "half_open");
  EXPECT_EQ(to_string(State::disabled), "disabled");
  EXPECT_EQ(to_string(State::forced_open), "forced_open");
  EXPECT_EQ(to_string(State::metrics_only), "metrics_only");
}

struct BadOption {
  const char* field;
  void (*mutate)(BreakerOptions&);
};

class ValidateTest : public ::testing::TestWithParam<BadOption> {};

TEST_P(ValidateTest, NamesTheBadField) {
  BreakerOptions o;
  GetParam().mutate(o);
  try {
    validate(o);
    FAIL() << "validate accepted a bad " << GetParam().field;
  } catch (const std::invalid_argument& e) {
    EXPECT_THAT(e.what(), HasSubstr(std::string("BreakerOptions.") + GetParam().field + ":"));
  }
  testing::ManualClock clock;
  EXPECT_THROW(CircuitBreaker("x", o, clock), std::invalid_argument);
}

INSTANTIATE_TEST_SUITE_P(
    AllFields, ValidateTest,
    ::testing::Values(
        BadOption{"window_type", [](BreakerOptions& o) { o.window_type = WindowType(7); }},
        BadOption{"window_size", [](BreakerOptions& o) { o.window_size = 0; }},
        BadOption{"window_size", [](BreakerOptions& o) { o.window_size = kMaxCountWindow + 1; }},
        BadOption{"window_size",
                  [](BreakerOptions& o) {
                    o.window_type = WindowType::time;
                    o.window_size = kMaxTimeWindow + 1;
                  }},
        BadOption{"min_calls", [](BreakerOptions& o) { o.min_calls = 0; }},
        BadOption{"min_calls", [](BreakerOptions& o) { o.min_calls = o.window_size + 1; }},
        BadOption{"failure_rate", [](BreakerOptions& o) { o.failure_rate = 0; }},
        BadOption{"failure_rate", [](BreakerOptions& o) { o.failure_rate = -0.5; }},
        BadOption{"failure_rate", [](BreakerOptions& o) { o.failure_rate = std::nan(""); }},
        BadOption{"slow_call_duration",
                  [](BreakerOptions& o) { o.slow_call_duration = Duration::zero(); }},
        BadOption{"slow_call_rate", [](BreakerOptions& o) { o.slow_call_rate = 0; }},
        BadOption{"open_duration", [](BreakerOptions& o) { o.open_duration = -1s; }},
        BadOption{"open_multiplier", [](BreakerOptions& o) { o.open_multiplier = 0.5; }},
        BadOption{
            "open_multiplier",
            [](BreakerOptions& o) { o.open_multiplier = std::numeric_limits<double>::infinity(); }},
        BadOption{"max_open_duration",
                  [](BreakerOptions& o) { o.max_open_duration = o.open_duration - 1ns; }},
        BadOption{"half_open_probes", [](BreakerOptions& o) { o.half_open_probes = 0; }},
        BadOption{"success_threshold", [](BreakerOptions& o) { o.success_threshold = 0; }},
        BadOption{"success_threshold",
                  [](BreakerOptions& o) { o.success_threshold = o.half_open_probes + 1; }},
        BadOption{"half_open_max_wait",
                  [](BreakerOptions& o) { o.half_open_max_wait = Duration::zero(); }}));

TEST(BreakerValidate, AcceptsDefaultsAndEdgeValues) {
  EXPECT_NO_THROW(validate(BreakerOptions{}));
  BreakerOptions o;
  o.window_type = WindowType::time;
  o.window_size = kMaxTimeWindow;
  o.min_calls = 100000;  // no upper bound for a time window
  o.failure_rate = 1.5;  // disables the rule
  o.slow_call_rate = 2;
  o.half_open_probes = 1;
  o.success_threshold = 1;
  o.max_open_duration = o.open_duration;
  EXPECT_NO_THROW(validate(o));
}

TEST_F(BreakerTest, KeepsNameAndOptions) {
  auto b = make(small());
  EXPECT_EQ(b->name(), "svc");
  EXPECT_EQ(b->options().window_size, 10u);
  EXPECT_EQ(b->options().min_calls, 4u);
}

// --- closed state ----------------------------------------------------------------------------

TEST_F(BreakerTest, ClosedAdmitsWithAPermitOfTheCurrentGeneration) {
  auto b = make(small());
  const Admission a = b->try_acquire();
  EXPECT_TRUE(a.allowed);
  EXPECT_EQ(a.state, State::closed);
  EXPECT_EQ(a.permit.generation, b->generation());
  EXPECT_EQ(a.permit.start, clock_.now());
  EXPECT_FALSE(a.permit.probe);
  const Admission at = b->try_acquire(clock_.now() + 5s);
  EXPECT_EQ(at.permit.start, clock_.now() + 5s);
}

TEST_F(BreakerTest, NoRateTripBeforeMinCalls) {
  auto b = make(small());
  fail(*b, 3);  // 100 % failures, but only 3 < min_calls calls
  EXPECT_EQ(b->state(), State::closed);
  EXPECT_EQ(b->window(clock_.now()).calls, 3u);
  fail(*b, 1);
  EXPECT_EQ(b->state(), State::open);
  ASSERT_EQ(events_.size(), 1u);
  EXPECT_EQ(events_[0].from, State::closed);
  EXPECT_EQ(events_[0].to, State::open);
  EXPECT_EQ(events_[0].cause, "failure_rate");
}

TEST_F(BreakerTest, TripsWhenTheRateReachesTheThresholdExactly) {
  BreakerOptions o = small();
  o.failure_rate = 0.3;  // 0.3 * 10 rounds above 3 in binary; 3 / 10 must still trip
  o.min_calls = 10;
  auto b = make(o);
  succeed(*b, 7);
  fail(*b, 2);
  EXPECT_EQ(b->state(), State::closed);  // 2 of 9, min_calls not reached
  fail(*b, 1);                           // 3 of 10 = 0.3
  EXPECT_EQ(b->state(), State::open);
}

TEST_F(BreakerTest, BelowTheThresholdStaysClosed) {
  auto b = make(small());
  succeed(*b, 6);
  fail(*b, 4);  // 4 of 10 = 0.4 < 0.5
  EXPECT_EQ(b->state(), State::closed);
  EXPECT_EQ(b->window(clock_.now()).failures, 4u);
}

TEST_F(BreakerTest, RulesAreEvaluatedOnlyWhenAFailureIsRecorded) {
  BreakerOptions o = small();
  o.window_size = 4;
  auto b = make(o);
  fail(*b, 2);     // evaluated with 1 and 2 calls: below min_calls
  succeed(*b, 2);  // now 2 of 4 = 50 %, but a success does not evaluate
  EXPECT_EQ(b->state(), State::closed);
  fail(*b, 1);  // window F S S F: 2 of 4 -> trips
  EXPECT_EQ(b->state(), State::open);
}

TEST_F(BreakerTest, CountWindowRollsOver) {
  BreakerOptions o = small();
  o.window_size = 4;
  auto b = make(o);
  fail(*b, 2);
  succeed(*b, 4);  // the two failures leave the window
  WindowSnapshot w = b->window(clock_.now());
  EXPECT_EQ(w.calls, 4u);
  EXPECT_EQ(w.failures, 0u);
  fail(*b, 1);  // S S S F: 1 of 4
  EXPECT_EQ(b->state(), State::closed);
  EXPECT_EQ(b->window(clock_.now()).failures, 1u);
  fail(*b, 1);  // S S F F: 2 of 4
  EXPECT_EQ(b->state(), State::open);
}

TEST_F(BreakerTest, AFailureLeavesTheCountWindowAfterExactlyWindowSizeCalls) {
  BreakerOptions o = small();
  o.failure_rate = 2.0;
  auto b = make(o);
  succeed(*b, 25);  // a full window of successes, then more of them
  fail(*b, 1);
  for (int i = 0; i < 9; ++i) {
    EXPECT_EQ(b->window(clock_.now()).failures, 1u) << "after " << i << " successes";
    succeed(*b, 1);
  }
  EXPECT_EQ(b->window(clock_.now()).failures, 1u);  // 9 successes + the failure = 10
  succeed(*b, 1);
  EXPECT_EQ(b->window(clock_.now()).failures, 0u);
  EXPECT_EQ(b->window(clock_.now()).calls, 10u);
}

TEST_F(BreakerTest, TimeWindowStartsEmptyAfterATransitionWithinTheSameSecond) {
  BreakerOptions o = small();
  o.window_type = WindowType::time;
  o.window_size = 10;
  auto b = make(o);
  fail(*b, 3);
  b->reset();
  EXPECT_EQ(b->window(clock_.now()).calls, 0u);
  fail(*b, 3);
  EXPECT_EQ(b->state(), State::closed);
  EXPECT_EQ(b->window(clock_.now()).failures, 3u);
  fail(*b, 1);
  EXPECT_EQ(b->state(), State::open);
}

TEST_F(BreakerTest, CountWindowOfOne) {
  BreakerOptions o = small();
  o.window_size = 1;
  o.min_calls = 1;
  o.failure_rate = 1.0;
  auto b = make(o);
  succeed(*b, 3);
  EXPECT_EQ(b->window(clock_.now()).calls, 1u);
  fail(*b, 1);
  EXPECT_EQ(b->state(), State::open);
}

TEST_F(BreakerTest, TimeWindowCountsTheLastSecondsAndExpiresBuckets) {
  BreakerOptions o = small();
  o.window_type = WindowType::time;
  o.window_size = 10;  // seconds
  auto b = make(o);
  // ManualClock starts on a whole second: the current bucket is [now, now + 1s).
  fail(*b, 3);
  clock_.advance(9s);  // the first bucket is the oldest one still in the window
  EXPECT_EQ(b->window(clock_.now()).calls, 3u);
  EXPECT_EQ(b->window(clock_.now()).failures, 3u);
  clock_.advance(999ms);
  EXPECT_EQ(b->window(clock_.now()).calls, 3u);
  clock_.advance(1ms);  // 10 s later: the bucket has expired
  EXPECT_EQ(b->window(clock_.now()).calls, 0u);
  fail(*b, 1);  // 1 call in the window: below min_calls, the expired failures do not count
  EXPECT_EQ(b->state(), State::closed);
  clock_.advance(3s);
  succeed(*b, 1);
  clock_.advance(3s);
  fail(*b, 1);
  EXPECT_EQ(b->state(), State::closed);  // 3 calls
  fail(*b, 1);                           // F S F F over 7 s: 3 of 4
  EXPECT_EQ(b->state(), State::open);
  EXPECT_EQ(events_.back().cause, "failure_rate");
}

TEST_F(BreakerTest, TimeWindowReusesBucketsAfterAFullTurn) {
  BreakerOptions o = small();
  o.window_type = WindowType::time;
  o.window_size = 3;
  o.min_calls = 1;
  o.failure_rate = 2.0;  // no trips: watch the window only
  auto b = make(o);
  for (int round = 0; round < 5; ++round) {
    fail(*b, 2);
    succeed(*b, 1);
    clock_.advance(1s);
  }
  // Now in second 5. Seen from second 4, seconds 2, 3 and 4 are in the window (3 calls each):
  // the buckets of seconds 0 and 1 were reused by seconds 3 and 4.
  WindowSnapshot w = b->window(clock_.now() - 1s);
  EXPECT_EQ(w.calls, 9u);
  EXPECT_EQ(w.failures, 6u);
  w = b->window(clock_.now());  // seconds 3, 4 and the empty 5
  EXPECT_EQ(w.calls, 6u);
  EXPECT_EQ(w.failures, 4u);
}

TEST_F(BreakerTest, SlowCallRateTrips) {
  BreakerOptions o = small();
  o.failure_rate = 2.0;
  o.slow_call_duration = 100ms;
  o.slow_call_rate = 0.5;
  auto b = make(o);
  succeed_after(*b, 100ms);  // exactly the threshold: not slow
  succeed_after(*b, 10ms);
  succeed_after(*b, 101ms);  // slow, 1 of 3
  EXPECT_EQ(b->state(), State::closed);
  EXPECT_EQ(b->window(clock_.now()).slow_calls, 1u);
  succeed_after(*b, 5s);  // slow, 2 of 4
  EXPECT_EQ(b->state(), State::open);
  EXPECT_EQ(events_.back().cause, "slow_call_rate");
  EXPECT_EQ(b->stats().slow_calls, 2u);
  EXPECT_EQ(b->stats().successes, 4u);
}

TEST_F(BreakerTest, SlowCallsAreNotTrackedByDefault) {
  BreakerOptions o = small();
  o.slow_call_rate = 0.1;  // would trip at once if slow tracking were on
  auto b = make(o);
  for (int i = 0; i < 10; ++i) succeed_after(*b, 1h);
  EXPECT_EQ(b->state(), State::closed);
  EXPECT_EQ(b->stats().slow_calls, 0u);
  EXPECT_EQ(b->window(clock_.now()).slow_calls, 0u);
}

TEST_F(BreakerTest, SlowFailureCountsForBothRates) {
  BreakerOptions o = small();
  o.failure_rate = 2.0;
  o.slow_call_duration = 1s;
  o.slow_call_rate = 0.5;
  auto b = make(o);
  succeed(*b, 2);
  for (int i = 0; i < 2; ++i) {
    const Admission a = b->try_acquire();
    clock_.advance(2s);
    b->on_failure(a.permit, clock_.now());
  }
  EXPECT_EQ(b->state(), State::open);
  EXPECT_EQ(events_.back().cause, "slow_call_rate");
  EXPECT_EQ(b->stats().failures, 2u);
  EXPECT_EQ(b->stats().slow_calls, 2u);
}

TEST_F(BreakerTest, ConsecutiveFailuresTrip) {
  BreakerOptions o;
  o.failure_rate = 2.0;
  o.consecutive_failures = 3;  // min_calls (20) does not apply
  auto b = make(o);
  fail(*b, 2);
  succeed(*b, 1);  // ends the run
  fail(*b, 2);
  EXPECT_EQ(b->state(), State::closed);
  fail(*b, 1);
  EXPECT_EQ(b->state(), State::open);
  EXPECT_EQ(events_.back().cause, "consecutive_failures");
}

TEST_F(BreakerTest, ConsecutiveRunStartsAgainAfterATransition) {
  BreakerOptions o = small();
  o.failure_rate = 2.0;
  o.consecutive_failures = 2;
  auto b = make(o);
  fail(*b, 1);
  b->reset();
  fail(*b, 1);  // the run before reset() does not count
  EXPECT_EQ(b->state(), State::closed);
  fail(*b, 1);
  EXPECT_EQ(b->state(), State::open);
}

TEST_F(BreakerTest, RecordMapsOutcomes) {
  BreakerOptions o = small();
  o.failure_rate = 2.0;
  auto b = make(o);
  const Outcome outcomes[] = {Outcome::success, Outcome::caller_error, Outcome::retryable_failure,
                              Outcome::final_failure};
  for (Outcome out : outcomes) b->record(b->try_acquire().permit, out, clock_.now());
  EXPECT_EQ(b->stats().successes, 2u);  // caller_error is the caller's fault, not the target's
  EXPECT_EQ(b->stats().failures, 2u);
  EXPECT_EQ(b->window(clock_.now()).failures, 2u);
}

// --- open ------------------------------------------------------------------------------------

TEST_F(BreakerTest, OpenRejectsWithRetryAfter) {
  auto b = make(small());
  const TimePoint opened = trip(*b);
  EXPECT_EQ(b->open_until(), opened + 1s);
  Admission a = b->try_acquire();
  EXPECT_FALSE(a.allowed);
  EXPECT_EQ(a.state, State::open);
  EXPECT_EQ(a.reason, errc::circuit_open);
  EXPECT_EQ(a.retry_after, 1s);
  clock_.advance(300ms);
  a = b->try_acquire();
  EXPECT_FALSE(a.allowed);
  EXPECT_EQ(a.retry_after, 700ms);
  clock_.advance(699ms);
  EXPECT_EQ(b->try_acquire().retry_after, 1ms);
  EXPECT_EQ(b->stats().rejected, 3u);
}

TEST_F(BreakerTest, OpenMovesToHalfOpenLazilyAtOpenUntil) {
  auto b = make(small());
  trip(*b);
  clock_.advance(1s);
  EXPECT_EQ(b->state(), State::open);  // nothing runs in the background
  const Admission a = b->try_acquire();
  EXPECT_TRUE(a.allowed);
  EXPECT_EQ(a.state, State::half_open);
  EXPECT_TRUE(a.permit.probe);
  EXPECT_EQ(b->state(), State::half_open);
  ASSERT_EQ(events_.size(), 2u);
  EXPECT_EQ(events_[1].from, State::open);
  EXPECT_EQ(events_[1].to, State::half_open);
  EXPECT_EQ(events_[1].cause, "open_elapsed");
  EXPECT_EQ(events_[1].at, clock_.now());
}

TEST_F(BreakerTest, PollAppliesTheOpenTimeout) {
  auto b = make(small());
  trip(*b);
  b->poll(clock_.now() + 999ms);
  EXPECT_EQ(b->state(), State::open);
  b->poll(clock_.now() + 1s);
  EXPECT_EQ(b->state(), State::half_open);
}

TEST_F(BreakerTest, OpenDurationGrowsOnEachReopenUpToTheCapAndResetsOnClose) {
  BreakerOptions o = small();
  o.open_multiplier = 2.0;
  o.max_open_duration = 5s;
  auto b = make(o);
  trip(*b);
  const std::vector<Duration> expected = {2s, 4s, 5s, 5s};
  for (Duration d : expected) {
    clock_.advance(b->open_until() - clock_.now());
    fail(*b, 1);  // the probe fails
    EXPECT_EQ(b->state(), State::open);
    EXPECT_EQ(b->current_open_duration(), d);
    EXPECT_EQ(b->open_until(), clock_.now() + d);
    EXPECT_EQ(b->try_acquire().retry_after, d);
  }
  EXPECT_EQ(events_.back().cause, "probe_failure");
  clock_.advance(5s);
  succeed(*b, 1);  // success_threshold 1
  EXPECT_EQ(b->state(), State::closed);
  EXPECT_EQ(b->current_open_duration(), 1s);
  trip(*b);
  EXPECT_EQ(b->try_acquire().retry_after, 1s);
}

TEST_F(BreakerTest, FractionalMultiplier) {
  BreakerOptions o = small();
  o.open_duration = 100ms;
  o.open_multiplier = 1.5;
  auto b = make(o);
  trip(*b);
  clock_.advance(100ms);
  fail(*b, 1);
  EXPECT_EQ(b->current_open_duration(), 150ms);
  clock_.advance(150ms);
  fail(*b, 1);
  EXPECT_EQ(b->current_open_duration(), 225ms);
}

// --- half-open -------------------------------------------------------------------------------

TEST_F(BreakerTest, HalfOpenAdmitsAtMostTheProbes) {
  BreakerOptions o = small();
  o.half_open_probes = 3;
  o.success_threshold = 3;
  auto b = make(o);
  trip(*b);
  clock_.advance(1s);
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(b->try_acquire().allowed) << i;
  const Admission a = b->try_acquire();
  EXPECT_FALSE(a.allowed);
  EXPECT_EQ(a.state, State::half_open);
  EXPECT_EQ(a.reason, errc::half_open_full);
  EXPECT_EQ(a.retry_after, Duration::zero());
}

TEST_F(BreakerTest, ProbeResultsKeepTheirSlot) {
  BreakerOptions o = small();
  o.half_open_probes = 3;
  o.success_threshold = 3;
  auto b = make(o);
  trip(*b);
  clock_.advance(1s);
  const Admission p1 = b->try_acquire();
  b->on_success(p1.permit, clock_.now());  // 1 of 3 successes, slot stays used
  EXPECT_TRUE(b->try_acquire().allowed);
  EXPECT_TRUE(b->try_acquire().allowed);
  EXPECT_FALSE(b->try_acquire().allowed);
}

TEST_F(BreakerTest, SuccessThresholdCloses) {
  BreakerOptions o = small();
  o.half_open_probes = 3;
  o.success_threshold = 2;
  auto b = make(o);
  trip(*b);
  clock_.advance(1s);
  const Admission p1 = b->try_acquire();
  const Admission p2 = b->try_acquire();
  const Admission p3 = b->try_acquire();
  b->on_success(p1.permit, clock_.now());
  EXPECT_EQ(b->state(), State::half_open);
  b->on_success(p2.permit, clock_.now());
  EXPECT_EQ(b->state(), State::closed);
  EXPECT_EQ(events_.back().cause, "probes_succeeded");
  // The third probe's result arrives after the transition: dropped.
  b->on_failure(p3.permit, clock_.now());
  EXPECT_EQ(b->stats().dropped_stale, 1u);
  // The window starts empty: the failures that tripped the breaker are gone.
  EXPECT_EQ(b->window(clock_.now()).calls, 0u);
  fail(*b, 3);
  EXPECT_EQ(b->state(), State::closed);
}

TEST_F(BreakerTest, AnyProbeFailureReopens) {
  BreakerOptions o = small();
  o.half_open_probes = 3;
  o.success_threshold = 3;
  auto b = make(o);
  trip(*b);
  clock_.advance(1s);
  const Admission p1 = b->try_acquire();
  const Admission p2 = b->try_acquire();
  b->on_success(p1.permit, clock_.now());
  b->on_failure(p2.permit, clock_.now());
  EXPECT_EQ(b->state(), State::open);
  EXPECT_EQ(events_.back().from, State::half_open);
  EXPECT_EQ(events_.back().cause, "probe_failure");
}

TEST_F(BreakerTest, SlowProbeReopensWhenSlowTrackingIsOn) {
  BreakerOptions o = small();
  o.slow_call_duration = 100ms;
  o.slow_call_rate = 2.0;  // even with the slow-rate rule disabled
  auto b = make(o);
  trip(*b);
  clock_.advance(1s);
  succeed_after(*b, 101ms);
  EXPECT_EQ(b->state(), State::open);
  EXPECT_EQ(events_.back().cause, "probe_slow");
  EXPECT_EQ(b->stats().slow_calls, 1u);
}

TEST_F(BreakerTest, SlowProbeClosesWhenSlowTrackingIsOff) {
  auto b = make(small());
  trip(*b);
  clock_.advance(1s);
  succeed_after(*b, 1h);
  EXPECT_EQ(b->state(), State::closed);
}

TEST_F(BreakerTest, HalfOpenWithoutResultsReopensAfterMaxWait) {
  BreakerOptions o = small();
  o.half_open_probes = 1;
  o.half_open_max_wait = 10s;
  o.open_multiplier = 3.0;
  auto b = make(o);
  trip(*b);
  clock_.advance(1s);
  const Admission probe = b->try_acquire();  // its result never comes back
  ASSERT_TRUE(probe.allowed);
  clock_.advance(10s - 1ns);
  EXPECT_EQ(b->try_acquire().reason, errc::half_open_full);
  clock_.advance(1ns);
  const Admission a = b->try_acquire();
  EXPECT_FALSE(a.allowed);
  EXPECT_EQ(a.state, State::open);
  EXPECT_EQ(a.reason, errc::circuit_open);
  EXPECT_EQ(a.retry_after, 3s);  // a re-open: the open duration grew
  EXPECT_EQ(events_.back().cause, "half_open_timeout");
  // The lost probe's late result is from an old generation.
  b->on_success(probe.permit, clock_.now());
  EXPECT_EQ(b->state(), State::open);
  EXPECT_EQ(b->stats().dropped_stale, 1u);
}

TEST_F(BreakerTest, PollAppliesTheHalfOpenMaxWait) {
  BreakerOptions o = small();
  o.half_open_max_wait = 10s;
  auto b = make(o);
  trip(*b);
  clock_.advance(1s);
  ASSERT_TRUE(b->try_acquire().allowed);
  b->poll(clock_.now() + 9s);
  EXPECT_EQ(b->state(), State::half_open);
  b->poll(clock_.now() + 10s);
  EXPECT_EQ(b->state(), State::open);
}

TEST_F(BreakerTest, MaxWaitRunsFromTheFirstProbeInFlight) {
  BreakerOptions o = small();
  o.half_open_probes = 3;
  o.success_threshold = 3;
  o.half_open_max_wait = 10s;
  auto b = make(o);
  trip(*b);
  b->poll(clock_.now() + 1s);  // half-open with nothing in flight
  clock_.advance(1h);          // idle: nothing to wait for, so no re-open
  const Admission first = b->try_acquire();
  ASSERT_TRUE(first.allowed);
  clock_.advance(6s);
  ASSERT_TRUE(b->try_acquire().allowed);
  b->on_success(first.permit, clock_.now());  // one probe still in flight
  clock_.advance(4s);                         // 10 s since the first probe went out
  EXPECT_FALSE(b->try_acquire().allowed);
  EXPECT_EQ(b->state(), State::open);
}

TEST_F(BreakerTest, ReleaseFreesAProbeSlotAndStopsTheWait) {
  BreakerOptions o = small();
  o.half_open_probes = 1;
  o.half_open_max_wait = 10s;
  auto b = make(o);
  trip(*b);
  clock_.advance(1s);
  const Admission p1 = b->try_acquire();
  ASSERT_TRUE(p1.allowed);
  EXPECT_EQ(b->try_acquire().reason, errc::half_open_full);
  b->release(p1.permit);
  EXPECT_EQ(b->stats().released, 1u);
  clock_.advance(20s);  // nothing in flight: the max wait does not apply
  const Admission p2 = b->try_acquire();
  EXPECT_TRUE(p2.allowed);
  EXPECT_EQ(b->state(), State::half_open);
  b->on_success(p2.permit, clock_.now());
  EXPECT_EQ(b->state(), State::closed);
}

TEST_F(BreakerTest, IgnoreFreesAProbeSlotRecordsNothingAndCountsApart) {
  BreakerOptions o = small();
  o.half_open_probes = 1;
  auto b = make(o);
  // Closed: ignored results never enter the window.
  for (int i = 0; i < 10; ++i) b->ignore(b->try_acquire().permit);
  EXPECT_EQ(b->window(clock_.now()).calls, 0u);
  EXPECT_EQ(b->state(), State::closed);
  trip(*b);
  clock_.advance(1s);
  const Admission p1 = b->try_acquire();
  ASSERT_TRUE(p1.allowed);
  EXPECT_EQ(b->try_acquire().reason, errc::half_open_full);
  b->ignore(p1.permit);  // the probe's answer says nothing about health: try another
  EXPECT_EQ(b->state(), State::half_open);
  const Admission p2 = b->try_acquire();
  ASSERT_TRUE(p2.allowed);
  const BreakerStats s = b->stats();
  EXPECT_EQ(s.ignored, 11u);
  EXPECT_EQ(s.released, 0u);
}

TEST_F(BreakerTest, ReleaseOfAStaleProbeChangesNothing) {
  BreakerOptions o = small();
  o.half_open_probes = 1;
  auto b = make(o);
  trip(*b);
  clock_.advance(1s);
  const Admission old_probe = b->try_acquire();
  b->force_open();
  b->reset();
  trip(*b);
  clock_.advance(1s);
  const Admission probe = b->try_acquire();
  ASSERT_TRUE(probe.allowed);
  b->release(old_probe.permit);  // must not free the current probe's slot
  EXPECT_EQ(b->try_acquire().reason, errc::half_open_full);
}

// --- generations -----------------------------------------------------------------------------

TEST_F(BreakerTest, EveryTransitionBumpsTheGeneration) {
  auto b = make(small());
  const uint64_t g0 = b->generation();
  trip(*b);
  EXPECT_EQ(b->generation(), g0 + 1);
  clock_.advance(1s);
  b->poll(clock_.now());
  EXPECT_EQ(b->generation(), g0 + 2);
  for (size_t i = 0; i < events_.size(); ++i) EXPECT_EQ(events_[i].generation, g0 + 1 + i);
  EXPECT_EQ(b->stats().transitions, 2u);
}

TEST_F(BreakerTest, LateResultFromAnOldGenerationIsDropped) {
  auto b = make(small());
  const Admission slow_call = b->try_acquire();  // began before the trip
  trip(*b);
  clock_.advance(1s);
  const Admission probe = b->try_acquire();
  ASSERT_TRUE(probe.permit.probe);
  b->on_failure(slow_call.permit, clock_.now());  // would re-open if it counted
  EXPECT_EQ(b->state(), State::half_open);
  EXPECT_EQ(b->stats().dropped_stale, 1u);
  b->on_success(probe.permit, clock_.now());
  EXPECT_EQ(b->state(), State::closed);
  // A closed-state permit from before a reset() is dropped too, and a default Permit always.
  const Admission before = b->try_acquire();
  b->reset();
  b->on_failure(before.permit, clock_.now());
  b->on_failure(Permit{}, clock_.now());
  EXPECT_EQ(b->window(clock_.now()).calls, 0u);
  EXPECT_EQ(b->stats().dropped_stale, 3u);
}

// --- operator states -------------------------------------------------------------------------

TEST_F(BreakerTest, DisabledAdmitsEverythingAndNeverTrips) {
  BreakerOptions o = small();
  o.consecutive_failures = 1;
  auto b = make(o);
  b->disable();
  const uint64_t g = b->generation();
  fail(*b, 50);
  EXPECT_EQ(b->state(), State::disabled);
  EXPECT_EQ(b->generation(), g);
  EXPECT_EQ(b->window(clock_.now()).calls, 0u);  // records nothing
  EXPECT_EQ(b->stats().failures, 50u);           // but the stats still count
  b->disable();                                  // already disabled: no transition
  ASSERT_EQ(events_.size(), 1u);
  EXPECT_EQ(events_[0].to, State::disabled);
  EXPECT_EQ(events_[0].cause, "disabled");
  b->reset();
  EXPECT_EQ(b->state(), State::closed);
}

TEST_F(BreakerTest, ForcedOpenRejectsEverything) {
  auto b = make(small());
  b->force_open();
  clock_.advance(1h);
  b->poll(clock_.now());
  const Admission a = b->try_acquire();
  EXPECT_FALSE(a.allowed);
  EXPECT_EQ(a.state, State::forced_open);
  EXPECT_EQ(a.reason, errc::circuit_open);
  EXPECT_EQ(a.retry_after, Duration::zero());
  EXPECT_EQ(b->state(), State::forced_open);
  b->reset();
  EXPECT_TRUE(b->try_acquire().allowed);
  ASSERT_EQ(events_.size(), 2u);
  EXPECT_EQ(events_[0].cause, "forced_open");
  EXPECT_EQ(events_[1].from, State::forced_open);
  EXPECT_EQ(events_[1].to, State::closed);
  EXPECT_EQ(events_[1].cause, "reset");
}

TEST_F(BreakerTest, MetricsOnlyReportsButNeverChangesState) {
  BreakerOptions o = small();
  o.window_size = 4;
  auto b = make(o);
  b->metrics_only();
  const uint64_t g = b->generation();
  fail(*b, 6);  // would trip at the 4th failure
  EXPECT_EQ(b->state(), State::metrics_only);
  EXPECT_EQ(b->generation(), g);
  ASSERT_EQ(events_.size(), 2u);
  EXPECT_EQ(events_[1].from, State::metrics_only);
  EXPECT_EQ(events_[1].to, State::metrics_only);
  EXPECT_EQ(events_[1].cause, "threshold_exceeded");
  EXPECT_EQ(events_[1].generation, g);
  EXPECT_EQ(b->stats().transitions, 1u);  // the report is not a transition
  EXPECT_EQ(b->window(clock_.now()).failures, 4u);
  // Re-armed once an evaluation finds the rules quiet again.
  succeed(*b, 3);
  fail(*b, 1);  // S S S F: 1 of 4, quiet
  EXPECT_EQ(events_.size(), 2u);
  fail(*b, 1);  // S S F F: fires again
  ASSERT_EQ(events_.size(), 3u);
  EXPECT_EQ(events_[2].cause, "threshold_exceeded");
  EXPECT_TRUE(b->try_acquire().allowed);
}

TEST_F(BreakerTest, ResetClosesClearsTheWindowAndTheOpenGrowth) {
  BreakerOptions o = small();
  o.open_multiplier = 2.0;
  auto b = make(o);
  trip(*b);
  clock_.advance(1s);
  fail(*b, 1);  // re-open: 2 s
  EXPECT_EQ(b->current_open_duration(), 2s);
  b->reset();
  EXPECT_EQ(b->state(), State::closed);
  EXPECT_EQ(b->current_open_duration(), 1s);
  fail(*b, 3);
  EXPECT_EQ(b->state(), State::closed);
  const uint64_t g = b->generation();
  b->reset();  // from closed: still a transition, still clears the window
  EXPECT_EQ(b->generation(), g + 1);
  EXPECT_EQ(b->window(clock_.now()).calls, 0u);
  fail(*b, 3);
  EXPECT_EQ(b->state(), State::closed);
  EXPECT_EQ(events_.back().from, State::closed);
  EXPECT_EQ(events_.back().to, State::closed);
}

// --- listeners -------------------------------------------------------------------------------

TEST_F(BreakerTest, ListenersSeeEveryTransitionInOrder) {
  auto b = make(small());
  std::vector<std::string> second;
  b->add_listener([&](const TransitionEvent& e) {
    second.push_back(std::string(to_string(e.from)) + ">" + std::string(to_string(e.to)));
  });
  trip(*b);
  clock_.advance(1s);
  succeed(*b, 1);
  b->metrics_only();
  b->disable();
  b->force_open();
  b->reset();
  EXPECT_THAT(second, ::testing::ElementsAre("closed>open", "open>half_open", "half_open>closed",
                                             "closed>metrics_only", "metrics_only>disabled",
                                             "disabled>forced_open", "forced_open>closed"));
  EXPECT_EQ(b->stats().transitions, 7u);
  ASSERT_EQ(events_.size(), 7u);
  for (size_t i = 1; i < events_.size(); ++i) {
    EXPECT_EQ(events_[i].from, events_[i - 1].to);
    EXPECT_EQ(events_[i].generation, events_[i - 1].generation + 1);
  }
}

TEST_F(BreakerTest, ListenerMayCallBackIntoTheBreaker) {
  auto b = make(small());
  std::vector<State> seen_state;
  bool admitted_inside = true;
  b->add_listener([&](const TransitionEvent& e) {
    seen_state.push_back(b->state());
    if (e.to == State::open) {
      admitted_inside = b->try_acquire(clock_.now()).allowed;
      b->force_open();  // a transition from inside a listener: queued, delivered next
    }
  });
  fail(*b, 4);
  EXPECT_FALSE(admitted_inside);
  EXPECT_EQ(b->state(), State::forced_open);
  ASSERT_EQ(events_.size(), 2u);
  EXPECT_EQ(events_[0].to, State::open);
  EXPECT_EQ(events_[1].from, State::open);
  EXPECT_EQ(events_[1].to, State::forced_open);
  // The re-entrant force_open() was delivered after the listener that caused it returned.
  EXPECT_THAT(seen_state, ::testing::ElementsAre(State::open, State::forced_open));
}

TEST_F(BreakerTest, ListenerMayAddAListener) {
  auto b = make(small());
  int late_calls = 0;
  bool added = false;
  b->add_listener([&](const TransitionEvent&) {
    if (!added) {
      added = true;
      b->add_listener([&](const TransitionEvent&) { ++late_calls; });
    }
  });
  b->force_open();
  EXPECT_EQ(late_calls, 0);  // added during delivery: sees the next event
  b->reset();
  EXPECT_EQ(late_calls, 1);
}

TEST_F(BreakerTest, ThrowingListenerDoesNotStopOthers) {
  auto b = std::make_unique<CircuitBreaker>("svc", small(), clock_);
  int after = 0;
  b->add_listener([](const TransitionEvent&) { throw std::runtime_error("listener bug"); });
  b->add_listener([&](const TransitionEvent&) { ++after; });
  b->force_open();
  b->reset();
  EXPECT_EQ(after, 2);
  EXPECT_EQ(b->state(), State::closed);
}

// --- stats -----------------------------------------------------------------------------------

TEST_F(BreakerTest, StatsAddUpToTheCallsMade) {
  BreakerOptions o = small();
  o.half_open_probes = 2;
  o.success_threshold = 2;
  auto b = make(o);
  Random rng = testing::seeded_random(7);
  uint64_t calls = 0;
  std::vector<Permit> held;
  for (int i = 0; i < 2000; ++i) {
    ++calls;
    const Admission a = b->try_acquire();
    if (a.allowed) held.push_back(a.permit);
    if (held.empty()) {
      clock_.advance(100ms);
      continue;
    }
    // Finish one held call, chosen at random, in a random way.
    const size_t k = rng.below(held.size());
    const Permit p = held[k];
    held.erase(held.begin() + static_cast<std::ptrdiff_t>(k));
    switch (rng.below(4)) {
      case 0:
        b->on_failure(p, clock_.now());
        break;
      case 1:
        b->release(p);
        break;
      case 2:
        if (rng.below(2) == 0) {
          b->ignore(p);
          break;
        }
        [[fallthrough]];
      default:
        b->on_success(p, clock_.now());
        break;
    }
    if (rng.below(10) == 0) clock_.advance(300ms);
  }
  for (const Permit& p : held) b->release(p);
  const BreakerStats s = b->stats();
  EXPECT_EQ(s.successes + s.failures + s.dropped_stale + s.released + s.ignored + s.rejected,
            calls);
  EXPECT_GT(s.ignored, 0u);
  EXPECT_GT(s.transitions, 2u);
  EXPECT_GT(s.rejected, 0u);
  EXPECT_EQ(s.transitions, events_.size());
  EXPECT_EQ(s.state, b->state());
}

}  // namespace
}  // namespace bulwark::circuit
