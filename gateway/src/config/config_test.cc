#include "config/config.h"

#include <gtest/gtest.h>

#include <fstream>

#include "filters/jwt/keys.h"

namespace bulwark::gateway::config {
namespace {

using namespace std::chrono_literals;

std::optional<std::string> test_env(const std::string& name) {
  if (name == "UPSTREAM") return std::string("127.0.0.1:9001");
  if (name == "REDIS_PASSWORD") return std::string("s3cret");
  if (name == "JWT_SECRET") return std::string("an-hs256-secret-of-at-least-32-bytes");
  return std::nullopt;
}

Config parse_ok(const std::string& yaml) { return parse(yaml, "test.yaml", test_env); }

// Parses `yaml`, expecting failure, and returns the diagnostics' texts.
std::vector<std::string> errors(const std::string& yaml) {
  try {
    parse(yaml, "test.yaml", test_env);
  } catch (const ConfigError& e) {
    std::vector<std::string> out;
    for (const auto& d : e.diagnostics()) out.push_back(d.text());
    return out;
  }
  ADD_FAILURE() << "expected a ConfigError for:\n" << yaml;
  return {};
}

const char* kMinimal = R"(
listeners:
  - {name: public, listen: 127.0.0.1:8080}
routes:
  - {name: api, cluster: backend}
clusters:
  - {name: backend, endpoints: [127.0.0.1:9001]}
)";

TEST(Config, MinimalFileGetsTheDocumentedDefaults) {
  const Config c = parse_ok(kMinimal);
  EXPECT_EQ(c.workers, 0u);
  EXPECT_EQ(c.admin.text(), "127.0.0.1:9901");
  ASSERT_EQ(c.listeners.size(), 1u);
  const Listener& l = c.listeners[0];
  EXPECT_EQ(l.listen.text(), "127.0.0.1:8080");
  EXPECT_EQ(l.limits.max_header_bytes, 8u * 1024);
  EXPECT_EQ(l.limits.max_headers, 100u);
  EXPECT_EQ(l.limits.max_uri_bytes, 2u * 1024);
  EXPECT_EQ(l.limits.max_body_bytes, 100u << 20);
  EXPECT_EQ(l.timeouts.header_read, 10s);
  EXPECT_EQ(l.timeouts.idle, 60s);
  ASSERT_EQ(c.routes.size(), 1u);
  const Route& r = c.routes[0];
  EXPECT_EQ(r.match.path_prefix, "/");
  EXPECT_EQ(r.match.host, "*");
  EXPECT_TRUE(r.match.methods.empty());
  EXPECT_EQ(r.timeouts.request, 30s);
  EXPECT_FALSE(r.retry.has_value());
  EXPECT_EQ(r.stream.max_chunk_bytes, 64u * 1024);
  ASSERT_EQ(c.clusters.size(), 1u);
  EXPECT_EQ(c.clusters[0].lb, LoadBalancing::round_robin);
  EXPECT_EQ(c.clusters[0].pool.max_per_endpoint, 1024u);
  EXPECT_EQ(c.clusters[0].pool.max_idle, 256u);
  EXPECT_FALSE(c.clusters[0].circuit_breaker.has_value());
  EXPECT_EQ(c.find_cluster("backend"), &c.clusters[0]);
  EXPECT_EQ(c.find_cluster("nope"), nullptr);
  EXPECT_EQ(c.shutdown.drain_timeout, 30s);
}

TEST(Config, ShutdownDrainTimeout) {
  const Config c = parse_ok(std::string(kMinimal) + "shutdown: {drain_timeout: 250ms}\n");
  EXPECT_EQ(c.shutdown.drain_timeout, 250ms);
}

// The design's example file, verbatim apart from the alert metric.
const char* kFull = R"(
workers: 1
admin: {listen: 127.0.0.1:9901}
listeners:
  - name: public
    listen: 127.0.0.1:8080
    limits: {max_header_bytes: 8KiB, max_headers: 100, max_uri_bytes: 2KiB, max_body_bytes: 100MiB,
             max_connections: 10000, max_concurrent_requests: 1000}
    timeouts: {header_read: 10s, idle: 60s, request: 30s}
    rate_limit: {per_client: {rate: 100/s, burst: 200}}
routes:
  - name: api
    match: {path_prefix: /, host: "*", methods: [GET, HEAD, POST]}
    cluster: backend
    fallback: [backup]
    timeouts: {request: 30s, per_try: 5s, stream_idle: 30s, stream_total: 10m}
    retry: {attempts: 3, on: [connect-failure, reset, per-try-timeout, 502, 503, 504],
            backoff: {base: 25ms, max: 250ms, jitter: full}, budget: {ratio: 0.2, min_per_second: 10}}
    rate_limit: {key: client_ip, rate: 10/s, burst: 20, scope: local}
    cache: {ttl: 60s, max_entry_bytes: 1MiB}
    stream: {max_chunk_bytes: 64KiB, max_bytes: 1GiB}
    hedge: {delay: 50ms, max_attempts: 2}
    filters: {block_patterns: {sqli: true, xss: true},
              fault: {abort: {percent: 1, status: 503}, delay: {percent: 5, duration: 200ms}}}
clusters:
  - name: backend
    endpoints: [127.0.0.1:9001]
    lb: round_robin
    connect_timeout: 1s
    pool: {max_per_endpoint: 64, max_idle: 16, idle_timeout: 60s}
    max_concurrent_requests: 1000
    circuit_breaker: {window: {type: count, size: 100}, min_calls: 20, failure_rate: 50%,
                      slow_call: {duration: 2s, rate: 80%}, consecutive_failures: 5,
                      open: {duration: 30s, multiplier: 2, max: 5m},
                      half_open: {probes: 3, success_threshold: 2, max_wait: 10s}}
    outlier_detection: {consecutive_5xx: 5, base_ejection: 30s, max_ejection_percent: 50}
    health_check: {path: /healthz, interval: 5s, timeout: 1s, healthy_threshold: 2, unhealthy_threshold: 3}
  - name: backup
    endpoints: ["${UPSTREAM}"]
cache: {max_bytes: 256MiB, max_entries: 100000}
redis: {address: 127.0.0.1:6379, timeout: 5ms, on_failure: local, password: "${REDIS_PASSWORD}"}
overload: {memory_limit: 1GiB}
alerts: [{name: high_5xx, metric: bulwark_requests_5xx_ratio, op: ">", threshold: 0.05, for: 60s, severity: critical}]
logging: {level: info, access: {path: stdout, format: json}}
)";

