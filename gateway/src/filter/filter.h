// The filter seam: the three kinds of filter a request passes around its upstream call, in this
// fixed order (docs/architecture.md draws it):
//
//   1. RequestFilter — sees the routed, validated request and may answer it early with a
//      LocalReply (limits, authentication, blocked patterns, fault injection, a cache hit).
//      Listener filters run first, then the route's.
//   2. CallPolicy — wraps the upstream call: asked before every attempt (a breaker that is open,
//      a cluster concurrency limit), told the outcome of every attempt, and asked whether to try
//      again (retry with a budget, hedging, fallback).
//   3. ResponseFilter — sees the answer's head before it goes to the client and may edit its
//      header lines; sees each body piece and the end (cache store, header edits, guards).
//
// Filters are built once per config snapshot (route/runtime.h) and are shared by every request
// and worker of that snapshot: their methods are const and thread-safe, and whatever a filter
// must remember about one request lives in that request's FilterState slot — a few bytes held
// inline with the request, so walking a chain allocates nothing. Time comes in as `now`; a
// filter never reads a clock.
//
// A request filter whose decision cannot be taken at once (a permit from a queue that another
// request will release, a reply from a shared store) asks the request to wait (LocalReply::wait)
// and hands RequestInfo::wake to whatever resolves the decision; the connection suspends the
// request until it is woken or the wait's deadline passes, then calls the filter's on_request
// again, which learns the outcome from its own state (as the library's stages do after
// Step::wait, pipeline/stage.h).
//
// Every filter exports a fixed set of metrics whose handles it resolves when it is built (never
// by name per request); its header lists them.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <optional>
#include <span>
#include <string_view>
#include <type_traits>

#include "bulwark/core/clock.h"
#include "bulwark/core/random.h"
#include "filter/local_reply.h"

namespace bulwark::gateway::filter {

// Per-request scratch space of one filter, inline with the request. A filter keeps a small
// trivially destructible struct in it (state<T>()); it starts zeroed for every request.
//
// A filter whose state owns something (a library permit, a queue ticket) constructs it with
// make<T>() (owned<T>() finds it: null before) and must end it with end<T>() in on_complete,
// which the chain runs for it exactly once (filter/chain.h); reset() never destroys it.
class FilterState {
 public:
  static constexpr std::size_t kBytes = 128;

  template <class T>
  T& state() noexcept {
    static_assert(sizeof(T) <= kBytes && alignof(T) <= alignof(std::max_align_t));
    static_assert(std::is_trivially_destructible_v<T> && std::is_trivially_copyable_v<T>);
    return *std::launder(reinterpret_cast<T*>(bytes_.data()));
  }
  template <class T, class... Args>
  T& make(Args&&... args) {
    static_assert(sizeof(T) <= kBytes && alignof(T) <= alignof(std::max_align_t));
    T* made = ::new (static_cast<void*>(bytes_.data())) T(std::forward<Args>(args)...);
    made_ = true;
    return *made;
  }
  template <class T>
  T* owned() noexcept {
    return made_ ? std::launder(reinterpret_cast<T*>(bytes_.data())) : nullptr;
  }
  template <class T>
  void end() noexcept {
    if (T* object = owned<T>()) object->~T();
    reset();
  }
  void reset() noexcept {
    bytes_.fill(std::byte{0});
    made_ = false;
  }

 private:
  alignas(std::max_align_t) std::array<std::byte, kBytes> bytes_{};
  bool made_ = false;
};

// What wakes a request that waits for a filter's decision. The connection implements it; a
// filter only copies the WakeToken it is given.
class WakeTarget {
 public:
  virtual ~WakeTarget() = default;
  // Thread-safe. Wakes the request if it still waits the wait numbered `wait`; otherwise (the
  // wait already ended: woken, timed out, or the request is gone) does nothing.
  virtual void wake(uint64_t wait) noexcept = 0;
};

// A copyable handle on one wait of one request: calling it from any thread, any number of
// times, at any later moment, wakes that wait if it is still going on and nothing else.
struct WakeToken {
  std::shared_ptr<WakeTarget> target;
  uint64_t wait = 0;
  void operator()() const noexcept {
    if (target) target->wake(wait);
  }
};

// What request filters change in the request as it goes upstream: header lines to add (a
// verified token's claims) and header names to remove (a token the upstream must not see).
// Values a filter makes itself are copied into the edits' own bounded storage (keep()), which
// lives as long as the request. One per request, cleared when it starts; no allocation.
class UpstreamEdits {
 public:
  static constexpr std::size_t kMaxAdded = 8;
  static constexpr std::size_t kMaxRemoved = 4;
  static constexpr std::size_t kStorageBytes = 2048;

