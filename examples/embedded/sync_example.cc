// Embedding libbulwark in a blocking program: a flaky dependency called through
// timeout -> retry (with a budget) -> circuit breaker.
//
// The "service" fails its first two calls of every three; the pipeline retries them away.
// Then the service goes down completely; the breaker opens and later calls fail fast with
// errc::circuit_open instead of waiting on a dead dependency.
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
  const bool as_expected =
      ok == 3 && breaker.state() == bulwark::circuit::State::open && fast_failures > 0;
  std::puts(as_expected ? "ok" : "UNEXPECTED");
  return as_expected ? 0 : 1;
}
