#include "bulwark/limit/rate_limit.h"

#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

#include "rate_kernel.h"

namespace bulwark::limit {

double Rate::per_second() const noexcept {
  if (period.count() <= 0) return 0;
  return count * 1e9 / static_cast<double>(period.count());
}

Duration Rate::interval() const noexcept {
  if (!(count > 0) || !std::isfinite(count) || period.count() <= 0) return Duration::zero();
  const double ns = std::round(static_cast<double>(period.count()) / count);
  if (!(ns < 9.2e18)) return Duration::zero();
  return Duration(static_cast<int64_t>(ns));
}

uint64_t ceil_seconds(Duration d) noexcept {
  constexpr int64_t kNsPerSecond = 1'000'000'000;
  if (d.count() <= 0) return 0;
  const int64_t n = d.count();
  return static_cast<uint64_t>(n / kNsPerSecond + (n % kNsPerSecond != 0 ? 1 : 0));
}

RateLimitHeaders to_headers(const RateDecision& d) noexcept {
  RateLimitHeaders h;
  h.limit = d.limit;
  h.remaining = d.remaining;
  h.reset_seconds = ceil_seconds(d.reset);
  if (!d.allowed && d.retry_after != Duration::max()) {
    h.retry_after_seconds = ceil_seconds(d.retry_after);
  }
  return h;
}

std::string_view to_string(RateAlgorithm a) noexcept {
  switch (a) {
    case RateAlgorithm::token_bucket:
      return "token_bucket";
    case RateAlgorithm::gcra:
      return "gcra";
    case RateAlgorithm::sliding_window:
      return "sliding_window";
  }
  return "unknown";
}

std::optional<RateAlgorithm> parse_rate_algorithm(std::string_view name) noexcept {
  for (RateAlgorithm a :
       {RateAlgorithm::token_bucket, RateAlgorithm::gcra, RateAlgorithm::sliding_window}) {
    if (name == to_string(a)) return a;
  }
  return std::nullopt;
}

namespace detail {

int64_t checked_interval_ns(const Rate& rate, const char* what, int64_t min_interval_ns) {
  const std::string prefix = std::string(what) + ": ";
  if (!(rate.count > 0) || !std::isfinite(rate.count)) {
    throw std::invalid_argument(prefix + "count must be > 0 and finite");
  }
  if (rate.period.count() <= 0) throw std::invalid_argument(prefix + "period must be > 0");
  const Duration interval = rate.interval();
  if (interval.count() < min_interval_ns) {
    throw std::invalid_argument(prefix + "too fast: period / count must be at least " +
                                std::to_string(min_interval_ns) + " ns (after rounding)");
  }
  return interval.count();
}

void check_burst(uint64_t burst, int64_t interval, int64_t max_product, const char* what) {
  const std::string prefix = std::string(what) + ": ";
  if (burst < 1) throw std::invalid_argument(prefix + "must be >= 1");
  if (burst > static_cast<uint64_t>(max_product / interval)) {
    throw std::invalid_argument(prefix + "burst * interval is too large (at most " +
                                std::to_string(max_product) + " in the interval's unit)");
  }
}

}  // namespace detail
}  // namespace bulwark::limit
