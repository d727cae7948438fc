#include "route/dns.h"

#include <gtest/gtest.h>

#include "bulwark/testing/manual_clock.h"

namespace bulwark::gateway::route {
namespace {

using namespace std::chrono_literals;
using boost::asio::ip::make_address;

config::Config parse(const std::string& clusters) {
  return config::parse(
      "listeners:\n  - {name: public, listen: 127.0.0.1:8080}\nclusters:\n" + clusters, "test.yaml",
      [](const std::string&) -> std::optional<std::string> { return std::nullopt; });
}

DnsAnswer ok(std::initializer_list<const char*> ips) {
  DnsAnswer a;
  for (const char* ip : ips) a.addresses.push_back(make_address(ip));
  return a;
}

DnsAnswer failed(const char* why) { return DnsAnswer{{}, why}; }

TEST(Dns, SetsAreComparedSortedAndWithoutDuplicates) {
  const IpAddresses a = normalized(ok({"10.0.0.2", "10.0.0.1", "::1", "10.0.0.2"}).addresses);
  ASSERT_EQ(a.size(), 3u);
  EXPECT_EQ(a[0].to_string(), "10.0.0.1");
  EXPECT_EQ(a[1].to_string(), "10.0.0.2");
  EXPECT_EQ(a[2].to_string(), "::1");
  EXPECT_EQ(a, normalized(ok({"::1", "10.0.0.2", "10.0.0.1"}).addresses));
  EXPECT_NE(a, normalized(ok({"10.0.0.1", "10.0.0.2"}).addresses));
  EXPECT_EQ(resolved_label({"api.example.com", 443}, make_address("10.0.0.5")),
            "api.example.com:443 (10.0.0.5)");
  EXPECT_EQ(resolved_label({"api.example.com", 443}, make_address("2001:db8::1")),
            "api.example.com:443 (2001:db8::1)");
}

TEST(Dns, OnlyNamesAreWatchedWithTheShortestRefreshOfTheirClusters) {
  testing::ManualClock clock;
  DnsTable table;
  const auto added = table.follow(parse(R"(
  - {name: a, endpoints: [10.0.0.1:80, "[::1]:80", api.example.com:443, localhost:9001]}
  - {name: b, endpoints: [api.example.com:443], dns_refresh: 5s}
)"),
                                  clock.now());
  EXPECT_EQ(added, (std::vector<std::string>{"api.example.com:443", "localhost:9001"}));
  const auto& api = table.entries().at("api.example.com:443");
  EXPECT_EQ(api.refresh, 5s);
  EXPECT_EQ(api.clusters, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(table.entries().at("localhost:9001").refresh, 30s);
  EXPECT_EQ(table.due(clock.now()).size(), 2u);  // new names are due at once
  EXPECT_TRUE(table.resolved().empty());

  DnsTable literals;
  EXPECT_TRUE(
      literals.follow(parse("  - {name: a, endpoints: [10.0.0.1:80]}\n"), clock.now()).empty());
  EXPECT_TRUE(literals.empty());
  EXPECT_FALSE(literals.next_due());
}

TEST(Dns, ASuccessReplacesTheSetAndSaysWhetherItChanged) {
  testing::ManualClock clock;
  DnsTable table;
  table.follow(parse("  - {name: a, endpoints: [api.example.com:443], dns_refresh: 10s}\n"),
               clock.now());
  const std::string key = "api.example.com:443";
  EXPECT_TRUE(table.record(key, ok({"10.0.0.2", "10.0.0.1"}), clock.now()));  // the first set
  EXPECT_EQ(table.resolved().at(key), normalized(ok({"10.0.0.1", "10.0.0.2"}).addresses));
  EXPECT_TRUE(table.due(clock.now()).empty());
  EXPECT_EQ(table.next_due(), clock.now() + 10s);

  clock.advance(10s);
  EXPECT_EQ(table.due(clock.now()), std::vector<std::string>{key});
  // The same addresses in another order: nothing to rebuild.
  EXPECT_FALSE(table.record(key, ok({"10.0.0.1", "10.0.0.2", "10.0.0.1"}), clock.now()));
  clock.advance(10s);
  EXPECT_TRUE(table.record(key, ok({"10.0.0.1", "10.0.0.3"}), clock.now()));
  EXPECT_EQ(table.resolved().at(key), normalized(ok({"10.0.0.1", "10.0.0.3"}).addresses));
  const auto& e = table.entries().at(key);
  EXPECT_EQ(e.successes, 3u);
  EXPECT_EQ(e.changes, 2u);
  EXPECT_EQ(e.failures_total, 0u);
}

TEST(Dns, AFailureKeepsTheLastGoodSetAndRetriesSooner) {
  testing::ManualClock clock;
  DnsTable table;
  table.follow(parse("  - {name: a, endpoints: [api.example.com:443], dns_refresh: 10s}\n"),
               clock.now());
  const std::string key = "api.example.com:443";
  ASSERT_TRUE(table.record(key, ok({"10.0.0.1"}), clock.now()));
  clock.advance(10s);
  EXPECT_FALSE(table.record(key, failed("Host not found"), clock.now()));
  EXPECT_EQ(table.resolved().at(key), normalized(ok({"10.0.0.1"}).addresses));
  EXPECT_EQ(table.next_due(), clock.now() + 1s);
  clock.advance(1s);
  // An answer without any address is a failure too: the name does not lose its endpoints.
  EXPECT_FALSE(table.record(key, DnsAnswer{}, clock.now()));
  EXPECT_EQ(table.next_due(), clock.now() + 2s);
  const auto& e = table.entries().at(key);
  EXPECT_EQ(e.failures, 2u);
  EXPECT_EQ(e.failures_total, 2u);
  EXPECT_EQ(e.last_error, "no address");
  EXPECT_EQ(table.resolved().at(key), normalized(ok({"10.0.0.1"}).addresses));
  // The same set again after the failures: no change, the failures streak ends.
  clock.advance(2s);
  EXPECT_FALSE(table.record(key, ok({"10.0.0.1"}), clock.now()));
  EXPECT_EQ(e.failures, 0u);
  EXPECT_EQ(e.last_error, "");
  EXPECT_EQ(table.next_due(), clock.now() + 10s);
}

TEST(Dns, ANameThatNeverResolvedHasNoAddressAndBacksOffUpToItsRefresh) {
  testing::ManualClock clock;
  DnsTable table;
  table.follow(parse("  - {name: a, endpoints: [gone.example:80], dns_refresh: 5s}\n"),
               clock.now());
  const std::string key = "gone.example:80";
  std::vector<Duration> delays;
  for (int i = 0; i < 5; ++i) {
    EXPECT_FALSE(table.record(key, failed("Name or service not known"), clock.now()));
    delays.push_back(*table.next_due() - clock.now());
    clock.advance(delays.back());
  }
  EXPECT_EQ(delays, (std::vector<Duration>{1s, 2s, 4s, 5s, 5s}));
  EXPECT_FALSE(table.resolved().contains(key));
  EXPECT_EQ(retry_delay(1, 30s), 1s);
  EXPECT_EQ(retry_delay(5, 30s), 16s);
  EXPECT_EQ(retry_delay(1000, 30s), 30s);
}

TEST(Dns, AReloadAddsNamesKeepsKnownSetsAndForgetsDroppedOnes) {
  testing::ManualClock clock;
  DnsTable table;
  table.follow(parse("  - {name: a, endpoints: [one.example:80, two.example:80]}\n"), clock.now());
  ASSERT_TRUE(table.record("one.example:80", ok({"10.0.0.1"}), clock.now()));
  ASSERT_TRUE(table.record("two.example:80", ok({"10.0.0.2"}), clock.now()));
  clock.advance(3s);
  const config::Config next =
      parse("  - {name: a, endpoints: [one.example:80, three.example:80], dns_refresh: 5s}\n");
  EXPECT_EQ(table.follow(next, clock.now()), std::vector<std::string>{"three.example:80"});
  // The shorter refresh applies from now on; the known set stays.
  EXPECT_EQ(table.entries().at("one.example:80").due, clock.now() + 5s);
  EXPECT_TRUE(table.resolved().contains("one.example:80"));
  EXPECT_TRUE(table.entries().contains("two.example:80"));  // until the reload is in force
  table.forget_others(next);
  EXPECT_FALSE(table.entries().contains("two.example:80"));
  EXPECT_EQ(table.due(clock.now()), std::vector<std::string>{"three.example:80"});
  EXPECT_FALSE(table.record("two.example:80", ok({"10.0.0.9"}), clock.now()));  // unknown
}

}  // namespace
}  // namespace bulwark::gateway::route
