// Client: one worker's connections to Redis for global rate limits (filter::RemoteRateLimiter).
//
// Non-blocking, on the worker's own event loop: decisions are written as they come (one
// EVALSHA each) and pipelined — several in flight on one connection, their replies matched in
// order — over `connections` connections per worker (round robin). Each connection logs in
// (AUTH, with a username for an ACL user) and loads the GCRA script (SCRIPT LOAD) when it
// connects; a reply of NOSCRIPT (after a SCRIPT FLUSH or a failover) sends that decision again
// as EVAL, which loads the script again. A broken connection fails its pending decisions at
// once (their requests are woken and decide without Redis) and is reconnected after a backoff
// (exponential with full jitter, 50 ms to 2 s); a connection on which a reply is overdue by
// `stall_timeout` is treated as broken.
//
// The caller bounds its own wait (redis.timeout, the filter's wait); a decision answered after
// its caller stopped waiting is dropped. At most `max_pending` decisions are in flight per
// worker; beyond, start() refuses at once.
//
// Metrics (observe/gateway_metrics.h RedisMetrics): bulwark_redis_round_trip_seconds,
// bulwark_redis_errors_total{kind}, bulwark_redis_connections_up, bulwark_redis_script_loads_total.
//
// Thread-safety: none; everything runs on the worker's thread.
#pragma once

#include <boost/asio/ip/tcp.hpp>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "bulwark/core/clock.h"
#include "bulwark/core/random.h"
#include "filter/filter.h"
#include "http/connection_io.h"
#include "http/stream.h"
#include "observe/gateway_metrics.h"
#include "redis/client_options.h"
#include "redis/resp.h"

namespace bulwark::gateway::redis {

class Client final : public filter::RemoteRateLimiter {
 public:
  Client(http::Executor executor, const Clock& clock, observe::RedisMetrics& metrics,
         Random& random);
  ~Client() override;
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Connects with `options` (a change drops the connections and fails what is pending);
  // nullopt disconnects. Cheap when nothing changed.
  void configure(const std::optional<ClientOptions>& options);
  bool configured() const noexcept { return options_.has_value(); }
  // Closes every connection for good (the worker is stopping).
  void shutdown() noexcept;
  std::size_t connections_up() const noexcept;

  uint64_t start(std::string_view key, const filter::RemoteRate& rate,
                 const filter::WakeToken& wake) override;
  Status take(uint64_t ticket, filter::RemoteDecision& out) override;
  void forget(uint64_t ticket) noexcept override;

 private:
  struct Conn;
  struct Slot {
    enum class State : uint8_t { free, pending, answered, failed };
    uint64_t ticket = 0;
    State state = State::free;
    filter::WakeToken wake;
    filter::RemoteDecision decision;
    TimePoint sent;
    std::string key;  // for a resend as EVAL
    filter::RemoteRate rate;
  };

  http::Task<void> run(std::shared_ptr<Conn> conn);
  http::Task<bool> connect(Conn& conn);
  http::Task<bool> handshake(Conn& conn);
  http::Task<void> read_replies(std::shared_ptr<Conn> conn);
  void on_reply(const std::shared_ptr<Conn>& conn, const Reply& reply);
  void send(Conn& conn, Slot& slot, bool as_eval);
  void flush(const std::shared_ptr<Conn>& conn);
  void fail_pending(Conn& conn) noexcept;
  void settle(Slot& slot, Slot::State state) noexcept;
  Slot* slot_of(uint64_t ticket) noexcept;
  void drop_connections() noexcept;
  TimePoint now() const noexcept { return clock_.now(); }

  http::Executor executor_;
  const Clock& clock_;
  observe::RedisMetrics& metrics_;
  Random& random_;
  std::optional<ClientOptions> options_;
  std::vector<std::shared_ptr<Conn>> conns_;
  std::vector<Slot> slots_;
  uint64_t next_ticket_ = 1;
  std::size_t next_conn_ = 0;
  std::string sha_;  // the script's SHA-1 from SCRIPT LOAD; empty until a connection loaded it
};

}  // namespace bulwark::gateway::redis
