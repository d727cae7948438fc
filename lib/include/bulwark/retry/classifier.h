// HttpClassifier: judges an HTTP exchange as success, retryable failure, final failure or caller
// error, and parse_retry_after() reads a server's Retry-After hint.
//
// The retry set names which failures a retry may fix, in the words of the gateway's YAML
// `retry.on` list:
//
//   name              retries
//   connect-failure   the connection to the upstream could not be established
//   reset             the connection was reset or closed before a complete response
//   per-try-timeout   one attempt ran out of its per-try timeout
//   5xx               every status 500..599
//   gateway-error     502, 503 and 504
//   "429", "503", ... that exact status (400..599)
//
// Default set: connect-failure, reset, per-try-timeout, 502, 503, 504.
//
// classify(status):
//   100..399                   success
//   in the retry set           retryable_failure
//   400, 401, 403, 404, 416    caller_error, always (they cannot be put in the retry set)
//   other 400..499             caller_error
//   other 500..599             final_failure
//   anything else (< 100, > 599: not a valid response)   final_failure
// classify(TransportFailure): retryable_failure if enabled in the set, else final_failure.
//
// Thread-safety: immutable after construction; classify() may be called from any thread.
//
// Example:
//   bulwark::retry::HttpClassifier classifier({"gateway-error", "429", "reset"});
//   bulwark::Outcome o = classifier.classify(503);                 // retryable_failure
//   auto hint = bulwark::retry::parse_retry_after(header_value);  // optional<Duration>
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "bulwark/core/clock.h"
#include "bulwark/core/error.h"

namespace bulwark::retry {

enum class TransportFailure { connect_failure, reset, per_try_timeout };

class HttpClassifier {
 public:
  // Default retry set: connect-failure, reset, per-try-timeout, 502, 503, 504.
  HttpClassifier();
  // Retry set from gateway names (see the table above). An empty list retries nothing. Throws
  // std::invalid_argument naming the offending entry for an unknown name, a status outside
  // 400..599, or one of the always-final statuses 400, 401, 403, 404, 416.
  explicit HttpClassifier(const std::vector<std::string>& retry_on);

  Outcome classify(int status) const noexcept;
  Outcome classify(TransportFailure f) const noexcept;

  // Whether the retry set contains this status / transport failure.
  bool retries(int status) const noexcept;
  bool retries(TransportFailure f) const noexcept;

 private:
  static constexpr int kMinStatus = 400;
  static constexpr int kMaxStatus = 599;

  std::array<uint64_t, 4> status_bits_{};  // bit (status - 400) set = retryable
  uint8_t transport_bits_ = 0;             // bit TransportFailure set = retryable
};

// Parses an HTTP Retry-After value in its delta-seconds form ("120": 1*DIGIT, optionally
// surrounded by spaces or tabs) into a duration. Returns nullopt for an empty value, a sign,
// a fraction, any other character, and for the HTTP-date form ("Fri, 31 Dec 1999 23:59:59 GMT"),
// which would need the wall clock; servers use seconds for rate limits and overload in
// practice. Values above 2^31 seconds saturate to 2^31 seconds (RFC 9111 §1.2.2 rule for
// delta-seconds); callers cap the hint further (RetryOptions::max_retry_after).
std::optional<Duration> parse_retry_after(std::string_view value) noexcept;

}  // namespace bulwark::retry
