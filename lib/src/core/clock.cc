#include "bulwark/core/clock.h"

#include <thread>

namespace bulwark {

SystemClock& SystemClock::instance() noexcept {
  static SystemClock clock;
  return clock;
}

void SystemClock::sleep_for(Duration d) {
  if (d.count() > 0) std::this_thread::sleep_for(d);
}

}  // namespace bulwark