TEST(Config, TheDesignExampleLoadsWithEveryValue) {
  const Config c = parse_ok(kFull);
  EXPECT_EQ(c.workers, 1u);
  const Listener& l = c.listeners[0];
  ASSERT_TRUE(l.per_client_rate_limit.has_value());
  EXPECT_DOUBLE_EQ(l.per_client_rate_limit->per_second, 100.0);
  EXPECT_EQ(l.per_client_rate_limit->burst, 200u);
  const Route& r = c.routes[0];
  EXPECT_EQ(r.match.methods, (std::vector<std::string>{"GET", "HEAD", "POST"}));
  EXPECT_EQ(r.fallback, (std::vector<std::string>{"backup"}));
  EXPECT_EQ(r.timeouts.per_try, Duration(5s));
  EXPECT_EQ(r.timeouts.stream_total, 10min);
  ASSERT_TRUE(r.retry.has_value());
  EXPECT_EQ(r.retry->attempts, 3u);
  EXPECT_EQ(r.retry->on.size(), 6u);
  EXPECT_EQ(r.retry->backoff.base, 25ms);
  EXPECT_EQ(r.retry->backoff.max, 250ms);
  EXPECT_EQ(r.retry->backoff.jitter, retry::Jitter::full);
  EXPECT_DOUBLE_EQ(r.retry->budget.ratio, 0.2);
  ASSERT_TRUE(r.rate_limit.has_value());
  EXPECT_EQ(r.rate_limit->key, RateLimitKey::client_ip);
  EXPECT_DOUBLE_EQ(r.rate_limit->rate.per_second, 10.0);
  EXPECT_EQ(r.rate_limit->rate.burst, 20u);
  EXPECT_EQ(r.cache->max_entry_bytes, 1u << 20);
  EXPECT_EQ(r.stream.max_bytes, 1ull << 30);
  EXPECT_EQ(r.hedge->delay, 50ms);
  ASSERT_TRUE(r.filters.fault.has_value());
  EXPECT_DOUBLE_EQ(r.filters.fault->abort->fraction, 0.01);
  EXPECT_EQ(r.filters.fault->delay->duration, 200ms);
  EXPECT_TRUE(r.filters.block_patterns->xss);
  const Cluster& b = c.clusters[0];
  ASSERT_TRUE(b.circuit_breaker.has_value());
  EXPECT_EQ(b.circuit_breaker->window_type, circuit::WindowType::count);
  EXPECT_EQ(b.circuit_breaker->window_size, 100u);
  EXPECT_DOUBLE_EQ(b.circuit_breaker->failure_rate, 0.5);
  EXPECT_EQ(b.circuit_breaker->slow_call_duration, 2s);
  EXPECT_DOUBLE_EQ(b.circuit_breaker->slow_call_rate, 0.8);
  EXPECT_EQ(b.circuit_breaker->consecutive_failures, 5u);
  EXPECT_EQ(b.circuit_breaker->open_duration, 30s);
  EXPECT_DOUBLE_EQ(b.circuit_breaker->open_multiplier, 2.0);
  EXPECT_EQ(b.circuit_breaker->max_open_duration, 5min);
  EXPECT_EQ(b.circuit_breaker->half_open_max_wait, 10s);
  EXPECT_DOUBLE_EQ(b.outlier_detection->max_ejection_percent, 0.5);
  EXPECT_EQ(b.health_check->unhealthy_threshold, 3u);
  EXPECT_EQ(c.clusters[1].endpoints[0].text(), "127.0.0.1:9001");  // from ${UPSTREAM}
  EXPECT_EQ(c.redis->password, "s3cret");
  EXPECT_EQ(c.overload.memory_limit, 1ull << 30);
  ASSERT_EQ(c.alerts.size(), 1u);
  EXPECT_EQ(c.alerts[0].for_duration, 60s);
  EXPECT_EQ(c.alerts[0].severity, "critical");
}

