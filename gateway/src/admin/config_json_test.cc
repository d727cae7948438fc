#include "admin/config_json.h"

#include <gtest/gtest.h>

#include <optional>
#include <string>

#include "config/units.h"

namespace bulwark::gateway::admin {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

std::optional<std::string> test_env(const std::string& name) {
  if (name == "REDIS_PASSWORD") return std::string("hunter2-very-secret");
  return std::nullopt;
}

config::Config parse(const std::string& yaml) { return config::parse(yaml, "test.yaml", test_env); }

const char* kMinimal = R"(
listeners:
  - {name: public, listen: 127.0.0.1:8080}
routes:
  - {name: api, cluster: backend}
clusters:
  - {name: backend, endpoints: [127.0.0.1:9001]}
)";

// The design's example file (a few values changed so that every unit form shows up).
const char* kFull = R"(
workers: 3
admin: {listen: 127.0.0.1:9901}
listeners:
  - name: public
    listen: 127.0.0.1:8080
    limits: {max_header_bytes: 8KiB, max_headers: 100, max_uri_bytes: 2KiB, max_body_bytes: 100MiB,
             max_connections: 10000, max_concurrent_requests: 1000}
    timeouts: {header_read: 1500ms, idle: 60s, request: 30s}
    rate_limit: {per_client: {rate: 6000/m, burst: 200}}
routes:
  - name: api
    match: {path_prefix: /v1, host: "*.example.com", methods: [GET, HEAD, POST]}
    cluster: backend
    fallback: [backup]
    timeouts: {request: 30s, per_try: 5s, stream_idle: 30s, stream_total: 10m}
    retry: {attempts: 3, on: [connect-failure, reset, per-try-timeout, 502, 503, 504],
            backoff: {base: 25ms, max: 250ms, jitter: full},
            budget: {ratio: 0.2, min_per_second: 10}}
    rate_limit: {key: "header:x-api-key", rate: 30/m, burst: 20, scope: global}
    cache: {ttl: 60s, max_entry_bytes: 1MiB}
    stream: {max_chunk_bytes: 64KiB, max_bytes: 1GiB}
    hedge: {delay: 50ms, max_attempts: 2}
clusters:
  - name: backend
    endpoints: [127.0.0.1:9001, "[::1]:9002"]
    lb: least_request
    connect_timeout: 1s
    pool: {max_per_endpoint: 64, max_idle: 16, idle_timeout: 90s}
    max_concurrent_requests: 1000
    circuit_breaker: {window: {type: time, size: 30s}, min_calls: 20, failure_rate: 50%,
                      slow_call: {duration: 2s, rate: 80%}, consecutive_failures: 5,
                      open: {duration: 30s, multiplier: 2, max: 5m},
                      half_open: {probes: 3, success_threshold: 2, max_wait: 10s}}
    outlier_detection: {consecutive_5xx: 5, base_ejection: 30s, max_ejection_percent: 50}
    health_check: {path: /healthz, interval: 5s, timeout: 1s, healthy_threshold: 2,
                   unhealthy_threshold: 3}
  - name: backup
    endpoints: [127.0.0.1:9003]
cache: {max_bytes: 256MiB, max_entries: 100000}
redis: {address: "ops@redis.internal:6379", timeout: 5ms, on_failure: deny,
        password: "${REDIS_PASSWORD}"}
overload: {memory_limit: 1GiB}
alerts: [{name: high_5xx, metric: bulwark_requests_5xx_ratio, op: ">", threshold: 0.05, for: 60s,
          severity: critical}]
logging: {level: warn, access: {path: /var/log/bulwark/access.log, format: json}}
shutdown: {drain_timeout: 5s}
)";

