// A user's program built against the installed libbulwark package.
#include <bulwark/pipeline/pipeline.h>
#include <bulwark/testing/manual_clock.h>

#include <cstdio>

int main() {
  using namespace std::chrono_literals;
  bulwark::testing::ManualClock clock;
  int calls = 0;
  auto pipeline =
      bulwark::Pipeline::Builder(clock)
          .retry({.max_attempts = 3, .backoff = {.jitter = bulwark::retry::Jitter::none}})
          .build();
  bulwark::Result<int> r = pipeline.execute([&]() -> bulwark::Result<int> {
    if (++calls < 3) return bulwark::make_error_code(bulwark::errc::call_failed);
    return 42;
  });
  if (!r || *r != 42 || calls != 3) {
    std::fprintf(stderr, "consumer: unexpected result\n");
    return 1;
  }
  std::printf("consumer: ok after %d calls\n", calls);
  return 0;
}
