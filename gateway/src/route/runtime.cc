#include "route/runtime.h"

#include "filters/block_patterns/block_patterns.h"
#include "filters/circuit_breaker/circuit_breaker.h"
#include "filters/cluster_limit/cluster_limit.h"
#include "filters/concurrency_limit/concurrency_limit.h"
#include "filters/fault/fault.h"
#include "filters/jwt/jwt.h"
#include "filters/rate_limit/rate_limit.h"
#include "filters/retry/retry.h"

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>
#include <stdexcept>

namespace bulwark::gateway::route {

namespace net = boost::asio;
using tcp = net::ip::tcp;

namespace {

// Redis's address (a name is looked up here, at start and on reload, never on the data path).
tcp::endpoint resolve(const config::Address& a) {
  boost::system::error_code ec;
  const auto address = net::ip::make_address(a.host, ec);
  if (!ec) return {address, a.port};
  net::io_context ioc;
  tcp::resolver resolver(ioc);
  auto results = resolver.resolve(a.host, std::to_string(a.port), ec);
  if (ec || results.empty()) {
    throw std::runtime_error("cannot resolve endpoint " + a.text() + ": " +
                             (ec ? ec.message() : std::string("no address")));
  }
  return results.begin()->endpoint();
}

// A listener's or cluster's TLS context; OpenSSL's refusal comes back naming the section.
template <class Spec>
auto tls_for(const Spec& spec, const std::string& where) {
  using Tls = std::conditional_t<std::is_same_v<Spec, config::ListenerTls>, http::ServerTls,
                                 http::ClientTls>;
  try {
    return std::make_shared<Tls>(spec);
  } catch (const std::exception& e) {
    throw std::runtime_error(where + ": " + e.what());
  }
}

template <class Filter>
void add_if(filter::FilterChain& chain, std::unique_ptr<Filter> filter) {
  if (filter) chain.add(std::move(filter));
}

// The route's chain, in the order of docs/architecture.md: overload shedding by the route's
// priority, block patterns, JWT authentication, the cluster's concurrency limit (and queue), the
// route's rate limit and fault injection; then retry and the cluster's breaker (the breaker last:
// it is the only call policy that refuses an attempt).
std::unique_ptr<filter::FilterChain> route_chain(const config::Config& config,
                                                 const config::Route& route,
                                                 const RouteRuntime& runtime,
                                                 observe::RouteMetrics& metrics, Shared& shared) {
  const ClusterRuntime& cluster = *runtime.cluster;
  auto chain = std::make_unique<filter::FilterChain>();
  chain->add(filters::bind_overload(route, shared.overload));
  add_if(*chain, filters::bind_block_patterns(route, metrics));
  add_if(*chain, filters::bind_jwt(route, metrics));
  chain->add(filters::bind_cluster_limit(cluster.bulkhead, *cluster.metrics));
  add_if(*chain,
         filters::bind_route_rate_limit(route, config.redis, shared.policies, shared.metrics));
  add_if(*chain, filters::bind_fault(route, metrics));
  if (route.retry) {
    add_if(*chain,
           filters::bind_retry(
               route, shared.policies.budget(cluster.config->name, route.retry->budget), metrics));
  }
  std::vector<std::pair<const config::Cluster*, std::shared_ptr<ClusterState>>> guarded{
      {cluster.config, cluster.state}};
  for (const ClusterRuntime* f : runtime.fallbacks) guarded.emplace_back(f->config, f->state);
  add_if(*chain, filters::bind_circuit_breaker(guarded));
  return chain;
}

struct Resolved {
  std::string label;
  tcp::endpoint endpoint;
};

// The addresses of one configured endpoint: itself for an IP literal, the name's addresses in
// `names` otherwise (none before its first answer).
std::vector<Resolved> addresses_of(const config::Address& e, const ResolvedNames& names) {
  boost::system::error_code ec;
  const auto literal = net::ip::make_address(e.host, ec);
  if (!ec) return {{e.text(), {literal, e.port}}};
  std::vector<Resolved> out;
  if (const auto it = names.find(e.text()); it != names.end()) {
    for (const auto& ip : it->second) out.push_back({resolved_label(e, ip), {ip, e.port}});
  }
  return out;
}

std::atomic<uint64_t> next_serial{1};

}  // namespace

namespace {

ListenerRuntime build_listener(const config::Config& config, const config::Listener& boot,
                               std::size_t index, Shared& shared, const Snapshot* previous) {
  const config::Listener* chosen = &boot;
  for (const auto& l : config.listeners) {
    if (l.name == boot.name) chosen = &l;
  }
  ListenerRuntime lr;
  lr.config = chosen;
  lr.metrics = &shared.metrics.listener(boot.name);
  lr.filters = std::make_unique<filter::FilterChain>();
  lr.filters->add(
      filters::bind_concurrency_limit(*chosen, shared.listeners[index]->requests, *lr.metrics));
  add_if(*lr.filters,
         filters::bind_client_rate_limit(*chosen, config.redis, shared.policies, shared.metrics));
  if (previous != nullptr) {
    lr.tls = previous->listeners[index].tls;
  } else if (chosen->tls) {
    lr.tls = tls_for(*chosen->tls, "listeners[" + boot.name + "].tls");
  }
  return lr;
}

// What the workers' Redis clients connect with.
redis::ClientOptions redis_options(const config::RedisSpec& spec) {
  redis::ClientOptions options;
  options.endpoint = resolve(spec.address);
  options.username = spec.username;
  options.password = spec.password;
  options.connections = spec.connections;
  options.max_pending = spec.max_pending;
  options.connect_timeout = spec.connect_timeout;
  // A reply this late means a stuck server, not a slow one: the connection is dropped.
  options.stall_timeout = std::max<Duration>(std::chrono::seconds(1), spec.timeout * 100);
  if (spec.tls) {
    options.tls = tls_for(*spec.tls, "redis.tls");
    options.host = spec.address.host;
  }
  return options;
}

ClusterRuntime build_cluster(const config::Cluster& c, std::size_t index, Snapshot& snap,
                             Shared& shared, const ResolvedNames& names, const Snapshot* previous) {
  ClusterRuntime cr;
  cr.index = index;
  cr.config = &c;
  cr.metrics = &shared.metrics.cluster(c.name);
  std::vector<std::pair<const config::Address*, Resolved>> resolved;
  for (const auto& e : c.endpoints) {
    for (auto& r : addresses_of(e, names)) resolved.emplace_back(&e, std::move(r));
  }
  std::vector<std::string> labels;
  labels.reserve(resolved.size());
  for (const auto& r : resolved) labels.push_back(r.second.label);
  cr.state = shared.policies.cluster(c, labels);
  cr.bulkhead = cr.state->bulkhead;
  if (previous != nullptr) {
    cr.tls = previous->clusters[index].tls;
  } else if (c.tls) {
    cr.tls = tls_for(*c.tls, "clusters[" + c.name + "].tls");
  }
  for (auto& [e, r] : resolved) {
    // TLS and plain connections to one address never share a pool.
    std::string pool_key = c.name + '\n' + r.label + (c.tls ? "\ntls" : "");
    EndpointRuntime runtime{snap.endpoint_count++,
                            e->text(),
                            e->host,
                            std::move(pool_key),
                            r.endpoint,
                            &shared.metrics.endpoint(c.name, r.label),
                            cr.state->endpoints.at(r.label)};
    runtime.label = std::move(r.label);
    cr.endpoints.push_back(std::move(runtime));
  }
  return cr;
}

RouteRuntime build_route(const config::Config& config, const config::Route& r, const Snapshot& snap,
                         Shared& shared) {
  RouteRuntime rr;
  rr.config = &r;
  rr.metrics = &shared.metrics.route(r.name);
  for (const auto& c : snap.clusters) {
    if (c.config->name == r.cluster) rr.cluster = &c;
  }
  for (const std::string& name : r.fallback) {
    for (const auto& c : snap.clusters) {
      if (c.config->name == name) rr.fallbacks.push_back(&c);
    }
  }
  rr.filters = route_chain(config, r, rr, *rr.metrics, shared);
  if (r.hedge && rr.cluster != nullptr) {
    const config::RetryBudgetSpec budget = r.retry ? r.retry->budget : config::RetryBudgetSpec{};
    rr.hedge = filters::bind_hedge(r, shared.policies.budget(rr.cluster->config->name, budget),
                                   shared.policies.clock(), *rr.metrics);
  }
  return rr;
}

}  // namespace

std::shared_ptr<const Snapshot> build_snapshot(const std::shared_ptr<const config::Config>& config,
                                               const config::Config& startup, uint64_t generation,
                                               Shared& shared, const ResolvedNames& names,
                                               const Snapshot* previous) {
  // A rebuild of the same config (an endpoint name's addresses changed) keeps what was read
  // from files and resolved: TLS contexts, the Redis options.
  if (previous != nullptr && previous->config != config) previous = nullptr;
  auto snap = std::make_shared<Snapshot>(config, Router(config->routes));
  snap->generation = generation;
  snap->serial = next_serial.fetch_add(1);
  for (const auto& boot : startup.listeners) {
    snap->listeners.push_back(
        build_listener(*config, boot, snap->listeners.size(), shared, previous));
  }
  if (previous != nullptr) {
    snap->redis = previous->redis;
  } else if (config->redis) {
    snap->redis = redis_options(*config->redis);
  }
  snap->clusters.reserve(config->clusters.size());
  for (const auto& c : config->clusters) {
    snap->clusters.push_back(
        build_cluster(c, snap->clusters.size(), *snap, shared, names, previous));
  }
  // Routes point at clusters: the vector is complete and never grows again.
  snap->routes.reserve(config->routes.size());
  for (const auto& r : config->routes)
    snap->routes.push_back(build_route(*config, r, *snap, shared));
  return snap;
}

}  // namespace bulwark::gateway::route
