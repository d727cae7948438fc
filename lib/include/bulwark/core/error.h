// Typed errors on the data path.
//
// libbulwark reports every rejection and failure it produces itself as a
// boost::system::error_code in bulwark's category (bulwark::errc), carried in Result<T>.
// Exceptions are used only at start-up and configuration time (invalid options), never to
// report "circuit open" or "rate limited".
//
// Example:
//   bulwark::Result<int> r = pipeline.execute(call);
//   if (!r && r.error() == bulwark::errc::circuit_open) { ... serve a fallback ... }
#pragma once

#include <boost/system/error_code.hpp>
#include <boost/system/result.hpp>
#include <string_view>
#include <system_error>
#include <type_traits>

namespace bulwark {

enum class errc : int {
  // 0 is success in every error_category and is never used here.
  circuit_open = 1,   // a circuit breaker rejected the call (open or forced open)
  half_open_full,     // the breaker is half-open and all probe permits are taken
  timeout,            // a timeout (per-try or total) expired before the call finished
  deadline_exceeded,  // not started: too little time left before the deadline
  retries_exhausted,  // the last allowed attempt failed with a retryable failure
  budget_exhausted,   // a retry was wanted but the retry budget had no room
  call_failed,        // the wrapped call failed (returned an error or threw)
  cancelled,          // the caller cancelled the operation
  rejected,           // a limiter or bulkhead rejected the call
  queue_full,         // a bounded queue had no room
  wait_timeout,       // a queued call waited longer than its max wait
  throttled,          // a start-rate throttle refused the call
  rate_limited,       // a rate limiter refused the call
  overloaded,         // resource monitor: shedding load
  shutting_down,      // the process is draining
};

const boost::system::error_category& bulwark_category() noexcept;

inline boost::system::error_code make_error_code(errc e) noexcept {
  return {static_cast<int>(e), bulwark_category()};
}

// Short stable name of an errc ("circuit_open"), for logs, metrics labels and reasons.
std::string_view to_string(errc e) noexcept;

template <class T>
using Result = boost::system::result<T>;

// How a finished call is judged by the policies around it.
enum class Outcome : unsigned char {
  success,            // worked
  retryable_failure,  // failed in a way a retry may fix (HTTP 502/503/504, reset, timeout)
  final_failure,      // failed and retrying will not help; still the target's fault (HTTP 500)
  caller_error,       // the target answered correctly that the request is wrong (HTTP 400,
                      // 404): not retried and counted as a success by circuit breakers
};

constexpr bool is_final(Outcome o) noexcept { return o != Outcome::retryable_failure; }
// Whether a circuit breaker should count this outcome as a failure.
constexpr bool is_breaker_failure(Outcome o) noexcept {
  return o == Outcome::retryable_failure || o == Outcome::final_failure;
}
std::string_view to_string(Outcome o) noexcept;

}  // namespace bulwark

namespace boost::system {
template <>
struct is_error_code_enum<bulwark::errc> : std::true_type {};
}  // namespace boost::system
