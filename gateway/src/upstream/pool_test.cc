#include "upstream/pool.h"

#include <gtest/gtest.h>
#include <poll.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/write.hpp>

namespace bulwark::gateway::upstream {
namespace {

namespace net = boost::asio;
using namespace std::chrono_literals;

// A connected pair of sockets on 127.0.0.1: `client` goes into the pool, `server` plays the
// upstream.
struct Pair {
  Socket client;
  tcp::socket server;
};

Pair connect_pair(net::io_context& ioc) {
  tcp::acceptor acceptor(ioc, tcp::endpoint(net::ip::make_address("127.0.0.1"), 0));
  Socket client(ioc);
  client.connect(acceptor.local_endpoint());
  tcp::socket server = acceptor.accept();
  return {std::move(client), std::move(server)};
}

TEST(EndpointPool, ReservesUpToTheBusyLimit) {
  EndpointPool pool;
  EXPECT_TRUE(pool.reserve(2));
  EXPECT_TRUE(pool.reserve(2));
  EXPECT_FALSE(pool.reserve(2));
  EXPECT_EQ(pool.busy(), 2u);
  pool.release();
  EXPECT_TRUE(pool.reserve(2));
}

TEST(EndpointPool, GivesBackTheMostRecentlyUsedOpenConnection) {
  net::io_context ioc;
  auto a = connect_pair(ioc);
  auto b = connect_pair(ioc);
  const auto b_port = b.client.local_endpoint().port();
  EndpointPool pool;
  const TimePoint t0{};
  pool.put_idle(Stream(std::move(a.client)), t0, 4);
  pool.put_idle(Stream(std::move(b.client)), t0 + 1s, 4);
  EXPECT_EQ(pool.idle(), 2u);
  auto got = pool.take_idle(t0 + 2s, 60s);
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->socket().local_endpoint().port(), b_port);
  EXPECT_EQ(pool.idle(), 1u);
}

// Blocks until `s` has something to read (data or EOF), at most 5 s.
template <class S>
bool wait_readable(S& s) {
  pollfd p{s.native_handle(), POLLIN, 0};
  return ::poll(&p, 1, 5000) == 1;
}

TEST(EndpointPool, DropsConnectionsTheUpstreamClosedOrThatSentData) {
  net::io_context ioc;
  auto closed = connect_pair(ioc);
  auto chatty = connect_pair(ioc);
  auto quiet = connect_pair(ioc);
  closed.server.close();
  net::write(chatty.server, net::buffer(std::string_view("HTTP/1.1 408 Timeout\r\n\r\n")));
  ASSERT_TRUE(wait_readable(closed.client));
  ASSERT_TRUE(wait_readable(chatty.client));
  const auto quiet_port = quiet.client.local_endpoint().port();
  EndpointPool pool;
  pool.put_idle(Stream(std::move(quiet.client)), TimePoint{}, 4);
  pool.put_idle(Stream(std::move(closed.client)), TimePoint{}, 4);
  pool.put_idle(Stream(std::move(chatty.client)), TimePoint{}, 4);
  // Idle for longer than kTrustedIdle, so each one is checked: chatty and closed are skipped.
  auto got = pool.take_idle(TimePoint{} + 2s, 60s);
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->socket().local_endpoint().port(), quiet_port);
  EXPECT_EQ(pool.idle(), 0u);
}

TEST(EndpointPool, AConnectionPutBackWithVerifyIsCheckedEvenWhenRecent) {
  net::io_context ioc;
  auto trusted = connect_pair(ioc);
  auto verified = connect_pair(ioc);
  // Both sent stray bytes after their answer (a body after a HEAD answer, say).
  net::write(trusted.server, net::buffer(std::string_view("stray")));
  net::write(verified.server, net::buffer(std::string_view("stray")));
  ASSERT_TRUE(wait_readable(trusted.client));
  ASSERT_TRUE(wait_readable(verified.client));
  const auto trusted_port = trusted.client.local_endpoint().port();
  EndpointPool pool;
  pool.put_idle(Stream(std::move(trusted.client)), TimePoint{}, 4);
  pool.put_idle(Stream(std::move(verified.client)), TimePoint{}, 4, 60s, /*verify=*/true);
  // Taken at once: the verified one is peeked and dropped, the other is taken on trust.
  auto got = pool.take_idle(TimePoint{} + 1ms, 60s);
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->socket().local_endpoint().port(), trusted_port);
  EXPECT_EQ(pool.idle(), 0u);
}

TEST(EndpointPool, ExpiresIdleConnectionsAndBoundsTheirNumber) {
  net::io_context ioc;
  auto a = connect_pair(ioc);
  auto b = connect_pair(ioc);
  auto c = connect_pair(ioc);
  EndpointPool pool;
  pool.put_idle(Stream(std::move(a.client)), TimePoint{}, 2);
  pool.put_idle(Stream(std::move(b.client)), TimePoint{}, 2);
  pool.put_idle(Stream(std::move(c.client)), TimePoint{}, 2);  // over max_idle: closed at once
  EXPECT_EQ(pool.idle(), 2u);
  EXPECT_FALSE(pool.take_idle(TimePoint{} + 61s, 60s).has_value());
  EXPECT_EQ(pool.idle(), 0u);
}

TEST(EndpointPool, UsingThePoolClosesExpiredConnectionsFromTheOldEnd) {
  net::io_context ioc;
  auto old1 = connect_pair(ioc);
  auto old2 = connect_pair(ioc);
  auto fresh = connect_pair(ioc);
  EndpointPool pool;
  pool.put_idle(Stream(std::move(old1.client)), TimePoint{}, 8, 10s);
  pool.put_idle(Stream(std::move(old2.client)), TimePoint{} + 1s, 8, 10s);
  // Returning a connection at t=20s closes the two that expired, though LIFO reuse would never
  // reach them.
  pool.put_idle(Stream(std::move(fresh.client)), TimePoint{} + 20s, 8, 10s);
  EXPECT_EQ(pool.idle(), 1u);
  ASSERT_TRUE(wait_readable(old1.server));  // the gateway side closed: the peer sees EOF
  char byte;
  boost::system::error_code ec;
  old1.server.read_some(net::buffer(&byte, 1), ec);
  EXPECT_EQ(ec, net::error::eof);
}

TEST(EndpointPool, KeepsTheGaugesInStep) {
  observe::Gauge idle;
  observe::Gauge busy;
  observe::EndpointMetrics m;
  m.pool_idle = &idle;
  m.pool_busy = &busy;
  net::io_context ioc;
  auto a = connect_pair(ioc);
  {
    EndpointPool pool;
    pool.bind_metrics(&m);
    ASSERT_TRUE(pool.reserve(1));
    EXPECT_EQ(busy.value(), 1);
    pool.release();
    pool.put_idle(Stream(std::move(a.client)), TimePoint{}, 4);
    EXPECT_EQ(idle.value(), 1);
    EXPECT_EQ(busy.value(), 0);
  }
  EXPECT_EQ(idle.value(), 0);  // the destructor closes and uncounts idle connections
}

}  // namespace
}  // namespace bulwark::gateway::upstream
