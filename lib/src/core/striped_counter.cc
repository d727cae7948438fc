#include "bulwark/core/striped_counter.h"

namespace bulwark::detail {

std::size_t this_thread_stripe() noexcept {
  static std::atomic<std::size_t> next{0};
  thread_local const std::size_t stripe = next.fetch_add(1, std::memory_order_relaxed);
  return stripe;
}

}  // namespace bulwark::detail
