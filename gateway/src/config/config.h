// The gateway's configuration: the YAML contract of the design (names are stable: extend, never
// rename), loaded strictly.
//
// load_file()/parse() accept exactly the documented keys. Unknown keys, values of the wrong
// type or unit, out-of-range values and dangling references (a route naming a cluster that
// does not exist) are all errors; every error names `file:line:col` and the key path
// (`routes[0].retry.backoff.base`), so a typo can be fixed from the message alone. All errors
// of a file are collected and reported together (ConfigError::diagnostics()).
//
// Units: durations "250ms" "5s" "2m" "1h"; sizes "8KiB" "1MiB" (powers of 1024) or bytes;
// rates "100/s" "6000/m"; fractions "50%" or 0.5. `${NAME}` in any scalar expands to the
// environment variable NAME (an unset variable is an error; `$$` is a literal `$`).
//
// docs/config.md lists every key with its default.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "bulwark/circuit/circuit_breaker.h"
#include "bulwark/core/clock.h"
#include "bulwark/retry/backoff.h"

namespace bulwark::gateway::filters::jwt {
class KeySet;
}

namespace bulwark::gateway::config {

using namespace std::chrono_literals;

struct Address {
  std::string host;  // IPv4 literal, [IPv6] without brackets, or a name
  uint16_t port = 0;
  std::string text() const;  // "host:port" ("[::1]:80" for IPv6)
  friend bool operator==(const Address&, const Address&) = default;
};

// Whether `host` is an IPv4 or IPv6 literal (IPv6 without brackets), not a name.
bool is_ip_literal(std::string_view host) noexcept;
// Whether `host` stays on this machine: an IPv4 literal in 127.0.0.0/8, ::1 (also
// v4-mapped ::ffff:127.x.y.z), or the name `localhost`. A wildcard (0.0.0.0, ::) and every
// other name are not loopback.
bool is_loopback_host(std::string_view host) noexcept;

struct ListenerLimits {
  uint64_t max_header_bytes = 8 * 1024UL;
  uint32_t max_headers = 100;
  uint64_t max_uri_bytes = 2 * 1024UL;
  uint64_t max_body_bytes = 100ull * 1024 * 1024;
  uint32_t max_connections = 10000;
  uint32_t max_concurrent_requests = 1000;
};

struct ListenerTimeouts {
  Duration header_read = 10s;
  Duration idle = 60s;
  Duration request = 30s;
};

// The highest rate a limit may have (the limiters count in microseconds).
inline constexpr double kMaxRatePerSecond = 1e6;

enum class RateLimitScope { local, global };

struct RateSpec {
  double per_second = 0;  // from "100/s"
  uint64_t burst = 0;     // 0: defaults to max(1, per_second)
};

// A set of HTTP statuses 100..599 (a breaker's failure statuses, a health check's passing ones).
class StatusSet {
 public:
  static constexpr int kFirst = 100;
  static constexpr int kLast = 599;
  constexpr StatusSet() = default;
  // The statuses first..last, both included, clamped to 100..599.
  static constexpr StatusSet range(int first, int last) noexcept {
    StatusSet set;
    set.add(first, last);
    return set;
  }
  constexpr void add(int first, int last) noexcept {
    for (int s = first < kFirst ? kFirst : first; s <= last && s <= kLast; ++s) {
      bits_[s - kFirst] = true;
    }
  }
  constexpr void add(int status) noexcept { add(status, status); }
  constexpr bool contains(int s) const noexcept {
    return s >= kFirst && s <= kLast && bits_[s - kFirst];
  }

 private:
  std::array<bool, kLast - kFirst + 1> bits_{};
};

// Which attempt outcomes a circuit breaker counts as failures (clusters[].circuit_breaker
// .failure_on): connect-failure, reset, timeout, bad-response, 5xx, gateway-error (502-504) or
// an exact status 400..599. Default: connect-failure, reset, timeout, bad-response, 5xx.
struct FailureSet {
  bool connect_failure = true;
  bool reset = true;
  bool timeout = true;
  bool bad_response = true;
  StatusSet status = StatusSet::range(500, 599);

