#include "filter/chain.h"

#include <algorithm>

namespace bulwark::gateway::filter {

namespace {

template <class Kind>
std::span<const std::unique_ptr<Kind>> filters_of(const FilterChain& chain) noexcept {
  if constexpr (std::is_same_v<Kind, RequestFilter>) {
    return chain.request_filters();
  } else if constexpr (std::is_same_v<Kind, CallPolicy>) {
    return chain.call_policies();
  } else {
    return chain.response_filters();
  }
}

}  // namespace

template <class Kind, class Fn>
void ChainRun::each(Fn&& fn) {
  auto& states = std::is_same_v<Kind, CallPolicy>
                     ? call_state_
                     : (std::is_same_v<Kind, ResponseFilter> ? response_state_ : request_state_);
  for (std::size_t c = 0; c < kChains; ++c) {
    if (chains_[c] == nullptr) continue;
    const auto filters = filters_of<Kind>(*chains_[c]);
    for (std::size_t i = 0; i < filters.size(); ++i) {
      fn(*filters[i], states[c * FilterChain::kMaxPerKind + i]);
    }
  }
}

template <class Fn>
void ChainRun::each_policy(Leg leg, Fn&& fn) {
  for (std::size_t c = 0; c < kChains; ++c) {
    if (chains_[c] == nullptr) continue;
    const auto policies = chains_[c]->call_policies();
    for (std::size_t i = 0; i < policies.size(); ++i) {
      const std::size_t slot = c * FilterChain::kMaxPerKind + i;
      const bool own = leg > 0 && policies[i]->per_attempt_state() && leg <= leg_state_.size();
      fn(*policies[i], own ? leg_state_[leg - 1][slot] : call_state_[slot]);
    }
  }
}

void ChainRun::begin(const FilterChain* listener, const FilterChain* route) noexcept {
  complete({});
  chains_ = {listener, route};
  entered_ = {};
  hold_ = {};
  for (std::size_t c = 0; c < kChains; ++c) {
    if (chains_[c] == nullptr) continue;
    // Only the slots this request's filters use are cleared.
    const std::size_t base = c * FilterChain::kMaxPerKind;
    for (std::size_t i = 0; i < chains_[c]->request_filters().size(); ++i) {
      request_state_[base + i].reset();
    }
    for (std::size_t i = 0; i < chains_[c]->call_policies().size(); ++i) {
      call_state_[base + i].reset();
    }
    for (std::size_t i = 0; i < chains_[c]->response_filters().size(); ++i) {
      response_state_[base + i].reset();
    }
  }
  open_ = true;
}

LocalReply ChainRun::on_request(const RequestInfo& request) { return walk(request, 0, 0); }

LocalReply ChainRun::resume(const RequestInfo& request) {
  return walk(request, waiting_chain_, waiting_index_);
}

LocalReply ChainRun::walk(const RequestInfo& request, std::size_t chain, std::size_t index) {
  for (std::size_t c = chain; c < kChains; ++c) {
    if (chains_[c] == nullptr) continue;
    const auto filters = chains_[c]->request_filters();
    for (std::size_t i = c == chain ? index : 0; i < filters.size(); ++i) {
      LocalReply reply =
          filters[i]->on_request(request, request_state_[c * FilterChain::kMaxPerKind + i]);
      if (reply.wait && !reply) {
        // The filter holds a pending decision: it is owed on_complete from now on.
        entered_[c] = i + 1;
        waiting_chain_ = c;
        waiting_index_ = i;
        return reply;
      }
      if (reply) return reply;
      hold_ = std::max(hold_, reply.hold);
      entered_[c] = i + 1;
    }
  }
  LocalReply go_on;
  go_on.hold = hold_;
  return go_on;
}

void ChainRun::prepare_legs(std::size_t legs) {
  if (legs > leg_state_.size() + 1) leg_state_.resize(legs - 1);
  for (std::size_t l = 0; l + 1 < legs; ++l) {
    for (FilterState& s : leg_state_[l]) s.reset();
  }
}

LocalReply ChainRun::before_attempt(const AttemptStart& start) {
  LocalReply reply;
  each_policy(start.leg, [&](const CallPolicy& p, FilterState& s) {
    if (!reply) reply = p.before_attempt(start, s);
  });
  return reply;
}

void ChainRun::after_attempt(const AttemptOutcome& outcome) {
  each_policy(outcome.leg,
              [&](const CallPolicy& p, FilterState& s) { p.after_attempt(outcome, s); });
}

RetryAdvice ChainRun::retry(const AttemptOutcome& outcome) {
  RetryAdvice advice;
  each<CallPolicy>([&](const CallPolicy& p, FilterState& s) {
    const RetryAdvice a = p.retry(outcome, s);
    if (a.again) {
      advice.again = true;
      advice.delay = std::max(advice.delay, a.delay);
    }
  });
  return advice;
}

void ChainRun::on_response_head(ResponseHead& head) {
  each<ResponseFilter>(
      [&](const ResponseFilter& f, FilterState& s) { f.on_response_head(head, s); });
}

void ChainRun::on_body(std::string_view piece) {
  each<ResponseFilter>([&](const ResponseFilter& f, FilterState& s) { f.on_body(piece, s); });
}

void ChainRun::on_end(bool complete) {
  each<ResponseFilter>([&](const ResponseFilter& f, FilterState& s) { f.on_end(complete, s); });
}

void ChainRun::complete(const Completion& done) {
  if (!open_) return;
  open_ = false;
  for (std::size_t c = kChains; c-- > 0;) {
    if (chains_[c] == nullptr) continue;
    const auto filters = chains_[c]->request_filters();
    for (std::size_t i = entered_[c]; i-- > 0;) {
      filters[i]->on_complete(done, request_state_[c * FilterChain::kMaxPerKind + i]);
    }
  }
  entered_ = {};
}

}  // namespace bulwark::gateway::filter
