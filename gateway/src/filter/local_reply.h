// LocalReply: an answer the gateway makes itself instead of the upstream's — a refusal by
// hygiene, routing, a filter or a call policy, or a failed upstream call. Every such answer on
// the data path is a LocalReply and is written by one function (http/head_writer.h
// write_local_reply), so each carries the same things: the status, `x-bulwark-reason`, the
// request id, `Retry-After` on 503 (and wherever a filter sets one), and the JSON body
// {"error": <reason phrase>, "reason": <reason>, "request_id": <id>}.
//
// A LocalReply is a small value (no allocation): the reason is one of filter/reasons.h's
// constants, extra header lines point at storage that outlives the write (the snapshot, or the
// filter's state inline with the request).
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <string_view>

#include "bulwark/core/clock.h"

namespace bulwark::gateway::filter {

struct HeaderLine {
  std::string_view name;
  std::string_view value;
};

struct LocalReply {
  static constexpr std::size_t kMaxExtraHeaders = 4;

  int status = 0;  // 0: no reply (the request goes on)
  std::string_view reason;
  // Close the client connection after the answer (the request's body was not read, or the
  // connection cannot be trusted any more).
  bool close = false;
  // Retry-After in seconds; 0 means the default (1 s on 503, none otherwise).
  uint32_t retry_after_seconds = 0;
  // Further header lines (Allow, RateLimit-*, WWW-Authenticate).
  std::array<HeaderLine, kMaxExtraHeaders> extra{};
  std::size_t extra_count = 0;
  // With status 0 only: the request goes on, but waits this long before its upstream call
  // (fault injection's delay); it counts against the route's request deadline.
  std::chrono::nanoseconds hold{0};
  // With status 0 only: the filter's decision is pending (filter/filter.h). The request waits
  // until the filter's WakeToken is called or until `wait_until`, whichever comes first, and
  // the filter's on_request is then called again.
  bool wait = false;
  TimePoint wait_until{};

  explicit operator bool() const noexcept { return status != 0; }

  // Adds a header line; beyond kMaxExtraHeaders the line is dropped (a programming error,
  // caught by the tests of the filter that adds it).
  void add_header(std::string_view name, std::string_view value) noexcept {
    if (extra_count < extra.size()) extra[extra_count++] = {name, value};
  }
};

// Asks the request to wait for the filter's decision until `until` at the latest.
inline LocalReply wait_until(TimePoint until) noexcept {
  LocalReply r;
  r.wait = true;
  r.wait_until = until;
  return r;
}

constexpr LocalReply refuse(int status, std::string_view reason, bool close = false) noexcept {
  LocalReply r;
  r.status = status;
  r.reason = reason;
  r.close = close;
  return r;
}

}  // namespace bulwark::gateway::filter
