#include "admin/admin_server.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <future>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>

namespace bulwark::gateway::admin {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using nlohmann::json;
using ErrorCode = boost::system::error_code;
using Response = http::response<http::string_body>;
using namespace std::chrono_literals;

constexpr auto kIoTimeout = 5s;

// A small HTTP/1.1 client. Every operation is asynchronous under a tcp_stream deadline, so a
// server that never answers fails the test after kIoTimeout instead of hanging it.
class Client {
 public:
  explicit Client(uint16_t port) {
    stream_.expires_after(kIoTimeout);
    ErrorCode ec;
    stream_.async_connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port),
                          [&](ErrorCode e) { ec = e; });
    run();
    if (ec) throw std::system_error(std::error_code(ec), "connect");
  }

  Response send(http::verb verb, const std::string& target, const std::string& body = "",
                bool keep_alive = true, const std::string& authorization = "") {
    http::request<http::string_body> req{verb, target, 11};
    req.set(http::field::host, "127.0.0.1");
    if (!authorization.empty()) req.set(http::field::authorization, authorization);
    req.keep_alive(keep_alive);
    if (!body.empty() || verb == http::verb::post) {
      req.body() = body;
      req.prepare_payload();
    }
    ErrorCode ec;
    stream_.expires_after(kIoTimeout);
    http::async_write(stream_, req, [&](ErrorCode e, std::size_t) { ec = e; });
    run();
    if (ec) throw std::system_error(std::error_code(ec), "write");
    return receive(verb == http::verb::head);
  }

  Response get(const std::string& target) { return send(http::verb::get, target); }

  void write_raw(const std::string& data) {
    ErrorCode ec;
    stream_.expires_after(kIoTimeout);
    asio::async_write(stream_, asio::buffer(data), [&](ErrorCode e, std::size_t) { ec = e; });
    run();
    if (ec) throw std::system_error(std::error_code(ec), "write");
  }

  Response receive(bool head = false) {
    http::response_parser<http::string_body> parser;
    parser.body_limit(16 * 1024 * 1024);
    parser.skip(head);  // a HEAD answer has a Content-Length but no body
    ErrorCode ec;
    stream_.expires_after(kIoTimeout);
    http::async_read(stream_, buffer_, parser, [&](ErrorCode e, std::size_t) { ec = e; });
    run();
    if (ec) throw std::system_error(std::error_code(ec), "read");
    return parser.release();
  }

  // The outcome of waiting (bounded) for more bytes: eof when the server closed the connection,
  // beast::error::timeout when it stayed silent.
  ErrorCode next_read_error(std::chrono::steady_clock::duration timeout = kIoTimeout) {
    if (buffer_.size() > 0) return {};
    ErrorCode ec;
    stream_.expires_after(timeout);
    auto space = buffer_.prepare(1024);
    stream_.async_read_some(space, [&](ErrorCode e, std::size_t n) {
      ec = e;
      buffer_.commit(n);
    });
    run();
    return ec;
  }

 private:
  void run() {
    ioc_.restart();
    ioc_.run();
  }

  asio::io_context ioc_;
  beast::tcp_stream stream_{ioc_};
  beast::flat_buffer buffer_;
};

// Handler state shared with the admin thread.
struct Fake {
  std::atomic<bool> draining{false};
  std::atomic<bool> reload_ok{true};
  std::atomic<int> reloads{0};
  std::atomic<int> stats_calls{0};
  std::atomic<bool> stats_throws{false};

  AdminHandlers handlers() {
    AdminHandlers h;
    h.metrics = [] { return std::string("# TYPE up gauge\nup 1\n"); };
    h.ready = [this] {
      if (draining) return ReadyState{false, "draining"};
      return ReadyState{};
    };
    h.stats = [this] {
      ++stats_calls;
      if (stats_throws) throw std::runtime_error("stats exploded");
      return json{{"version", "9.9.9"},
                  {"generation", 7},
                  {"routes", {{{"name", "api-route"}, {"cluster", "backend"}}}}};
    };
    h.clusters = [] { return json::array({{{"name", "backend-cluster"}}}); };
    h.config = [] { return json{{"workers", 2}}; };
    h.alerts = [] { return json::array({{{"name", "high_5xx"}, {"state", "ok"}}}); };
    h.reload = [this] {
      ++reloads;
      ReloadOutcome out;
      out.ok = reload_ok;
      out.generation = reload_ok ? 8 : 7;
      if (!reload_ok) out.errors = {"gw.yaml:3:5: routes[0].cluster: no cluster named 'x'"};
      return out;
    };
    return h;
  }
};

class AdminServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ = std::make_unique<AdminServer>("127.0.0.1", 0, fake_.handlers());
    server_->start();
  }
  uint16_t port() const { return server_->port(); }

  Fake fake_;
  std::unique_ptr<AdminServer> server_;
};

std::string content_type(const Response& res) {
  return std::string(res[http::field::content_type]);
}

TEST_F(AdminServerTest, JsonEndpoints) {
  Client client(port());
  struct Case {
    const char* target;
    json body;
  };
  const Case cases[] = {
      {"/healthz", {{"status", "alive"}}},
      {"/readyz", {{"status", "ready"}}},
      {"/stats",
       {{"version", "9.9.9"},
        {"generation", 7},
        {"routes", {{{"name", "api-route"}, {"cluster", "backend"}}}}}},
      {"/clusters", json::array({{{"name", "backend-cluster"}}})},
      {"/config", {{"workers", 2}}},
      {"/alerts", json::array({{{"name", "high_5xx"}, {"state", "ok"}}})},
      {"/stats?pretty=1", nullptr},  // a query string does not change the endpoint
  };
  for (const Case& c : cases) {
    const Response res = client.get(c.target);  // one keep-alive connection for all
    EXPECT_EQ(res.result(), http::status::ok) << c.target;
    EXPECT_EQ(content_type(res), "application/json") << c.target;
    if (!c.body.is_null()) {
      EXPECT_EQ(json::parse(res.body()), c.body) << c.target;
    }
    EXPECT_TRUE(res.keep_alive());
  }
}

TEST_F(AdminServerTest, MetricsArePrometheusText) {
  Client client(port());
  const Response res = client.get("/metrics");
  EXPECT_EQ(res.result(), http::status::ok);
  EXPECT_EQ(content_type(res), "text/plain; version=0.0.4; charset=utf-8");
  EXPECT_EQ(res.body(), "# TYPE up gauge\nup 1\n");
}

TEST_F(AdminServerTest, StatusPageIsHtmlFromStatsAndClusters) {
  Client client(port());
  const Response res = client.get("/");
  EXPECT_EQ(res.result(), http::status::ok);
  EXPECT_EQ(content_type(res), "text/html; charset=utf-8");
  EXPECT_NE(res.body().find("<!DOCTYPE html>"), std::string::npos);
  EXPECT_NE(res.body().find("api-route"), std::string::npos);
  EXPECT_NE(res.body().find("backend-cluster"), std::string::npos);
}

TEST_F(AdminServerTest, HeadGivesHeadersOnlyWithTheGetLength) {
  Client client(port());
  for (const char* target : {"/stats", "/", "/metrics", "/healthz"}) {
    const Response get = client.get(target);
    const Response head = client.send(http::verb::head, target);
    EXPECT_EQ(head.result(), http::status::ok) << target;
    EXPECT_EQ(content_type(head), content_type(get)) << target;
    EXPECT_EQ(head[http::field::content_length], std::to_string(get.body().size())) << target;
    EXPECT_TRUE(head.body().empty());
  }
  // Had the HEAD answer carried a body, this would read those bytes as a response.
  const Response after = client.get("/healthz");
  EXPECT_EQ(json::parse(after.body()), (json{{"status", "alive"}}));
}

TEST_F(AdminServerTest, UnknownPathIs404) {
  Client client(port());
  for (const char* target : {"/nope", "/stats/", "/metricsx", "//"}) {
    const Response res = client.get(target);
    EXPECT_EQ(res.result(), http::status::not_found) << target;
    EXPECT_EQ(content_type(res), "application/json");
    EXPECT_EQ(json::parse(res.body()), (json{{"error", "not found"}}));
  }
}

TEST_F(AdminServerTest, WrongMethodIs405WithAllow) {
  Client client(port());
  Response res = client.send(http::verb::post, "/stats", "x");
  EXPECT_EQ(res.result(), http::status::method_not_allowed);
  EXPECT_EQ(res[http::field::allow], "GET, HEAD");
  EXPECT_EQ(json::parse(res.body()), (json{{"error", "method not allowed"}}));
  res = client.send(http::verb::delete_, "/");
  EXPECT_EQ(res.result(), http::status::method_not_allowed);
  EXPECT_EQ(res[http::field::allow], "GET, HEAD");
  res = client.get("/reload");
  EXPECT_EQ(res.result(), http::status::method_not_allowed);
  EXPECT_EQ(res[http::field::allow], "POST");
  EXPECT_EQ(fake_.reloads.load(), 0);
}

