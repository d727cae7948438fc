// Exchange: one request's call to its cluster — the station after the request filters.
//
//   1. pick a usable endpoint (exchange_rules.h pick_endpoint: not ejected, not down; 503
//      no_healthy_endpoint when none is) and reserve a pool slot (503 pool_exhausted when
//      max_per_endpoint are busy)
//   2. call policies' before_attempt (filter/filter.h), then the attempt: a pooled connection
//      or a new one (connect_timeout), the request head written into the connection's one
//      write buffer and sent with whatever body is already buffered in one write, the rest of
//      the body relayed as it arrives (100 Continue sent to the client when it asked), the
//      answer's head read under the first-byte deadline. A pooled connection found dead before
//      any answer byte is replaced once (exchange_rules.h may_replace_stale; not a retry).
//      After the attempt, outlier detection records its result, and the call policies may ask
//      for another (retry: the body kept up to kReplayBytes is replayed byte for byte, another
//      endpoint preferred, the wait bounded by the route's deadline)
//   2b. on a route with `hedge` (filters/hedge), when the attempt's answer has not begun by the
//      hedge delay, the race (exchange_race.cc): the same request goes to another endpoint
//      while the first attempt keeps waiting, each attempt a leg with its own connection, pool
//      slot, call-policy state and first-byte deadline; the first answer's head wins, the
//      others are closed (their connections never go back to the pool)
//   1b. when the cluster's call failed (breaker open, no usable endpoint, attempts spent) and
//      the request may be sent again (exchange_rules.h should_fall_back), the same with the
//      route's next fallback cluster
//   3. the answer's head re-framed for the client (http/head_writer.h), response filters, then
//      the body relayed piece by piece under the route's stream guards, with back-pressure:
//      nothing is read from the upstream while the client has not taken the last piece
//   4. the upstream connection back to the pool when exchange_rules.h can_pool says so
//
// Failures before anything of the answer reached the client come back as a LocalReply for
// the listener to send (502/503/504 with their reasons); after that, the stream is cut and the
// guard's reason is logged and counted. Every wait is guarded by the connection's one
// DeadlineTimer. An Exchange is part of a worker's pooled per-request state
// (listener/request_context.h): reused request after request, its buffers keep their capacity.
#pragma once

#include <boost/asio/basic_waitable_timer.hpp>
#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "bulwark/fallback/hedge.h"
#include "bulwark/observe/log.h"
#include "filter/chain.h"
#include "filter/local_reply.h"
#include "http/connection_io.h"
#include "http/head_writer.h"
#include "http/message_parser.h"
#include "http/stream.h"
#include "route/runtime.h"
#include "upstream/exchange_rules.h"
#include "upstream/worker_upstreams.h"

namespace bulwark::gateway::upstream {

// What the exchange uses of the client connection (owned by listener/connection.h).
struct ClientLeg {
  http::Stream& stream;  // TCP, or TLS over it
  http::ReadBuffer& buffer;
  std::size_t buffer_capacity;
  http::RequestParser& parser;  // the head is parsed; the body is read through it
  std::string& out;             // the connection's write buffer
  http::DeadlineTimer& timer;   // the connection's one timer, for both sides
};

// The worker's things the exchange uses.
struct WorkerLeg {
  http::Executor executor;
  const bulwark::observe::Logger& log;  // upstream TLS failures
  const Clock& clock;
  WorkerUpstreams& upstreams;
  http::BufferPool& buffers;
  const bool& draining;
  Random& random;  // seeded per worker: backoff jitter
};

struct ExchangeRequest {
  const route::Snapshot* snapshot = nullptr;
  const route::RouteRuntime* route = nullptr;
  const config::Listener* listener = nullptr;
  filter::ChainRun* chain = nullptr;
  TimePoint start;
  // How long the request waits before its first attempt (a request filter's hold: fault
  // injection); it counts against the route's deadline.
  std::chrono::nanoseconds hold{0};
  http::UpstreamRequestHead head;  // the endpoint's address is filled in by the exchange
  bool has_body = false;
  bool chunked_body = false;
  bool expect_continue = false;
  bool head_request = false;
  bool client_keep_alive = true;
  int client_version = 11;
};

struct ExchangeResult {
  int status = 0;            // the upstream's status once its head was relayed
  std::string_view reason;   // why a stream ended early (filter/reasons.h)
  filter::LocalReply reply;  // to send when nothing of the answer reached the client
  const route::EndpointRuntime* endpoint = nullptr;
  uint32_t attempts = 0;
  uint64_t bytes_in = 0;
  uint64_t bytes_out = 0;
  bool close_client = false;  // the client connection must close after this
  bool client_gone = false;   // the client left: no answer can be sent
};

class Exchange {
 public:
  // A request body up to this size is kept while it is sent, so that a retry can send it again
  // byte for byte; a longer body makes the request not replayable.
  static constexpr std::size_t kReplayBytes = 64 * 1024UL;

