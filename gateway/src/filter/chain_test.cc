#include "filter/chain.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "filter/reasons.h"

namespace bulwark::gateway::filter {
namespace {

// Records every call into a shared log; refuses when told to.
struct Log {
  std::vector<std::string> calls;
};

class Recording final : public RequestFilter {
 public:
  Recording(std::string name, Log& log, int refuse_with = 0)
      : name_(std::move(name)), log_(log), refuse_with_(refuse_with) {}
  std::string_view name() const noexcept override { return name_; }
  LocalReply on_request(const RequestInfo& request, FilterState& state) const override {
    (void)request;
    ++state.state<int>();  // starts at 0 for every request
    log_.calls.push_back(name_ + ".request#" + std::to_string(state.state<int>()));
    if (refuse_with_ != 0) return refuse(refuse_with_, reason::kConcurrencyLimit);
    return {};
  }
  void on_complete(const Completion& done, FilterState& state) const override {
    (void)state;
    log_.calls.push_back(name_ + ".complete:" + std::to_string(done.status));
  }

 private:
  std::string name_;
  Log& log_;
  int refuse_with_;
};

// Lets every request go on, holding it for `hold`.
class Holding final : public RequestFilter {
 public:
  explicit Holding(std::chrono::nanoseconds hold) : hold_(hold) {}
  std::string_view name() const noexcept override { return "holding"; }
  LocalReply on_request(const RequestInfo& request, FilterState& state) const override {
    (void)request;
    (void)state;
    LocalReply go_on;
    go_on.hold = hold_;
    return go_on;
  }

 private:
  std::chrono::nanoseconds hold_;
};

// Asks the request to wait the first time it is asked; lets it go on (or refuses it) the second.
class Waiting final : public RequestFilter {
 public:
  Waiting(Log& log, bool refuse_after) : log_(log), refuse_after_(refuse_after) {}
  std::string_view name() const noexcept override { return "waiting"; }
  LocalReply on_request(const RequestInfo& request, FilterState& state) const override {
    (void)request;
    if (++state.state<int>() == 1) {
      log_.calls.push_back("waiting.wait");
      return wait_until(TimePoint(std::chrono::seconds(5)));
    }
    log_.calls.push_back("waiting.resumed");
    if (refuse_after_) return refuse(503, reason::kQueueTimeout);
    return {};
  }
  void on_complete(const Completion& done, FilterState& state) const override {
    (void)state;
    log_.calls.push_back("waiting.complete:" + std::to_string(done.status));
  }

 private:
  Log& log_;
  bool refuse_after_;
};

// Keeps a count in its per-attempt state (one per leg).
class PerAttempt final : public CallPolicy {
 public:
  explicit PerAttempt(Log& log) : log_(log) {}
  std::string_view name() const noexcept override { return "per_attempt"; }
  bool per_attempt_state() const noexcept override { return true; }
  LocalReply before_attempt(const AttemptStart& start, FilterState& state) const override {
    log_.calls.push_back("leg" + std::to_string(start.leg) + "#" +
                         std::to_string(++state.state<int>()));
    return {};
  }
  void after_attempt(const AttemptOutcome& outcome, FilterState& state) const override {
    (void)outcome;
    (void)state;
  }

 private:
  Log& log_;
};

class Policy final : public CallPolicy {
 public:
  explicit Policy(Log& log) : log_(log) {}
  std::string_view name() const noexcept override { return "policy"; }
  LocalReply before_attempt(const AttemptStart& start, FilterState& state) const override {
    (void)start;
    ++state.state<int>();
    log_.calls.push_back("before#" + std::to_string(state.state<int>()));
    return {};
  }
  void after_attempt(const AttemptOutcome& outcome, FilterState& state) const override {
    (void)state;
    log_.calls.push_back("after:" + std::to_string(outcome.status));
  }
  RetryAdvice retry(const AttemptOutcome& outcome, FilterState& state) const override {
    (void)state;
    return {outcome.status == 503, std::chrono::milliseconds(5)};
  }