  bool counts_status(int s) const noexcept { return s >= 400 && status.contains(s); }
};

// TLS versions a side accepts at least.
enum class TlsVersion : uint8_t { v1_2, v1_3 };

struct CertificateSpec {
  std::string cert;  // PEM file: the certificate, then its chain
  std::string key;   // PEM file: the private key
};

// listeners[].tls: TLS termination. The first certificate is the default; the others are chosen
// by the client's SNI among the names they are valid for.
struct ListenerTls {
  std::vector<CertificateSpec> certificates;  // `cert`/`key`, then `certificates`
  TlsVersion min_version = TlsVersion::v1_2;
  std::string ciphers;  // OpenSSL cipher list for TLS 1.2 (empty: OpenSSL's default)
  std::vector<std::string> alpn = {"http/1.1"};
  std::string client_ca;  // PEM file: CAs whose client certificates are accepted
  bool require_client_cert = false;
  // The verified client certificate's subject goes upstream in this header (a client's own
  // header of that name is removed).
  std::string client_subject_header = "X-Client-Cert-Subject";
  Duration handshake_timeout = 10s;
};

// clusters[].tls: TLS to the cluster's endpoints.
struct ClusterTls {
  std::string sni;      // server name sent and verified (default: the endpoint's host)
  bool verify = true;   // the endpoint's certificate chain and name
  std::string ca_file;  // PEM file (default: the system's trust store)
  std::string client_cert;
  std::string client_key;
  TlsVersion min_version = TlsVersion::v1_2;

