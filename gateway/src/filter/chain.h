// FilterChain: the filters of one listener or one route, built once per config snapshot.
// ChainRun: one request's walk through its listener's chain and then its route's, with every
// filter's per-request state inline (no allocation per request).
//
// Order (DESIGN §5, docs/architecture.md): request filters of the listener, then of the route,
// in the order they were added; call policies likewise around every upstream attempt; response
// filters likewise on the answer. on_complete runs in reverse for the request filters that let
// the request go on or made it wait, exactly once (complete() is idempotent and also runs from
// the destructor, so a request abandoned half-way still gives back what its filters took).
//
// A request filter that asks for a wait (LocalReply::wait) stops the walk there; resume() asks
// that filter again once the wait is over and goes on from it. Call policies with
// per-attempt state get one FilterState per leg of a hedged request (prepare_legs()).
//
// Thread-safety: a FilterChain is immutable once built and shared by all workers; a ChainRun
// belongs to one request on one worker.
#pragma once

#include <array>
#include <memory>
#include <span>
#include <stdexcept>
#include <vector>

#include "filter/filter.h"

namespace bulwark::gateway::filter {

class FilterChain {
 public:
  // Filters of one kind in one chain; a snapshot with more is refused when it is built.
  static constexpr std::size_t kMaxPerKind = 8;

  void add(std::unique_ptr<RequestFilter> f) { push(request_, std::move(f)); }
  void add(std::unique_ptr<CallPolicy> p) { push(call_, std::move(p)); }
  void add(std::unique_ptr<ResponseFilter> f) { push(response_, std::move(f)); }

  std::span<const std::unique_ptr<RequestFilter>> request_filters() const noexcept {
    return request_;
  }
  std::span<const std::unique_ptr<CallPolicy>> call_policies() const noexcept { return call_; }
  std::span<const std::unique_ptr<ResponseFilter>> response_filters() const noexcept {
    return response_;
  }

 private:
  template <class T>
  static void push(std::vector<std::unique_ptr<T>>& v, std::unique_ptr<T> f) {
    if (v.size() >= kMaxPerKind) throw std::length_error("too many filters of one kind");
    v.push_back(std::move(f));
  }
  std::vector<std::unique_ptr<RequestFilter>> request_;
  std::vector<std::unique_ptr<CallPolicy>> call_;
  std::vector<std::unique_ptr<ResponseFilter>> response_;
};

class ChainRun {
 public:
  ChainRun() = default;
  ChainRun(const ChainRun&) = delete;
  ChainRun& operator=(const ChainRun&) = delete;
  ~ChainRun() { complete({}); }

  // Starts a request's walk. Either chain may be null.
  void begin(const FilterChain* listener, const FilterChain* route) noexcept;

  // Runs the request filters; the first LocalReply stops the walk and is returned. When all
  // let the request go on, the result has status 0 and the longest hold any of them asked for.
  // A filter that asks for a wait stops the walk too: the result is its wait (status 0).
  LocalReply on_request(const RequestInfo& request);
  // After a wait: asks the filter that asked for it again, then walks on as on_request.
  LocalReply resume(const RequestInfo& request);

  // Makes room for per-attempt state of legs 1..legs-1 (hedged attempts), reset.
  void prepare_legs(std::size_t legs);

  LocalReply before_attempt(const AttemptStart& start);
  void after_attempt(const AttemptOutcome& outcome);
  RetryAdvice retry(const AttemptOutcome& outcome);

  void on_response_head(ResponseHead& head);
  void on_body(std::string_view piece);
  void on_end(bool complete);

  // Ends the request for the request filters that let it go on (reverse order). Idempotent.
  void complete(const Completion& done);

 private:
  static constexpr std::size_t kChains = 2;
  static constexpr std::size_t kSlots = kChains * FilterChain::kMaxPerKind;

  // Calls fn(filter, state) for each filter of one kind across both chains, in order.
  template <class Kind, class Fn>
  void each(Fn&& fn);
  template <class Fn>
  void each_policy(Leg leg, Fn&& fn);
  // Walks the request filters from filter `index` of chain `chain` on.
  LocalReply walk(const RequestInfo& request, std::size_t chain, std::size_t index);

  using Bank = std::array<FilterState, kSlots>;
  std::array<const FilterChain*, kChains> chains_{};
  std::array<FilterState, kSlots> request_state_;
  std::array<FilterState, kSlots> call_state_;
  std::array<FilterState, kSlots> response_state_;
  // Per-attempt call-policy state of legs 1.. (leg 0 uses call_state_); kept across requests.
  std::vector<Bank> leg_state_;
  // How many request filters let the request go on, per chain (for on_complete).
  std::array<std::size_t, kChains> entered_{};
  // The hold asked for so far, and where a wait stopped the walk.
  std::chrono::nanoseconds hold_{0};
  std::size_t waiting_chain_ = 0;
  std::size_t waiting_index_ = 0;
  bool open_ = false;
};

}  // namespace bulwark::gateway::filter
