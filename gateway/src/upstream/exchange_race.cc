// The race of a hedged request (filters/hedge/hedge.h says which requests and what wins; the
// library's HedgeRun decides when a hedge starts and when the race is over). Part of Exchange
// (upstream/exchange.h): the current attempt uses the exchange's members as any attempt does;
// the attempts waiting beside it are parked legs, each with its connection, pool slot, start
// and first-byte deadline. A parked leg whose socket turns readable becomes the current attempt
// and its head is read; the head of an answer (a status below 500) ends the race, a failure
// leaves it to the legs still parked.
#include <boost/asio/basic_waitable_timer.hpp>

#include "filter/reasons.h"
#include "upstream/exchange.h"

namespace bulwark::gateway::upstream {

namespace net = boost::asio;
using boost::system::error_code;
using fallback::RaceAction;

namespace {

constexpr std::size_t kNoLeg = SIZE_MAX;

using RaceTimer =
    net::basic_waitable_timer<std::chrono::steady_clock,
                              net::wait_traits<std::chrono::steady_clock>, http::Executor>;

// Shared with the readiness handlers of one wait, which may run after the wait is over.
struct ReadyLeg {
  RaceTimer* timer = nullptr;  // null once the wait is over
  std::size_t parked = kNoLeg;
};

Outcome race_outcome(const filter::AttemptOutcome& outcome) noexcept {
  return filters::answers(outcome) ? Outcome::success : Outcome::retryable_failure;
}

}  // namespace

bool Exchange::hedge_allowed() const noexcept {
  filters::HedgeFacts facts;
  facts.idempotent = is_idempotent(request_->head.method);
  facts.replayable =
      !request_->has_body || (client_->parser.is_done() && !replay_overflow_ && !replay_.empty());
  facts.answer_started = received_any_;
  facts.on_fallback = cluster_index_ != 0;
  return filters::may_hedge(facts);
}

http::Task<void> Exchange::race(ClientLeg& client) {
  raced_ = true;
  request_->chain->prepare_legs(request_->route->hedge->max_attempts());
  park_current();
  RaceAction action = race_->on_timer(now());
  for (;;) {
    while (action.kind == RaceAction::Kind::start) {
      action = co_await start_hedge(client, static_cast<filter::Leg>(action.index));
    }
    if (action.kind == RaceAction::Kind::finish) break;
    if (parked_.empty()) break;  // nothing runs and nothing more may start
    const TimePoint until = next_race_event();
    const std::size_t ready = co_await wait_for_parked(until);
    if (ready != kNoLeg) {
      action = co_await settle_parked(ready, false);
      continue;
    }
    const TimePoint t = now();
    std::size_t late = kNoLeg;
    for (std::size_t i = 0; i < parked_.size(); ++i) {
      if (parked_[i].head_deadline.at <= t) late = i;
    }
    action = late != kNoLeg ? co_await settle_parked(late, true) : race_->on_timer(t);
  }
  cancel_parked();
  if (pool_ == nullptr) {
    // Every attempt was concluded without the race naming one (not expected from HedgeRun):
    // the request fails like an attempt whose connection broke.
    upstream_reusable_ = false;
    fail(502, reason::kUpstreamReset);
    co_return;
  }
  if (race_->answered() && leg_ != 0) request_->route->hedge->count_win();
}

TimePoint Exchange::next_race_event() const noexcept {
  TimePoint until = race_->next_hedge_at().value_or(TimePoint::max());
  for (const ParkedLeg& leg : parked_) until = std::min(until, leg.head_deadline.at);
  return until;
}

http::Task<RaceAction> Exchange::start_hedge(ClientLeg& client, filter::Leg leg) {
  // Another endpoint than the attempts running, when the cluster has one.
  previous_endpoint_ = parked_.empty() ? nullptr : parked_.front().endpoint;
  const route::EndpointRuntime* endpoint = choose_endpoint(*cluster_);
  EndpointPool* pool =
      endpoint != nullptr ? &worker_.upstreams.pool(*request_->snapshot, *endpoint) : nullptr;
  if (pool == nullptr || !pool->reserve(cluster_->config->pool.max_per_endpoint)) {
    // Nowhere to send it: this hedge fails, the attempts running go on.
    co_return race_->on_result(leg, Outcome::final_failure, now());
  }
  const TimePoint start = now();
  if (request_->chain->before_attempt({start, cluster_index_, leg})) {
    pool->release();  // refused by a call policy (an open breaker): nothing was taken
    co_return race_->on_result(leg, Outcome::final_failure, now());
  }
  ++pool->active;
  if (endpoint->metrics->active) endpoint->metrics->active->inc();
  request_->route->hedge->count_hedge();
  result_->endpoint = endpoint;
  pool_ = pool;
  leg_ = leg;
  stage_ = Stage::ok;
  result_->reply = {};
  upstream_reusable_ = true;
  received_any_ = false;
  request_sent_ = false;
  attempt_started_ = start;
  if (co_await open_connection(*pool, true)) {
    ++result_->attempts;
    replaying_ = body_taken();
    co_await send_request(client);
  }
  sent_any_ = sent_any_ || request_sent_;
  if (stage_ == Stage::ok) {
    const config::Route& route = *request_->route->config;
    const auto budget =
        route.timeouts.first_byte ? route.timeouts.first_byte : route.timeouts.per_try;
    head_deadline_ = first_byte_deadline(now(), budget, route_deadline_);
    park_current();
    co_return RaceAction::none();
  }
  // It could not be sent (connect failure, a broken connection).
  const filter::AttemptOutcome outcome = describe_attempt(connected_);
  const RaceAction action = race_->on_result(leg, race_outcome(outcome), now());
  if (action.kind != RaceAction::Kind::finish) conclude_current(outcome);
  co_return action;
}

http::Task<RaceAction> Exchange::settle_parked(std::size_t parked, bool timed_out) {
  unpark(parked);
  if (timed_out) {
    upstream_reusable_ = false;
    fail(head_deadline_.status, head_deadline_.reason);
  } else {
    co_await read_response_head();
  }
  const filter::AttemptOutcome outcome = describe_attempt(true);
  const RaceAction action = race_->on_result(leg_, race_outcome(outcome), now());
  // The race's result stays the current attempt (the caller records it like any attempt).
  if (action.kind != RaceAction::Kind::finish || action.index != leg_) conclude_current(outcome);
  co_return action;
}

http::Task<std::size_t> Exchange::wait_for_parked(TimePoint until) {
  // The connection's timer guards nothing while the legs wait on a timer of their own.
  client_->timer.guard(client_->stream.socket(), TimePoint::max());
  auto ready = std::make_shared<ReadyLeg>();
  RaceTimer timer(worker_.executor);
  timer.expires_after(until - now());
  ready->timer = &timer;
  for (std::size_t i = 0; i < parked_.size(); ++i) {
    parked_[i].socket->socket().async_wait(net::socket_base::wait_read, [ready, i](const error_code& ec) {
      if (ec || ready->timer == nullptr || ready->parked != kNoLeg) return;
      ready->parked = i;
      ready->timer->cancel();
    });
  }
  auto [ec] = co_await timer.async_wait(http::kTuple);
  (void)ec;
  ready->timer = nullptr;
  for (ParkedLeg& leg : parked_) {
    error_code ignored;
    leg.socket->socket().cancel(ignored);
  }
  co_return ready->parked;
}

void Exchange::park_current() {
  ParkedLeg& leg = parked_.emplace_back();
  leg.socket.emplace(std::move(*socket_));
  socket_.reset();
  leg.endpoint = result_->endpoint;
  leg.pool = pool_;
  leg.started = attempt_started_;
  leg.head_deadline = head_deadline_;
  leg.leg = leg_;
  leg.reused = reused_;
  pool_ = nullptr;
  // The connection's timer may still point at the member socket: it guards the client now.
  client_->timer.guard(client_->stream.socket(), TimePoint::max());
}

void Exchange::unpark(std::size_t parked) {
  ParkedLeg& leg = parked_[parked];
  close_upstream();
  socket_.emplace(std::move(*leg.socket));
  result_->endpoint = leg.endpoint;
  pool_ = leg.pool;
  attempt_started_ = leg.started;
  head_deadline_ = leg.head_deadline;
  leg_ = leg.leg;
  reused_ = leg.reused;
  connected_ = true;
  request_sent_ = true;
  stage_ = Stage::ok;
  result_->reply = {};
  upstream_reusable_ = true;
  received_any_ = false;
  in_.consume(in_.size());
  parked_.erase(parked_.begin() + static_cast<std::ptrdiff_t>(parked));
}

void Exchange::conclude_current(const filter::AttemptOutcome& outcome) {
  request_->chain->after_attempt(outcome);
  if (!outcome.discarded) record_outlier(outcome);
  close_upstream();
  in_.consume(in_.size());
  if (pool_ != nullptr) release_slot(*pool_);
  pool_ = nullptr;
}

void Exchange::cancel_parked() noexcept {
  // The losers: their answers are not wanted, their connections not reusable.
  for (ParkedLeg& leg : parked_) {
    filter::AttemptOutcome outcome;
    outcome.now = now();
    outcome.elapsed = outcome.now - leg.started;
    outcome.request_sent = true;
    outcome.discarded = true;
    outcome.cluster = cluster_index_;
    outcome.leg = leg.leg;
    outcome.random = &worker_.random;
    request_->chain->after_attempt(outcome);
    error_code ignored;
    leg.socket->socket().close(ignored);
    release_slot(*leg.pool, *leg.endpoint);
  }
  parked_.clear();
}

}  // namespace bulwark::gateway::upstream