TEST(ConfigJson, MinimalFileShowsEveryDefault) {
  const json j = config_to_json(parse(kMinimal));
  EXPECT_GE(j.at("workers").get<uint32_t>(), 1u);  // 0 in the file: one per core
  EXPECT_EQ(j.at("admin").at("listen"), "127.0.0.1:9901");

  const json& l = j.at("listeners").at(0);
  EXPECT_EQ(l.at("name"), "public");
  EXPECT_EQ(l.at("listen"), "127.0.0.1:8080");
  EXPECT_EQ(l.at("limits").at("max_header_bytes"), 8 * 1024);
  EXPECT_EQ(l.at("limits").at("max_headers"), 100);
  EXPECT_EQ(l.at("limits").at("max_uri_bytes"), 2 * 1024);
  EXPECT_EQ(l.at("limits").at("max_body_bytes"), 100 * 1024 * 1024);
  EXPECT_EQ(l.at("limits").at("max_connections"), 10000);
  EXPECT_EQ(l.at("limits").at("max_concurrent_requests"), 1000);
  EXPECT_EQ(l.at("timeouts"), (json{{"header_read", "10s"}, {"idle", "1m"}, {"request", "30s"}}));
  EXPECT_TRUE(l.at("rate_limit").is_null());

  const json& r = j.at("routes").at(0);
  EXPECT_EQ(r.at("match"), (json{{"path_prefix", "/"}, {"host", "*"}, {"methods", json::array()}}));
  EXPECT_EQ(r.at("cluster"), "backend");
  EXPECT_EQ(r.at("fallback"), json::array());
  EXPECT_EQ(r.at("timeouts").at("request"), "30s");
  EXPECT_TRUE(r.at("timeouts").at("per_try").is_null());
  EXPECT_TRUE(r.at("timeouts").at("first_byte").is_null());
  EXPECT_EQ(r.at("timeouts").at("stream_idle"), "30s");
  EXPECT_EQ(r.at("timeouts").at("stream_total"), "10m");
  EXPECT_EQ(r.at("stream"), (json{{"max_chunk_bytes", 64 * 1024}, {"max_bytes", 1 << 30}}));
  for (const char* off : {"retry", "rate_limit", "cache", "hedge"}) {
    EXPECT_TRUE(r.at(off).is_null()) << off;
  }

  const json& c = j.at("clusters").at(0);
  EXPECT_EQ(c.at("endpoints"), (json{"127.0.0.1:9001"}));
  EXPECT_EQ(c.at("lb"), "round_robin");
  EXPECT_EQ(c.at("connect_timeout"), "1s");
  EXPECT_EQ(c.at("pool"),
            (json{{"max_per_endpoint", 1024}, {"max_idle", 256}, {"idle_timeout", "1m"}}));
  EXPECT_EQ(c.at("max_concurrent_requests"), 1000);
  for (const char* off : {"circuit_breaker", "outlier_detection", "health_check"}) {
    EXPECT_TRUE(c.at(off).is_null()) << off;
  }

  EXPECT_EQ(j.at("cache"), (json{{"max_bytes", 256 * 1024 * 1024}, {"max_entries", 100000}}));
  EXPECT_TRUE(j.at("redis").is_null());
  EXPECT_TRUE(j.at("overload").at("memory_limit").is_null());
  EXPECT_EQ(j.at("alerts"), json::array());
  EXPECT_EQ(j.at("logging"),
            (json{{"level", "info"}, {"access", {{"path", "stdout"}, {"format", "json"}}}}));
  EXPECT_EQ(j.at("shutdown").at("drain_timeout"), "30s");
}