  explicit Exchange(WorkerLeg worker) : worker_(worker) {}

  http::Task<void> run(ClientLeg& client, const ExchangeRequest& request, ExchangeResult& result);
  // The request was abandoned half-way (its connection is being destroyed): closes the
  // upstream connection, which can carry nothing else.
  void abandon() noexcept { close_upstream(); }

 private:
  enum class Stage : uint8_t { ok, failed, client_gone };

  // An attempt of a hedged request that waits for its answer's head while another attempt is
  // the current one (exchange_race.cc).
  struct ParkedLeg {
    std::optional<http::Stream> socket;
    const route::EndpointRuntime* endpoint = nullptr;
    EndpointPool* pool = nullptr;
    TimePoint started;
    Binding head_deadline;
    filter::Leg leg = 0;
    bool reused = false;
  };

  http::Task<void> call_cluster(ClientLeg& client);
  http::Task<void> attempts(ClientLeg& client, EndpointPool& pool);
  // Sets the attempt's first-byte deadline and, when the route hedges this request, starts the
  // race's decisions; returns when the hedge is due (TimePoint::max(): never).
  TimePoint arm_head_wait();
  // The race of a hedged request (exchange_race.cc): runs until an attempt answers or every
  // attempt failed; that attempt is then the current one.
  http::Task<void> race(ClientLeg& client);
  http::Task<fallback::RaceAction> start_hedge(ClientLeg& client, filter::Leg leg);
  // Waits until a parked leg is readable (its index) or `until` (SIZE_MAX).
  http::Task<std::size_t> wait_for_parked(TimePoint until);
  http::Task<fallback::RaceAction> settle_parked(std::size_t parked, bool timed_out);
  bool hedge_allowed() const noexcept;
  void park_current();
  void unpark(std::size_t parked);
  // Ends the current attempt as one that lost or failed in the race: policies told, outlier
  // recorded, its connection closed and its pool slot released.
  void conclude_current(const filter::AttemptOutcome& outcome);
  void cancel_parked() noexcept;
  TimePoint next_race_event() const noexcept;
  http::Task<void> wait_before_retry(std::chrono::nanoseconds delay);
  // Waits out the request's hold; false (504 request_timeout) when the hold outlasts the
  // route's deadline, which is then what it waited.
  http::Task<bool> hold_within_deadline();
  http::Task<bool> open_connection(EndpointPool& pool, bool allow_reuse);
  // clusters[].tls: the client handshake, within the connect deadline (502 upstream_tls).
  http::Task<bool> tls_handshake(EndpointPool& pool, const Binding& deadline);
  http::Task<void> send_request(ClientLeg& client);
  http::Task<void> send_body(ClientLeg& client);
  // Reads the answer head under head_deadline_; returns true instead when `hedge_at` came first
  // and nothing of the answer has arrived (the hedge is due).
  http::Task<bool> read_response_head(TimePoint hedge_at = TimePoint::max());
  http::Task<void> relay_response(ClientLeg& client);
  http::Task<void> relay_body(ClientLeg& client);
  http::Task<bool> write_to_client(ClientLeg& client);

