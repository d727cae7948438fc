#include "bulwark/retry/classifier.h"

#include <stdexcept>

namespace bulwark::retry {
namespace {

constexpr bool always_final(int status) noexcept {
  return status == 400 || status == 401 || status == 403 || status == 404 || status == 416;
}

constexpr uint8_t bit(TransportFailure f) noexcept {
  return static_cast<uint8_t>(1u << static_cast<unsigned>(f));
}

[[noreturn]] void invalid(std::string_view entry, std::string_view why) {
  std::string msg = "retry on: \"";
  msg.append(entry);
  msg.append("\": ");
  msg.append(why);
  throw std::invalid_argument(msg);
}

}  // namespace

HttpClassifier::HttpClassifier()
    : HttpClassifier(std::vector<std::string>{"connect-failure", "reset", "per-try-timeout",
                                              "gateway-error"}) {}

HttpClassifier::HttpClassifier(const std::vector<std::string>& retry_on) {
  auto add_status = [this](int status) {
    const int i = status - kMinStatus;
    status_bits_[i / 64] |= uint64_t{1} << (i % 64);
  };
  for (const std::string& name : retry_on) {
    if (name == "connect-failure") {
      transport_bits_ |= bit(TransportFailure::connect_failure);
    } else if (name == "reset") {
      transport_bits_ |= bit(TransportFailure::reset);
    } else if (name == "per-try-timeout") {
      transport_bits_ |= bit(TransportFailure::per_try_timeout);
    } else if (name == "5xx") {
      for (int s = 500; s <= kMaxStatus; ++s) add_status(s);
    } else if (name == "gateway-error") {
      add_status(502);
      add_status(503);
      add_status(504);
    } else if (name.size() == 3 && name[0] >= '0' && name[0] <= '9' && name[1] >= '0' &&
               name[1] <= '9' && name[2] >= '0' && name[2] <= '9') {
      const int status = (name[0] - '0') * 100 + (name[1] - '0') * 10 + (name[2] - '0');
      if (status < kMinStatus || status > kMaxStatus) {
        invalid(name, "only 4xx and 5xx statuses can be retried");
      }
      if (always_final(status)) {
        invalid(name, "400, 401, 403, 404 and 416 are never retried");
      }
      add_status(status);
    } else {
      invalid(name,
              "unknown condition (expected connect-failure, reset, per-try-timeout, 5xx, "
              "gateway-error or a status such as 503)");
    }
  }
}

bool HttpClassifier::retries(int status) const noexcept {
  if (status < kMinStatus || status > kMaxStatus) return false;
  const int i = status - kMinStatus;
  return (status_bits_[i / 64] >> (i % 64)) & 1u;
}

bool HttpClassifier::retries(TransportFailure f) const noexcept {
  return (transport_bits_ & bit(f)) != 0;
}

Outcome HttpClassifier::classify(int status) const noexcept {
  if (status >= 100 && status <= 399) return Outcome::success;
  if (retries(status)) return Outcome::retryable_failure;
  if (status >= 400 && status <= 499) return Outcome::caller_error;
  return Outcome::final_failure;  // other 5xx, and numbers that are not HTTP statuses
}

Outcome HttpClassifier::classify(TransportFailure f) const noexcept {
  return retries(f) ? Outcome::retryable_failure : Outcome::final_failure;
}

std::optional<Duration> parse_retry_after(std::string_view value) noexcept {
  auto is_space = [](char c) { return c == ' ' || c == '\t'; };
  while (!value.empty() && is_space(value.front())) value.remove_prefix(1);
  while (!value.empty() && is_space(value.back())) value.remove_suffix(1);
  if (value.empty()) return std::nullopt;

  constexpr uint64_t kSaturation = uint64_t{1} << 31;  // seconds
  uint64_t seconds = 0;
  for (const char c : value) {
    if (c < '0' || c > '9') return std::nullopt;
    // Saturate instead of overflowing, but keep scanning so trailing garbage is still rejected.
    if (seconds < kSaturation) seconds = seconds * 10 + static_cast<uint64_t>(c - '0');
  }
  if (seconds > kSaturation) seconds = kSaturation;
  return std::chrono::duration_cast<Duration>(std::chrono::seconds(seconds));
}

}  // namespace bulwark::retry
