// Embedding libbulwark in an Asio program: `co_await bulwark::asio::run(pipeline, fn)`.
//
// The dependency answers after a delay; some answers take far too long. The per-try timeout
// really cancels the slow attempt (its timer wait completes with operation_aborted) and the
// retry gets a fast answer.
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <cstdio>
#include <string>

#include "bulwark/asio/pipeline.h"

namespace net = boost::asio;
using namespace std::chrono_literals;

namespace {

// A dependency whose first answer hangs for 10 s and whose later answers take 5 ms.
struct SlowService {
  int calls = 0;
  int cancelled = 0;
  net::awaitable<std::string> get() {
    const int n = ++calls;
    net::steady_timer wait(co_await net::this_coro::executor, n == 1 ? 10s : 5ms);
    try {
      co_await wait.async_wait(net::use_awaitable);
    } catch (const boost::system::system_error&) {
      ++cancelled;  // the pipeline's per-try timeout cancelled us
      throw;
    }
    co_return "answer #" + std::to_string(n);
  }
};

}  // namespace

int main() {
  net::io_context io;
  bulwark::Clock& clock = bulwark::SystemClock::instance();
  bulwark::circuit::CircuitBreaker breaker("slow-service", {}, clock);
  auto pipeline =
      bulwark::Pipeline::Builder(clock)
          .timeout(5s)
          .retry(
              {.max_attempts = 3, .backoff = {.base = 1ms, .max = 5ms}, .per_try_timeout = 100ms})
          .circuit_breaker(breaker)
          .build();
  bulwark::asio::AsyncPipeline async_pipeline(pipeline);

  SlowService service;
  bool as_expected = false;
  net::co_spawn(
      io,
      [&]() -> net::awaitable<void> {
        const auto start = clock.now();
        bulwark::ExecutionInfo info;
        bulwark::Result<std::string> r =
            co_await async_pipeline.run([&] { return service.get(); }, {.info = &info});
        const auto took =
            std::chrono::duration_cast<std::chrono::milliseconds>(clock.now() - start);
        std::printf("%s after %u attempt(s) in %lld ms; %d slow attempt(s) cancelled\n",
                    r ? r->c_str() : r.error().message().c_str(), info.attempts,
                    static_cast<long long>(took.count()), service.cancelled);
        as_expected = r && info.attempts == 2 && service.cancelled == 1 && took < 5s;
      },
      net::detached);
  io.run();
  std::puts(as_expected ? "ok" : "UNEXPECTED");
  return as_expected ? 0 : 1;
}