TEST_F(AdminServerTest, ReloadReportsTheNewGeneration) {
  Client client(port());
  const Response res = client.send(http::verb::post, "/reload", "ignored body");
  EXPECT_EQ(res.result(), http::status::ok);
  EXPECT_EQ(content_type(res), "application/json");
  EXPECT_EQ(json::parse(res.body()), (json{{"result", "ok"}, {"generation", 8}}));
  EXPECT_EQ(fake_.reloads.load(), 1);
}

TEST_F(AdminServerTest, FailedReloadIs400WithTheDiagnostics) {
  fake_.reload_ok = false;
  Client client(port());
  const Response res = client.send(http::verb::post, "/reload");
  EXPECT_EQ(res.result(), http::status::bad_request);
  EXPECT_EQ(content_type(res), "application/json");
  EXPECT_EQ(json::parse(res.body()),
            (json{{"result", "error"},
                  {"errors", {"gw.yaml:3:5: routes[0].cluster: no cluster named 'x'"}}}));
  EXPECT_EQ(fake_.reloads.load(), 1);
}

TEST_F(AdminServerTest, ReadyzIs503WithRetryAfterWhileDraining) {
  Client client(port());
  EXPECT_EQ(client.get("/readyz").result(), http::status::ok);
  fake_.draining = true;
  const Response res = client.get("/readyz");
  EXPECT_EQ(res.result(), http::status::service_unavailable);
  EXPECT_EQ(res[http::field::retry_after], "1");
  EXPECT_EQ(content_type(res), "application/json");
  EXPECT_EQ(json::parse(res.body()), (json{{"status", "draining"}}));
  EXPECT_EQ(client.get("/healthz").result(), http::status::ok);  // still alive
}

TEST_F(AdminServerTest, HandlerExceptionIs500AndTheServerKeepsServing) {
  fake_.stats_throws = true;
  Client client(port());
  const Response res = client.get("/stats");
  EXPECT_EQ(res.result(), http::status::internal_server_error);
  EXPECT_EQ(json::parse(res.body()),
            (json{{"error", "internal error"}, {"detail", "stats exploded"}}));
  EXPECT_EQ(client.get("/healthz").result(), http::status::ok);
}

TEST_F(AdminServerTest, ConnectionCloseIsHonoured) {
  Client client(port());
  const Response res = client.send(http::verb::get, "/healthz", "", /*keep_alive=*/false);
  EXPECT_EQ(res.result(), http::status::ok);
  EXPECT_FALSE(res.keep_alive());
  EXPECT_EQ(client.next_read_error(), asio::error::eof);
}

TEST_F(AdminServerTest, PipelinedRequestsAreAnsweredInOrder) {
  Client client(port());
  client.write_raw(
      "GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n"
      "GET /readyz HTTP/1.1\r\nHost: a\r\n\r\n"
      "GET /nope HTTP/1.1\r\nHost: a\r\n\r\n");
  EXPECT_EQ(json::parse(client.receive().body()), (json{{"status", "alive"}}));
  EXPECT_EQ(json::parse(client.receive().body()), (json{{"status", "ready"}}));
  EXPECT_EQ(client.receive().result(), http::status::not_found);
}

TEST_F(AdminServerTest, OversizedHeaderIs431AndClosed) {
  Client client(port());
  client.write_raw("GET /healthz HTTP/1.1\r\nHost: a\r\nX-Big: " + std::string(10000, 'a') +
                   "\r\n\r\n");
  const Response res = client.receive();
  EXPECT_EQ(res.result(), http::status::request_header_fields_too_large);
  EXPECT_FALSE(res.keep_alive());
  EXPECT_EQ(client.next_read_error(), asio::error::eof);
}

TEST_F(AdminServerTest, OversizedBodyIs413) {
  Client client(port());
  client.write_raw("POST /reload HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\n");
  const Response res = client.receive();
  EXPECT_EQ(res.result(), http::status::payload_too_large);
  EXPECT_FALSE(res.keep_alive());
  EXPECT_EQ(fake_.reloads.load(), 0);
}

TEST_F(AdminServerTest, MalformedRequestIs400) {
  Client client(port());
  client.write_raw("GET /healthz HTTP/1.1\r\nHost a\r\n\r\n");
  const Response res = client.receive();
  EXPECT_EQ(res.result(), http::status::bad_request);
  EXPECT_EQ(json::parse(res.body()), (json{{"error", "bad request"}}));
  EXPECT_EQ(client.next_read_error(), asio::error::eof);
}

