#include "bulwark/limit/token_bucket.h"

#include "rate_kernel.h"

namespace bulwark::limit {

namespace {
constexpr int64_t kMaxCapacityNs = int64_t{1} << 62;
}  // namespace

TokenBucket::TokenBucket(TokenBucketOptions options)
    : options_(options),
      interval_(detail::checked_interval_ns(options.rate, "TokenBucketOptions.rate")),
      capacity_(0),
      word_(detail::TokenBucketKernel::kFresh) {
  detail::check_burst(options.burst, interval_, kMaxCapacityNs, "TokenBucketOptions.burst");
  capacity_ = interval_ * static_cast<int64_t>(options.burst);
}

RateDecision TokenBucket::try_acquire(TimePoint now, uint64_t permits) noexcept {
  return detail::acquire_atomic(detail::TokenBucketKernel{interval_, options_.burst, capacity_},
                                word_, detail::ns(now), permits);
}

RateDecision TokenBucket::peek(TimePoint now) const noexcept {
  return detail::peek_one(detail::TokenBucketKernel{interval_, options_.burst, capacity_},
                          word_.load(std::memory_order_acquire), detail::ns(now));
}

void TokenBucket::reset() noexcept {
  word_.store(detail::TokenBucketKernel::kFresh, std::memory_order_release);
}

double TokenBucket::tokens(TimePoint now) const noexcept {
  const int64_t t = detail::ns(now);
  const int64_t empty_at =
      std::max(static_cast<int64_t>(word_.load(std::memory_order_acquire)), t - capacity_);
  if (empty_at >= t) return 0;
  return static_cast<double>(t - empty_at) / static_cast<double>(interval_);
}

}  // namespace bulwark::limit
