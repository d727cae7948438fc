#include "bulwark/limit/sliding_window.h"

#include <stdexcept>

#include "rate_kernel.h"

namespace bulwark::limit {

namespace {
using Kernel = detail::SlidingWindowKernel;
static_assert(Kernel::kMaxLimit == SlidingWindowOptions::kMaxLimit);

constexpr int64_t kMaxWindowNs = int64_t{1} << 62;

Kernel kernel_of(const SlidingWindowOptions& o) noexcept { return {o.window.count(), o.limit}; }
}  // namespace

SlidingWindow::SlidingWindow(SlidingWindowOptions options)
    : options_(options), word_(Kernel::kFresh) {
  if (options.limit < 1 || options.limit > SlidingWindowOptions::kMaxLimit) {
    throw std::invalid_argument("SlidingWindowOptions.limit: must be in 1..262143");
  }
  if (options.window.count() <= 0 || options.window.count() > kMaxWindowNs) {
    throw std::invalid_argument("SlidingWindowOptions.window: must be > 0 and <= 2^62 ns");
  }
}

RateDecision SlidingWindow::try_acquire(TimePoint now, uint64_t permits) noexcept {
  return detail::acquire_atomic(kernel_of(options_), word_, detail::ns(now), permits);
}

RateDecision SlidingWindow::peek(TimePoint now) const noexcept {
  return detail::peek_one(kernel_of(options_), word_.load(std::memory_order_acquire),
                          detail::ns(now));
}

void SlidingWindow::reset() noexcept { word_.store(Kernel::kFresh, std::memory_order_release); }

double SlidingWindow::estimate(TimePoint now) const noexcept {
  const Kernel k = kernel_of(options_);
  const Kernel::View v = k.view(word_.load(std::memory_order_acquire), detail::ns(now));
  const double e = static_cast<double>(v.at - v.start);
  const double w = static_cast<double>(k.window);
  return static_cast<double>(v.prev) * (1.0 - e / w) + static_cast<double>(v.cur);
}

}  // namespace bulwark::limit