  // False when full (a programming or config limit the filter reports).
  bool add(std::string_view name, std::string_view value) noexcept {
    if (added_count_ == kMaxAdded) return false;
    added_[added_count_++] = {name, value};
    return true;
  }
  bool remove(std::string_view name) noexcept {
    if (removed_count_ == kMaxRemoved) return false;
    removed_[removed_count_++] = name;
    return true;
  }
  // A copy of `value` that lives as long as the request; nullopt when the storage is full.
  std::optional<std::string_view> keep(std::string_view value) noexcept {
    if (value.size() > storage_.size() - used_) return std::nullopt;
    char* at = storage_.data() + used_;
    std::copy(value.begin(), value.end(), at);
    used_ += value.size();
    return std::string_view(at, value.size());
  }
  void clear() noexcept {
    added_count_ = 0;
    removed_count_ = 0;
    used_ = 0;
  }
  std::span<const HeaderLine> added() const noexcept { return {added_.data(), added_count_}; }
  std::span<const std::string_view> removed() const noexcept {
    return {removed_.data(), removed_count_};
  }

 private:
  std::array<HeaderLine, kMaxAdded> added_{};
  std::array<std::string_view, kMaxRemoved> removed_{};
  std::array<char, kStorageBytes> storage_{};
  std::size_t added_count_ = 0;
  std::size_t removed_count_ = 0;
  std::size_t used_ = 0;
};

// A rate decision taken elsewhere — in Redis, shared by every gateway (redis/client.h) — asked
// for by a filter on the worker that runs the request and answered later: the filter starts
// it, waits (LocalReply::wait) and takes the answer when woken.
struct RemoteRate {
  int64_t interval_us = 0;  // the GCRA emission interval T (limit/gcra.h)
  uint64_t burst = 1;
};

struct RemoteDecision {
  bool allowed = false;
  uint64_t remaining = 0;
  Duration reset{0};
  Duration retry_after{0};
};

class RemoteRateLimiter {
 public:
  enum class Status : uint8_t { pending, answered, failed };

