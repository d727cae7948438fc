#include "redis/client.h"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/write.hpp>
#include <charconv>
#include <deque>

#include "redis/gcra_script.h"

namespace bulwark::gateway::redis {

namespace net = boost::asio;
using boost::system::error_code;

namespace {

constexpr Duration kFirstBackoff = std::chrono::milliseconds(50);
constexpr Duration kMaxBackoff = std::chrono::seconds(2);

std::string_view digits(std::array<char, 24>& buf, uint64_t value) noexcept {
  const auto end = std::to_chars(buf.data(), buf.data() + buf.size(), value).ptr;
  return {buf.data(), static_cast<std::size_t>(end - buf.data())};
}

}  // namespace

struct Client::Conn {
  explicit Conn(http::Executor executor) : stream(executor), guard(executor) {}

  struct InFlight {
    uint64_t ticket;
    TimePoint sent;
  };

  http::Stream stream;  // TCP, or TLS over it (redis.tls); made anew for each connection
  http::DeadlineTimer guard;  // connect, handshake, and a reply overdue by stall_timeout
  ReplyReader reader;
  std::array<char, 16 * 1024> buffer{};
  std::string out;      // commands not yet written
  std::string sending;  // the commands being written
  std::string hello;    // AUTH and SCRIPT LOAD, written when the connection opens
  uint64_t epoch = 0;   // one per connection attempt: a late write completion of an earlier
                        // connection changes nothing
  std::deque<InFlight> in_flight;  // one per command whose reply has not come, in order
  bool writing = false;
  bool up = false;
  bool stopped = false;
};

Client::Client(http::Executor executor, const Clock& clock, observe::RedisMetrics& metrics,
               Random& random)
    : executor_(executor), clock_(clock), metrics_(metrics), random_(random) {}

Client::~Client() { shutdown(); }

void Client::configure(const std::optional<ClientOptions>& options) {
  if (options == options_) return;
  drop_connections();
  for (Slot& slot : slots_) {
    if (slot.state == Slot::State::pending) settle(slot, Slot::State::failed);
  }
  options_ = options;
  if (!options_) return;
  if (slots_.size() != options_->max_pending) slots_.assign(options_->max_pending, Slot{});
  for (uint32_t i = 0; i < options_->connections; ++i) {
    auto conn = std::make_shared<Conn>(executor_);
    conns_.push_back(conn);
    net::co_spawn(executor_, run(std::move(conn)), net::detached);
  }
}

void Client::shutdown() noexcept {
  drop_connections();
  for (Slot& slot : slots_) {
    if (slot.state == Slot::State::pending) settle(slot, Slot::State::failed);
  }
  options_.reset();
}

void Client::drop_connections() noexcept {
  for (auto& conn : conns_) {
    conn->stopped = true;
    error_code ignored;
    conn->stream.socket().close(ignored);
  }
  conns_.clear();
}

std::size_t Client::connections_up() const noexcept {
  std::size_t up = 0;
  for (const auto& conn : conns_) up += conn->up ? 1 : 0;
  return up;
}

http::Task<void> Client::run(std::shared_ptr<Conn> conn) {
  Duration backoff = kFirstBackoff;
  while (!conn->stopped) {
    if (co_await connect(*conn) && co_await handshake(*conn)) {
      conn->up = true;
      if (metrics_.connections_up != nullptr) metrics_.connections_up->inc();
      backoff = kFirstBackoff;
      flush(conn);
      co_await read_replies(conn);
      conn->up = false;
      if (metrics_.connections_up != nullptr) metrics_.connections_up->dec();
    }
    fail_pending(*conn);
    error_code ignored;
    conn->stream.socket().close(ignored);
    if (conn->stopped) break;
    // Reconnect after a backoff with full jitter.
    const auto wait = Duration(static_cast<Duration::rep>(
        random_.next_u64() % static_cast<uint64_t>(backoff.count() + 1)));
    backoff = std::min(backoff * 2, kMaxBackoff);
    net::basic_waitable_timer<std::chrono::steady_clock,
                              net::wait_traits<std::chrono::steady_clock>, http::Executor>
        pause(executor_);
    pause.expires_after(wait);
    auto [ec] = co_await pause.async_wait(http::kTuple);
    (void)ec;
  }
}

http::Task<bool> Client::connect(Conn& conn) {
  error_code ignored;
  conn.stream.socket().close(ignored);
  conn.reader.reset();
  conn.out.clear();
  conn.sending.clear();
  conn.writing = false;
  ++conn.epoch;
  const ClientOptions& options = *options_;
  if (options.tls) {
    conn.stream = http::Stream(http::Socket(executor_), options.tls->context());
  } else {
    conn.stream = http::Stream(executor_);
  }
  conn.guard.guard(conn.stream.socket(), now() + options.connect_timeout);
  auto [ec] = co_await conn.stream.socket().async_connect(options.endpoint, http::kTuple);
  if (ec || conn.stopped) {
    if (!conn.stopped) metrics_.error(observe::RedisError::connect);
    co_return false;
  }
  conn.stream.socket().set_option(net::ip::tcp::no_delay(true), ignored);
  if (!options.tls) co_return true;
  // redis.tls: the handshake within the same connect timeout.
  if (!options.tls->prepare(conn.stream.ssl_handle(), options.host)) {
    metrics_.error(observe::RedisError::tls);
    co_return false;
  }
  conn.guard.guard(conn.stream.socket(), now() + options.connect_timeout);
  auto [hec] = co_await conn.stream.async_handshake(http::ssl::stream_base::client, http::kTuple);
  if (hec || conn.stopped) {
    if (!conn.stopped) metrics_.error(observe::RedisError::tls);
    co_return false;
  }
  co_return true;
}

http::Task<bool> Client::handshake(Conn& conn) {
  const ClientOptions& options = *options_;
  std::string& hello = conn.hello;
  hello.clear();
  bool auth = !options.password.empty();
  if (auth && options.username.empty()) append_command(hello, {"AUTH", options.password});
  if (auth && !options.username.empty()) {
    append_command(hello, {"AUTH", options.username, options.password});
  }
  append_command(hello, {"SCRIPT", "LOAD", gcra_script()});
  conn.guard.guard(conn.stream.socket(), now() + options.connect_timeout);
  auto [wec, written] = co_await net::async_write(conn.stream, net::buffer(hello), http::kTuple);
  if (wec || conn.stopped) {
    if (!conn.stopped) metrics_.error(observe::RedisError::connect);
    co_return false;
  }
  int expected = auth ? 2 : 1;
  while (expected > 0) {
    if (const Reply* reply = conn.reader.next()) {
      --expected;
      if (auth) {
        auth = false;
        if (reply->is_error()) {
          metrics_.error(observe::RedisError::auth);
          co_return false;
        }
        continue;
      }
      if (reply->kind != Reply::Kind::string) {
        metrics_.error(observe::RedisError::reply);
        co_return false;
      }
      sha_ = reply->text;
      if (metrics_.script_loads != nullptr) metrics_.script_loads->inc();
      continue;
    }
    if (conn.reader.broken()) {
      metrics_.error(observe::RedisError::reply);
      co_return false;
    }
    auto [ec, n] = co_await conn.stream.async_read_some(net::buffer(conn.buffer), http::kTuple);
    if (ec || conn.stopped) {
      if (!conn.stopped) metrics_.error(observe::RedisError::connect);
      co_return false;
    }
    conn.reader.feed(std::string_view(conn.buffer.data(), n));
  }
  co_return true;
}

http::Task<void> Client::read_replies(std::shared_ptr<Conn> conn) {
  const Duration stall = options_->stall_timeout;
  for (;;) {
    conn->guard.guard(conn->stream.socket(), conn->in_flight.empty()
                                        ? TimePoint::max()
                                        : conn->in_flight.front().sent + stall);
    auto [ec, n] = co_await conn->stream.async_read_some(net::buffer(conn->buffer), http::kTuple);
    if (conn->stopped) co_return;
    if (ec) {
      metrics_.error(conn->guard.fired() ? observe::RedisError::timeout
                                         : observe::RedisError::closed);
      co_return;
    }
    conn->reader.feed(std::string_view(conn->buffer.data(), n));
    while (const Reply* reply = conn->reader.next()) on_reply(conn, *reply);
    if (conn->reader.broken() || !conn->stream.socket().is_open()) {
      metrics_.error(observe::RedisError::reply);
      co_return;
    }
  }
}

void Client::on_reply(const std::shared_ptr<Conn>& conn, const Reply& reply) {
  if (conn->in_flight.empty()) {
    // A reply nobody asked for: the stream cannot be trusted.
    error_code ignored;
    conn->stream.socket().close(ignored);
    return;
  }
  const Conn::InFlight asked = conn->in_flight.front();
  conn->in_flight.pop_front();
  if (metrics_.round_trip != nullptr) metrics_.round_trip->observe(now() - asked.sent);
  Slot* slot = slot_of(asked.ticket);
  if (slot == nullptr) return;  // its caller stopped waiting
  if (reply.is_error() && std::string_view(reply.text).starts_with("NOSCRIPT")) {
    // The script cache was flushed: this decision goes again as EVAL, which reloads it.
    if (metrics_.script_loads != nullptr) metrics_.script_loads->inc();
    send(*conn, *slot, true);
    flush(conn);
    return;
  }
  GcraAnswer answer;
  if (!read_gcra_answer(reply, answer)) {
    metrics_.error(observe::RedisError::reply);
    settle(*slot, Slot::State::failed);
    return;
  }
  slot->decision = {answer.allowed, answer.remaining, answer.reset, answer.retry_after};
  settle(*slot, Slot::State::answered);
}

uint64_t Client::start(std::string_view key, const filter::RemoteRate& rate,
                       const filter::WakeToken& wake) {
  if (!options_ || conns_.empty()) return 0;
  std::shared_ptr<Conn> conn;
  for (std::size_t i = 0; i < conns_.size() && !conn; ++i) {
    const auto& candidate = conns_[(next_conn_ + i) % conns_.size()];
    if (candidate->up) conn = candidate;
  }
  if (!conn) {
    metrics_.error(observe::RedisError::unavailable);
    return 0;
  }
  ++next_conn_;
  const uint64_t ticket = next_ticket_++;
  Slot& slot = slots_[ticket % slots_.size()];
  if (slot.state != Slot::State::free) {
    metrics_.error(observe::RedisError::overflow);
    return 0;
  }
  slot.ticket = ticket;
  slot.state = Slot::State::pending;
  slot.wake = wake;
  slot.key.assign(key);
  slot.rate = rate;
  send(*conn, slot, false);
  flush(conn);
  return ticket;
}

void Client::send(Conn& conn, Slot& slot, bool as_eval) {
  std::array<char, 24> interval_text;
  std::array<char, 24> burst_text;
  const std::string_view interval =
      digits(interval_text, static_cast<uint64_t>(std::max<int64_t>(slot.rate.interval_us, 1)));
  const std::string_view burst = digits(burst_text, slot.rate.burst);
  if (as_eval || sha_.empty()) {
    append_command(conn.out, {"EVAL", gcra_script(), "1", slot.key, interval, burst, "1"});
  } else {
    append_command(conn.out, {"EVALSHA", sha_, "1", slot.key, interval, burst, "1"});
  }
  const TimePoint sent = now();
  slot.sent = sent;
  if (conn.in_flight.empty()) {
    // The read waiting for replies learns its deadline: a stalled server is noticed.
    conn.guard.guard(conn.stream.socket(), sent + options_->stall_timeout);
  }
  conn.in_flight.push_back({slot.ticket, sent});
}

void Client::flush(const std::shared_ptr<Conn>& conn) {
  if (conn->writing || conn->out.empty() || !conn->up) return;
  conn->writing = true;
  conn->sending.swap(conn->out);
  conn->out.clear();
  net::async_write(conn->stream, net::buffer(conn->sending),
                   [this, conn, epoch = conn->epoch](const error_code& ec, std::size_t) {
                     if (epoch != conn->epoch) return;  // an earlier connection's write
                     conn->writing = false;
                     conn->sending.clear();
                     if (ec) {
                       // The read loop sees the closed socket and fails what is pending.
                       error_code ignored;
                       conn->stream.socket().close(ignored);
                       return;
                     }
                     if (!conn->stopped) flush(conn);
                   });
}

void Client::fail_pending(Conn& conn) noexcept {
  for (const Conn::InFlight& asked : conn.in_flight) {
    if (Slot* slot = slot_of(asked.ticket); slot != nullptr && slot->state == Slot::State::pending) {
      settle(*slot, Slot::State::failed);
    }
  }
  conn.in_flight.clear();
  conn.out.clear();
}

void Client::settle(Slot& slot, Slot::State state) noexcept {
  slot.state = state;
  const filter::WakeToken wake = std::move(slot.wake);
  slot.wake = {};
  wake();
}

Client::Slot* Client::slot_of(uint64_t ticket) noexcept {
  if (ticket == 0 || slots_.empty()) return nullptr;
  Slot& slot = slots_[ticket % slots_.size()];
  return slot.ticket == ticket && slot.state != Slot::State::free ? &slot : nullptr;
}

filter::RemoteRateLimiter::Status Client::take(uint64_t ticket, filter::RemoteDecision& out) {
  Slot* slot = slot_of(ticket);
  if (slot == nullptr) return Status::failed;
  switch (slot->state) {
    case Slot::State::pending:
      return Status::pending;
    case Slot::State::answered:
      out = slot->decision;
      forget(ticket);
      return Status::answered;
    default:
      forget(ticket);
      return Status::failed;
  }
}

void Client::forget(uint64_t ticket) noexcept {
  Slot* slot = slot_of(ticket);
  if (slot == nullptr) return;
  slot->state = Slot::State::free;
  slot->ticket = 0;
  slot->wake = {};
}

}  // namespace bulwark::gateway::redis
