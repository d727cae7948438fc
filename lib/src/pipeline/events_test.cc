#include "bulwark/pipeline/events.h"

#include <gtest/gtest.h>

#include <mutex>
#include <string>
#include <vector>

#include "bulwark/fallback/fallback.h"
#include "bulwark/limit/token_bucket.h"
#include "bulwark/pipeline/pipeline.h"
#include "bulwark/testing/manual_clock.h"

namespace bulwark {
namespace {

using namespace std::chrono_literals;
using testing::ManualClock;

// Copies every event it hears (string views become strings).
class Recorder final : public EventListener {
 public:
  struct Retry {
    std::string name;
    uint32_t attempt;
    Duration delay;
    boost::system::error_code error;
    TimePoint at;
  };
  struct Rejection {
    std::string stage, name;
    errc reason;
    std::optional<Duration> retry_after;
    std::string key;
  };
  struct Fallback {
    std::string name;
    std::size_t alternative;
    Outcome outcome;
    boost::system::error_code error;
  };

  void on_retry(const RetryEvent& e) noexcept override {
    std::lock_guard lock(mu);
    retries.push_back({std::string(e.name), e.attempt, e.delay, e.result.error, e.at});
  }
  void on_rejected(const RejectionEvent& e) noexcept override {
    std::lock_guard lock(mu);
    rejections.push_back(
        {std::string(e.stage), std::string(e.name), e.reason, e.retry_after, std::string(e.key)});
  }
  void on_fallback(const FallbackEvent& e) noexcept override {
    std::lock_guard lock(mu);
    fallbacks.push_back({std::string(e.name), e.alternative, e.failure.outcome, e.failure.error});
  }
  void on_breaker_transition(const circuit::TransitionEvent& e) noexcept override {
    std::lock_guard lock(mu);
    transitions.push_back(std::string(circuit::to_string(e.from)) + "->" +
                          std::string(circuit::to_string(e.to)) + ":" + std::string(e.cause));
  }