  friend bool operator==(const ClusterTls&, const ClusterTls&) = default;
};

struct Listener {
  std::string name;
  Address listen;
  ListenerLimits limits;
  ListenerTimeouts timeouts;
  std::optional<RateSpec> per_client_rate_limit;  // rate_limit.per_client
  bool per_client_dry_run = false;                // rate_limit.per_client.dry_run
  RateLimitScope per_client_scope = RateLimitScope::local;  // rate_limit.per_client.scope
  std::optional<ListenerTls> tls;
};

struct RouteMatch {
  std::string path_prefix = "/";
  std::string host = "*";            // "*" any, "*.example.com" suffix, or exact
  std::vector<std::string> methods;  // empty: any method
};

struct RouteTimeouts {
  Duration request = 30s;
  std::optional<Duration> per_try;
  std::optional<Duration> first_byte;
  Duration stream_idle = 30s;
  Duration stream_total = 10min;
};

struct RetryBudgetSpec {
  double ratio = 0.2;
  double min_per_second = 10;
};

struct RetrySpec {
  uint32_t attempts = 3;  // counts the first try
  std::vector<std::string> on = {
      "connect-failure", "reset", "per-try-timeout", "502", "503", "504"};
  retry::BackoffOptions backoff;
  Duration max_retry_after = 10s;  // a server's Retry-After is honoured up to this
  RetryBudgetSpec budget;
  bool non_idempotent = false;  // allow retrying non-idempotent methods once sent
};

enum class RateLimitKey { client_ip, route, header };

struct RouteRateLimit {
  RateLimitKey key = RateLimitKey::client_ip;
  std::string header;  // key: header:<name>
  RateSpec rate;
  RateLimitScope scope = RateLimitScope::local;
  bool dry_run = false;          // count and log what would be refused, refuse nothing
  uint32_t max_key_bytes = 256;  // key: header:<name> — a longer value is refused (400)
};

struct RouteCache {
  Duration ttl = 60s;
  uint64_t max_entry_bytes = 1024 * 1024UL;
  Duration stale_if_error = 0s;
};

struct StreamSpec {
  uint64_t max_chunk_bytes = 64 * 1024UL;
  uint64_t max_bytes = 1ull << 30;
  uint64_t max_chunks = 1'000'000;  // chunks of a chunked answer; 0: unlimited
};

struct HedgeSpec {
  Duration delay = 50ms;
  uint32_t max_attempts = 2;
};

enum class RoutePriority : uint8_t { low, normal, high };

// routes[].filters.block_patterns: refuse requests whose decoded path or query has the shape
// of an SQL injection or a cross-site script (filters/block_patterns). The section on its own
// turns both on.
struct BlockPatternsSpec {
  bool sqli = true;
  bool xss = true;
};

// routes[].filters.fault: fault injection for chaos drills (filters/fault). A request is
// eligible for a fault when it carries `header` (if set) or falls in the fault's percentage.
struct FaultAbortSpec {
  double fraction = 0;  // percent: 0..100, as a fraction
  int status = 503;     // 400..599
};
struct FaultDelaySpec {
  double fraction = 0;
  Duration duration = 0ms;  // 1ms..1h
};
struct FaultSpec {
  std::string header;  // lower case; empty: by percentage only
  std::optional<FaultAbortSpec> abort;
  std::optional<FaultDelaySpec> delay;
};

struct RouteFilters {
  std::optional<BlockPatternsSpec> block_patterns;
  std::optional<FaultSpec> fault;
};

// routes[].auth.jwt: requests must carry a JSON Web Token the route accepts (filters/jwt,
// docs/auth.md). The keys are read from jwks_file (relative paths: from the config file's
// folder) and built when the config is loaded, so a bad key set fails the load, --check-config
// and a reload like any other bad value; a reload reads the file again.
struct JwtSpec {
  std::string issuer;                   // empty: `iss` is not checked
  std::vector<std::string> audiences;   // empty: `aud` is not checked
  std::vector<std::string> algorithms;  // required, non-empty; JWA names (never "none")
  std::string jwks_file;                // as written in the file
  std::string secret;                   // an HMAC key (its bytes); secret: redacted by /config
  Duration leeway = 30s;                // clock skew allowed for exp, nbf and iat (0..1h)
  std::vector<std::string> required_claims;
  // claim -> upstream header, in the file's order (at most kMaxForwardClaims).
  std::vector<std::pair<std::string, std::string>> forward_claims;
  bool strip_token = true;  // the upstream does not see the token
  std::string cookie;       // read the token from this cookie when there is no Bearer header
  uint64_t max_token_bytes = 8 * 1024UL;
  // The keys of jwks_file and secret, built at load (filters/jwt/keys.h); shared, immutable.
  std::shared_ptr<const filters::jwt::KeySet> keys;
};

// A route forwards at most this many claims: each takes one of the request's header removals
// (the client's own line of that name never reaches the upstream) beside the token's.
inline constexpr std::size_t kMaxForwardClaims = 3;

struct RouteAuth {
  std::optional<JwtSpec> jwt;
};

// routes[].fallback holds at most this many clusters (an attempt's cluster is a small index).
inline constexpr std::size_t kMaxFallbacks = 8;

struct Route {
  std::string name;
  RouteMatch match;
  std::string cluster;
  std::vector<std::string> fallback;
  RouteTimeouts timeouts;
  std::optional<RetrySpec> retry;
  std::optional<RouteRateLimit> rate_limit;
  std::optional<RouteCache> cache;
  StreamSpec stream;
  std::optional<HedgeSpec> hedge;
  RoutePriority priority = RoutePriority::normal;  // shed first under overload when low
  RouteFilters filters;                            // optional per-route filters, off by default
  RouteAuth auth;                                  // authentication, off by default
};

enum class LoadBalancing { round_robin, least_request };

struct PoolSpec {
  uint32_t max_per_endpoint = 1024;  // busy connections per endpoint per worker
  uint32_t max_idle = 256;           // idle keep-alive connections kept per endpoint per worker
  Duration idle_timeout = 60s;
};

struct OutlierDetection {
  uint32_t consecutive_5xx = 5;
  Duration base_ejection = 30s;
  double max_ejection_percent = 0.5;  // fraction
};

struct HealthCheckSpec {
  std::string path = "/healthz";
  Duration interval = 5s;
  Duration timeout = 1s;
  uint32_t healthy_threshold = 2;
  uint32_t unhealthy_threshold = 3;
  // expected_statuses: "2xx"-style classes or statuses 100..599; a probe passes on one of them.
  std::vector<std::string> expected_statuses = {"2xx"};
  StatusSet expected = StatusSet::range(200, 299);

