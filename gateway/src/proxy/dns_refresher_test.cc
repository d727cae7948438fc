#include "proxy/dns_refresher.h"

#include <gtest/gtest.h>

#include <future>
#include <map>
#include <mutex>

#include "bulwark/observe/sink.h"
#include "bulwark/testing/manual_clock.h"

namespace bulwark::gateway::proxy {
namespace {

using namespace std::chrono_literals;
using boost::asio::ip::make_address;

config::Config parse(const std::string& clusters) {
  return config::parse(
      "listeners:\n  - {name: public, listen: 127.0.0.1:8080}\nclusters:\n" + clusters, "test.yaml",
      [](const std::string&) -> std::optional<std::string> { return std::nullopt; });
}

// A resolver the test scripts: each host answers what the test says, and lookups are counted.
struct FakeDns {
  std::mutex mu;
  std::map<std::string, route::DnsAnswer> answers;
  std::map<std::string, int> lookups;

  void set(const std::string& host, std::initializer_list<const char*> ips) {
    route::DnsAnswer a;
    for (const char* ip : ips) a.addresses.push_back(make_address(ip));
    std::lock_guard lock(mu);
    answers[host] = a;
  }
  void fail(const std::string& host, const std::string& why) {
    std::lock_guard lock(mu);
    answers[host] = route::DnsAnswer{{}, why};
  }
  int count(const std::string& host) {
    std::lock_guard lock(mu);
    return lookups[host];
  }
  Resolve resolver() {
    return [this](const std::string& host, uint16_t) {
      std::lock_guard lock(mu);
      ++lookups[host];
      const auto it = answers.find(host);
      return it != answers.end() ? it->second : route::DnsAnswer{{}, "Name or service not known"};
    };
  }
};

double sample(bulwark::observe::Registry& registry, std::string_view name,
              bulwark::observe::Labels labels) {
  bulwark::observe::SnapshotSink sink;
  registry.collect(sink);
  const auto* s = sink.find(name, labels);
  return s != nullptr ? s->value : -1;
}

std::vector<std::string> texts(const route::IpAddresses& ips) {
  std::vector<std::string> out;
  for (const auto& ip : ips) out.push_back(ip.to_string());
  return out;
}

TEST(DnsRefresher, NamesAreLookedUpWhenFollowedAndWhenDue) {
  testing::ManualClock clock;
  bulwark::observe::Registry registry;
  FakeDns dns;
  dns.set("api.example", {"10.0.0.2", "10.0.0.1"});
  DnsRefresher refresher(clock, registry, {}, {.resolve = dns.resolver()});
  const auto unresolved = refresher.follow(
      parse("  - {name: a, endpoints: [api.example:443, 10.0.0.9:80], dns_refresh: 10s}\n"));
  EXPECT_TRUE(unresolved.empty());
  EXPECT_EQ(dns.count("api.example"), 1);
  EXPECT_EQ(texts(refresher.resolved().at("api.example:443")),
            (std::vector<std::string>{"10.0.0.1", "10.0.0.2"}));

  EXPECT_TRUE(refresher.refresh_due().empty());  // not due yet
  EXPECT_EQ(dns.count("api.example"), 1);
  clock.advance(10s);
  dns.set("api.example", {"10.0.0.1", "10.0.0.3"});
  EXPECT_EQ(refresher.refresh_due(), std::vector<std::string>{"api.example:443"});
  EXPECT_EQ(texts(refresher.resolved().at("api.example:443")),
            (std::vector<std::string>{"10.0.0.1", "10.0.0.3"}));
  clock.advance(10s);
  EXPECT_TRUE(refresher.refresh_due().empty());  // the same set: nothing changed
  EXPECT_EQ(dns.count("api.example"), 3);
  EXPECT_EQ(sample(registry, "bulwark_dns_resolutions_total",
                   {{"cluster", "a"}, {"endpoint", "api.example:443"}, {"result", "success"}}),
            3);
  EXPECT_EQ(sample(registry, "bulwark_dns_addresses", {{"endpoint", "api.example:443"}}), 2);
  EXPECT_EQ(sample(registry, "bulwark_dns_changes_total", {{"endpoint", "api.example:443"}}), 2);
}

TEST(DnsRefresher, ANameThatStopsResolvingKeepsItsLastAddresses) {
  testing::ManualClock clock;
  bulwark::observe::Registry registry;
  FakeDns dns;
  dns.set("api.example", {"10.0.0.1"});
  DnsRefresher refresher(clock, registry, {}, {.resolve = dns.resolver()});
  refresher.follow(parse("  - {name: a, endpoints: [api.example:443], dns_refresh: 10s}\n"));
  clock.advance(10s);
  dns.fail("api.example", "Temporary failure in name resolution");
  EXPECT_TRUE(refresher.refresh_due().empty());
  EXPECT_EQ(texts(refresher.resolved().at("api.example:443")),
            std::vector<std::string>{"10.0.0.1"});
  const auto status = refresher.status("a");
  ASSERT_EQ(status.size(), 1u);
  EXPECT_EQ(status[0].addresses, std::vector<std::string>{"10.0.0.1"});
  EXPECT_EQ(status[0].last_error, "Temporary failure in name resolution");
  EXPECT_EQ(status[0].consecutive_failures, 1u);
  EXPECT_EQ(sample(registry, "bulwark_dns_resolutions_total",
                   {{"endpoint", "api.example:443"}, {"result", "failure"}}),
            1);
  // Tried again after 1s, not after the whole refresh interval.
  clock.advance(999ms);
  EXPECT_TRUE(refresher.refresh_due().empty());
  EXPECT_EQ(dns.count("api.example"), 2);
  clock.advance(1ms);
  dns.set("api.example", {"10.0.0.1"});
  EXPECT_TRUE(refresher.refresh_due().empty());  // back, with the same set
  EXPECT_EQ(dns.count("api.example"), 3);
  EXPECT_EQ(refresher.status("a")[0].last_error, "");
}

TEST(DnsRefresher, ANameUnresolvedAtStartIsReportedAndRetried) {
  testing::ManualClock clock;
  bulwark::observe::Registry registry;
  FakeDns dns;
  dns.set("up.example", {"10.0.0.1"});
  DnsRefresher refresher(clock, registry, {}, {.resolve = dns.resolver()});
  const auto unresolved =
      refresher.follow(parse("  - {name: a, endpoints: [up.example:80, down.example:80]}\n"));
  EXPECT_EQ(unresolved, std::vector<std::string>{"down.example:80"});
  EXPECT_FALSE(refresher.resolved().contains("down.example:80"));
  EXPECT_EQ(sample(registry, "bulwark_dns_addresses", {{"endpoint", "down.example:80"}}), 0);
  clock.advance(1s);
  dns.set("down.example", {"10.0.0.2"});
  EXPECT_EQ(refresher.refresh_due(), std::vector<std::string>{"down.example:80"});
  EXPECT_TRUE(refresher.resolved().contains("down.example:80"));
  EXPECT_EQ(dns.count("up.example"), 1);  // not due
}

TEST(DnsRefresher, ALookupWithoutAnAnswerCountsAsFailedAndIsNotWaitedFor) {
  testing::ManualClock clock;
  bulwark::observe::Registry registry;
  auto release = std::make_shared<std::promise<void>>();
  std::shared_future<void> released = release->get_future().share();
  DnsRefresher refresher(clock, registry, {},
                         {.resolve =
                              [released](const std::string&, uint16_t) {
                                released.wait();
                                return route::DnsAnswer{{make_address("10.0.0.1")}, ""};
                              },
                          .lookup_timeout = 1ms});
  const auto unresolved = refresher.follow(parse("  - {name: a, endpoints: [slow.example:80]}\n"));
  EXPECT_EQ(unresolved, std::vector<std::string>{"slow.example:80"});
  EXPECT_EQ(refresher.status("a")[0].last_error, "no answer within 1ms");
  release->set_value();  // the abandoned lookup ends; its answer is dropped
}

}  // namespace
}  // namespace bulwark::gateway::proxy