TEST(Config, UnknownKeyNamesPositionPathAndSuggestion) {
  const auto e = errors(R"(
listeners:
  - {name: public, listen: 127.0.0.1:8080}
routes:
  - name: api
    cluster: backend
    retry: {attempts: 3, backof: {base: 25ms}}
clusters:
  - {name: backend, endpoints: [127.0.0.1:9001]}
)");
  ASSERT_EQ(e.size(), 1u);
  EXPECT_EQ(e[0],
            "test.yaml:7:26: routes[0].retry.backof: unknown key 'backof'; did you mean "
            "'backoff'?");
}

TEST(Config, BadValuesNameTheExpectedForm) {
  const auto e = errors(R"(
listeners:
  - name: public
    listen: 127.0.0.1:8080
    timeouts: {header_read: 10}
    limits: {max_header_bytes: 8kb}
routes:
  - {name: api, cluster: backend, rate_limit: {rate: fast}}
clusters:
  - {name: backend, endpoints: [127.0.0.1:9001], lb: random}
)");
  ASSERT_EQ(e.size(), 4u);
  EXPECT_EQ(e[0],
            "test.yaml:5:29: listeners[0].timeouts.header_read: expected a positive duration "
            "such as 250ms, 5s or 2m, got '10'");
  EXPECT_EQ(e[1],
            "test.yaml:6:32: listeners[0].limits.max_header_bytes: expected a size such as 8KiB, "
            "1MiB or a byte count, got '8kb'");
  EXPECT_EQ(e[2],
            "test.yaml:8:54: routes[0].rate_limit.rate: expected a positive rate such as 100/s or "
            "6000/m, got 'fast'");
  EXPECT_EQ(e[3],
            "test.yaml:10:54: clusters[0].lb: expected one of round_robin | least_request, got "
            "'random'");
}

TEST(Config, DanglingReferencesAreErrors) {
  const auto e = errors(R"(
listeners:
  - {name: public, listen: 127.0.0.1:8080}
routes:
  - {name: api, cluster: backedn, fallback: [backend, spare]}
clusters:
  - {name: backend, endpoints: [127.0.0.1:9001]}
)");
  ASSERT_EQ(e.size(), 2u);
  EXPECT_EQ(e[0], "test.yaml:5:26: routes[0].cluster: no cluster named 'backedn'");
  EXPECT_EQ(e[1], "test.yaml:5:55: routes[0].fallback[1]: no cluster named 'spare'");
}

TEST(Config, DuplicateAndMissingNames) {
  const auto e = errors(R"(
listeners:
  - {name: public, listen: 127.0.0.1:8080}
routes:
  - {name: api, cluster: backend}
  - {name: api, cluster: backend}
clusters:
  - {endpoints: [127.0.0.1:9001], name: backend}
  - {endpoints: [127.0.0.1:9002]}
)");
  ASSERT_EQ(e.size(), 2u);
  EXPECT_EQ(e[0], "test.yaml:6:12: routes[1].name: duplicate name 'api'");
  EXPECT_EQ(e[1], "test.yaml:9:5: clusters[1]: missing required key 'name'");
}

TEST(Config, UnsetEnvironmentVariableIsAnError) {
  const auto e = errors(R"(
listeners:
  - {name: public, listen: "${LISTEN_ADDR}"}
)");
  ASSERT_GE(e.size(), 1u);
  EXPECT_EQ(e[0],
            "test.yaml:3:28: listeners[0].listen: environment variable 'LISTEN_ADDR' is not set");
}

TEST(Config, DollarDollarIsALiteralDollar) {
  const Config c =
      parse_ok(std::string(kMinimal) + "redis: {address: 127.0.0.1:6379, password: \"a$$b\"}\n");
  EXPECT_EQ(c.redis->password, "a$b");
}

