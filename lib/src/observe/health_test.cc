#include "bulwark/observe/health.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "bulwark/testing/manual_clock.h"

namespace bulwark::observe {
namespace {

using namespace std::chrono_literals;
using bulwark::testing::ManualClock;

HealthCheckOptions opts(Duration interval, uint32_t retries, bool critical = true,
                        Duration timeout = 1s) {
  HealthCheckOptions o;
  o.interval = interval;
  o.retries = retries;
  o.critical = critical;
  o.timeout = timeout;
  return o;
}

// A check whose outcome the test sets, counting its runs.
struct Switch {
  bool ok = true;
  std::string message;
  int runs = 0;
  HealthCheckFn fn() {
    return [this](Deadline) {
      ++runs;
      return ok ? CheckResult::pass(message) : CheckResult::fail(message);
    };
  }
};

TEST(HealthOptionsTest, InvalidOptionsAreRejected) {
  ManualClock clock;
  HealthRegistry reg(clock);
  auto ok = [](Deadline) { return CheckResult::pass(); };
  HealthCheckOptions o;
  o.interval = 0s;
  EXPECT_THROW(reg.add("a", ok, o), std::invalid_argument);
  o = {};
  o.timeout = -1s;
  EXPECT_THROW(reg.add("a", ok, o), std::invalid_argument);
  o = {};
  o.retries = 0;
  EXPECT_THROW(reg.add("a", ok, o), std::invalid_argument);
  o = {};
  o.initial_delay = -1ms;
  EXPECT_THROW(reg.add("a", ok, o), std::invalid_argument);
  EXPECT_THROW(reg.add("", ok), std::invalid_argument);
  EXPECT_THROW(reg.add("a", HealthCheckFn{}), std::invalid_argument);
  reg.add("a", ok);
  EXPECT_THROW(reg.add("a", ok), std::invalid_argument);
  EXPECT_EQ(reg.size(), 1u);
  try {
    o = {};
    o.interval = 0s;
    validate(o);
    FAIL() << "expected std::invalid_argument";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("HealthCheckOptions.interval"), std::string::npos);
  }
}

TEST(HealthRegistryTest, RunsAtOnceThenEveryInterval) {
  ManualClock clock;
  HealthRegistry reg(clock);
  Switch s;
  reg.add("db", s.fn(), opts(10s, 1));
  EXPECT_EQ(reg.run_due(clock.now()), 1u);
  EXPECT_EQ(reg.run_due(clock.now()), 0u);
  clock.advance(9999ms);
  EXPECT_EQ(reg.run_due(clock.now()), 0u);
  clock.advance(1ms);
  EXPECT_EQ(reg.run_due(clock.now()), 1u);
  EXPECT_EQ(s.runs, 2);
  EXPECT_EQ(reg.next_due(), clock.now() + 10s);
}

TEST(HealthRegistryTest, InitialDelayPostponesTheFirstRun) {
  ManualClock clock;
  HealthRegistry reg(clock);
  Switch s;
  HealthCheckOptions o = opts(10s, 1);
  o.initial_delay = 3s;
  reg.add("db", s.fn(), o);
  EXPECT_EQ(reg.run_due(clock.now()), 0u);
  EXPECT_EQ(reg.next_due(), clock.now() + 3s);
  clock.advance(3s);
  EXPECT_EQ(reg.run_due(clock.now()), 1u);
}

TEST(HealthRegistryTest, NextRunCountsFromTheEndOfTheRun) {
  ManualClock clock;
  HealthRegistry reg(clock);
  const TimePoint t0 = clock.now();
  reg.add(
      "slow",
      [&](Deadline) {
        clock.advance(300ms);  // the check takes 300 ms
        return CheckResult::pass();
      },
      opts(10s, 1, true, 1s));
  reg.run_due(clock.now());
  EXPECT_EQ(reg.next_due(), t0 + 300ms + 10s);
  auto c = reg.check("slow");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->last_run, t0);
  EXPECT_EQ(c->last_duration, 300ms);
  EXPECT_FALSE(c->last_timed_out);
}

TEST(HealthRegistryTest, CheckReceivesItsDeadline) {
  ManualClock clock;
  HealthRegistry reg(clock);
  Deadline seen;
  reg.add(
      "x",
      [&](Deadline dl) {
        seen = dl;
        return CheckResult::pass();
      },
      opts(10s, 1, true, 250ms));
  reg.run_due(clock.now());
  EXPECT_EQ(seen.time(), clock.now() + 250ms);
}

