#include "bulwark/observe/policy_metrics.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "bulwark/cache/cache.h"
#include "bulwark/circuit/circuit_breaker.h"
#include "bulwark/fallback/hedge.h"
#include "bulwark/lifecycle/shutdown.h"
#include "bulwark/limit/bulkhead.h"
#include "bulwark/limit/keyed_limiter.h"
#include "bulwark/limit/keyed_rate_limit_stage.h"
#include "bulwark/limit/rate_limit_stage.h"
#include "bulwark/limit/token_bucket.h"
#include "bulwark/observe/alerts.h"
#include "bulwark/observe/health.h"
#include "bulwark/observe/prometheus.h"
#include "bulwark/observe/registry.h"
#include "bulwark/observe/resource_monitor.h"
#include "bulwark/pipeline/pipeline.h"
#include "bulwark/pipeline/stages.h"
#include "bulwark/retry/retry_budget.h"
#include "bulwark/testing/manual_clock.h"
#include "prometheus_test_util.h"

namespace bulwark::observe {
namespace {

using namespace std::chrono_literals;
using circuit::CircuitBreaker;
using circuit::State;
using testing::ManualClock;

double value(const SnapshotSink& s, std::string_view name, Labels labels) {
  const Sample* sample = s.find(name, labels);
  EXPECT_NE(sample, nullptr) << name;
  return sample != nullptr ? sample->value : -1;
}

circuit::BreakerOptions small_breaker() {
  circuit::BreakerOptions o;
  o.window_size = 4;
  o.min_calls = 4;
  o.failure_rate = 0.5;
  o.slow_call_duration = 1s;
  o.open_duration = 10s;
  o.half_open_probes = 1;
  o.success_threshold = 1;
  return o;
}

void expect_state(const SnapshotSink& s, std::string_view breaker, State current) {
  for (State st : {State::closed, State::open, State::half_open, State::disabled,
                   State::forced_open, State::metrics_only}) {
    EXPECT_EQ(value(s, kBreakerState, {{"breaker", breaker}, {"state", circuit::to_string(st)}}),
              st == current ? 1.0 : 0.0)
        << circuit::to_string(st);
  }
}

TEST(PolicyMetrics, BreakerSeriesFollowARealBreakerThroughItsStates) {
  ManualClock clock;
  CircuitBreaker breaker("users", small_breaker(), clock);
  {
    SnapshotSink s;
    report(breaker, s);
    // 6 outcomes + slow + 6 states + transitions.
    EXPECT_EQ(s.samples().size(), 14u);
    expect_state(s, "users", State::closed);
    for (const char* o :
         {"success", "failure", "rejected", "dropped_stale", "released", "ignored"}) {
      EXPECT_EQ(value(s, kBreakerCalls, {{"breaker", "users"}, {"outcome", o}}), 0.0) << o;
    }
  }

  // One slow success, one release, two failures: 2 of 3 recorded calls failed -> trips at the
  // fourth result (window of 4, min_calls 4).
  auto a = breaker.try_acquire(clock.now());
  clock.advance(2s);
  breaker.on_success(a.permit, clock.now());  // slow: 2 s > 1 s
  auto b = breaker.try_acquire(clock.now());
  breaker.release(b.permit);
  breaker.ignore(breaker.try_acquire(clock.now()).permit);  // e.g. a 429: not counted
  auto late = breaker.try_acquire(clock.now());             // still running when the breaker trips
  for (int i = 0; i < 3; ++i) {
    auto p = breaker.try_acquire(clock.now());
    ASSERT_TRUE(p.allowed);
    breaker.on_failure(p.permit, clock.now());
  }
  ASSERT_EQ(breaker.state(), State::open);
  EXPECT_FALSE(breaker.try_acquire(clock.now()).allowed);  // rejected
  {
    SnapshotSink s;
    report(breaker, s);
    expect_state(s, "users", State::open);
    EXPECT_EQ(value(s, kBreakerCalls, {{"breaker", "users"}, {"outcome", "success"}}), 1.0);
    EXPECT_EQ(value(s, kBreakerCalls, {{"breaker", "users"}, {"outcome", "failure"}}), 3.0);
    EXPECT_EQ(value(s, kBreakerCalls, {{"breaker", "users"}, {"outcome", "released"}}), 1.0);
    EXPECT_EQ(value(s, kBreakerCalls, {{"breaker", "users"}, {"outcome", "ignored"}}), 1.0);
    EXPECT_EQ(value(s, kBreakerCalls, {{"breaker", "users"}, {"outcome", "rejected"}}), 1.0);
    EXPECT_EQ(value(s, kBreakerSlowCalls, {{"breaker", "users"}}), 1.0);
    EXPECT_EQ(value(s, kBreakerTransitions, {{"breaker", "users"}}), 1.0);
  }

  // Open elapses -> half-open probe; a late result from before the trip is dropped as stale;
  // the probe succeeds -> closed.
  clock.advance(10s);
  auto probe = breaker.try_acquire(clock.now());
  ASSERT_TRUE(probe.allowed);
  ASSERT_EQ(breaker.state(), State::half_open);
  {
    SnapshotSink s;
    report(breaker, s);
    expect_state(s, "users", State::half_open);
  }
  breaker.on_success(late.permit, clock.now());
  breaker.on_success(probe.permit, clock.now());
  ASSERT_EQ(breaker.state(), State::closed);
  breaker.force_open();
  SnapshotSink s;
  report(breaker, s);
  expect_state(s, "users", State::forced_open);
  EXPECT_EQ(value(s, kBreakerCalls, {{"breaker", "users"}, {"outcome", "dropped_stale"}}), 1.0);
  EXPECT_EQ(value(s, kBreakerCalls, {{"breaker", "users"}, {"outcome", "success"}}), 2.0);
  // closed->open, open->half_open, half_open->closed, closed->forced_open.
  EXPECT_EQ(value(s, kBreakerTransitions, {{"breaker", "users"}}), 4.0);
  for (const Sample& sample : s.samples()) {
    EXPECT_EQ(sample.labels[0], (std::pair<std::string, std::string>("breaker", "users")));
    EXPECT_FALSE(sample.help.empty());
  }
}

TEST(PolicyMetrics, RetryBudgetSeries) {
  ManualClock clock;
  retry::RetryBudget budget({.ratio = 0.5, .min_per_second = 0.1, .window = 10s});
  for (int i = 0; i < 4; ++i) budget.record_request(clock.now());
  // allowed = 0.5 * 4 + 0.1 * 10 = 3
  int granted = 0;
  for (int i = 0; i < 5; ++i) granted += budget.try_withdraw(clock.now()) ? 1 : 0;
  ASSERT_EQ(granted, 3);
  SnapshotSink s;
  report(budget, "users", clock.now(), s);
  EXPECT_EQ(s.samples().size(), 4u);
  EXPECT_EQ(value(s, kRetryBudgetRequests, {{"target", "users"}}), 4.0);
  EXPECT_EQ(value(s, kRetryBudgetRetries, {{"target", "users"}}), 3.0);
  EXPECT_DOUBLE_EQ(value(s, kRetryBudgetAllowed, {{"target", "users"}}), 3.0);
  EXPECT_EQ(value(s, kRetryBudgetExhausted, {{"target", "users"}}), 2.0);
  EXPECT_EQ(s.find(kRetryBudgetExhausted)->type, SampleType::counter);
  EXPECT_EQ(s.find(kRetryBudgetRequests)->type, SampleType::gauge);
  // The window slides: 11 s later nothing is in it, the exhaustion counter stays.
  SnapshotSink later;
  report(budget, "users", clock.now() + 11s, later);
  EXPECT_EQ(value(later, kRetryBudgetRequests, {{"target", "users"}}), 0.0);
  EXPECT_EQ(value(later, kRetryBudgetExhausted, {{"target", "users"}}), 2.0);
}

Result<int> fail() { return make_error_code(errc::call_failed); }

retry::RetryOptions no_jitter(uint32_t attempts) {
  retry::RetryOptions o;
  o.max_attempts = attempts;
  o.backoff.base = 10ms;
  o.backoff.max = 10ms;
  o.backoff.jitter = retry::Jitter::none;
  return o;
}

TEST(PolicyMetrics, RetryAndTimeoutStageSeries) {
  ManualClock clock;
  retry::RetryBudget budget({.ratio = 0.0, .min_per_second = 0.1, .window = 10s});  // 1 retry
  auto retry_stage = std::make_shared<RetryStage>(retry::RetryPolicy(no_jitter(3)), &budget);
  auto timeout_stage = std::make_shared<TimeoutStage>(1s);
  auto p = Pipeline::Builder(clock).stage(timeout_stage).stage(retry_stage).build();

  // Call 1: fails, retried once, then the budget is empty.
  EXPECT_FALSE(p.execute([] { return fail(); }));
  // Call 2: budget still empty: no retry.
  EXPECT_FALSE(p.execute([] { return fail(); }));
  // Call 3: succeeds but too late.
  EXPECT_FALSE(p.execute([&] {
    clock.advance(2s);
    return 1;
  }));

  SnapshotSink s;
  report(*retry_stage, "users", s);
  report(*timeout_stage, "users_total", s);
  const RetryStage::Stats st = retry_stage->stats();
  EXPECT_EQ(value(s, kRetryCalls, {{"retry", "users"}}), 3.0);
  EXPECT_EQ(value(s, kRetryRetries, {{"retry", "users"}}), 1.0);
  EXPECT_EQ(value(s, kRetryStops, {{"retry", "users"}, {"reason", "budget_exhausted"}}), 2.0);
  EXPECT_EQ(value(s, kRetryStops, {{"retry", "users"}, {"reason", "exhausted"}}),
            double(st.exhausted));
  EXPECT_EQ(value(s, kRetryStops, {{"retry", "users"}, {"reason", "deadline_exceeded"}}),
            double(st.deadline_exceeded));
  EXPECT_EQ(value(s, kTimeoutCalls, {{"timeout", "users_total"}}), 3.0);
  EXPECT_EQ(value(s, kTimeoutTimeouts, {{"timeout", "users_total"}}), 1.0);
  EXPECT_EQ(s.samples().size(), 7u);
}

TEST(PolicyMetrics, EveryDocumentedSeriesPassesPromtoolThroughARegistry) {
  ManualClock clock;
  CircuitBreaker breaker("users \"primary\"", small_breaker(), clock);
  retry::RetryBudget budget;
  RetryStage retry_stage{retry::RetryPolicy(no_jitter(3)), &budget};
  TimeoutStage timeout_stage(1s);
  Registry registry;
  registry.counter("app_requests_total", "Requests.", {"route"}).with({"/"}).inc();
  registry.add_collector([&](MetricsSink& s) {
    report(breaker, s);
    report(CircuitBreaker("payments", {}, clock), s);  // a second breaker: same families
    report(budget, "users", clock.now(), s);
    report(retry_stage, "users", s);
    report(timeout_stage, "users", s);
  });
  ScrapeStats stats;
  const std::string text = to_prometheus_text(registry, &stats);
  EXPECT_EQ(stats.dropped, 0u) << stats.first_error;
  // 14 series per breaker, 4 budget, 5 retry, 2 timeout, 1 registry.
  EXPECT_EQ(stats.series, 14u * 2 + 4 + 5 + 2 + 1);
  for (std::string_view name :
       {kBreakerCalls, kBreakerSlowCalls, kBreakerState, kBreakerTransitions, kRetryBudgetRequests,
        kRetryBudgetRetries, kRetryBudgetAllowed, kRetryBudgetExhausted, kRetryCalls, kRetryRetries,
        kRetryStops, kTimeoutCalls, kTimeoutTimeouts}) {
    EXPECT_NE(text.find("# TYPE " + std::string(name) + " "), std::string::npos) << name;
  }
  EXPECT_NE(text.find(R"(bulwark_breaker_state{breaker="users \"primary\"",state="closed"} 1)"),
            std::string::npos)
      << text;
  test::expect_promtool_clean(text);
}

// --- bulkhead, limiters, hedging, cache ------------------------------------------------------

TEST(PolicyMetrics, BulkheadSeriesCountGrantsRefusalsAndTheQueue) {
  ManualClock clock;
  limit::Bulkhead b(
      "db", {.max_concurrent = 1, .max_queue = 1, .max_wait = 100ms, .initial_hold_time = 50ms},
      clock);
  auto first = b.try_acquire(clock.now());
  ASSERT_EQ(first.status, limit::Bulkhead::Status::granted);
  auto waiting = b.try_acquire(clock.now());
  ASSERT_EQ(waiting.status, limit::Bulkhead::Status::queued);
  ASSERT_EQ(b.try_acquire(clock.now()).reason, errc::queue_full);
  {
    SnapshotSink s;
    report(b, s);
    EXPECT_EQ(value(s, kBulkheadInFlight, {{"bulkhead", "db"}}), 1.0);
    EXPECT_EQ(value(s, kBulkheadLimit, {{"bulkhead", "db"}}), 1.0);
    EXPECT_EQ(value(s, kBulkheadQueued, {{"bulkhead", "db"}}), 1.0);
    EXPECT_EQ(value(s, kBulkheadGranted, {{"bulkhead", "db"}, {"wait", "none"}}), 1.0);
    EXPECT_EQ(value(s, kBulkheadGranted, {{"bulkhead", "db"}, {"wait", "queued"}}), 0.0);
    EXPECT_EQ(value(s, kBulkheadRejected, {{"bulkhead", "db"}, {"reason", "queue_full"}}), 1.0);
    EXPECT_EQ(value(s, kBulkheadQueuedTotal, {{"bulkhead", "db"}}), 1.0);
    EXPECT_DOUBLE_EQ(value(s, kBulkheadHold, {{"bulkhead", "db"}}), 0.05);
    // One permit held, one call queued: a new arrival waits about two hold times.
    EXPECT_GT(value(s, kBulkheadEstimatedWait, {{"bulkhead", "db"}}), 0.0);
    // 3 gauges + 2 granted + 6 reasons + queued + withdrawn + hold + estimated wait.
    EXPECT_EQ(s.samples().size(), 15u);
  }
  // The release hands the permit to the queued call.
  clock.advance(10ms);
  first.permit.release(clock.now());
  Result<limit::Permit> held = waiting.ticket.take();  // held until the end
  ASSERT_TRUE(held);
  // A queued call that times out, one withdrawn, one refused for a closed bulkhead.
  auto late = b.try_acquire(clock.now());
  ASSERT_EQ(late.status, limit::Bulkhead::Status::queued);
  clock.advance(100ms);
  EXPECT_EQ(b.expire(clock.now()), 1u);
  auto gone = b.try_acquire(clock.now());
  ASSERT_EQ(gone.status, limit::Bulkhead::Status::queued);
  ASSERT_TRUE(gone.ticket.withdraw());
  b.set_limit(0, clock.now());
  ASSERT_EQ(b.try_acquire(clock.now()).reason, errc::rejected);
  SnapshotSink s;
  report(b, s);
  EXPECT_EQ(value(s, kBulkheadGranted, {{"bulkhead", "db"}, {"wait", "queued"}}), 1.0);
  EXPECT_EQ(value(s, kBulkheadRejected, {{"bulkhead", "db"}, {"reason", "timed_out"}}), 1.0);
  EXPECT_EQ(value(s, kBulkheadRejected, {{"bulkhead", "db"}, {"reason", "closed"}}), 1.0);
  EXPECT_EQ(value(s, kBulkheadWithdrawn, {{"bulkhead", "db"}}), 1.0);
  EXPECT_EQ(value(s, kBulkheadQueuedTotal, {{"bulkhead", "db"}}), 3.0);
  EXPECT_EQ(value(s, kBulkheadLimit, {{"bulkhead", "db"}}), 0.0);
}

TEST(PolicyMetrics, RateLimitStageSeriesCountDecisionsAndShowTheLimiter) {
  ManualClock clock;
  limit::TokenBucket bucket({.rate = limit::Rate::per_second(10), .burst = 3});
  auto p = Pipeline::Builder(clock).rate_limit(bucket, {.permits = 2}).build();
  EXPECT_TRUE(p.execute([] { return 1; }));
  EXPECT_FALSE(p.execute([] { return 1; }));
  SnapshotSink s;
  report(dynamic_cast<const limit::RateLimitStage&>(*p.stages()[0]), "api", clock.now(), s);
  EXPECT_EQ(value(s, kLimiterDecisions, {{"limiter", "api"}, {"result", "admitted"}}), 1.0);
  EXPECT_EQ(value(s, kLimiterDecisions, {{"limiter", "api"}, {"result", "rejected"}}), 1.0);
  EXPECT_EQ(value(s, kLimiterRemaining, {{"limiter", "api"}}), 1.0);
  EXPECT_EQ(value(s, kLimiterCapacity, {{"limiter", "api"}}), 3.0);
  EXPECT_EQ(s.samples().size(), 4u);
}

TEST(PolicyMetrics, KeyedStageAndKeyedLimiterSeries) {
  ManualClock clock;
  limit::KeyedLimiter limiter(
      {.rate = limit::Rate::per_second(1), .burst = 1, .shards = 1, .hash_seed = 3});
  auto shared = Pipeline::Builder(clock).keyed_rate_limit(limiter).build();
  auto strict = Pipeline::Builder(clock)
                    .keyed_rate_limit(limiter, {.missing_key = limit::MissingKey::refuse})
                    .build();
  EXPECT_TRUE(shared.execute([] { return 1; }, {.key = "a"}));
  EXPECT_FALSE(shared.execute([] { return 1; }, {.key = "a"}));
  EXPECT_TRUE(shared.execute([] { return 1; }));  // keyless: the shared key
  EXPECT_FALSE(strict.execute([] { return 1; }));
  {
    SnapshotSink s;
    report(dynamic_cast<const limit::KeyedRateLimitStage&>(*shared.stages()[0]), "clients", s);
    EXPECT_EQ(value(s, kLimiterDecisions, {{"limiter", "clients"}, {"result", "admitted"}}), 2.0);
    EXPECT_EQ(value(s, kLimiterDecisions, {{"limiter", "clients"}, {"result", "rejected"}}), 1.0);
    EXPECT_EQ(value(s, kLimiterDecisions, {{"limiter", "clients"}, {"result", "refused_no_key"}}),
              0.0);
    EXPECT_EQ(value(s, kLimiterKeyless, {{"limiter", "clients"}}), 1.0);
    SnapshotSink t;
    report(dynamic_cast<const limit::KeyedRateLimitStage&>(*strict.stages()[0]), "strict", t);
    EXPECT_EQ(value(t, kLimiterDecisions, {{"limiter", "strict"}, {"result", "refused_no_key"}}),
              1.0);
  }
  clock.advance(10s);
  EXPECT_EQ(limiter.sweep(clock.now()), 2u);  // both keys recovered: idle evictions
  SnapshotSink s;
  report(limiter, "clients", s);
  EXPECT_EQ(value(s, kKeyedLimiterKeys, {{"limiter", "clients"}}), 0.0);
  EXPECT_EQ(value(s, kKeyedLimiterDecisions, {{"limiter", "clients"}, {"result", "admitted"}}),
            2.0);
  EXPECT_EQ(value(s, kKeyedLimiterDecisions, {{"limiter", "clients"}, {"result", "rejected"}}),
            1.0);
  EXPECT_EQ(value(s, kKeyedLimiterEvictions, {{"limiter", "clients"}, {"reason", "idle"}}), 2.0);
  EXPECT_EQ(value(s, kKeyedLimiterEvictions, {{"limiter", "clients"}, {"reason", "forced"}}), 0.0);
  EXPECT_EQ(value(s, kKeyedLimiterLimitedEvictions, {{"limiter", "clients"}}), 0.0);
  const limit::KeyedLimiter::Stats st = limiter.stats();
  EXPECT_EQ(value(s, kKeyedLimiterMemory, {{"limiter", "clients"}}),
            static_cast<double>(st.memory_bytes));
  EXPECT_EQ(value(s, kKeyedLimiterMaxBytes, {{"limiter", "clients"}}),
            static_cast<double>(st.max_bytes));
  EXPECT_EQ(value(s, kKeyedLimiterMaxKeys, {{"limiter", "clients"}}),
            static_cast<double>(st.max_keys));
}

TEST(PolicyMetrics, HedgeSeriesCountHedgesWinsAndBudgetRefusals) {
  ManualClock clock;
  retry::RetryBudget budget({.ratio = 0.0, .min_per_second = 0.1, .window = 10s});  // 1 hedge
  fallback::HedgePolicy policy({.delay = 50ms, .max_attempts = 3}, &budget, clock);
  auto run = policy.start();
  ASSERT_EQ(run.on_start(clock.now()), fallback::RaceAction::start(0));
  clock.advance(50ms);
  ASSERT_EQ(run.on_timer(clock.now()), fallback::RaceAction::start(1));
  clock.advance(50ms);
  EXPECT_EQ(run.on_timer(clock.now()), fallback::RaceAction::none());  // the budget refuses
  EXPECT_EQ(run.on_result(1, Outcome::success, clock.now()), fallback::RaceAction::finish(1));
  SnapshotSink s;
  report(policy, "search", s);
  EXPECT_EQ(value(s, kHedgeCalls, {{"hedge", "search"}}), 1.0);
  EXPECT_EQ(value(s, kHedgeHedges, {{"hedge", "search"}}), 1.0);
  EXPECT_EQ(value(s, kHedgeWins, {{"hedge", "search"}}), 1.0);
  EXPECT_EQ(value(s, kHedgeBudgetRefused, {{"hedge", "search"}}), 1.0);
}

TEST(PolicyMetrics, CacheSeriesCountLookupsEvictionsExpirationsAndSize) {
  ManualClock clock;
  cache::Cache<std::string, std::string> c(
      {.max_entries = 2, .max_bytes = 1 << 20, .shards = 1, .ttl = 10s});
  EXPECT_TRUE(c.put("a", std::string("1"), clock.now()));
  EXPECT_TRUE(c.put("b", std::string("2"), clock.now()));
  EXPECT_TRUE(c.get("a", clock.now()));
  EXPECT_FALSE(c.get("x", clock.now()));
  EXPECT_TRUE(c.put("c", std::string("3"), clock.now()));  // evicts one of a, b
  clock.advance(11s);
  EXPECT_FALSE(c.get("c", clock.now()));  // expired
  SnapshotSink s;
  report(c, "profiles", s);
  const cache::CacheStats st = c.stats();
  EXPECT_EQ(value(s, kCacheLookups, {{"cache", "profiles"}, {"result", "hit"}}), 1.0);
  EXPECT_EQ(value(s, kCacheLookups, {{"cache", "profiles"}, {"result", "miss"}}), 2.0);
  EXPECT_EQ(value(s, kCacheExpirations, {{"cache", "profiles"}}), 1.0);
  EXPECT_EQ(value(s, kCacheEvictions, {{"cache", "profiles"}}), 1.0);
  EXPECT_EQ(value(s, kCacheEntries, {{"cache", "profiles"}}), static_cast<double>(st.entries));
  EXPECT_EQ(value(s, kCacheBytes, {{"cache", "profiles"}}), static_cast<double>(st.bytes));
  EXPECT_GT(st.bytes, 0u);
  EXPECT_EQ(value(s, kCacheFills, {{"cache", "profiles"}}), 0.0);
  EXPECT_EQ(s.samples().size(), 12u);
}

TEST(PolicyMetrics, TheNewSeriesPassPromtoolThroughARegistry) {
  ManualClock clock;
  limit::Bulkhead bulkhead("db", {.max_concurrent = 4}, clock);
  limit::TokenBucket bucket({.rate = limit::Rate::per_second(10), .burst = 3});
  limit::RateLimitStage rate_stage(bucket);
  limit::KeyedLimiter keyed({.rate = limit::Rate::per_second(10), .burst = 3});
  limit::KeyedRateLimitStage keyed_stage(keyed);
  fallback::HedgePolicy hedge({}, nullptr, clock);
  cache::Cache<std::string, std::string> c({.ttl = 10s});
  (void)c.get("k", clock.now());
  Registry registry;
  registry.add_collector([&](MetricsSink& s) {
    report(bulkhead, s);
    report(limit::Bulkhead("payments \"eu\"", {}, clock), s);  // a second bulkhead
    report(rate_stage, "api", clock.now(), s);
    report(keyed_stage, "clients", s);  // same decisions family, more results
    report(keyed, "clients", s);
    report(hedge, "search", s);
    report(c, "profiles", s);
  });
  ScrapeStats stats;
  const std::string text = to_prometheus_text(registry, &stats);
  EXPECT_EQ(stats.dropped, 0u) << stats.first_error;
  // 15 per bulkhead, 4 rate stage, 4 keyed stage, 9 keyed limiter, 4 hedge, 12 cache.
  EXPECT_EQ(stats.series, 15u * 2 + 4 + 4 + 9 + 4 + 12);
  for (std::string_view name : {kBulkheadInFlight,
                                kBulkheadLimit,
                                kBulkheadQueued,
                                kBulkheadGranted,
                                kBulkheadRejected,
                                kBulkheadQueuedTotal,
                                kBulkheadWithdrawn,
                                kBulkheadHold,
                                kBulkheadEstimatedWait,
                                kLimiterDecisions,
                                kLimiterKeyless,
                                kLimiterRemaining,
                                kLimiterCapacity,
                                kKeyedLimiterKeys,
                                kKeyedLimiterDecisions,
                                kKeyedLimiterEvictions,
                                kKeyedLimiterLimitedEvictions,
                                kKeyedLimiterMemory,
                                kKeyedLimiterMaxBytes,
                                kKeyedLimiterMaxKeys,
                                kHedgeCalls,
                                kHedgeHedges,
                                kHedgeWins,
                                kHedgeBudgetRefused,
                                kCacheLookups,
                                kCacheExpirations,
                                kCacheStaleServed,
                                kCacheFills,
                                kCacheFillFailures,
                                kCacheFillWaits,
                                kCacheEvictions,
                                kCacheInvalidations,
                                kCacheRejected,
                                kCacheEntries,
                                kCacheBytes}) {
    EXPECT_NE(text.find("# TYPE " + std::string(name) + " "), std::string::npos) << name;
  }
  EXPECT_NE(text.find(R"(bulwark_cache_lookups_total{cache="profiles",result="miss"} 1)"),
            std::string::npos)
      << text;
  test::expect_promtool_clean(text);
}

class FixedReader final : public ResourceReader {
 public:
  ResourceReading reading;
  ResourceReading read() override { return reading; }
};

TEST(PolicyMetrics, HealthResourceAlertAndShutdownSeries) {
  ManualClock clock;
  HealthRegistry health(clock);
  health.add("db", [](Deadline) { return CheckResult::pass(); }, {.retries = 1});
  health.add("cache", [](Deadline) { return CheckResult::fail("down"); },
             {.retries = 1, .critical = false});
  health.run_due(clock.now());

  auto reader = std::make_shared<FixedReader>();
  reader->reading = {.open_fds = 850, .fd_limit = 1000, .rss_bytes = 100, .memory_limit = 1000};
  ResourceMonitor resources(reader);
  resources.poll(clock.now());

  AlertEngine alerts;
  alerts.add_rule({.name = "too_many_fds",
                   .source = [](TimePoint) { return std::optional<double>(0.85); },
                   .op = CompareOp::gt,
                   .threshold = 0.8,
                   .severity = Severity::critical});
  alerts.evaluate(clock.now());

  lifecycle::ShutdownCoordinator shutdown(clock);
  shutdown.request_stop("test");

  SnapshotSink s;
  report(health, s);
  report(resources, s);
  report(alerts, s);
  report(shutdown, s);

  EXPECT_EQ(value(s, kHealthStatus, {{"status", "degraded"}}), 1.0);
  EXPECT_EQ(value(s, kHealthStatus, {{"status", "healthy"}}), 0.0);
  EXPECT_EQ(value(s, kHealthCheckStatus,
                  {{"check", "cache"}, {"critical", "false"}, {"status", "failing"}}),
            1.0);
  EXPECT_EQ(
      value(s, kHealthCheckStatus, {{"check", "db"}, {"critical", "true"}, {"status", "passing"}}),
      1.0);
  EXPECT_EQ(value(s, kHealthCheckRuns, {{"check", "db"}}), 1.0);
  EXPECT_EQ(value(s, kHealthCheckFailures, {{"check", "cache"}}), 1.0);

  EXPECT_EQ(value(s, kResourceLevel, {{"resource", "fds"}, {"level", "warning"}}), 1.0);
  EXPECT_EQ(value(s, kResourceLevel, {{"resource", "memory"}, {"level", "normal"}}), 1.0);
  EXPECT_EQ(value(s, kResourceLevel, {{"resource", "overall"}, {"level", "warning"}}), 1.0);
  EXPECT_EQ(value(s, kResourceUsed, {{"resource", "fds"}}), 850.0);
  EXPECT_EQ(value(s, kResourceLimit, {{"resource", "memory"}}), 1000.0);
  EXPECT_DOUBLE_EQ(value(s, kResourceUsageRatio, {{"resource", "fds"}}), 0.85);

  EXPECT_EQ(value(s, kAlertState,
                  {{"alert", "too_many_fds"}, {"severity", "critical"}, {"state", "firing"}}),
            1.0);
  EXPECT_DOUBLE_EQ(value(s, kAlertValue, {{"alert", "too_many_fds"}}), 0.85);

  EXPECT_EQ(value(s, kShutdownState, {{"state", "draining"}}), 1.0);
  EXPECT_EQ(value(s, kShutdownState, {{"state", "running"}}), 0.0);

  Registry registry;
  registry.add_collector([&](MetricsSink& sink) {
    report(health, sink);
    report(resources, sink);
    report(alerts, sink);
    report(shutdown, sink);
  });
  ScrapeStats stats;
  const std::string text = to_prometheus_text(registry, &stats);
  EXPECT_EQ(stats.dropped, 0u) << stats.first_error;
  test::expect_promtool_clean(text);
}

}  // namespace
}  // namespace bulwark::observe