  bool expects(int s) const noexcept { return expected.contains(s); }
};

// clusters[].queue: requests over max_concurrent_requests wait for a slot instead of being
// refused at once (the library's Bulkhead queue: by route priority, FIFO within one).
struct QueueSpec {
  uint32_t max_size = 100;  // waiting requests; one more is refused (503)
  Duration max_wait = 1s;   // longest wait; then 503 queue_timeout
};

// clusters[].dns_refresh: its bounds (a name is looked up again this often).
inline constexpr Duration kMinDnsRefresh = 1s;
inline constexpr Duration kMaxDnsRefresh = 24h;

struct Cluster {
  std::string name;
  // IP literals or names; a name stands for every address it resolves to (route/dns.h).
  std::vector<Address> endpoints;
  Duration dns_refresh = 30s;  // how often the names among `endpoints` are looked up again
  LoadBalancing lb = LoadBalancing::round_robin;
  Duration connect_timeout = 1s;
  PoolSpec pool;
  uint32_t max_concurrent_requests = 1000;
  std::optional<QueueSpec> queue;  // none: a full cluster refuses at once
  std::optional<ClusterTls> tls;
  std::optional<circuit::BreakerOptions> circuit_breaker;
  FailureSet breaker_failures;  // circuit_breaker.failure_on
  std::optional<OutlierDetection> outlier_detection;
  std::optional<HealthCheckSpec> health_check;
  // /readyz answers 503 while this cluster has no usable endpoint or its breaker is open
  // (proxy/readiness.h).
  bool critical = false;
};

struct CacheSpec {
  uint64_t max_bytes = 256ull * 1024 * 1024;
  uint64_t max_entries = 100000;
};

enum class RedisFailureMode { local, allow, deny };

struct RedisSpec {
  Address address;
  Duration timeout = 5ms;  // one global decision's wait; then on_failure decides
  RedisFailureMode on_failure = RedisFailureMode::local;
  std::string username;  // an ACL user (AUTH username password); empty: the default user
  std::string password;  // secret: redacted by /config
  uint32_t connections = 1;  // per worker, pipelined
  uint32_t max_pending = 4096;  // decisions in flight per worker
  Duration connect_timeout = 1s;
  std::string key_prefix = "bulwark:rl:";
  std::optional<ClusterTls> tls;  // redis.tls: the keys of clusters[].tls
  // Around Redis: open, global limits decide without it (on_failure) and Redis is left alone.
  circuit::BreakerOptions circuit_breaker = default_redis_breaker();