// Fails the test (and ends the process) rather than hanging when stop() does not return.
void stop_within(AdminServer& server, std::chrono::seconds limit,
                 std::chrono::steady_clock::duration* took) {
  auto done = std::make_shared<std::promise<void>>();
  std::future<void> finished = done->get_future();
  const auto start = std::chrono::steady_clock::now();
  std::thread stopper([&server, done] {
    server.stop();
    done->set_value();
  });
  if (finished.wait_for(limit) != std::future_status::ready) {
    ADD_FAILURE() << "stop() did not return within " << limit.count() << " s";
    std::abort();
  }
  *took = std::chrono::steady_clock::now() - start;
  stopper.join();
}

TEST_F(AdminServerTest, StopClosesIdleKeepAliveConnectionsPromptly) {
  Client idle(port());
  ASSERT_EQ(idle.get("/healthz").result(), http::status::ok);  // now idle, kept alive
  Client fresh(port());                                        // connected, nothing sent yet
  std::chrono::steady_clock::duration took{};
  stop_within(*server_, 5s, &took);
  EXPECT_LT(took, 2s);
  EXPECT_EQ(idle.next_read_error(), asio::error::eof);
  // Accepted: closed (eof); still in the listen backlog: reset when the listener closes.
  const ErrorCode fresh_error = fresh.next_read_error();
  EXPECT_TRUE(fresh_error == asio::error::eof || fresh_error == asio::error::connection_reset)
      << fresh_error.message();
  // The listener is gone too.
  EXPECT_THROW(Client{port()}, std::system_error);
  server_->stop();  // a second stop is harmless
}

TEST_F(AdminServerTest, ConnectionsBeyond64AreClosedOnAccept) {
  std::vector<std::unique_ptr<Client>> clients;
  for (int i = 0; i < 64; ++i) {
    clients.push_back(std::make_unique<Client>(port()));
    // An answer proves the server accepted (and counts) this connection.
    ASSERT_EQ(clients.back()->get("/healthz").result(), http::status::ok);
  }
  Client extra(port());
  EXPECT_EQ(extra.next_read_error(), asio::error::eof);
  clients.pop_back();  // one leaves: room for a new one
  std::unique_ptr<Client> again;
  // The server notices the departure when its read fails; retry a bounded number of times.
  bool served = false;
  for (int attempt = 0; attempt < 50 && !served; ++attempt) {
    again = std::make_unique<Client>(port());
    try {
      served = again->get("/healthz").result() == http::status::ok;
    } catch (const std::system_error&) {
      served = false;  // closed on accept: the old connection was not yet gone
    }
  }
  EXPECT_TRUE(served);
}

TEST(AdminServer, PortIsKnownBeforeStartAndEarlyConnectionsAreServed) {
  Fake fake;
  AdminServer server("127.0.0.1", 0, fake.handlers());
  ASSERT_NE(server.port(), 0);
  Client early(server.port());  // queued in the listen backlog
  early.write_raw("GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n");
  server.start();
  EXPECT_EQ(early.receive().result(), http::status::ok);
}

TEST(AdminServer, BindingABusyPortThrowsSystemError) {
  Fake fake;
  AdminServer first("127.0.0.1", 0, fake.handlers());
  EXPECT_THROW(AdminServer("127.0.0.1", first.port(), fake.handlers()), std::system_error);
}

TEST(AdminServer, StopWithoutStartAndDestructionAfterStopAreSafe) {
  Fake fake;
  {
    AdminServer never_started("127.0.0.1", 0, fake.handlers());
    never_started.stop();
    never_started.stop();
  }
  {
    AdminServer server("127.0.0.1", 0, fake.handlers());
    server.start();
    server.stop();
    server.stop();
  }  // the destructor stops once more
  {
    AdminServer server("127.0.0.1", 0, fake.handlers());
    server.start();
    Client client(server.port());
    ASSERT_EQ(client.get("/healthz").result(), http::status::ok);
  }  // destroyed while a client is connected
}

TEST(AdminServer, UnsetHandlersAnswer503AndDefaultToReady) {
  AdminServer server("127.0.0.1", 0, AdminHandlers{});
  server.start();
  Client client(server.port());
  EXPECT_EQ(client.get("/readyz").result(), http::status::ok);
  EXPECT_EQ(client.get("/healthz").result(), http::status::ok);
  EXPECT_EQ(client.get("/stats").result(), http::status::service_unavailable);
  EXPECT_EQ(client.get("/metrics").result(), http::status::service_unavailable);
  EXPECT_EQ(client.send(http::verb::post, "/reload").result(), http::status::service_unavailable);
  EXPECT_EQ(client.get("/").result(), http::status::ok);  // the page renders without data
}

