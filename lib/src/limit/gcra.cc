#include "bulwark/limit/gcra.h"

#include <cmath>
#include <stdexcept>

#include "rate_kernel.h"

namespace bulwark::limit {

namespace {
constexpr int64_t kNsPerUs = 1000;
// TAT values stay far from overflow when converted to nanoseconds.
constexpr int64_t kMaxCapacityUs = int64_t{1} << 52;

detail::GcraKernel kernel_of(int64_t interval_us, uint64_t burst) noexcept {
  return {interval_us, burst, interval_us * static_cast<int64_t>(burst)};
}
}  // namespace

Gcra::Gcra(GcraOptions options)
    : options_(options), interval_us_(0), word_(detail::GcraKernel::kFresh) {
  // Checks count and period; then T is period / count rounded to the nearest microsecond.
  detail::checked_interval_ns(options.rate, "GcraOptions.rate");
  const double us =
      std::round(static_cast<double>(options.rate.period.count()) / kNsPerUs / options.rate.count);
  if (us > static_cast<double>(kMaxCapacityUs)) {
    throw std::invalid_argument("GcraOptions.rate: too slow: period / count must be <= 2^52 us");
  }
  interval_us_ = static_cast<int64_t>(us);
  if (interval_us_ < 1) {
    throw std::invalid_argument(
        "GcraOptions.rate: too fast: the emission interval rounds to 0 us (at most 2,000,000 "
        "permits per second); use TokenBucket for higher rates");
  }
  detail::check_burst(options.burst, interval_us_, kMaxCapacityUs, "GcraOptions.burst");
}

RateDecision Gcra::try_acquire(TimePoint now, uint64_t permits) noexcept {
  return detail::acquire_atomic(kernel_of(interval_us_, options_.burst), word_, detail::ns(now),
                                permits);
}

RateDecision Gcra::peek(TimePoint now) const noexcept {
  return detail::peek_one(kernel_of(interval_us_, options_.burst),
                          word_.load(std::memory_order_acquire), detail::ns(now));
}

void Gcra::reset() noexcept { word_.store(detail::GcraKernel::kFresh, std::memory_order_release); }

int64_t Gcra::tat_us() const noexcept {
  return static_cast<int64_t>(word_.load(std::memory_order_acquire));
}

}  // namespace bulwark::limit