TEST(HealthRegistryTest, FailsOnlyAfterRetriesConsecutiveFailures) {
  ManualClock clock;
  HealthRegistry reg(clock);
  Switch s;
  reg.add("db", s.fn(), opts(1s, 3));
  reg.run_due(clock.now());
  EXPECT_EQ(reg.check("db")->status, CheckStatus::passing);

  s.ok = false;
  s.message = "connection refused";
  for (int i = 1; i <= 2; ++i) {
    clock.advance(1s);
    reg.run_due(clock.now());
    auto c = reg.check("db");
    EXPECT_EQ(c->status, CheckStatus::passing) << "after failure " << i;
    EXPECT_EQ(c->consecutive_failures, static_cast<uint32_t>(i));
    EXPECT_FALSE(c->last_ok);
    EXPECT_EQ(c->last_message, "connection refused");
  }
  EXPECT_EQ(reg.overall(), HealthStatus::healthy);
  clock.advance(1s);
  reg.run_due(clock.now());
  EXPECT_EQ(reg.check("db")->status, CheckStatus::failing);
  EXPECT_EQ(reg.overall(), HealthStatus::unhealthy);

  // One success recovers, and resets the count.
  s.ok = true;
  s.message = "";
  clock.advance(1s);
  reg.run_due(clock.now());
  auto c = reg.check("db");
  EXPECT_EQ(c->status, CheckStatus::passing);
  EXPECT_EQ(c->consecutive_failures, 0u);
  EXPECT_EQ(c->runs, 5u);
  EXPECT_EQ(c->failures, 3u);
  EXPECT_EQ(reg.overall(), HealthStatus::healthy);
}

TEST(HealthRegistryTest, UnknownUntilFirstPassOrRetriesFailures) {
  ManualClock clock;
  HealthRegistry reg(clock);
  Switch s;
  s.ok = false;
  reg.add("db", s.fn(), opts(1s, 2));
  EXPECT_EQ(reg.check("db")->status, CheckStatus::unknown);
  reg.run_due(clock.now());
  EXPECT_EQ(reg.check("db")->status, CheckStatus::unknown);
  EXPECT_EQ(reg.overall(), HealthStatus::healthy);  // unknown does not count as failing
  clock.advance(1s);
  reg.run_due(clock.now());
  EXPECT_EQ(reg.check("db")->status, CheckStatus::failing);
}

TEST(HealthRegistryTest, OverallIsWorstOfCriticalAndNonCritical) {
  ManualClock clock;
  HealthRegistry reg(clock);
  Switch critical_check, optional_check;
  reg.add("db", critical_check.fn(), opts(1s, 1, /*critical=*/true));
  reg.add("cache", optional_check.fn(), opts(1s, 1, /*critical=*/false));
  reg.run_due(clock.now());
  EXPECT_EQ(reg.overall(), HealthStatus::healthy);

  optional_check.ok = false;
  clock.advance(1s);
  reg.run_due(clock.now());
  EXPECT_EQ(reg.overall(), HealthStatus::degraded);
  EXPECT_EQ(reg.snapshot().overall, HealthStatus::degraded);

  critical_check.ok = false;
  clock.advance(1s);
  reg.run_due(clock.now());
  EXPECT_EQ(reg.overall(), HealthStatus::unhealthy);

  optional_check.ok = true;
  clock.advance(1s);
  reg.run_due(clock.now());
  EXPECT_EQ(reg.overall(), HealthStatus::unhealthy);  // critical alone is enough

  critical_check.ok = true;
  clock.advance(1s);
  reg.run_due(clock.now());
  EXPECT_EQ(reg.overall(), HealthStatus::healthy);
}

TEST(HealthRegistryTest, ResultAfterTheDeadlineIsATimeout) {
  ManualClock clock;
  HealthRegistry reg(clock);
  Duration takes = 2s;
  reg.add(
      "slow",
      [&](Deadline) {
        clock.advance(takes);
        return CheckResult::pass("fine");  // says ok, but too late
      },
      opts(10s, 1, true, 1s));
  reg.run_due(clock.now());
  auto c = reg.check("slow");
  EXPECT_EQ(c->status, CheckStatus::failing);
  EXPECT_TRUE(c->last_timed_out);
  EXPECT_FALSE(c->last_ok);
  EXPECT_NE(c->last_message.find("timed out after 1000ms"), std::string::npos) << c->last_message;
  EXPECT_EQ(c->last_duration, 2s);

  // Exactly at the deadline is too late as well (no time left means no time).
  takes = 1s;
  clock.advance(10s);
  reg.run_due(clock.now());
  EXPECT_TRUE(reg.check("slow")->last_timed_out);

  // Just before it is in time.
  takes = 999ms;
  clock.advance(10s);
  reg.run_due(clock.now());
  c = reg.check("slow");
  EXPECT_FALSE(c->last_timed_out);
  EXPECT_TRUE(c->last_ok);
  EXPECT_EQ(c->last_message, "fine");
  EXPECT_EQ(c->status, CheckStatus::passing);
}