TEST(AdminAccess, BearerTokensAreComparedWhole) {
  EXPECT_TRUE(constant_time_equal("abc", "abc"));
  EXPECT_FALSE(constant_time_equal("abc", "abd"));
  EXPECT_FALSE(constant_time_equal("abc", "abcd"));
  EXPECT_FALSE(constant_time_equal("", "a"));
  EXPECT_TRUE(bearer_matches("Bearer s3cr3t", "s3cr3t"));
  EXPECT_TRUE(bearer_matches("bearer   s3cr3t ", "s3cr3t"));
  EXPECT_TRUE(bearer_matches("BEARER s3cr3t", "s3cr3t"));
  EXPECT_FALSE(bearer_matches("Bearer s3cr3", "s3cr3t"));
  EXPECT_FALSE(bearer_matches("Bearer s3cr3tt", "s3cr3t"));
  EXPECT_FALSE(bearer_matches("Bearers3cr3t", "s3cr3t"));
  EXPECT_FALSE(bearer_matches("Basic s3cr3t", "s3cr3t"));
  EXPECT_FALSE(bearer_matches("Bearer ", "s3cr3t"));
  EXPECT_FALSE(bearer_matches("s3cr3t", "s3cr3t"));
}

TEST(AdminAccess, OnLoopbackATokenGuardsReloadOnly) {
  Fake fake;
  AdminServer server("127.0.0.1", 0, fake.handlers(), "s3cr3t");
  server.start();
  EXPECT_TRUE(server.loopback());
  Client client(server.port());
  EXPECT_EQ(client.get("/stats").result(), http::status::ok);
  Response res = client.send(http::verb::post, "/reload");
  EXPECT_EQ(res.result(), http::status::unauthorized);
  EXPECT_EQ(res[http::field::www_authenticate], "Bearer realm=\"bulwark-admin\"");
  EXPECT_EQ(json::parse(res.body()), json({{"error", "missing bearer token"}}));
  res = client.send(http::verb::post, "/reload", "", true, "Bearer wrong");
  EXPECT_EQ(res.result(), http::status::unauthorized);
  EXPECT_EQ(res[http::field::www_authenticate],
            "Bearer realm=\"bulwark-admin\", error=\"invalid_token\"");
  EXPECT_EQ(fake.reloads.load(), 0);
  res = client.send(http::verb::post, "/reload", "", true, "Bearer s3cr3t");
  EXPECT_EQ(res.result(), http::status::ok);
  EXPECT_EQ(fake.reloads.load(), 1);
  // A reload may rotate the token: the old one stops working at once.
  server.set_token("n3w");
  EXPECT_EQ(client.send(http::verb::post, "/reload", "", true, "Bearer s3cr3t").result(),
            http::status::unauthorized);
  EXPECT_EQ(client.send(http::verb::post, "/reload", "", true, "Bearer n3w").result(),
            http::status::ok);
  // Without a token nothing is asked for (the default).
  server.set_token("");
  EXPECT_EQ(client.send(http::verb::post, "/reload").result(), http::status::ok);
}

TEST(AdminAccess, OffLoopbackEveryEndpointNeedsTheToken) {
  Fake fake;
  // Bound to the wildcard address, reached through loopback: the bound address decides.
  EXPECT_THROW(AdminServer("0.0.0.0", 0, fake.handlers()), std::invalid_argument);
  AdminServer server("0.0.0.0", 0, fake.handlers(), "s3cr3t");
  server.start();
  EXPECT_FALSE(server.loopback());
  Client client(server.port());
  for (const char* target : {"/healthz", "/metrics", "/stats", "/config", "/", "/nope"}) {
    const Response res = client.get(target);
    EXPECT_EQ(res.result(), http::status::unauthorized) << target;
    EXPECT_EQ(res[http::field::www_authenticate], "Bearer realm=\"bulwark-admin\"") << target;
  }
  EXPECT_EQ(client.send(http::verb::get, "/stats", "", true, "Bearer s3cr3t").result(),
            http::status::ok);
  EXPECT_EQ(client.send(http::verb::get, "/nope", "", true, "Bearer s3cr3t").result(),
            http::status::not_found);
  EXPECT_EQ(fake.stats_calls.load(), 1);
  EXPECT_THROW(server.set_token(""), std::invalid_argument);
  EXPECT_EQ(client.send(http::verb::get, "/healthz", "", true, "Bearer s3cr3t").result(),
            http::status::ok);
}

}  // namespace
}  // namespace bulwark::gateway::admin