  std::mutex mu;
  std::vector<Retry> retries;
  std::vector<Rejection> rejections;
  std::vector<Fallback> fallbacks;
  std::vector<std::string> transitions;
};

retry::RetryOptions no_jitter(uint32_t attempts) {
  retry::RetryOptions o;
  o.max_attempts = attempts;
  o.backoff.base = 25ms;
  o.backoff.max = 250ms;
  o.backoff.jitter = retry::Jitter::none;
  return o;
}

TEST(Events, RetryCarriesTheFailedAttemptTheDelayAndTheReason) {
  ManualClock clock;
  Recorder events;
  auto p =
      Pipeline::Builder(clock).retry(no_jitter(4), {.listener = &events, .name = "users"}).build();
  const TimePoint t0 = clock.now();
  int calls = 0;
  auto r = p.execute([&]() -> Result<int> {
    ++calls;
    if (calls == 1) return make_error_code(errc::call_failed);
    if (calls == 2) return make_error_code(errc::rejected);
    return 7;
  });
  ASSERT_TRUE(r);
  ASSERT_EQ(events.retries.size(), 2u);
  EXPECT_EQ(events.retries[0].name, "users");
  EXPECT_EQ(events.retries[0].attempt, 1u);
  EXPECT_EQ(events.retries[0].delay, 25ms);
  EXPECT_EQ(events.retries[0].error, errc::call_failed);
  EXPECT_EQ(events.retries[0].at, t0);
  EXPECT_EQ(events.retries[1].attempt, 2u);
  EXPECT_EQ(events.retries[1].delay, 50ms);
  EXPECT_EQ(events.retries[1].error, errc::rejected);
  EXPECT_EQ(events.retries[1].at, t0 + 25ms);
  // The last attempt is not followed by a retry, and exhaustion is not a retry.
  calls = -10;
  (void)p.execute([&]() -> Result<int> { return make_error_code(errc::call_failed); });
  EXPECT_EQ(events.retries.size(), 2u + 3u);
}

TEST(Events, EveryRejectingStageReportsItsReason) {
  ManualClock clock;
  Recorder events;
  circuit::CircuitBreaker breaker("payments", {}, clock);
  limit::Bulkhead bulkhead("db", {.max_concurrent = 1, .initial_hold_time = 40ms}, clock);
  limit::TokenBucket bucket({.rate = limit::Rate::per_second(10), .burst = 1});
  limit::KeyedLimiter keyed({.rate = limit::Rate::per_second(10), .burst = 1});
  auto call = [] { return 1; };

  breaker.force_open();
  auto p1 = Pipeline::Builder(clock).listener(events).circuit_breaker(breaker).build();
  EXPECT_FALSE(p1.execute(call));

  Result<limit::Permit> acquired = bulkhead.try_acquire_now(clock.now());
  limit::Permit held = std::move(*acquired);
  auto p2 = Pipeline::Builder(clock).listener(events).bulkhead(bulkhead).build();
  EXPECT_FALSE(p2.execute(call));
  held.release(clock.now());

  auto p3 =
      Pipeline::Builder(clock).listener(events).rate_limit(bucket, {.name = "global"}).build();
  EXPECT_TRUE(p3.execute(call));
  EXPECT_FALSE(p3.execute(call));

  auto p4 = Pipeline::Builder(clock)
                .listener(events)
                .keyed_rate_limit(keyed, {.name = "per-client"})
                .build();
  EXPECT_TRUE(p4.execute(call, {.key = "alice"}));
  EXPECT_FALSE(p4.execute(call, {.key = "alice"}));
  auto p5 = Pipeline::Builder(clock)
                .listener(events)
                .keyed_rate_limit(keyed, {.missing_key = limit::MissingKey::refuse})
                .build();
  EXPECT_FALSE(p5.execute(call));

  ASSERT_EQ(events.rejections.size(), 5u);
  const auto& r = events.rejections;
  EXPECT_EQ(r[0].stage, "circuit_breaker");
  EXPECT_EQ(r[0].name, "payments");
  EXPECT_EQ(r[0].reason, errc::circuit_open);
  EXPECT_EQ(r[1].stage, "bulkhead");
  EXPECT_EQ(r[1].name, "db");
  EXPECT_EQ(r[1].reason, errc::queue_full);
  EXPECT_EQ(r[1].retry_after, 40ms);
  EXPECT_EQ(r[2].stage, "rate_limit");
  EXPECT_EQ(r[2].name, "global");
  EXPECT_EQ(r[2].reason, errc::rate_limited);
  EXPECT_EQ(r[2].retry_after, 100ms);
  EXPECT_EQ(r[3].stage, "keyed_rate_limit");
  EXPECT_EQ(r[3].name, "per-client");
  EXPECT_EQ(r[3].reason, errc::rate_limited);
  EXPECT_EQ(r[3].key, "alice");
  EXPECT_EQ(r[3].retry_after, 100ms);
  EXPECT_EQ(r[4].reason, errc::rejected);  // no key, refused
  EXPECT_EQ(r[4].key, "");
  EXPECT_FALSE(r[4].retry_after);
}

TEST(Events, TheBuilderListenerReachesOnlyTheStagesAddedAfterItAndOptionsMayOverride) {
  ManualClock clock;
  Recorder first, second;
  circuit::CircuitBreaker a("a", {}, clock), b("b", {}, clock), c("c", {}, clock);
  a.force_open();
  b.force_open();
  c.force_open();
  auto pa = Pipeline::Builder(clock).circuit_breaker(a).listener(first).build();
  auto pb = Pipeline::Builder(clock).listener(first).circuit_breaker(b).build();
  auto pc =
      Pipeline::Builder(clock).listener(first).circuit_breaker(c, {.listener = &second}).build();
  for (const Pipeline* p : {&pa, &pb, &pc}) (void)p->execute([] { return 1; });
  ASSERT_EQ(first.rejections.size(), 1u);
  EXPECT_EQ(first.rejections[0].name, "b");
  ASSERT_EQ(second.rejections.size(), 1u);
  EXPECT_EQ(second.rejections[0].name, "c");
}

TEST(Events, TheFallbackStageReportsTheFailureItAnswers) {
  ManualClock clock;
  Recorder events;
  auto p = Pipeline::Builder(clock)
               .listener(events)
               .fallback([] { return 0; }, {.name = "price"})
               .build();
  EXPECT_EQ(*p.execute([]() -> Result<int> { return make_error_code(errc::call_failed); }), 0);
  EXPECT_EQ(*p.execute([] { return 5; }), 5);  // nothing to answer: no event
  ASSERT_EQ(events.fallbacks.size(), 1u);
  EXPECT_EQ(events.fallbacks[0].name, "price");
  EXPECT_EQ(events.fallbacks[0].alternative, 1u);
  EXPECT_EQ(events.fallbacks[0].outcome, Outcome::retryable_failure);
  EXPECT_EQ(events.fallbacks[0].error, errc::call_failed);
}

TEST(Events, SequentialFallbackReportsEachAlternativeItMovesTo) {
  Recorder events;
  auto r = fallback::sequential(
      {.listener = &events, .name = "profile"},
      []() -> Result<int> { return make_error_code(errc::timeout); },
      []() -> Result<int> { return make_error_code(errc::circuit_open); }, [] { return 3; });
  EXPECT_EQ(*r, 3);
  ASSERT_EQ(events.fallbacks.size(), 2u);
  EXPECT_EQ(events.fallbacks[0].name, "profile");
  EXPECT_EQ(events.fallbacks[0].alternative, 1u);
  EXPECT_EQ(events.fallbacks[0].error, errc::timeout);
  EXPECT_EQ(events.fallbacks[1].alternative, 2u);
  EXPECT_EQ(events.fallbacks[1].error, errc::circuit_open);
  // A primary that answers moves nowhere.
  (void)fallback::sequential(
      {.listener = &events}, [] { return 1; }, [] { return 2; });
  EXPECT_EQ(events.fallbacks.size(), 2u);
}

TEST(Events, BreakerTransitionsAreForwarded) {
  ManualClock clock;
  Recorder events;
  circuit::CircuitBreaker breaker(
      "b", {.window_size = 2, .min_calls = 2, .open_duration = 5s, .success_threshold = 1}, clock);
  forward_transitions(breaker, events);
  auto p = Pipeline::Builder(clock).circuit_breaker(breaker).build();
  for (int i = 0; i < 2; ++i) {
    (void)p.execute([]() -> Result<int> { return make_error_code(errc::call_failed); });
  }
  clock.advance(5s);
  EXPECT_TRUE(p.execute([] { return 1; }));
  EXPECT_EQ(events.transitions,
            (std::vector<std::string>{"closed->open:failure_rate", "open->half_open:open_elapsed",
                                      "half_open->closed:probes_succeeded"}));
}

}  // namespace
}  // namespace bulwark