TEST(Config, BreakerConstraintsAreCheckedWithTheirPath) {
  const auto e = errors(std::string(R"(
listeners:
  - {name: public, listen: 127.0.0.1:8080}
clusters:
  - name: backend
    endpoints: [127.0.0.1:9001]
    circuit_breaker: {half_open: {probes: 2, success_threshold: 3}}
)"));
  ASSERT_EQ(e.size(), 1u);
  EXPECT_NE(e[0].find("test.yaml:7:22: clusters[0].circuit_breaker: "), std::string::npos) << e[0];
  EXPECT_NE(e[0].find("success_threshold"), std::string::npos) << e[0];
}

TEST(Config, RetryOnNamesAreValidated) {
  const auto e = errors(R"(
listeners:
  - {name: public, listen: 127.0.0.1:8080}
routes:
  - {name: api, cluster: backend, retry: {on: [reset, 5xx, connect-fail]}}
clusters:
  - {name: backend, endpoints: [127.0.0.1:9001]}
)");
  ASSERT_EQ(e.size(), 1u);
  EXPECT_NE(e[0].find("test.yaml:5:47: routes[0].retry.on: "), std::string::npos) << e[0];
  EXPECT_NE(e[0].find("connect-fail"), std::string::npos) << e[0];
}

TEST(Config, ResilienceKnobsLoadWithTheirDefaults) {
  const Config d = parse_ok(kMinimal);
  EXPECT_FALSE(d.listeners[0].per_client_dry_run);
  EXPECT_EQ(d.routes[0].stream.max_chunks, 1'000'000u);
  EXPECT_TRUE(d.clusters[0].breaker_failures.connect_failure);
  EXPECT_TRUE(d.clusters[0].breaker_failures.counts_status(503));
  EXPECT_FALSE(d.clusters[0].breaker_failures.counts_status(429));

  const Config c = parse_ok(R"(
listeners:
  - name: public
    listen: 127.0.0.1:8080
    rate_limit: {per_client: {rate: 5/s, dry_run: true}}
routes:
  - name: api
    cluster: backend
    priority: low
    retry: {max_retry_after: 2s}
    rate_limit: {key: "header:X-Api-Key", rate: 10/s, dry_run: true, max_key_bytes: 64}
    stream: {max_chunks: 0}
overload: {force_level: critical}
clusters:
  - name: backend
    endpoints: [127.0.0.1:9001]
    circuit_breaker: {failure_on: [timeout, "429", gateway-error]}
    health_check: {expected_statuses: [2xx, "301"]}
    queue: {max_size: 5, max_wait: 250ms}
)");
  EXPECT_FALSE(d.clusters[0].queue.has_value());
  ASSERT_TRUE(c.clusters[0].queue.has_value());
  EXPECT_EQ(c.clusters[0].queue->max_size, 5u);
  EXPECT_EQ(c.clusters[0].queue->max_wait, 250ms);
  EXPECT_TRUE(c.listeners[0].per_client_dry_run);
  EXPECT_EQ(c.routes[0].priority, RoutePriority::low);
  EXPECT_EQ(d.routes[0].priority, RoutePriority::normal);
  EXPECT_EQ(c.overload.force_level, OverloadLevel::critical);
  EXPECT_EQ(d.overload.force_level, OverloadLevel::normal);
  EXPECT_EQ(c.routes[0].retry->max_retry_after, 2s);
  EXPECT_TRUE(c.routes[0].rate_limit->dry_run);
  EXPECT_EQ(c.routes[0].rate_limit->max_key_bytes, 64u);
  EXPECT_EQ(c.routes[0].stream.max_chunks, 0u);
  const FailureSet& f = c.clusters[0].breaker_failures;
  EXPECT_TRUE(f.timeout);
  EXPECT_FALSE(f.connect_failure);
  EXPECT_FALSE(f.reset);
  EXPECT_TRUE(f.counts_status(429));
  EXPECT_TRUE(f.counts_status(502));
  EXPECT_FALSE(f.counts_status(500));
  const HealthCheckSpec& h = *c.clusters[0].health_check;
  EXPECT_TRUE(h.expects(204));
  EXPECT_TRUE(h.expects(301));
  EXPECT_FALSE(h.expects(302));
}

TEST(Config, BadResilienceValuesNameTheirPath) {
  const auto e = errors(R"(
listeners:
  - {name: public, listen: 127.0.0.1:8080}
routes:
  - name: api
    cluster: backend
    rate_limit: {rate: 1/s, max_key_bytes: 0}
  - name: fast
    cluster: backend
    rate_limit: {rate: 2000000/s}
clusters:
  - name: backend
    endpoints: [127.0.0.1:9001]
    circuit_breaker: {failure_on: [reset, "200"]}
    health_check: {expected_statuses: [6xx]}
  - name: queued
    endpoints: [127.0.0.1:9002]
    queue: {max_size: 0, max_wait: 2h}
)");
  ASSERT_EQ(e.size(), 6u) << ::testing::PrintToString(e);
  EXPECT_NE(e[4].find("clusters[1].queue.max_size"), std::string::npos) << e[4];
  EXPECT_NE(e[5].find("clusters[1].queue.max_wait: must be at most 1h"), std::string::npos) << e[5];
  EXPECT_NE(e[1].find("routes[1].rate_limit.rate: at most 1000000/s"), std::string::npos) << e[1];
  EXPECT_NE(e[0].find("routes[0].rate_limit.max_key_bytes"), std::string::npos) << e[0];
  EXPECT_NE(e[2].find("clusters[0].circuit_breaker.failure_on[1]"), std::string::npos) << e[2];
  EXPECT_NE(e[3].find("clusters[0].health_check.expected_statuses[0]"), std::string::npos) << e[3];
}

TEST(Config, RouteFiltersLoadOffByDefault) {
  const Config plain = parse_ok(kMinimal);
  EXPECT_FALSE(plain.routes[0].filters.block_patterns.has_value());
  EXPECT_FALSE(plain.routes[0].filters.fault.has_value());
  const Config c = parse_ok(R"(
listeners:
  - {name: public, listen: 127.0.0.1:8080}
routes:
  - name: api
    cluster: backend
    filters:
      block_patterns: {xss: false}
      fault: {header: X-Fault-Drill, abort: {status: 502}, delay: {percent: 5, duration: 200ms}}
clusters:
  - {name: backend, endpoints: [127.0.0.1:9001]}
)");
  const RouteFilters& f = c.routes[0].filters;
  ASSERT_TRUE(f.block_patterns.has_value());
  EXPECT_TRUE(f.block_patterns->sqli);
  EXPECT_FALSE(f.block_patterns->xss);
  ASSERT_TRUE(f.fault.has_value());
  EXPECT_EQ(f.fault->header, "x-fault-drill");
  ASSERT_TRUE(f.fault->abort.has_value());
  EXPECT_EQ(f.fault->abort->status, 502);
  EXPECT_DOUBLE_EQ(f.fault->abort->fraction, 0.0);  // only requests carrying the header
  ASSERT_TRUE(f.fault->delay.has_value());
  EXPECT_DOUBLE_EQ(f.fault->delay->fraction, 0.05);
  EXPECT_EQ(f.fault->delay->duration, 200ms);
}

TEST(Config, FaultsThatDoNothingOrCannotBeAnsweredAreErrors) {
  const auto e = errors(R"(
listeners:
  - {name: public, listen: 127.0.0.1:8080}
routes:
  - {name: a, cluster: backend, filters: {fault: {abort: {status: 503}}}}
  - {name: b, cluster: backend, filters: {fault: {abort: {percent: 10, status: 200}}}}
  - {name: c, cluster: backend, filters: {fault: {delay: {percent: 10}}}}
  - {name: d, cluster: backend, filters: {fault: {header: "x bad", delay: {percent: 1, duration: 2h}}}}
  - {name: e, cluster: backend, filters: {block_patterns: {sql: true}}}
clusters:
  - {name: backend, endpoints: [127.0.0.1:9001]}
)");
  ASSERT_EQ(e.size(), 6u) << ::testing::PrintToString(e);
  EXPECT_NE(e[0].find("routes[0].filters.fault.abort: aborts nothing"), std::string::npos) << e[0];
  EXPECT_NE(e[1].find("routes[1].filters.fault.abort.status"), std::string::npos) << e[1];
  EXPECT_NE(e[2].find("routes[2].filters.fault.delay: missing required key 'duration'"),
            std::string::npos)
      << e[2];
  EXPECT_NE(e[3].find("routes[3].filters.fault.header"), std::string::npos) << e[3];
  EXPECT_NE(e[4].find("routes[3].filters.fault.delay.duration"), std::string::npos) << e[4];
  EXPECT_NE(e[5].find("routes[4].filters.block_patterns"), std::string::npos) << e[5];
}

TEST(Config, AlertMetricsNameASignalAndAnExistingScope) {
  const auto e = errors(R"(
listeners:
  - {name: public, listen: 127.0.0.1:8080}
routes:
  - {name: api, cluster: backend}
clusters:
  - {name: backend, endpoints: [127.0.0.1:9001]}
alerts:
  - {name: a, metric: bulwark_requests_total, threshold: 1}
  - {name: b, metric: 'bulwark_requests_5xx_ratio{route="nope"}', threshold: 1}
  - {name: c, metric: 'bulwark_breakers_open{cluster="nope"}', threshold: 1}
  - {name: d, metric: 'bulwark_endpoints_unusable{cluster="backend"}', threshold: 1}
)");
  ASSERT_EQ(e.size(), 3u) << ::testing::PrintToString(e);
  EXPECT_NE(e[0].find("alerts[0].metric: expected one of the gateway's alert signals"),
            std::string::npos)
      << e[0];
  EXPECT_NE(e[1].find("alerts[1].metric: no route named 'nope'"), std::string::npos) << e[1];
  EXPECT_NE(e[2].find("alerts[2].metric: no cluster named 'nope'"), std::string::npos) << e[2];
}

TEST(Config, TimeWindowSizeIsADuration) {
  const Config c = parse_ok(std::string(kMinimal) + R"(
  - name: timed
    endpoints: [127.0.0.1:9002]
    circuit_breaker: {window: {type: time, size: 1m}, min_calls: 5}
)");
  ASSERT_EQ(c.clusters.size(), 2u);
  EXPECT_EQ(c.clusters[1].circuit_breaker->window_type, circuit::WindowType::time);
  EXPECT_EQ(c.clusters[1].circuit_breaker->window_size, 60u);
}

TEST(Config, StructuralErrors) {
  EXPECT_EQ(errors("")[0], "test.yaml: the file is empty");
  EXPECT_EQ(errors("- a\n- b\n")[0], "test.yaml:1:1: expected a mapping ({key: value, ...})");
  EXPECT_EQ(errors("listeners: {name: x}\n")[0],
            "test.yaml:1:12: listeners: expected a list ([a, b] or '- item' lines)");
  const auto syntax = errors("listeners: [\n");
  ASSERT_EQ(syntax.size(), 1u);
  EXPECT_NE(syntax[0].find("YAML syntax error"), std::string::npos) << syntax[0];
  EXPECT_EQ(errors("workers: 1\n")[0],
            "test.yaml:1:1: listeners: at least one listener is required");
}

TEST(Config, ListItemsThatAreNotMappingsAreReportedInPlace) {
  const auto e = errors(R"(
listeners:
  - not-a-mapping
  - {name: [a, b]}
  - {name: public, listen: 127.0.0.1:8080}
routes:
  - just-text
  - {name: api, cluster: nope}
)");
  ASSERT_EQ(e.size(), 5u);
  EXPECT_EQ(e[0], "test.yaml:3:5: listeners[0]: expected a mapping ({key: value, ...})");
  EXPECT_EQ(e[1], "test.yaml:4:5: listeners[1]: missing required key 'listen'");
  EXPECT_EQ(e[2], "test.yaml:4:12: listeners[1].name: expected a single value");
  EXPECT_EQ(e[3], "test.yaml:7:5: routes[0]: expected a mapping ({key: value, ...})");
  EXPECT_EQ(e[4], "test.yaml:8:26: routes[1].cluster: no cluster named 'nope'");
}

TEST(Config, AddressForms) {
  const Config c = parse_ok(R"(
admin: {listen: "[::1]:0"}
listeners:
  - {name: public, listen: "localhost:0"}
)");
  EXPECT_EQ(c.admin.host, "::1");
  EXPECT_EQ(c.admin.port, 0);
  EXPECT_EQ(c.admin.text(), "[::1]:0");
  const auto e = errors(R"(
listeners:
  - {name: public, listen: "::1:80"}
clusters:
  - {name: b, endpoints: ["127.0.0.1:0", "127.0.0.1:70000", "127.0.0.1"]}
)");
  ASSERT_EQ(e.size(), 4u);
  EXPECT_NE(e[0].find("listeners[0].listen: expected host:port"), std::string::npos) << e[0];
  EXPECT_NE(e[1].find("clusters[0].endpoints[0]"), std::string::npos) << e[1];
  EXPECT_NE(e[2].find("clusters[0].endpoints[1]"), std::string::npos) << e[2];
  EXPECT_NE(e[3].find("clusters[0].endpoints[2]"), std::string::npos) << e[3];
}

// ---- routes[].auth.jwt -------------------------------------------------------------------

// RFC 7515 A.3's P-256 key and A.2's 2048-bit RSA key.
const char* kJwks = R"({"keys":[
  {"kty":"EC","crv":"P-256","kid":"ec-1","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
   "y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
  {"kty":"RSA","kid":"rsa-1","e":"AQAB",
   "n":"ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp-Vaw-4qPCJrcS2mJPMEzP1Pt0Bm4d4QlL-yRT-SFd2lZS-pCgNMsD1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpaSHSXndS5z5rexMdbBYUsLA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFvUK-DWNmoudF8NAco9_h9iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQ"}]})";