TEST(ConfigJson, EveryValueOfAFullFileInTheFilesUnits) {
  const json j = config_to_json(parse(kFull));
  EXPECT_EQ(j.at("workers"), 3);
  const json& l = j.at("listeners").at(0);
  EXPECT_EQ(l.at("timeouts").at("header_read"), "1500ms");
  EXPECT_EQ(l.at("rate_limit"), (json{{"per_client", {{"rate", "100/s"}, {"burst", 200}}}}));

  const json& r = j.at("routes").at(0);
  EXPECT_EQ(r.at("match").at("host"), "*.example.com");
  EXPECT_EQ(r.at("match").at("methods"), (json{"GET", "HEAD", "POST"}));
  EXPECT_EQ(r.at("fallback"), (json{"backup"}));
  EXPECT_EQ(r.at("timeouts").at("per_try"), "5s");
  const json& retry = r.at("retry");
  EXPECT_EQ(retry.at("attempts"), 3);
  EXPECT_EQ(retry.at("on"),
            (json{"connect-failure", "reset", "per-try-timeout", "502", "503", "504"}));
  EXPECT_EQ(retry.at("backoff").at("kind"), "exponential");
  EXPECT_EQ(retry.at("backoff").at("base"), "25ms");
  EXPECT_EQ(retry.at("backoff").at("max"), "250ms");
  EXPECT_EQ(retry.at("backoff").at("jitter"), "full");
  EXPECT_DOUBLE_EQ(retry.at("budget").at("ratio").get<double>(), 0.2);
  EXPECT_EQ(retry.at("non_idempotent"), false);
  EXPECT_EQ(
      r.at("rate_limit"),
      (json{{"key", "header:x-api-key"}, {"rate", "30/m"}, {"burst", 20}, {"scope", "global"}}));
  EXPECT_EQ(r.at("cache"),
            (json{{"ttl", "1m"}, {"max_entry_bytes", 1 << 20}, {"stale_if_error", "0s"}}));
  EXPECT_EQ(r.at("hedge"), (json{{"delay", "50ms"}, {"max_attempts", 2}}));

  const json& c = j.at("clusters").at(0);
  EXPECT_EQ(c.at("endpoints"), (json{"127.0.0.1:9001", "[::1]:9002"}));
  EXPECT_EQ(c.at("lb"), "least_request");
  EXPECT_EQ(c.at("pool").at("idle_timeout"), "90s");
  const json& cb = c.at("circuit_breaker");
  EXPECT_EQ(cb.at("window"), (json{{"type", "time"}, {"size", "30s"}}));
  EXPECT_EQ(cb.at("failure_rate"), "50%");
  EXPECT_EQ(cb.at("slow_call"), (json{{"duration", "2s"}, {"rate", "80%"}}));
  EXPECT_EQ(cb.at("open"), (json{{"duration", "30s"}, {"multiplier", 2.0}, {"max", "5m"}}));
  EXPECT_EQ(cb.at("half_open"),
            (json{{"probes", 3}, {"success_threshold", 2}, {"max_wait", "10s"}}));
  EXPECT_EQ(
      c.at("outlier_detection"),
      (json{{"consecutive_5xx", 5}, {"base_ejection", "30s"}, {"max_ejection_percent", "50%"}}));
  EXPECT_EQ(c.at("health_check").at("path"), "/healthz");
  EXPECT_EQ(c.at("health_check").at("interval"), "5s");

  EXPECT_EQ(j.at("redis").at("timeout"), "5ms");
  EXPECT_EQ(j.at("redis").at("on_failure"), "deny");
  EXPECT_EQ(j.at("overload").at("memory_limit"), 1 << 30);
  EXPECT_EQ(j.at("alerts").at(0), (json{{"name", "high_5xx"},
                                        {"metric", "bulwark_requests_5xx_ratio"},
                                        {"op", ">"},
                                        {"threshold", 0.05},
                                        {"for", "1m"},
                                        {"severity", "critical"}}));
  EXPECT_EQ(j.at("logging").at("level"), "warn");
  EXPECT_EQ(j.at("logging").at("access").at("path"), "/var/log/bulwark/access.log");
  EXPECT_EQ(j.at("shutdown").at("drain_timeout"), "5s");
}

void drop_nulls(json& j) {
  if (j.is_object()) {
    for (auto it = j.begin(); it != j.end();) {
      if (it->is_null()) {
        it = j.erase(it);
      } else {
        drop_nulls(*it);
        ++it;
      }
    }
  } else if (j.is_array()) {
    for (json& child : j) drop_nulls(child);
  }
}

// The output uses the file's key names and units: fed back to the loader (JSON is YAML), it
// describes the same configuration.
TEST(ConfigJson, OutputLoadsBackAsTheSameConfiguration) {
  for (const char* yaml : {kMinimal, kFull}) {
    const json first = config_to_json(parse(yaml));
    json fed = first;
    drop_nulls(fed);
    json expected = first;
    if (fed.contains("redis")) {  // the redacted address is not a loadable one
      fed["redis"]["address"] = "127.0.0.1:6379";
      expected["redis"]["address"] = "127.0.0.1:6379";
    }
    const json second = config_to_json(parse(fed.dump()));
    EXPECT_EQ(second, expected) << "input:\n" << yaml;
  }
}

TEST(ConfigJson, EveryDurationReadsBackExactly) {
  config::Config c = parse(kMinimal);
  const Duration cases[] = {0ns, 1ns, 1500ns, 2us, 250ms, 1500ms, 5s, 90s, 2min, 90min, 3h};
  for (const Duration d : cases) {
    c.routes[0].timeouts.request = d;
    const std::string text = config_to_json(c)["routes"][0]["timeouts"]["request"];
    EXPECT_EQ(config::parse_duration(text), d) << text;
  }
}

