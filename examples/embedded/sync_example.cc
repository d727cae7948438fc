// Embedding libbulwark in a blocking program: a flaky dependency called through
// timeout -> retry (with a budget) -> circuit breaker.
//
// The "service" fails its first two calls of every three; the pipeline retries them away.
// Then the service goes down completely; the breaker opens and later calls fail fast with
// errc::circuit_open instead of waiting on a dead dependency.
//
// Last, a second pipeline in front of a rate-limited API: each client has its own limit
// (keyed_rate_limit, ExecuteOptions::key), the API's 429 answers are retried but not counted
// against the breaker (a breaker judge), retries are logged by an event listener, and what
// still fails is answered by a fallback.
#include <cstdio>
#include <string>

#include "bulwark/pipeline/pipeline.h"

using namespace std::chrono_literals;

namespace {

struct FlakyService {
  int calls = 0;
  bool down = false;
  bulwark::Result<std::string> get(int id) {
    ++calls;
    if (down || calls % 3 != 0) return bulwark::make_error_code(bulwark::errc::call_failed);
    return "user-" + std::to_string(id);
  }
};

// An API that answers 429 (too many requests) to every other call.
struct RateLimitedApi {
  int calls = 0;
  bulwark::Result<int> get() { return ++calls % 2 == 1 ? 429 : 200; }
};

// Logs retries and rejections as they happen.
class PrintEvents final : public bulwark::EventListener {
 public:
  void on_retry(const bulwark::RetryEvent& e) noexcept override {
    ++retries;
    std::printf("  retry after attempt %u (status %u)\n", e.attempt, e.result.status);
  }
  void on_rejected(const bulwark::RejectionEvent& e) noexcept override {
    ++rejections;
    std::printf("  %s rejected the call for client %.*s\n", std::string(e.stage).c_str(),
                static_cast<int>(e.key.size()), e.key.data());
  }
  int retries = 0;
  int rejections = 0;
};

// The second part: returns whether it went as described in the file comment.
bool rate_limited_api(bulwark::Clock& clock) {
  bulwark::circuit::CircuitBreaker breaker(
      "api", {.window_size = 4, .min_calls = 4, .consecutive_failures = 2}, clock);
  bulwark::limit::KeyedLimiter per_client(
      {.rate = bulwark::limit::Rate::per_minute(2), .burst = 2});
  PrintEvents events;
  auto pipeline =
      bulwark::Pipeline::Builder(clock)
          .listener(events)
          .fallback([](const bulwark::AttemptResult&) { return 503; })
          .keyed_rate_limit(per_client)
          .retry({.max_attempts = 3, .backoff = {.base = 1ms, .max = 2ms}})
          .circuit_breaker(breaker, {.judge =
                                         [](const bulwark::AttemptResult& r) {
                                           return r.status == 429
                                                      ? bulwark::BreakerVerdict::ignore
                                                      : bulwark::default_breaker_verdict(r);
                                         }})
          .build();
  auto classify = [](const bulwark::Result<int>& r) {
    if (!r) return bulwark::Classification{bulwark::Outcome::retryable_failure};
    const auto status = static_cast<uint32_t>(*r);
    return bulwark::Classification{
        status == 429 ? bulwark::Outcome::retryable_failure : bulwark::Outcome::success,
        std::nullopt, status};
  };
  RateLimitedApi api;
  int answers_200 = 0, fallbacks = 0;
  for (const char* client : {"alice", "alice", "alice", "bob"}) {
    bulwark::ExecutionInfo info;
    auto r = pipeline.execute_classified([&] { return api.get(); }, classify,
                                         {.info = &info, .key = client});
    std::printf("%s: %d%s\n", client, *r, info.fallback ? " (fallback)" : "");
    answers_200 += *r == 200;
    fallbacks += info.fallback;
  }
  const bulwark::circuit::BreakerStats st = breaker.stats();
  std::printf("breaker: %llu ignored 429s, %llu failures, state %s\n",
              static_cast<unsigned long long>(st.ignored),
              static_cast<unsigned long long>(st.failures),
              std::string(bulwark::circuit::to_string(breaker.state())).c_str());
  // alice's first two calls and bob's call each get a 429 then a 200; alice's third call is
  // over her limit and answered by the fallback; the 429s never counted against the breaker.
  return answers_200 == 3 && fallbacks == 1 && events.retries == 3 && events.rejections == 1 &&
         st.ignored == 3 && st.failures == 0 && breaker.state() == bulwark::circuit::State::closed;
}

}  // namespace

int main() {
  bulwark::Clock& clock = bulwark::SystemClock::instance();
  bulwark::circuit::CircuitBreaker breaker("users",
                                           {.window_size = 10,
                                            .min_calls = 10,
                                            .failure_rate = 0.5,
                                            .open_duration = 30s,
                                            .half_open_probes = 1,
                                            .success_threshold = 1},
                                           clock);
  bulwark::retry::RetryBudget budget;  // 20 % of requests + 10 retries/s
  auto pipeline =
      bulwark::Pipeline::Builder(clock)
          .timeout(2s)
          .retry(
              {.max_attempts = 3, .backoff = {.base = 1ms, .max = 5ms}, .per_try_timeout = 500ms},
              &budget)
          .circuit_breaker(breaker)
          .build();

  FlakyService service;
  int ok = 0;
  for (int id = 1; id <= 3; ++id) {
    bulwark::ExecutionInfo info;
    auto r = pipeline.execute([&] { return service.get(id); }, {.info = &info});
    std::printf("get(%d): %s after %u attempt(s)\n", id,
                r ? r->c_str() : r.error().message().c_str(), info.attempts);
    ok += r.has_value();
  }

  service.down = true;
  int fast_failures = 0;
  for (int i = 0; i < 5; ++i) {
    auto r = pipeline.execute([&] { return service.get(0); });
    if (!r && r.error() == bulwark::errc::circuit_open) ++fast_failures;
  }
  std::printf("dependency down: breaker is %s, %d call(s) failed fast with circuit_open\n",
              std::string(bulwark::circuit::to_string(breaker.state())).c_str(), fast_failures);

  // The example checks its own story so that the test suite can run it.
  std::puts("rate-limited API, per-client limits:");
  const bool second_part = rate_limited_api(clock);

  const bool as_expected = ok == 3 && breaker.state() == bulwark::circuit::State::open &&
                           fast_failures > 0 && second_part;
  std::puts(as_expected ? "ok" : "UNEXPECTED");
  return as_expected ? 0 : 1;
}