std::string write_file(const std::string& name, const std::string& text) {
  const std::string path = ::testing::TempDir() + "/" + name;
  std::ofstream out(path);
  out << text;
  return path;
}

// kMinimal's route with `auth:` (a block indented for the route's keys).
std::string with_auth(const std::string& auth) {
  return R"(
listeners:
  - {name: public, listen: 127.0.0.1:8080}
routes:
  - name: api
    cluster: backend
    auth:
)" + auth +
         R"(
clusters:
  - {name: backend, endpoints: [127.0.0.1:9001]}
)";
}

TEST(Config, AuthJwtLoadsEveryKnobAndBuildsTheKeys) {
  const std::string jwks = write_file("bulwark_jwks_ok.json", kJwks);
  const Config c = parse_ok(with_auth(R"(      jwt:
        issuer: https://idp.example
        audiences: [api, web]
        algorithms: [RS256, ES256, HS256]
        jwks_file: )" + jwks + R"(
        secret: "${JWT_SECRET}"
        leeway: 10s
        required_claims: [sub, exp]
        forward_claims: {sub: X-User-Id, tenant: X-Tenant}
        strip_token: false
        cookie: session
        max_token_bytes: 4KiB)"));
  ASSERT_TRUE(c.routes[0].auth.jwt.has_value());
  const JwtSpec& j = *c.routes[0].auth.jwt;
  EXPECT_EQ(j.issuer, "https://idp.example");
  EXPECT_EQ(j.audiences, (std::vector<std::string>{"api", "web"}));
  EXPECT_EQ(j.algorithms, (std::vector<std::string>{"RS256", "ES256", "HS256"}));
  EXPECT_EQ(j.secret, "an-hs256-secret-of-at-least-32-bytes");
  EXPECT_EQ(j.leeway, 10s);
  EXPECT_EQ(j.required_claims, (std::vector<std::string>{"sub", "exp"}));
  EXPECT_EQ(j.forward_claims, (std::vector<std::pair<std::string, std::string>>{
                                  {"sub", "X-User-Id"}, {"tenant", "X-Tenant"}}));
  EXPECT_FALSE(j.strip_token);
  EXPECT_EQ(j.cookie, "session");
  EXPECT_EQ(j.max_token_bytes, 4096u);
  ASSERT_NE(j.keys, nullptr);
  ASSERT_EQ(j.keys->keys.size(), 3u);  // two from the file, the secret
  EXPECT_EQ(j.keys->keys[0].kid, "ec-1");
  EXPECT_TRUE(j.keys->can_verify(filters::jwt::Algorithm::HS256));
}

TEST(Config, AuthJwtDefaultsAndRelativeKeyFiles) {
  write_file("bulwark_jwks_relative.json", kJwks);
  const std::string yaml =
      with_auth(R"(      jwt: {algorithms: [ES256], jwks_file: bulwark_jwks_relative.json})");
  // A relative jwks_file is found beside the config file.
  const Config c = parse(yaml, ::testing::TempDir() + "/bulwark.yaml", test_env);
  const JwtSpec& j = *c.routes[0].auth.jwt;
  EXPECT_TRUE(j.issuer.empty());
  EXPECT_TRUE(j.audiences.empty());
  EXPECT_EQ(j.leeway, 30s);
  EXPECT_TRUE(j.strip_token);
  EXPECT_EQ(j.max_token_bytes, 8192u);
  EXPECT_EQ(j.keys->keys.size(), 2u);
  EXPECT_FALSE(parse_ok(kMinimal).routes[0].auth.jwt.has_value());
}

TEST(Config, AuthJwtMistakesNameTheirPath) {
  const std::string jwks = write_file("bulwark_jwks_ok2.json", kJwks);
  auto first = [](const std::string& yaml) {
    const auto e = errors(yaml);
    return e.empty() ? std::string() : e[0];
  };
  auto jwt = [&](const std::string& body) { return with_auth("      jwt: {" + body + "}"); };
  EXPECT_NE(first(jwt("algorithms: [HS256], secret: \"${JWT_SECRET}\", isuer: x"))
                .find("test.yaml:8:59: routes[0].auth.jwt.isuer: unknown key 'isuer'; did you "
                      "mean 'issuer'?"),
            std::string::npos);
  EXPECT_NE(first(jwt("secret: \"${JWT_SECRET}\""))
                .find("routes[0].auth.jwt: missing required key 'algorithms'"),
            std::string::npos);
  EXPECT_NE(first(jwt("algorithms: [], secret: \"${JWT_SECRET}\""))
                .find("routes[0].auth.jwt.algorithms: must not be empty"),
            std::string::npos);
  EXPECT_NE(first(jwt("algorithms: [HS256, none], secret: \"${JWT_SECRET}\""))
                .find("routes[0].auth.jwt.algorithms[1]: 'none' (unsigned tokens) is never "
                      "accepted"),
            std::string::npos);
  EXPECT_NE(first(jwt("algorithms: [RS128], jwks_file: " + jwks))
                .find("routes[0].auth.jwt.algorithms[0]: expected one of HS256"),
            std::string::npos);
  EXPECT_NE(
      first(jwt("algorithms: [HS256]")).find("routes[0].auth.jwt: needs jwks_file, secret or both"),
      std::string::npos);
  EXPECT_NE(first(jwt("algorithms: [HS256], secret: short"))
                .find("routes[0].auth.jwt.secret: an HMAC secret of 5 bytes; at least 32"),
            std::string::npos);
  EXPECT_NE(first(jwt("algorithms: [HS256], secret: \"${NO_SUCH_SECRET}\""))
                .find("environment variable 'NO_SUCH_SECRET' is not set"),
            std::string::npos);
  EXPECT_NE(first(jwt("algorithms: [ES256, HS256], jwks_file: " + jwks))
                .find("routes[0].auth.jwt.algorithms[1]: no key can verify HS256: set secret"),
            std::string::npos);
  EXPECT_NE(first(jwt("algorithms: [EdDSA], jwks_file: " + jwks))
                .find("no key can verify EdDSA: put a key of its type in jwks_file"),
            std::string::npos);
  EXPECT_NE(first(jwt("algorithms: [HS256], secret: \"${JWT_SECRET}\", leeway: 2h"))
                .find("routes[0].auth.jwt.leeway: must be at most 1h"),
            std::string::npos);
  EXPECT_NE(first(jwt("algorithms: [HS256], secret: \"${JWT_SECRET}\", max_token_bytes: 10"))
                .find("routes[0].auth.jwt.max_token_bytes: expected a size from 64 to 1MiB"),
            std::string::npos);
  EXPECT_NE(first(jwt("algorithms: [HS256], secret: \"${JWT_SECRET}\", "
                      "forward_claims: {sub: Content-Length}"))
                .find("routes[0].auth.jwt.forward_claims.sub: 'Content-Length' is a header the "
                      "gateway owns"),
            std::string::npos);
  EXPECT_NE(first(jwt("algorithms: [HS256], secret: \"${JWT_SECRET}\", "
                      "forward_claims: {a: X-A, b: X-B, c: X-C, d: X-D}"))
                .find("routes[0].auth.jwt.forward_claims: at most 3 claims are forwarded"),
            std::string::npos);
  EXPECT_NE(first(jwt("algorithms: [HS256], secret: \"${JWT_SECRET}\", "
                      "forward_claims: {a: X-A, b: x-a}"))
                .find("header 'x-a' is already given to another claim"),
            std::string::npos);
  EXPECT_NE(first(jwt("algorithms: [HS256], secret: \"${JWT_SECRET}\", "
                      "forward_claims: {a: \"bad header\"}"))
                .find("expected a header name, got 'bad header'"),
            std::string::npos);
  EXPECT_NE(first(with_auth("      {}")).find("routes[0].auth: expected jwt"), std::string::npos);
}

TEST(Config, AuthJwtKeyFileErrorsNameTheFileAndTheKey) {
  const auto missing =
      errors(with_auth("      jwt: {algorithms: [RS256], jwks_file: /nonexistent/jwks.json}"));
  ASSERT_EQ(missing.size(), 1u);
  EXPECT_NE(missing[0].find("test.yaml:8:45: routes[0].auth.jwt.jwks_file: cannot read "
                            "'/nonexistent/jwks.json': No such file or directory"),
            std::string::npos)
      << missing[0];
  const std::string bad_json = write_file("bulwark_jwks_bad.json", "{\"keys\": [");
  const auto invalid =
      errors(with_auth("      jwt: {algorithms: [RS256], jwks_file: " + bad_json + "}"));
  ASSERT_EQ(invalid.size(), 1u);
  EXPECT_NE(invalid[0].find("'" + bad_json + "' is not a usable JWK Set: not valid JSON"),
            std::string::npos)
      << invalid[0];
  const std::string bad_key =
      write_file("bulwark_jwks_bad_key.json",
                 R"({"keys":[{"kty":"oct","k":"hJtXIZ2uSN5kbQfbtTNWbpdmhkV8FJG-Onbc6mxCcYg"},
                  {"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU"}]})");
  const auto key =
      errors(with_auth("      jwt: {algorithms: [ES256], jwks_file: " + bad_key + "}"));
  ASSERT_EQ(key.size(), 1u);
  EXPECT_NE(key[0].find("routes[0].auth.jwt.jwks_file: '" + bad_key +
                        "' is not a usable JWK Set: keys[1]: missing 'y'"),
            std::string::npos)
      << key[0];
}