  virtual ~RemoteRateLimiter() = default;
  // Starts a decision for `key` (the store's key); `wake` is called when it is answered or has
  // failed. 0 when it cannot start (no connection up, too many decisions pending): the caller
  // decides without it at once.
  virtual uint64_t start(std::string_view key, const RemoteRate& rate, const WakeToken& wake) = 0;
  // The outcome of `ticket`; answered and failed tickets are forgotten by this call.
  virtual Status take(uint64_t ticket, RemoteDecision& out) = 0;
  // The caller stopped waiting (timeout, the request is gone): a late answer is dropped.
  virtual void forget(uint64_t ticket) noexcept = 0;
};

// What request filters see of a request that passed hygiene and routing. Views into the
// connection's buffers: valid for the call only.
struct RequestInfo {
  std::string_view method;
  std::string_view path;  // normalised, percent-encoded
  std::string_view query;
  std::string_view host;       // Host (or the absolute-form authority)
  std::string_view client_ip;  // the peer's address
  std::span<const HeaderLine> headers;
  bool has_body = false;
  TimePoint now;
  Random* random = nullptr;  // the worker's seeded source (fault injection); never null
  // The token of the wait this request would enter if a filter asked for one; never null.
  const WakeToken* wake = nullptr;
  // The route's deadline (start + timeouts.request): a wait ends by then at the latest.
  TimePoint deadline = TimePoint::max();
  int priority = 1;  // the route's: 0 low, 1 normal, 2 high (queue order, shedding)
  UpstreamEdits* edits = nullptr;  // header changes for the upstream request; never null
  bool secure = false;             // the client connection is TLS
  // The worker's connection to the shared store of global rate limits; null without `redis`.
  RemoteRateLimiter* remote = nullptr;
};

// How a request ended, for on_complete.
struct Completion {
  int status = 0;  // 0: no answer was sent (the client left)
  std::string_view reason;
  TimePoint now;
};

class RequestFilter {
 public:
  virtual ~RequestFilter() = default;
  virtual std::string_view name() const noexcept = 0;
  // Lets the request go on (an empty LocalReply, or one with only a `hold` to delay it) or
  // answers it.
  virtual LocalReply on_request(const RequestInfo& request, FilterState& state) const = 0;
  // Called exactly once for every filter whose on_request let the request go on or asked it to
  // wait (even when the filter refused it once the wait ended), in reverse order, when the
  // request is over — answered, failed, or abandoned by the client.
  virtual void on_complete(const Completion& done, FilterState& state) const {
    (void)done;
    (void)state;
  }
};

// Which of a route's clusters an attempt goes to: 0 is the route's cluster, i its i-th
// fallback (routes[].fallback, at most config::kMaxFallbacks).
using ClusterIndex = uint8_t;

// Hedged attempts of one request run at the same time; each is a leg: 0 is the request's
// attempt, 1.. its hedges (routes[].hedge). Call policies whose state belongs to one attempt
// (a breaker's permit) keep one state per leg (CallPolicy::per_attempt_state).
using Leg = uint8_t;

// An attempt about to start, as call policies see it.
struct AttemptStart {
  TimePoint now;
  ClusterIndex cluster = 0;
  Leg leg = 0;
};

// The outcome of one upstream attempt, as call policies see it.
struct AttemptOutcome {
  enum class Kind : uint8_t {
    response,         // a response head arrived (see status)
    connect_failure,  // refused, unreachable, or connect_timeout
    reset,            // the connection broke before a complete response head
    timeout,          // first-byte or request deadline
    bad_response,     // the upstream answered something that is not HTTP
  };
  Kind kind = Kind::response;
  int status = 0;  // the response's status for Kind::response
  std::chrono::nanoseconds elapsed{0};
  bool request_sent = false;  // any request byte may have reached the upstream
  // Not a result about the upstream — a stale pooled connection replaced by a fresh one before
  // any answer byte, or a hedged attempt cancelled because another answered first: policies
  // give back what they took and count nothing.
  bool discarded = false;
  // The request can be sent again byte for byte: no body, or a body that was read whole and
  // kept (up to the 64 KiB replay buffer).
  bool replayable = false;
  bool idempotent = false;              // RFC 9110 §9.2.2 method
  std::optional<Duration> retry_after;  // the answer's Retry-After (delta-seconds), if any
  TimePoint now;
  Random* random = nullptr;  // the worker's seeded source (backoff jitter); never null
  ClusterIndex cluster = 0;  // as in AttemptStart
  Leg leg = 0;               // as in AttemptStart
};

struct RetryAdvice {
  bool again = false;
  std::chrono::nanoseconds delay{0};
};

class CallPolicy {
 public:
  virtual ~CallPolicy() = default;
  virtual std::string_view name() const noexcept = 0;
  // True: the FilterState passed to before_attempt/after_attempt is the attempt's own (one per
  // leg of a hedged request); false: one state for the whole request (retry's count).
  virtual bool per_attempt_state() const noexcept { return false; }
  // Before every attempt: an empty LocalReply lets it start; otherwise the call ends with it
  // (e.g. 503 circuit_open with Retry-After).
  virtual LocalReply before_attempt(const AttemptStart& start, FilterState& state) const = 0;
  // After every attempt that before_attempt let start.
  virtual void after_attempt(const AttemptOutcome& outcome, FilterState& state) const = 0;
  // Whether another attempt should follow this outcome, and after which delay. The call stops
  // when no policy asks for another.
  virtual RetryAdvice retry(const AttemptOutcome& outcome, FilterState& state) const {
    (void)outcome;
    (void)state;
    return {};
  }
};

// The head of an upstream answer on its way to the client. Filters may add header lines (to
// storage that outlives the write: the filter's state or the snapshot).
struct ResponseHead {
  int status = 0;
  std::span<const HeaderLine> headers;
  std::array<HeaderLine, LocalReply::kMaxExtraHeaders> added{};
  std::size_t added_count = 0;
  void add_header(std::string_view name, std::string_view value) noexcept {
    if (added_count < added.size()) added[added_count++] = {name, value};
  }
};

class ResponseFilter {
 public:
  virtual ~ResponseFilter() = default;
  virtual std::string_view name() const noexcept = 0;
  virtual void on_response_head(ResponseHead& head, FilterState& state) const = 0;
  virtual void on_body(std::string_view piece, FilterState& state) const {
    (void)piece;
    (void)state;
  }
  // `complete`: the whole body reached the client.
  virtual void on_end(bool complete, FilterState& state) const {
    (void)complete;
    (void)state;
  }
};

}  // namespace bulwark::gateway::filter