 private:
  Log& log_;
};

TEST(FilterChain, RequestFiltersRunListenerFirstAndCompleteInReverse) {
  Log log;
  FilterChain listener;
  listener.add(std::make_unique<Recording>("l1", log));
  FilterChain route;
  route.add(std::make_unique<Recording>("r1", log));
  route.add(std::make_unique<Recording>("r2", log));
  ChainRun run;
  run.begin(&listener, &route);
  EXPECT_FALSE(run.on_request({}));
  run.complete({200, {}, {}});
  run.complete({500, {}, {}});  // idempotent
  EXPECT_EQ(log.calls,
            (std::vector<std::string>{"l1.request#1", "r1.request#1", "r2.request#1",
                                      "r2.complete:200", "r1.complete:200", "l1.complete:200"}));
}

TEST(FilterChain, ARefusalStopsTheWalkAndOnlyEnteredFiltersComplete) {
  Log log;
  FilterChain listener;
  listener.add(std::make_unique<Recording>("l1", log));
  listener.add(std::make_unique<Recording>("l2", log, 503));
  FilterChain route;
  route.add(std::make_unique<Recording>("r1", log));
  ChainRun run;
  run.begin(&listener, &route);
  const LocalReply reply = run.on_request({});
  EXPECT_EQ(reply.status, 503);
  EXPECT_EQ(reply.reason, reason::kConcurrencyLimit);
  run.complete({503, reply.reason, {}});
  EXPECT_EQ(log.calls,
            (std::vector<std::string>{"l1.request#1", "l2.request#1", "l1.complete:503"}));
}

TEST(FilterChain, StateIsFreshForEveryRequestAndAbandonedRequestsComplete) {
  Log log;
  FilterChain listener;
  listener.add(std::make_unique<Recording>("l1", log));
  {
    ChainRun run;
    run.begin(&listener, nullptr);
    EXPECT_FALSE(run.on_request({}));
    run.complete({200, {}, {}});
    run.begin(&listener, nullptr);
    EXPECT_FALSE(run.on_request({}));
    // Not completed: the run is destroyed with the connection.
  }
  EXPECT_EQ(log.calls, (std::vector<std::string>{"l1.request#1", "l1.complete:200", "l1.request#1",
                                                 "l1.complete:0"}));
}

TEST(FilterChain, CallPoliciesWrapEveryAttemptAndAdviseRetries) {
  Log log;
  FilterChain route;
  route.add(std::make_unique<Policy>(log));
  ChainRun run;
  run.begin(nullptr, &route);
  EXPECT_FALSE(run.before_attempt({}));
  AttemptOutcome failed;
  failed.status = 503;
  run.after_attempt(failed);
  const RetryAdvice advice = run.retry(failed);
  EXPECT_TRUE(advice.again);
  EXPECT_EQ(advice.delay, std::chrono::milliseconds(5));
  EXPECT_FALSE(run.before_attempt({}));
  AttemptOutcome ok;
  ok.status = 200;
  run.after_attempt(ok);
  EXPECT_FALSE(run.retry(ok).again);
  EXPECT_EQ(log.calls,
            (std::vector<std::string>{"before#1", "after:503", "before#2", "after:200"}));
}

TEST(FilterChain, AWaitStopsTheWalkAndResumeGoesOnFromTheWaitingFilter) {
  Log log;
  FilterChain listener;
  listener.add(std::make_unique<Recording>("l1", log));
  FilterChain route;
  route.add(std::make_unique<Waiting>(log, false));
  route.add(std::make_unique<Recording>("r2", log));
  ChainRun run;
  run.begin(&listener, &route);
  const LocalReply waiting = run.on_request({});
  EXPECT_FALSE(waiting);
  EXPECT_TRUE(waiting.wait);
  EXPECT_EQ(waiting.wait_until, TimePoint(std::chrono::seconds(5)));
  const LocalReply go_on = run.resume({});
  EXPECT_FALSE(go_on);
  EXPECT_FALSE(go_on.wait);
  run.complete({200, {}, {}});
  EXPECT_EQ(log.calls, (std::vector<std::string>{"l1.request#1", "waiting.wait",
                                                 "waiting.resumed", "r2.request#1",
                                                 "r2.complete:200", "waiting.complete:200",
                                                 "l1.complete:200"}));
}

TEST(FilterChain, AFilterThatRefusesAfterItsWaitStillCompletes) {
  Log log;
  FilterChain route;
  route.add(std::make_unique<Waiting>(log, true));
  route.add(std::make_unique<Recording>("r2", log));
  {
    ChainRun run;
    run.begin(nullptr, &route);
    EXPECT_TRUE(run.on_request({}).wait);
    EXPECT_EQ(run.resume({}).status, 503);
    run.complete({503, {}, {}});
    ChainRun abandoned;
    abandoned.begin(nullptr, &route);
    EXPECT_TRUE(abandoned.on_request({}).wait);
    // Destroyed while it waits.
  }
  EXPECT_EQ(log.calls,
            (std::vector<std::string>{"waiting.wait", "waiting.resumed", "waiting.complete:503",
                                      "waiting.wait", "waiting.complete:0"}));
}

TEST(FilterChain, PerAttemptPoliciesKeepOneStatePerLegAndTheRestOnePerRequest) {
  Log log;
  FilterChain route;
  route.add(std::make_unique<Policy>(log));
  route.add(std::make_unique<PerAttempt>(log));
  ChainRun run;
  run.begin(nullptr, &route);
  run.prepare_legs(3);
  AttemptStart leg0;
  AttemptStart leg1;
  leg1.leg = 1;
  AttemptStart leg2;
  leg2.leg = 2;
  EXPECT_FALSE(run.before_attempt(leg0));
  EXPECT_FALSE(run.before_attempt(leg1));
  EXPECT_FALSE(run.before_attempt(leg2));
  EXPECT_FALSE(run.before_attempt(leg1));
  EXPECT_EQ(log.calls, (std::vector<std::string>{"before#1", "leg0#1", "before#2", "leg1#1",
                                                 "before#3", "leg2#1", "before#4", "leg1#2"}));
}

TEST(FilterChain, RefusesMoreFiltersThanTheInlineStateHolds) {
  Log log;
  FilterChain chain;
  for (std::size_t i = 0; i < FilterChain::kMaxPerKind; ++i) {
    chain.add(std::make_unique<Recording>("f", log));
  }
  EXPECT_THROW(chain.add(std::make_unique<Recording>("f", log)), std::length_error);
}

TEST(ChainRun, TheLongestHoldOfFiltersThatLetTheRequestGoOnIsReturned) {
  using std::chrono::milliseconds;
  Log log;
  FilterChain listener;
  listener.add(std::make_unique<Holding>(milliseconds(5)));
  FilterChain route;
  route.add(std::make_unique<Holding>(milliseconds(20)));
  route.add(std::make_unique<Recording>("r", log));
  ChainRun run;
  run.begin(&listener, &route);
  const LocalReply verdict = run.on_request({});
  EXPECT_FALSE(verdict);
  EXPECT_EQ(verdict.hold, milliseconds(20));

  FilterChain refusing;
  refusing.add(std::make_unique<Holding>(milliseconds(20)));
  refusing.add(std::make_unique<Recording>("no", log, 503));
  ChainRun refused;
  refused.begin(nullptr, &refusing);
  EXPECT_EQ(refused.on_request({}).status, 503);
}

}  // namespace
}  // namespace bulwark::gateway::filter
