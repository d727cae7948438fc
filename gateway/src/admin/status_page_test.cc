#include <gtest/gtest.h>

#include <string>
#include <string_view>

#include "admin/admin_server.h"

namespace bulwark::gateway::admin {
namespace {

using nlohmann::json;

std::size_t count(std::string_view text, std::string_view what) {
  std::size_t n = 0;
  for (auto pos = text.find(what); pos != std::string_view::npos;
       pos = text.find(what, pos + what.size())) {
    ++n;
  }
  return n;
}

// A complete document with balanced table markup.
void expect_well_formed(const std::string& page) {
  EXPECT_EQ(page.rfind("<!DOCTYPE html>", 0), 0u);
  EXPECT_NE(page.find("</html>"), std::string::npos);
  EXPECT_EQ(count(page, "<table"), count(page, "</table>"));
  EXPECT_EQ(count(page, "<tr>"), count(page, "</tr>"));
  EXPECT_EQ(count(page, "<td"), count(page, "</td>"));
}

json sample_stats() {
  return {
      {"version", "0.3.0"},
      {"uptime_seconds", 3723},
      {"generation", 4},
      {"workers", 2},
      {"draining", false},
      {"listeners",
       {{{"name", "public"},
         {"address", "127.0.0.1:8080"},
         {"connections_active", 12},
         {"connections_total", 340.0},
         {"requests_active", 3}}}},
      {"routes",
       {{{"name", "api"},
         {"cluster", "backend"},
         {"requests", {{"1xx", 0}, {"2xx", 950}, {"3xx", 10}, {"4xx", 30}, {"5xx", 10}}},
         {"p50_ms", 12.5},
         {"p99_ms", 250}}}},
      {"reloads", {{"success", 3}, {"failure", 1}, {"last_error", "bad.yaml:1:1: x: broken"}}},
      {"access_log", {{"written", 990}, {"dropped", 0}}},
  };
}

json sample_clusters() {
  return json::array({{{"name", "backend"},
                       {"lb", "round_robin"},
                       {"requests_active", 64},
                       {"queued", 7},
                       {"queue_estimated_wait_ms", 120},
                       {"endpoints",
                        {{{"address", "127.0.0.1:9001"},
                          {"requests_active", 2},
                          {"pool_idle", 5},
                          {"pool_busy", 2},
                          {"requests_total", 1000},
                          {"connect_failures", 1},
                          {"health", "healthy"},
                          {"breaker", "closed"}},
                         {{"address", "127.0.0.1:9002"},
                          {"requests_active", 0},
                          {"pool_idle", 0},
                          {"pool_busy", 0},
                          {"requests_total", 17},
                          {"connect_failures", 9},
                          {"health", "unhealthy"},
                          {"breaker", "open"}}}}}});
}

TEST(StatusPage, ShowsListenersRoutesClustersAndEndpoints) {
  const std::string page = render_status_page(sample_stats(), sample_clusters());
  expect_well_formed(page);
  EXPECT_NE(page.find("bulwark 0.3.0"), std::string::npos);
  EXPECT_NE(page.find("1h 02m 03s"), std::string::npos);  // uptime
  EXPECT_NE(page.find("serving"), std::string::npos);
  // listeners
  EXPECT_NE(page.find("990 written, 0 dropped"), std::string::npos);
  EXPECT_NE(page.find("<td>public</td><td>127.0.0.1:8080</td><td>12</td><td>340</td><td>3</td>"),
            std::string::npos);
  // routes: per-class counts, the total, latencies
  EXPECT_NE(page.find("<td>api</td><td class=\"text\">backend</td>"), std::string::npos);
  EXPECT_NE(page.find("<td>0</td><td>950</td><td>10</td><td>30</td><td class=\"bad\">10</td>"
                      "<td>1000</td><td>12.5 ms</td><td>250 ms</td>"),
            std::string::npos);
  // clusters and endpoints, with health and breaker states coloured
  EXPECT_NE(page.find("<h3>backend <small>(round_robin)</small></h3>"), std::string::npos);
  EXPECT_NE(page.find("<p>in flight 64, queued 7, estimated wait 120 ms</p>"), std::string::npos);
  EXPECT_NE(page.find("127.0.0.1:9001"), std::string::npos);
  EXPECT_NE(page.find("<td class=\"good\">healthy</td><td class=\"good\">closed</td>"),
            std::string::npos);
  EXPECT_NE(page.find("<td class=\"bad\">unhealthy</td><td class=\"bad\">open</td>"),
            std::string::npos);
  // reloads
  EXPECT_NE(page.find("bad.yaml:1:1: x: broken"), std::string::npos);
}

TEST(StatusPage, TheRedisOfGlobalLimitsIsShownWhenConfigured) {
  EXPECT_EQ(render_status_page(sample_stats(), sample_clusters()).find("Redis"), std::string::npos);
  json stats = sample_stats();
  stats["redis"] = {{"address", "127.0.0.1:6379"},
                    {"connections_up", 2},
                    {"breaker", "open"},
                    {"round_trip_p99_ms", 0.25},
                    {"errors", {{"connect", 0}, {"timeout", 3}}}};
  const std::string page = render_status_page(stats, sample_clusters());
  expect_well_formed(page);
  EXPECT_NE(page.find("<h2>Redis (global rate limits)</h2>"), std::string::npos);
  EXPECT_NE(page.find("<td class=\"text\">127.0.0.1:6379</td><td>2</td><td class=\"bad\">open"
                      "</td><td>0.25 ms</td><td class=\"warn\">timeout 3</td>"),
            std::string::npos)
      << page;
}

TEST(StatusPage, TlsHandshakesAndAuthenticationResultsAreShownWhereConfigured) {
  json stats = sample_stats();
  EXPECT_EQ(render_status_page(stats, sample_clusters()).find("<h2>TLS</h2>"), std::string::npos);
  stats["listeners"][0]["tls"] = {{"handshakes", {{"ok", 40}, {"timeout", 2}, {"other", 0}}},
                                  {"TLSv1.2", 5},
                                  {"TLSv1.3", 35}};
  stats["routes"][0]["auth"] = {{"ok", 7}, {"jwt_expired", 1}, {"jwt_missing", 0}};
  const std::string page = render_status_page(stats, sample_clusters());
  expect_well_formed(page);
  EXPECT_NE(page.find("<td>public</td><td class=\"warn\">ok 40, timeout 2</td><td>5</td>"
                      "<td>35</td>"),
            std::string::npos)
      << page;
  EXPECT_NE(page.find("<h2>Authentication</h2>"), std::string::npos);
  EXPECT_NE(page.find("<td>api</td><td class=\"warn\">jwt_expired 1, ok 7</td>"),
            std::string::npos)
      << page;
}

TEST(StatusPage, DrainingIsShown) {
  json stats = sample_stats();
  stats["draining"] = true;
  const std::string page = render_status_page(stats, sample_clusters());
  EXPECT_NE(page.find("<td class=\"bad\">draining</td>"), std::string::npos);
}

TEST(StatusPage, EscapesEveryStringFromTheDocuments) {
  const std::string evil = "<script>alert(\"x\" & 'y')</script>";
  json stats = sample_stats();
  stats["version"] = evil;
  stats["listeners"][0]["name"] = evil;
  stats["listeners"][0]["address"] = evil;
  stats["routes"][0]["name"] = evil;
  stats["routes"][0]["cluster"] = evil;
  stats["reloads"]["last_error"] = evil;
  json clusters = sample_clusters();
  clusters[0]["name"] = evil;
  clusters[0]["lb"] = evil;
  clusters[0]["endpoints"][0]["address"] = evil;
  clusters[0]["endpoints"][0]["health"] = evil;
  clusters[0]["endpoints"][0]["breaker"] = evil;
  clusters[0]["endpoints"][1]["requests_total"] = json{{"k", evil}};  // not even a number
  const std::string page = render_status_page(stats, clusters);
  EXPECT_EQ(page.find("<script"), std::string::npos);
  EXPECT_EQ(page.find("alert(\""), std::string::npos);
  EXPECT_EQ(page.find("'y'"), std::string::npos);
  const std::string escaped = "&lt;script&gt;alert(&quot;x&quot; &amp; &#39;y&#39;)&lt;/script&gt;";
  EXPECT_GE(count(page, escaped), 11u);
  // an unknown state never becomes a CSS class of its own
  EXPECT_NE(page.find("<td class=\"unknown\">" + escaped + "</td>"), std::string::npos);
  expect_well_formed(page);
}

TEST(StatusPage, SurvivesEmptyAndMissingDocuments) {
  for (const json& stats : {json(), json::object(), json::array(), json("text"), json(42)}) {
    for (const json& clusters : {json(), json::array(), json::object(), json("text")}) {
      const std::string page = render_status_page(stats, clusters);
      expect_well_formed(page);
      EXPECT_NE(page.find("no listeners reported"), std::string::npos);
      EXPECT_NE(page.find("no routes reported"), std::string::npos);
      EXPECT_NE(page.find("no clusters reported"), std::string::npos);
    }
  }
}

TEST(StatusPage, MissingAndMistypedFieldsPrintAsDashes) {
  const json stats = {
      {"listeners", {json::object(), 7, {{"name", "only-name"}}}},
      {"routes", {{{"name", "r1"}}, {{"name", "r2"}, {"requests", "many"}}, nullptr}},
      {"reloads", "none"},
      {"uptime_seconds", -5},
  };
  const json clusters = {
      {{"name", "c1"}},                                // no endpoints
      {{"name", "c2"}, {"endpoints", json::array()}},  // empty
      {{"name", "c3"}, {"endpoints", {json::object(), "x", {{"address", "10.0.0.1:80"}}}}},
      "not an object",
  };
  const std::string page = render_status_page(stats, clusters);
  expect_well_formed(page);
  EXPECT_NE(page.find("<td>only-name</td><td>-</td><td>-</td><td>-</td><td>-</td>"),
            std::string::npos);
  EXPECT_NE(page.find("<td>r1</td><td class=\"text\">-</td><td>-</td>"), std::string::npos);
  EXPECT_NE(page.find("<h3>c1</h3><p class=\"empty\">no endpoints reported</p>"),
            std::string::npos);
  EXPECT_NE(page.find("<h3>c2</h3><p class=\"empty\">no endpoints reported</p>"),
            std::string::npos);
  EXPECT_NE(page.find("<td>10.0.0.1:80</td>"), std::string::npos);
  EXPECT_EQ(page.find("Config reloads"), std::string::npos);  // "none" is not a reloads object
}

}  // namespace
}  // namespace bulwark::gateway::admin