TEST(HealthRegistryTest, ExceptionIsAFailedRunWithItsMessage) {
  ManualClock clock;
  HealthRegistry reg(clock);
  reg.add(
      "boom", [](Deadline) -> CheckResult { throw std::runtime_error("disk gone"); }, opts(1s, 1));
  EXPECT_EQ(reg.run_due(clock.now()), 1u);
  auto c = reg.check("boom");
  EXPECT_EQ(c->status, CheckStatus::failing);
  EXPECT_EQ(c->last_message, "exception: disk gone");
}

TEST(HealthRegistryTest, SnapshotServesCachedResultsWithoutRunning) {
  ManualClock clock;
  HealthRegistry reg(clock);
  Switch a, b;
  b.ok = false;
  b.message = "503 from upstream";
  reg.add("b", b.fn(), opts(30s, 1, false));
  reg.add("a", a.fn(), opts(30s, 1));
  const TimePoint t0 = clock.now();
  reg.run_due(t0);
  clock.advance(5s);
  for (int i = 0; i < 10; ++i) (void)reg.snapshot();
  EXPECT_EQ(a.runs, 1);
  EXPECT_EQ(b.runs, 1);
  HealthSnapshot snap = reg.snapshot();
  EXPECT_EQ(snap.overall, HealthStatus::degraded);
  ASSERT_EQ(snap.checks.size(), 2u);
  EXPECT_EQ(snap.checks[0].name, "a");  // sorted by name
  EXPECT_EQ(snap.checks[1].name, "b");
  EXPECT_EQ(snap.checks[1].status, CheckStatus::failing);
  EXPECT_EQ(snap.checks[1].last_message, "503 from upstream");
  EXPECT_EQ(snap.checks[1].last_run, t0);
  EXPECT_EQ(snap.checks[1].consecutive_failures, 1u);
  EXPECT_FALSE(snap.checks[1].critical);
  EXPECT_EQ(snap.checks[0].next_run, t0 + 30s);
}

TEST(HealthRegistryTest, RunningCheckIsNotHandedOutTwice) {
  ManualClock clock;
  HealthRegistry reg(clock);
  reg.add(
      "x", [](Deadline) { return CheckResult::pass(); }, opts(1s, 1));
  auto first = reg.take_due(clock.now());
  ASSERT_EQ(first.size(), 1u);
  clock.advance(5s);
  EXPECT_TRUE(reg.take_due(clock.now()).empty());
  EXPECT_TRUE(reg.check("x")->running);
  EXPECT_FALSE(reg.next_due().has_value());  // the only check is running
  EXPECT_TRUE(reg.record(first[0], CheckResult::pass(), clock.now() - 4500ms));
  EXPECT_FALSE(reg.record(first[0], CheckResult::pass(), clock.now()));  // already recorded
  EXPECT_EQ(reg.check("x")->runs, 1u);
}

TEST(HealthRegistryTest, ResultOfARemovedOrReplacedCheckIsDropped) {
  ManualClock clock;
  HealthRegistry reg(clock);
  auto fail = [](Deadline) { return CheckResult::fail("down"); };
  reg.add("x", fail, opts(1s, 1));
  auto due = reg.take_due(clock.now());
  ASSERT_EQ(due.size(), 1u);
  EXPECT_TRUE(reg.remove("x"));
  EXPECT_FALSE(reg.remove("x"));
  reg.add("x", fail, opts(1s, 1));
  EXPECT_FALSE(reg.record(due[0], CheckResult::fail("down"), clock.now()));
  EXPECT_EQ(reg.check("x")->runs, 0u);
  EXPECT_EQ(reg.check("x")->status, CheckStatus::unknown);
}

TEST(HealthRegistryTest, RemovingAFailingCheckRestoresOverall) {
  ManualClock clock;
  HealthRegistry reg(clock);
  reg.add(
      "x", [](Deadline) { return CheckResult::fail("down"); }, opts(1s, 1));
  reg.run_due(clock.now());
  EXPECT_EQ(reg.overall(), HealthStatus::unhealthy);
  reg.remove("x");
  EXPECT_EQ(reg.overall(), HealthStatus::healthy);
}

TEST(HealthRegistryTest, ListenersSeeEveryStatusChangeInOrder) {
  ManualClock clock;
  HealthRegistry reg(clock);
  Switch s;
  reg.add("db", s.fn(), opts(1s, 2));
  std::vector<std::string> seen;
  reg.add_listener([&](const HealthEvent& e) {
    // A listener may read the registry.
    const HealthStatus overall_now = reg.snapshot().overall;
    seen.push_back(
        e.check + ":" + std::string(to_string(e.from)) + "->" + std::string(to_string(e.to)) +
        " overall " + std::string(to_string(e.overall_from)) + "->" +
        std::string(to_string(e.overall_to)) + " now " + std::string(to_string(overall_now)));
  });
  reg.run_due(clock.now());  // unknown -> passing
  s.ok = false;
  s.message = "refused";
  clock.advance(1s);
  reg.run_due(clock.now());  // 1 failure: no change
  clock.advance(1s);
  reg.run_due(clock.now());  // 2 failures: failing
  clock.advance(1s);
  reg.run_due(clock.now());  // still failing: no event
  s.ok = true;
  clock.advance(1s);
  reg.run_due(clock.now());  // passing again
  EXPECT_EQ(seen, (std::vector<std::string>{
                      "db:unknown->passing overall healthy->healthy now healthy",
                      "db:passing->failing overall healthy->unhealthy now unhealthy",
                      "db:failing->passing overall unhealthy->healthy now healthy",
                  }));
}