TEST(Config, LoadFileReportsAnUnreadableFile) {
  try {
    load_file("/nonexistent/bulwark.yaml");
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_STREQ(e.what(), "/nonexistent/bulwark.yaml: cannot open the file");
  }
}

TEST(Config, LoadFileReadsAFile) {
  const std::string path = ::testing::TempDir() + "/bulwark_config_test.yaml";
  {
    std::ofstream out(path);
    out << kMinimal;
  }
  const Config c = load_file(path, test_env);
  EXPECT_EQ(c.routes[0].cluster, "backend");
}

TEST(Config, EndpointsMayBeNamesWithARefreshInterval) {
  const Config c = parse_ok(R"(
listeners:
  - {name: public, listen: 127.0.0.1:8080}
clusters:
  - {name: a, endpoints: [api.example.com:443, localhost:9001, "[::1]:80", 10.0.0.1:80]}
  - {name: b, endpoints: [svc_1.internal.:80], dns_refresh: 5s}
)");
  ASSERT_EQ(c.clusters.size(), 2u);
  EXPECT_EQ(c.clusters[0].dns_refresh, 30s);
  EXPECT_EQ(c.clusters[0].endpoints[0].text(), "api.example.com:443");
  EXPECT_EQ(c.clusters[0].endpoints[2].text(), "[::1]:80");
  EXPECT_EQ(c.clusters[1].dns_refresh, 5s);
  const auto e = errors(R"(
listeners:
  - {name: public, listen: 127.0.0.1:8080}
clusters:
  - {name: a, endpoints: ["bad host:80", -api.example.com:80, "a..b:80"], dns_refresh: 500ms}
  - {name: b, endpoints: [api.example.com:80], dns_refresh: 25h}
)");
  ASSERT_EQ(e.size(), 5u);
  EXPECT_EQ(e[0],
            "test.yaml:5:27: clusters[0].endpoints[0]: expected host:port with an IP address or a "
            "DNS name as the host, got 'bad host:80'");
  EXPECT_NE(e[1].find("clusters[0].endpoints[1]"), std::string::npos);
  EXPECT_NE(e[2].find("clusters[0].endpoints[2]"), std::string::npos);
  EXPECT_EQ(e[3], "test.yaml:5:88: clusters[0].dns_refresh: expected a duration from 1s to 24h");
  EXPECT_NE(e[4].find("clusters[1].dns_refresh"), std::string::npos);
}

