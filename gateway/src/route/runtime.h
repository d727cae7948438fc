// A Snapshot is one loaded configuration made ready for the data path: routes with their
// router, clusters with resolved endpoint addresses, listener limits, and the metric handles
// each of them records into. Snapshots are immutable and shared (std::shared_ptr<const>):
// a request keeps the snapshot it started with, so a reload never changes a request in flight.
//
// Shared is the state that outlives snapshots and spans workers: metrics, the access log, the
// resilience policies' state (route/policy_store.h), per-listener connection and request counts
// (max_connections and max_concurrent_requests are limits per listener across all workers), the
// drain flag.
//
// Thread-safety: Snapshot is immutable. Shared's members are atomics or thread-safe objects.
#pragma once

#include <atomic>
#include <boost/asio/ip/tcp.hpp>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "config/config.h"
#include "filter/chain.h"
#include "filters/hedge/hedge.h"
#include "filters/overload/overload.h"
#include "http/tls_context.h"
#include "observe/access_log.h"
#include "observe/gateway_metrics.h"
#include "redis/client_options.h"
#include "route/dns.h"
#include "route/policy_store.h"
#include "route/router.h"

namespace bulwark::gateway::route {

// One address of a cluster: an IP literal of the config, or one of the addresses a name of the
// config resolved to (route/dns.h).
struct EndpointRuntime {
  std::size_t index = 0;  // 0 .. Snapshot::endpoint_count-1, across the snapshot's clusters
  std::string address;    // "host:port" as written in the config (the Host a probe sends)
  std::string host;       // the host as written (TLS: the name sent and verified)
  std::string pool_key;   // cluster name + '\n' + label: a worker's pool for this endpoint
  boost::asio::ip::tcp::endpoint endpoint;
  observe::EndpointMetrics* metrics = nullptr;
  // Outlier ejection and health-check state, shared with the snapshots before and after this
  // one while the endpoint stays in its cluster (route/policy_store.h).
  std::shared_ptr<upstream::EndpointHealth> health;
  // The endpoint's identity: its metric label, its key in the policy store and /clusters'
  // "address". `address` for an IP literal; "host:port (ip)" for an address of a name.
  std::string label;
};

struct ClusterRuntime {
  std::size_t index = 0;  // position in Snapshot::clusters
  const config::Cluster* config = nullptr;
  std::vector<EndpointRuntime> endpoints;
  observe::ClusterMetrics* metrics = nullptr;
  std::shared_ptr<ClusterState> state;  // breaker, endpoint health
  // The cluster's limit and queue as this snapshot was built (ClusterState's may be replaced
  // by a later reload).
  std::shared_ptr<limit::Bulkhead> bulkhead;
  // clusters[].tls: the context its connections use; null for plain TCP.
  std::shared_ptr<http::ClientTls> tls;
};

struct RouteRuntime {
  const config::Route* config = nullptr;
  const ClusterRuntime* cluster = nullptr;
  // routes[].fallback, in order: tried when the cluster's breaker is open, it has no usable
  // endpoint, or its attempts failed (upstream/exchange.h).
  std::vector<const ClusterRuntime*> fallbacks;
  observe::RouteMetrics* metrics = nullptr;
  // The route's filters: the cluster's concurrency limit and the route's rate limit (request
  // filters), retry and the cluster's circuit breaker (call policies).
  std::unique_ptr<filter::FilterChain> filters;
  // routes[].hedge, run by the exchange (filters/hedge); null without it.
  std::unique_ptr<filters::Hedge> hedge;
};

struct ListenerShared {
  std::atomic<uint32_t> connections{0};
  std::atomic<uint32_t> requests{0};
};

struct Shared {
  Shared(bulwark::observe::Registry& r, const Clock& clock)
      : registry(r), metrics(r), policies(clock, r), overload(r) {}
  bulwark::observe::Registry& registry;
  observe::GatewayMetrics metrics;
  PolicyStore policies;               // breakers, budgets, limiters, endpoint health across reloads
  filters::OverloadManager overload;  // the process's resource level
  std::unique_ptr<observe::AccessLog> access_log;
  bulwark::observe::Logger upstream_log;  // what workers log about upstreams (TLS failures)
  std::atomic<bool> draining{false};
  // One per listener of the start-up config, in the same order.
  std::vector<std::unique_ptr<ListenerShared>> listeners;
};

struct ListenerRuntime {
  const config::Listener* config = nullptr;
  observe::ListenerMetrics* metrics = nullptr;
  // The listener's request filters: filters/concurrency_limit, then the per-client rate limit.
  std::unique_ptr<filter::FilterChain> filters;
  // listeners[].tls: the contexts new connections handshake with (a connection keeps the one it
  // started with); null for plain TCP.
  std::shared_ptr<http::ServerTls> tls;
};

struct Snapshot {
  uint64_t generation = 0;  // the configuration's: a rebuild after a DNS change keeps it
  uint64_t serial = 0;      // unique to this snapshot in the process (per-snapshot caches)
  std::shared_ptr<const config::Config> config;
  // Indexed like the start-up listeners (listener sockets never change on reload); an entry
  // keeps the start-up listener's settings when the new config no longer has that name.
  std::vector<ListenerRuntime> listeners;
  std::vector<RouteRuntime> routes;  // same order as config->routes
  std::vector<ClusterRuntime> clusters;
  std::size_t endpoint_count = 0;
  Router router;
  // What the workers' Redis clients connect with (global rate limits); none without `redis`.
  std::optional<redis::ClientOptions> redis;

  Snapshot(std::shared_ptr<const config::Config> c, Router r)
      : config(std::move(c)), router(std::move(r)) {}
};

// Builds a snapshot: turns every endpoint into addresses (an IP literal is one; a name is the
// addresses `names` has for it, none when it has none: nothing is looked up here), looks up
// metric handles, builds the filter chains over the state that outlives snapshots (`shared`:
// the listeners' in-flight counts). `startup` supplies listener settings missing from
// `config`. `previous`, when built from the same `config` object (a rebuild after a DNS
// change), lends its TLS contexts and Redis options, so a rebuild reads no file and looks up
// no name. Throws std::runtime_error (a TLS context that cannot be built, a Redis address that
// does not resolve).
std::shared_ptr<const Snapshot> build_snapshot(const std::shared_ptr<const config::Config>& config,
                                               const config::Config& startup, uint64_t generation,
                                               Shared& shared, const ResolvedNames& names = {},
                                               const Snapshot* previous = nullptr);

}  // namespace bulwark::gateway::route