  static circuit::BreakerOptions default_redis_breaker() {
    circuit::BreakerOptions o;
    o.window_type = circuit::WindowType::count;
    o.window_size = 20;
    o.min_calls = 10;
    o.failure_rate = 0.5;
    o.consecutive_failures = 5;
    o.open_duration = 1s;
    o.half_open_probes = 1;
    o.success_threshold = 1;
    return o;
  }
};

// The overload manager's levels (libbulwark's ResourceLevel, in the same order).
enum class OverloadLevel : uint8_t { normal, warning, critical, exhausted };

struct OverloadSpec {
  std::optional<uint64_t> memory_limit;  // bytes; default: cgroup memory.max
  // overload.force_level: drills and tests — the level is at least this, whatever the
  // resources say. Off (normal) by default.
  OverloadLevel force_level = OverloadLevel::normal;
};

// What an alert rule watches (alerts[].metric): one of the gateway's signals, optionally scoped
// to one route or cluster with a `{route="api"}` / `{cluster="backend"}` selector
// (proxy/alerting.h says how each is computed).
enum class AlertSignalKind : uint8_t {
  requests_5xx_ratio,      // bulwark_requests_5xx_ratio{route}: last minute, 0..1
  request_duration_p99,    // bulwark_request_duration_p99_seconds{route}: last minute
  requests_per_second,     // bulwark_requests_per_second{route}: last minute
  retry_budget_exhausted,  // bulwark_retry_budget_exhausted_per_second{route}
  breakers_open,           // bulwark_breakers_open{cluster}: now
  endpoints_unusable,      // bulwark_endpoints_unusable{cluster}: now
  overload_level,          // bulwark_overload_level: 0 normal .. 3 exhausted
};
struct AlertSignal {
  AlertSignalKind kind = AlertSignalKind::requests_5xx_ratio;
  std::string route;    // empty: every route
  std::string cluster;  // empty: every cluster
};
// Parses alerts[].metric; nullopt names no signal (or a selector the signal does not take).
std::optional<AlertSignal> parse_alert_signal(std::string_view text);

struct AlertSpec {
  std::string name;
  std::string metric;
  AlertSignal signal;  // parsed from metric
  std::string op = ">";
  double threshold = 0;
  Duration for_duration = 0s;  // key `for`
  std::string severity = "warning";
};

struct AccessLogSpec {
  std::string path = "stdout";
  std::string format = "json";
};

struct ShutdownSpec {
  Duration drain_timeout = 30s;  // SIGTERM: how long in-flight requests may take to finish
};

struct LoggingSpec {
  std::string level = "info";
  AccessLogSpec access;
};

struct Config {
  uint32_t workers = 0;  // 0: number of cores
  Address admin{"127.0.0.1", 9901};  // admin.listen
  // admin.token: the bearer token the admin API asks for (POST always, every endpoint off
  // loopback); empty: none. Required when admin.listen is off loopback. Secret: redacted.
  std::string admin_token;
  // admin.tls: the admin API over HTTPS (same keys as listeners[].tls; client certificates are
  // checked when client_ca is set, the subject is not forwarded anywhere).
  std::optional<ListenerTls> admin_tls;
  std::vector<Listener> listeners;
  std::vector<Route> routes;
  std::vector<Cluster> clusters;
  CacheSpec cache;
  std::optional<RedisSpec> redis;
  OverloadSpec overload;
  std::vector<AlertSpec> alerts;
  LoggingSpec logging;
  ShutdownSpec shutdown;

  const Cluster* find_cluster(std::string_view name) const;
};

struct Diagnostic {
  std::string file;
  int line = 0;      // 1-based; 0 when unknown
  int column = 0;    // 1-based
  std::string path;  // key path, e.g. routes[0].retry.backoff.base
  std::string message;
  std::string text() const;  // "file:line:col: path: message"
};

class ConfigError : public std::runtime_error {
 public:
  explicit ConfigError(std::vector<Diagnostic> diagnostics);
  const std::vector<Diagnostic>& diagnostics() const noexcept { return diagnostics_; }

 private:
  std::vector<Diagnostic> diagnostics_;
};

// Environment lookup, injectable for tests. Returns nullopt for an unset variable.
using EnvLookup = std::optional<std::string> (*)(const std::string& name);
std::optional<std::string> process_env(const std::string& name);

// Parses YAML text; `file` names it in diagnostics. Throws ConfigError.
Config parse(const std::string& text, const std::string& file, EnvLookup env = process_env);
// Reads and parses a file. Throws ConfigError (also for an unreadable file).
Config load_file(const std::string& path, EnvLookup env = process_env);

}  // namespace bulwark::gateway::config