TEST(Config, AdminTokenIsRequiredOffLoopback) {
  const Config none = parse_ok(kMinimal);
  EXPECT_EQ(none.admin_token, "");
  const Config c = parse_ok(std::string(kMinimal) + "admin: {listen: 0.0.0.0:9901, token: t0k}\n");
  EXPECT_EQ(c.admin_token, "t0k");
  EXPECT_EQ(parse_ok(std::string(kMinimal) + "admin: {listen: localhost:0}\n").admin_token, "");
  EXPECT_EQ(parse_ok(std::string(kMinimal) + "admin: {listen: 127.0.0.2:0}\n").admin.host,
            "127.0.0.2");
  auto e = errors(std::string(kMinimal) + "admin: {listen: 0.0.0.0:9901}\n");
  ASSERT_EQ(e.size(), 1u);
  EXPECT_EQ(e[0],
            "test.yaml:8:17: admin.listen: an admin listener off loopback needs a token: set "
            "admin.token (for example token: \"${ADMIN_TOKEN}\")");
  e = errors(std::string(kMinimal) + "admin: {listen: \"[::]:9901\", token: \"a b\"}\n");
  ASSERT_EQ(e.size(), 1u);
  EXPECT_NE(e[0].find("admin.token: expected visible ASCII"), std::string::npos);
  e = errors(std::string(kMinimal) + "admin: {listen: 127.0.0.1:0, token: \"${NOT_SET}\"}\n");
  ASSERT_EQ(e.size(), 1u);
  EXPECT_NE(e[0].find("admin.token: environment variable 'NOT_SET' is not set"), std::string::npos);
}

TEST(Config, LoopbackAndLiteralHosts) {
  for (const char* host : {"127.0.0.1", "127.1.2.3", "::1", "::ffff:127.0.0.1", "localhost",
                           "LOCALHOST", "localhost."}) {
    EXPECT_TRUE(is_loopback_host(host)) << host;
  }
  for (const char* host :
       {"0.0.0.0", "::", "10.0.0.1", "128.0.0.1", "::ffff:10.0.0.1", "example.com", "", "local"}) {
    EXPECT_FALSE(is_loopback_host(host)) << host;
  }
  EXPECT_TRUE(is_ip_literal("10.0.0.1"));
  EXPECT_TRUE(is_ip_literal("2001:db8::1"));
  EXPECT_FALSE(is_ip_literal("localhost"));
  EXPECT_FALSE(is_ip_literal("10.0.0.1.example"));
  EXPECT_FALSE(is_ip_literal(""));
}

}  // namespace
}  // namespace bulwark::gateway::config