TEST(ConfigJson, RedisPasswordAndAddressUserinfoAreRedacted) {
  const json j = config_to_json(parse(kFull));
  EXPECT_EQ(j.at("redis").at("password"), "<redacted>");
  EXPECT_EQ(j.at("redis").at("address"), "<redacted>@redis.internal:6379");
  const std::string text = j.dump();
  EXPECT_EQ(text.find("hunter2"), std::string::npos);
  EXPECT_EQ(text.find("ops@"), std::string::npos);
}

TEST(ConfigJson, UserinfoWithPasswordInAnyAddressIsRedacted) {
  config::Config c = parse(kMinimal);
  c.redis = config::RedisSpec{};
  c.redis->address = config::Address{"user:p@ss@cache.internal", 6380};
  c.clusters[0].endpoints.push_back(config::Address{"admin:pw@10.0.0.1", 8080});
  const json j = config_to_json(c);
  EXPECT_EQ(j.at("redis").at("address"), "<redacted>@cache.internal:6380");
  EXPECT_EQ(j.at("clusters").at(0).at("endpoints").at(1), "<redacted>@10.0.0.1:8080");
  EXPECT_EQ(j.at("redis").at("password"), "");  // nothing set: nothing to hide
  const std::string text = j.dump();
  EXPECT_EQ(text.find("p@ss"), std::string::npos);
  EXPECT_EQ(text.find("pw@"), std::string::npos);
}

TEST(ConfigJson, RedactHidesSensitiveKeysAtAnyDepth) {
  json doc = {
      {"Password", "a"},
      {"nested",
       {{"client_secret", "b"}, {"list", {{{"API_KEY", "c"}}, {{"auth_token", {{"x", 1}}}}}}}},
      {"headers", {{"Authorization", "Bearer d"}, {"accept", "text/plain"}}},
      {"db_password", ""},
      {"token_file", nullptr},
      {"name", "password-manager"},
  };
  redact(doc);
  EXPECT_EQ(doc["Password"], "<redacted>");
  EXPECT_EQ(doc["nested"]["client_secret"], "<redacted>");
  EXPECT_EQ(doc["nested"]["list"][0]["API_KEY"], "<redacted>");
  EXPECT_EQ(doc["nested"]["list"][1]["auth_token"], "<redacted>");  // whole object replaced
  EXPECT_EQ(doc["headers"]["Authorization"], "<redacted>");
  EXPECT_EQ(doc["headers"]["accept"], "text/plain");
  EXPECT_EQ(doc["db_password"], "");  // empty: nothing to hide
  EXPECT_TRUE(doc["token_file"].is_null());
  EXPECT_EQ(doc["name"], "password-manager");  // values are not keys
}

TEST(ConfigJson, RedactRemovesUserinfoFromUrlsAndAddresses) {
  json doc = {
      {"upstream", "https://alice:s3cret@example.com:8443/path?q=a@b#frag"},
      {"plain_url", "http://example.com/a@b"},
      {"redis", {{"address", "user:pw@redis:6379"}}},
      {"listen", "127.0.0.1:80"},
      {"endpoints", {"u@10.0.0.1:80", "10.0.0.2:80"}},
      {"contact", "ops@example.com"},
  };
  redact(doc);
  EXPECT_EQ(doc["upstream"], "https://<redacted>@example.com:8443/path?q=a@b#frag");
  EXPECT_EQ(doc["plain_url"], "http://example.com/a@b");  // '@' in the path is not userinfo
  EXPECT_EQ(doc["redis"]["address"], "<redacted>@redis:6379");
  EXPECT_EQ(doc["listen"], "127.0.0.1:80");
  EXPECT_EQ(doc["endpoints"], (json{"<redacted>@10.0.0.1:80", "10.0.0.2:80"}));
  EXPECT_EQ(doc["contact"], "ops@example.com");  // not an address key
}

TEST(ConfigJson, AdminTokenIsRedacted) {
  config::Config c = parse(kMinimal);
  EXPECT_TRUE(config_to_json(c).at("admin").at("token").is_null());
  c.admin_token = "0123456789abcdef-admin";
  const json j = config_to_json(c);
  EXPECT_EQ(j.at("admin").at("token"), "<redacted>");
  EXPECT_EQ(j.dump().find("0123456789abcdef"), std::string::npos);
  EXPECT_EQ(j.at("clusters").at(0).at("dns_refresh"), "30s");
}

}  // namespace
}  // namespace bulwark::gateway::admin