  // Decisions and bookkeeping, no I/O.
  filter::AttemptOutcome describe_attempt(bool connected) const;
  StaleFacts stale_facts() const noexcept;
  bool body_taken() const noexcept { return !replay_.empty() || replay_overflow_; }
  const route::EndpointRuntime* choose_endpoint(const route::ClusterRuntime& cluster);
  filter::RetryAdvice ask_retry();
  bool may_fall_back(std::size_t index) const noexcept;
  void record_outlier(const filter::AttemptOutcome& outcome);
  void keep_for_replay(std::string_view framed_body);
  void release_slot(EndpointPool& pool) noexcept;
  void release_slot(EndpointPool& pool, const route::EndpointRuntime& endpoint) noexcept;
  void fail(int status, std::string_view reason);
  void fail_request_body(const boost::system::error_code& ec);
  void fail_response_head(const boost::system::error_code& ec, bool timed_out);
  bool pump_request_body(ClientLeg& client);
  bool pump_response_body(std::string& out);
  void finish(EndpointPool& pool);
  void close_upstream() noexcept;
  TimePoint now() const noexcept { return worker_.clock.now(); }

  WorkerLeg worker_;
  // Per request.
  ClientLeg* client_ = nullptr;
  const ExchangeRequest* request_ = nullptr;
  ExchangeResult* result_ = nullptr;
  Stage stage_ = Stage::ok;
  TimePoint route_deadline_;
  http::UpstreamRequestHead head_;  // the request's head with this attempt's endpoint
  // The upstream side, reused from request to request.
  std::optional<http::Stream> socket_;  // the upstream connection: TCP, or TLS over it
  bool reused_ = false;
  bool received_any_ = false;
  bool request_sent_ = false;  // a request byte may have reached the upstream
  TimePoint attempt_started_;
  bool request_body_failed_ = false;
  bool upstream_reusable_ = true;
  bool last_chunk_sent_ = false;           // the request body's, upstream
  bool response_last_chunk_sent_ = false;  // the answer's, to the client
  http::ReadBuffer in_;
  std::vector<http::HeaderField> fields_;
  std::vector<std::string_view> tokens_;
  std::optional<http::ResponseParser> parser_;
  http::ResponseFraming framing_;
  bool head_sent_ = false;
  std::string_view stream_end_;  // empty: the body ended cleanly
  // Retries.
  std::string replay_;            // the request body as framed upstream, for a retry
  bool replay_overflow_ = false;  // the body outgrew kReplayBytes: not replayable
  bool replaying_ = false;        // this attempt sends replay_ instead of reading the client
  bool continue_sent_ = false;    // 100 Continue went to the client
  bool attempt_ran_ = false;      // the last round reached the upstream (after_attempt ran)
  filter::AttemptOutcome last_outcome_;
  const route::EndpointRuntime* previous_endpoint_ = nullptr;
  bool sent_any_ = false;  // a request byte may have reached an upstream, in any attempt
  bool picked_ = false;    // an endpoint was chosen for this request already
  bool connected_ = false;  // the current attempt has a connection
  Binding head_deadline_;   // the current attempt's first-byte deadline
  // Hedging: the race's decisions (filters/hedge), the attempts waiting beside the current one
  // (kept with their capacity), the current attempt's leg, whether this round raced.
  std::optional<fallback::HedgeRun> race_;
  std::vector<ParkedLeg> parked_;
  filter::Leg leg_ = 0;
  bool raced_ = false;
  // The cluster being called (the route's, or a fallback) and the pool slot held.
  const route::ClusterRuntime* cluster_ = nullptr;
  filter::ClusterIndex cluster_index_ = 0;
  EndpointPool* pool_ = nullptr;
};

}  // namespace bulwark::gateway::upstream