TEST(HealthRegistryTest, ThrowingListenerDoesNotStopOthers) {
  ManualClock clock;
  HealthRegistry reg(clock);
  int calls = 0;
  reg.add_listener([](const HealthEvent&) { throw std::runtime_error("bad listener"); });
  reg.add_listener([&](const HealthEvent&) { ++calls; });
  reg.add(
      "x", [](Deadline) { return CheckResult::pass(); }, opts(1s, 1));
  reg.run_due(clock.now());
  EXPECT_EQ(calls, 1);
}

TEST(HealthStringsTest, Names) {
  EXPECT_EQ(to_string(HealthStatus::healthy), "healthy");
  EXPECT_EQ(to_string(HealthStatus::degraded), "degraded");
  EXPECT_EQ(to_string(HealthStatus::unhealthy), "unhealthy");
  EXPECT_EQ(to_string(CheckStatus::unknown), "unknown");
  EXPECT_EQ(to_string(CheckStatus::passing), "passing");
  EXPECT_EQ(to_string(CheckStatus::failing), "failing");
}

// Waits (in real time, bounded) until `pred` holds; the runner thread notifies `cv`.
template <class Pred>
bool wait_until(std::mutex& mu, std::condition_variable& cv, Pred pred) {
  std::unique_lock lock(mu);
  return cv.wait_for(lock, 10s, pred);
}

TEST(HealthRunnerTest, RunsDueChecksOnItsThreadDrivenByTheClock) {
  ManualClock clock;
  HealthRegistry reg(clock);
  std::atomic<int> runs{0};
  // Passes, then fails: each run changes the status, so each recorded result is an event. The
  // test moves the clock only after an event, i.e. after the run's end time was taken.
  reg.add(
      "x", [&](Deadline) { return ++runs == 1 ? CheckResult::pass() : CheckResult::fail("down"); },
      opts(10s, 1));
  std::mutex mu;
  std::condition_variable cv;
  std::vector<CheckStatus> seen;
  reg.add_listener([&](const HealthEvent& e) {
    {
      std::lock_guard lock(mu);
      seen.push_back(e.to);
    }
    cv.notify_all();
  });
  const TimePoint t0 = clock.now();
  HealthRunner runner(reg, clock, 1h);
  runner.start();
  ASSERT_TRUE(wait_until(mu, cv, [&] { return seen.size() == 1; }));  // due at registration

  clock.advance(9s);  // not due yet: waking the runner runs nothing
  runner.wake();
  clock.advance(1s);
  runner.wake();
  ASSERT_TRUE(wait_until(mu, cv, [&] { return seen.size() == 2; }));
  runner.stop();
  EXPECT_EQ(runs.load(), 2);
  EXPECT_EQ(seen, (std::vector<CheckStatus>{CheckStatus::passing, CheckStatus::failing}));
  EXPECT_EQ(reg.check("x")->runs, 2u);
  EXPECT_EQ(reg.check("x")->last_run, t0 + 10s);  // not at 9 s
  EXPECT_GE(runner.passes(), 2u);
}

TEST(HealthRunnerTest, SelfDrivingWithSystemClockAndStopsPromptly) {
  Clock& clock = SystemClock::instance();
  HealthRegistry reg(clock);
  std::mutex mu;
  std::condition_variable cv;
  bool ran = false;
  reg.add(
      "x",
      [&](Deadline) {
        {
          std::lock_guard lock(mu);
          ran = true;
        }
        cv.notify_all();
        return CheckResult::fail("down");
      },
      opts(1h, 1));
  HealthRunner runner(reg, clock);
  runner.start();
  runner.start();  // no-op
  ASSERT_TRUE(wait_until(mu, cv, [&] { return ran; }));
  // The next run is an hour away; stop() must not wait for it.
  const TimePoint t0 = clock.now();
  runner.stop();
  EXPECT_LT(clock.now() - t0, 5s);
  EXPECT_EQ(reg.overall(), HealthStatus::unhealthy);
  EXPECT_THROW(HealthRunner(reg, clock, 0s), std::invalid_argument);
}

}  // namespace
}  // namespace bulwark::observe
