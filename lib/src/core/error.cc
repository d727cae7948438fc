#include "bulwark/core/error.h"

#include <string>

namespace bulwark {
namespace {

class Category final : public boost::system::error_category {
 public:
  // A fixed id makes codes from two copies of the library (static + shared) compare equal.
  constexpr Category() noexcept : error_category(0xb0b0a2c0ffee0001ULL) {}
  const char* name() const noexcept override { return "bulwark"; }
  std::string message(int ev) const override {
    return std::string(to_string(static_cast<errc>(ev)));
  }
};

constinit const Category kCategory;

}  // namespace

const boost::system::error_category& bulwark_category() noexcept { return kCategory; }

std::string_view to_string(errc e) noexcept {
  switch (e) {
    case errc::circuit_open:
      return "circuit_open";
    case errc::half_open_full:
      return "half_open_full";
    case errc::timeout:
      return "timeout";
    case errc::deadline_exceeded:
      return "deadline_exceeded";
    case errc::retries_exhausted:
      return "retries_exhausted";
    case errc::budget_exhausted:
      return "budget_exhausted";
    case errc::call_failed:
      return "call_failed";
    case errc::cancelled:
      return "cancelled";
    case errc::rejected:
      return "rejected";
    case errc::queue_full:
      return "queue_full";
    case errc::wait_timeout:
      return "wait_timeout";
    case errc::throttled:
      return "throttled";
    case errc::rate_limited:
      return "rate_limited";
    case errc::overloaded:
      return "overloaded";
    case errc::shutting_down:
      return "shutting_down";
  }
  return "unknown";
}

std::string_view to_string(Outcome o) noexcept {
  switch (o) {
    case Outcome::success:
      return "success";
    case Outcome::retryable_failure:
      return "retryable_failure";
    case Outcome::final_failure:
      return "final_failure";
    case Outcome::caller_error:
      return "caller_error";
  }
  return "unknown";
}

}  // namespace bulwark
