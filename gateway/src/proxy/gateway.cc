#include "proxy/gateway.h"

#include "filters/jwt/verify.h"
#include "http/tls_context.h"

#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <mutex>
#include <random>
#include <stdexcept>
#include <thread>

#include "admin/config_json.h"
#include "bulwark/core/clock.h"
#include "bulwark/observe/log.h"
#include "bulwark/observe/prometheus.h"
#include "bulwark/observe/registry.h"
#include "config/warnings.h"
#include "listener/worker.h"
#include "proxy/alerting.h"
#include "proxy/dns_refresher.h"
#include "proxy/readiness.h"
#include "route/runtime.h"
#include "upstream/health_checker.h"

namespace bulwark::gateway::proxy {

namespace net = boost::asio;
using listener::Worker;
using route::ListenerShared;
using route::Shared;
using route::Snapshot;
using tcp = net::ip::tcp;
using nlohmann::json;

namespace {

constexpr const char* kVersion = BULWARK_VERSION;

std::string format_diagnostics(const config::ConfigError& e, std::vector<std::string>* out) {
  std::string all;
  for (const auto& d : e.diagnostics()) {
    out->push_back(d.text());
    if (!all.empty()) all += "; ";
    all += d.text();
  }
  return all;
}

double class_total(const std::array<observe::Counter*, 5>& counters, std::size_t i) {
  return counters[i] != nullptr ? counters[i]->value() : 0.0;
}

}  // namespace

struct Gateway::Impl {
  Impl(GatewayOptions o, config::Config c)
      : options(std::move(o)),
        clock(options.clock != nullptr ? *options.clock : SystemClock::instance()),
        startup(std::make_shared<const config::Config>(std::move(c))),
        logs({bulwark::observe::make_stderr_sink()},
             {.level = bulwark::observe::parse_log_level(startup->logging.level)}),
        log(logs.logger("gateway")),
        shared(registry, clock) {
    shared.upstream_log = logs.logger("upstream");
  }

  GatewayOptions options;
  Clock& clock;
  std::shared_ptr<const config::Config> startup;
  bulwark::observe::LogSystem logs;
  bulwark::observe::Logger log;
  bulwark::observe::Registry registry;
  Shared shared;
  // The names among the endpoints: looked up at start, on reload and every dns_refresh; a
  // change of addresses installs a new snapshot of the same config (rebuild_for_dns).
  std::unique_ptr<DnsRefresher> dns;
  std::unique_ptr<upstream::HealthChecker> health_checker;  // probes the current snapshot
  std::unique_ptr<Readiness> readiness;                     // critical clusters, for /readyz
  std::unique_ptr<Alerting> alerting;                       // alerts[], for /alerts
  std::vector<std::unique_ptr<Worker>> workers;
  std::unique_ptr<admin::AdminServer> admin;
  TimePoint started{};
  std::vector<uint16_t> ports;  // bound listener ports, in start-up order

  std::mutex reload_mu;  // one reload at a time (SIGHUP and POST /reload may overlap)
  std::mutex mu;         // guards current, generation, reload bookkeeping
  std::shared_ptr<const Snapshot> current;
  uint64_t generation = 1;
  uint64_t reload_ok = 0;
  uint64_t reload_failed = 0;
  std::string last_error;

  std::shared_ptr<const Snapshot> snapshot() {
    std::lock_guard lock(mu);
    return current;
  }

  json stats();
  json redis_stats(const config::RedisSpec& spec);
  json clusters();
  admin::ReloadOutcome reload();
  void rebuild_for_dns(const std::vector<std::string>& names);
  // Makes `snap` current and hands it to the workers and the watchers; under reload_mu and mu.
  void install(const std::shared_ptr<const Snapshot>& snap);
  void write_ready_file(const std::vector<uint16_t>& ports, uint16_t admin_port);
  // The configuration's security warnings (config/warnings.h), one log line each.
  void log_warnings(const config::Config& config) {
    for (const config::Warning& w : config::warnings(config)) {
      log.warn("configuration warning",
               {{"file", options.config_path}, {"path", w.path}, {"warning", w.message}});
    }
  }
};

Gateway::Gateway(GatewayOptions options, config::Config config)
    : impl_(std::make_unique<Impl>(std::move(options), std::move(config))) {
  auto& s = *impl_;
  s.shared.access_log = std::make_unique<observe::AccessLog>(
      observe::AccessLog::Options{.path = s.startup->logging.access.path});
  for (std::size_t i = 0; i < s.startup->listeners.size(); ++i) {
    s.shared.listeners.push_back(std::make_unique<ListenerShared>());
  }
  s.log_warnings(*s.startup);
  s.dns = std::make_unique<DnsRefresher>(s.clock, s.registry, s.logs.logger("dns"));
  // Names are looked up before the first snapshot; one that does not resolve leaves its
  // cluster without its addresses (503 until it resolves) and is tried again, with backoff.
  for (const std::string& name : s.dns->follow(*s.startup)) {
    s.log.warn("starting without the addresses of an endpoint name; retrying in the background",
               {{"endpoint", name}});
  }
  s.current =
      route::build_snapshot(s.startup, *s.startup, s.generation, s.shared, s.dns->resolved());
  s.health_checker = std::make_unique<upstream::HealthChecker>(s.logs.logger("health"));
  s.health_checker->watch(s.current);
  s.readiness = std::make_unique<Readiness>(s.clock);
  s.readiness->watch(*s.current);
  s.alerting = std::make_unique<Alerting>(s.clock, s.shared.overload, s.logs.logger("alerts"));
  s.alerting->watch(s.current);
  s.shared.overload.force(s.startup->overload.force_level);
  s.shared.overload.start(s.startup->overload, s.logs.logger("overload"));
  s.shared.metrics.reload_result(true, s.generation);
  s.shared.metrics.set_access_log_dropped_source(
      [&s]() -> uint64_t { return s.shared.access_log ? s.shared.access_log->dropped() : 0; });
}

Gateway::~Gateway() {
  if (impl_->dns) impl_->dns->stop();
  if (impl_->admin) impl_->admin->stop();
  if (impl_->alerting) impl_->alerting->stop();
  for (auto& w : impl_->workers) w->stop();
  impl_->workers.clear();
  if (impl_->shared.access_log) impl_->shared.access_log->close();
}

void Gateway::Impl::write_ready_file(const std::vector<uint16_t>& ports, uint16_t admin_port) {
  if (options.ready_file.empty()) return;
  json doc{{"pid", ::getpid()}, {"admin", admin_port}, {"listeners", json::object()}};
  for (std::size_t i = 0; i < ports.size(); ++i) {
    doc["listeners"][startup->listeners[i].name] = ports[i];
  }
  const std::string tmp = options.ready_file + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << doc.dump() << "\n";
    if (!out) throw std::runtime_error("cannot write ready file " + tmp);
  }
  if (std::rename(tmp.c_str(), options.ready_file.c_str()) != 0) {
    throw std::runtime_error("cannot rename ready file to " + options.ready_file);
  }
}

void Gateway::start() {
  auto& s = *impl_;
  s.started = s.clock.now();
  unsigned n = s.startup->workers;
  if (n == 0) n = std::max(1u, std::thread::hardware_concurrency());
  std::random_device rd;
  std::vector<tcp::endpoint> endpoints;
  for (const auto& l : s.startup->listeners) {
    endpoints.emplace_back(net::ip::make_address(l.listen.host), l.listen.port);
  }
  std::vector<uint16_t>& ports = s.ports;
  for (unsigned i = 0; i < n; ++i) {
    auto w = std::make_unique<Worker>(s.clock, s.shared, s.current, (uint64_t{rd()} << 32) ^ rd());
    const auto bound = w->listen(endpoints);  // throws naming the address
    if (i == 0) {
      ports = bound;
      // Port 0 is resolved once, by the first worker; the others share that port.
      for (std::size_t k = 0; k < endpoints.size(); ++k) endpoints[k].port(ports[k]);
    }
    s.workers.push_back(std::move(w));
  }

  admin::AdminHandlers h;
  h.metrics = [&s] { return bulwark::observe::to_prometheus_text(s.registry); };
  h.ready = [&s] {
    admin::ReadyState r;
    if (s.shared.draining.load()) {
      r.ready = false;
      r.status = "draining";
      return r;
    }
    Readiness::Verdict verdict = s.readiness->verdict();
    if (!verdict.ready) {
      r.ready = false;
      r.status = "not_ready";
      r.failing = std::move(verdict.failing);
    }
    return r;
  };
  h.stats = [&s] { return s.stats(); };
  h.clusters = [&s] { return s.clusters(); };
  h.config = [&s] { return admin::config_to_json(*s.snapshot()->config); };
  h.alerts = [&s] { return s.alerting->to_json(s.clock.now()); };
  h.reload = [&s] { return s.reload(); };
  try {
    s.admin = std::make_unique<admin::AdminServer>(s.startup->admin.host, s.startup->admin.port,
                                                   std::move(h), s.startup->admin_token);
    if (s.startup->admin_tls) {
      s.admin->set_tls(std::make_shared<http::ServerTls>(*s.startup->admin_tls));
    }
  } catch (const std::system_error& e) {
    throw std::runtime_error("cannot listen on " + s.startup->admin.text() +
                             " (admin): " + e.code().message());
  } catch (const std::invalid_argument& e) {
    // A name that resolved off loopback: the loader's check saw only the name.
    throw std::runtime_error(e.what());
  }
  for (auto& w : s.workers) w->start();
  s.dns->start([&s](const std::vector<std::string>& names) { s.rebuild_for_dns(names); });
  s.readiness->start();
  s.alerting->start();
  s.admin->start();
  for (std::size_t k = 0; k < ports.size(); ++k) {
    s.log.info("listening",
               {{"listener", s.startup->listeners[k].name},
                {"address", s.startup->listeners[k].listen.host + ":" + std::to_string(ports[k])}});
  }
  s.log.info("ready", {{"version", kVersion},
                       {"workers", static_cast<uint64_t>(n)},
                       {"admin_port", static_cast<uint64_t>(s.admin->port())}});
  s.write_ready_file(ports, s.admin->port());
}

admin::ReloadOutcome Gateway::Impl::reload() {
  std::lock_guard serial(reload_mu);
  admin::ReloadOutcome out;
  std::shared_ptr<const config::Config> next;
  std::shared_ptr<const Snapshot> snap;
  std::shared_ptr<http::ServerTls> admin_tls;
  uint64_t gen = 0;
  {
    std::lock_guard lock(mu);
    gen = generation + 1;
  }
  std::string error;
  try {
    next = std::make_shared<const config::Config>(config::load_file(options.config_path));
    // The admin listener keeps its start-up address: off loopback it cannot lose its token.
    if (next->admin_token.empty() && admin && !admin->loopback()) {
      throw std::runtime_error("admin.token: the admin listener (" + startup->admin.text() +
                               ") is off loopback until a restart: it needs a token");
    }
    // New names are looked up now; known ones keep their addresses.
    for (const std::string& name : dns->follow(*next)) {
      log.warn("reloading without the addresses of an endpoint name; retrying in the background",
               {{"endpoint", name}});
    }
    snap = route::build_snapshot(next, *startup, gen, shared, dns->resolved());
    if (next->admin_tls) admin_tls = std::make_shared<http::ServerTls>(*next->admin_tls);
  } catch (const config::ConfigError& e) {
    error = format_diagnostics(e, &out.errors);
  } catch (const std::exception& e) {
    error = e.what();
    out.errors.push_back(error);
  }
  if (!error.empty()) {
    // The names of a refused file are not looked up again.
    dns->forget_others(*snapshot()->config);
  } else {
    dns->forget_others(*next);
  }
  std::lock_guard lock(mu);
  if (!error.empty()) {
    ++reload_failed;
    last_error = error;
    out.ok = false;
    out.generation = generation;
    shared.metrics.reload_result(false, generation);
    log.error("reload failed; the running configuration stays",
              {{"error", error}, {"generation", generation}});
    return out;
  }
  // Listener sockets and the worker count are fixed for the life of the process.
  bool restart_needed =
      next->workers != startup->workers || next->listeners.size() != startup->listeners.size();
  for (std::size_t i = 0; !restart_needed && i < next->listeners.size(); ++i) {
    restart_needed = next->listeners[i].name != startup->listeners[i].name ||
                     !(next->listeners[i].listen == startup->listeners[i].listen);
  }
  if (!(next->admin == startup->admin)) restart_needed = true;
  if (restart_needed) {
    log.warn("listener addresses, admin address or workers changed: takes effect on restart");
  }
  generation = gen;
  if (admin) {
    admin->set_token(next->admin_token);
    admin->set_tls(std::move(admin_tls));  // certificates read again with the config
  }
  log_warnings(*next);
  install(snap);
  shared.overload.force(next->overload.force_level);
  ++reload_ok;
  shared.metrics.reload_result(true, generation);
  log.info("configuration reloaded", {{"generation", generation}});
  out.ok = true;
  out.generation = generation;
  return out;
}

void Gateway::Impl::install(const std::shared_ptr<const Snapshot>& snap) {
  current = snap;
  for (auto& w : workers) w->install(snap);
  health_checker->watch(snap);
  readiness->watch(*snap);
  alerting->watch(snap);
}

void Gateway::Impl::rebuild_for_dns(const std::vector<std::string>& names) {
  std::lock_guard serial(reload_mu);
  if (shared.draining.load()) return;
  const std::shared_ptr<const Snapshot> old = snapshot();
  std::string changed;
  for (const auto& n : names) changed += (changed.empty() ? "" : ", ") + n;
  std::shared_ptr<const Snapshot> snap;
  try {
    // The same config and generation; the old snapshot lends its TLS contexts.
    snap = route::build_snapshot(old->config, *startup, old->generation, shared, dns->resolved(),
                                 old.get());
  } catch (const std::exception& e) {
    log.error("endpoint addresses changed but no snapshot could be built; the old one stays",
              {{"endpoints", changed}, {"error", e.what()}});
    return;
  }
  std::lock_guard lock(mu);
  install(snap);
  log.info("endpoint addresses changed: new snapshot installed",
           {{"endpoints", changed},
            {"generation", snap->generation},
            {"endpoint_count", static_cast<uint64_t>(snap->endpoint_count)}});
}

admin::ReloadOutcome Gateway::reload() { return impl_->reload(); }

namespace {

// A TLS listener's handshakes by result and connections by version.
json listener_tls_stats(observe::ListenerMetrics& m) {
  json handshakes = json::object();
  for (std::size_t i = 0; i < observe::kTlsHandshakeResults.size(); ++i) {
    handshakes[std::string(observe::kTlsHandshakeResults[i])] =
        m.tls_handshakes[i] ? m.tls_handshakes[i]->value() : 0.0;
  }
  return {{"handshakes", handshakes},
          {"TLSv1.2", m.tls12 ? m.tls12->value() : 0.0},
          {"TLSv1.3", m.tls13 ? m.tls13->value() : 0.0}};
}

// A route's authentication results by reason (ok, jwt_missing, ...).
json auth_stats(observe::RouteMetrics& m) {
  json out = json::object();
  for (std::size_t i = 0; i < filters::jwt::kResultCount; ++i) {
    const std::string_view name = filters::jwt::result_name(static_cast<filters::jwt::Result>(i));
    out[std::string(name)] = m.auth_result(name).value();
  }
  return out;
}

}  // namespace

json Gateway::Impl::stats() {
  const auto snap = snapshot();
  json doc;
  doc["version"] = kVersion;
  doc["uptime_seconds"] = std::chrono::duration<double>(clock.now() - started).count();
  doc["generation"] = snap->generation;
  doc["workers"] = workers.size();
  doc["draining"] = shared.draining.load();
  json listeners = json::array();
  for (std::size_t i = 0; i < snap->listeners.size(); ++i) {
    const auto& l = snap->listeners[i];
    listeners.push_back(
        {{"name", startup->listeners[i].name},
         {"address", config::Address{startup->listeners[i].listen.host,
                                     i < ports.size() ? ports[i] : uint16_t{0}}
                         .text()},
         {"connections_active", shared.listeners[i]->connections.load()},
         {"requests_active", shared.listeners[i]->requests.load()},
         {"connections_total",
          l.metrics->connections_total ? l.metrics->connections_total->value() : 0.0}});
    if (l.tls) listeners.back()["tls"] = listener_tls_stats(*l.metrics);
  }
  doc["listeners"] = listeners;
  json routes = json::array();
  for (const auto& r : snap->routes) {
    json by_class = json::object();
    for (std::size_t i = 0; i < 5; ++i) {
      by_class[std::to_string(i + 1) + "xx"] = class_total(r.metrics->requests, i);
    }
    json route{{"name", r.config->name}, {"cluster", r.config->cluster}, {"requests", by_class}};
    if (r.config->auth.jwt) route["auth"] = auth_stats(*r.metrics);
    if (r.metrics->duration != nullptr) {
      const auto h = r.metrics->duration->snapshot();
      if (h.count() > 0) {
        route["p50_ms"] = h.percentile(0.50) * 1e3;
        route["p99_ms"] = h.percentile(0.99) * 1e3;
      }
    }
    routes.push_back(route);
  }
  doc["routes"] = routes;
  {
    std::lock_guard lock(mu);
    doc["reloads"] = {
        {"success", reload_ok}, {"failure", reload_failed}, {"last_error", last_error}};
  }
  doc["access_log"] = {{"written", shared.access_log ? shared.access_log->written() : 0},
                       {"dropped", shared.access_log ? shared.access_log->dropped() : 0}};
  doc["alerts"] = alerting->to_json(clock.now())["rules"];
  if (snap->config->redis) doc["redis"] = redis_stats(*snap->config->redis);
  return doc;
}

json Gateway::Impl::redis_stats(const config::RedisSpec& spec) {
  const observe::RedisMetrics& m = shared.metrics.redis();
  json errors = json::object();
  for (std::size_t i = 0; i < observe::kRedisErrors.size(); ++i) {
    errors[std::string(observe::kRedisErrors[i])] = m.errors[i] ? m.errors[i]->value() : 0.0;
  }
  json out{{"address", spec.address.text()},
           {"connections_up", m.connections_up ? m.connections_up->value() : 0.0},
           {"errors", errors},
           {"script_loads", m.script_loads ? m.script_loads->value() : 0.0}};
  const auto breaker = shared.policies.current_redis_breaker();
  out["breaker"] = breaker ? circuit::to_string(breaker->state()) : "none";
  if (m.round_trip != nullptr) {
    const auto h = m.round_trip->snapshot();
    if (h.count() > 0) {
      out["round_trip_p50_ms"] = h.percentile(0.50) * 1e3;
      out["round_trip_p99_ms"] = h.percentile(0.99) * 1e3;
    }
  }
  return out;
}

namespace {

// The breaker's state ("none" without one) and an endpoint's health ("ejected" while outlier
// detection keeps it out, else its health-check status: unknown | up | down).
std::string_view breaker_state(const route::ClusterRuntime& c) {
  return c.state && c.state->breaker ? circuit::to_string(c.state->breaker->state()) : "none";
}

std::string_view endpoint_health(const route::EndpointRuntime& e, TimePoint now) {
  if (!e.health) return "unknown";
  return e.health->ejected(now) ? "ejected" : upstream::to_string(e.health->status());
}

}  // namespace

json Gateway::Impl::clusters() {
  const auto snap = snapshot();
  const TimePoint now = clock.now();
  json out = json::array();
  for (const auto& c : snap->clusters) {
    const std::string_view breaker = breaker_state(c);
    json eps = json::array();
    for (const auto& e : c.endpoints) {
      const auto* m = e.metrics;
      double total = 0;
      for (std::size_t i = 0; i < 5; ++i) total += class_total(m->requests, i);
      eps.push_back({{"address", e.label},
                     {"requests_active", m->active ? m->active->value() : 0.0},
                     {"pool_idle", m->pool_idle ? m->pool_idle->value() : 0.0},
                     {"pool_busy", m->pool_busy ? m->pool_busy->value() : 0.0},
                     {"requests_total", total},
                     {"connect_failures", m->connect_failures ? m->connect_failures->value() : 0.0},
                     {"health", endpoint_health(e, now)},
                     {"ejections", e.health ? e.health->ejections() : 0},
                     // The cluster's breaker guards every call to the endpoint.
                     {"breaker", breaker}});
    }
    json names = json::array();
    for (const DnsNameStatus& n : dns->status(c.config->name)) {
      names.push_back({{"name", n.name},
                       {"addresses", n.addresses},
                       {"last_error", n.last_error},
                       {"consecutive_failures", n.consecutive_failures}});
    }
    out.push_back(
        {{"name", c.config->name},
         {"dns", names},
         {"lb",
          c.config->lb == config::LoadBalancing::round_robin ? "round_robin" : "least_request"},
         {"breaker", breaker},
         {"requests_active", c.bulkhead ? c.bulkhead->in_flight() : 0},
         {"queued", c.bulkhead ? c.bulkhead->queued() : 0},
         {"queue_estimated_wait_ms",
          c.bulkhead
              ? std::chrono::duration<double, std::milli>(c.bulkhead->estimated_wait(now)).count()
              : 0.0},
         {"endpoints", eps}});
  }
  return out;
}

void Gateway::drain() {
  auto& s = *impl_;
  if (s.shared.draining.exchange(true)) return;
  s.dns->stop();  // no new snapshot while draining
  s.shared.metrics.set_draining(true);
  s.log.info(
      "draining",
      {{"drain_timeout_ms",
        std::chrono::duration<double, std::milli>(s.startup->shutdown.drain_timeout).count()}});
  for (auto& w : s.workers) w->begin_drain();
  const TimePoint deadline = s.clock.now() + s.startup->shutdown.drain_timeout;
  net::io_context ioc;
  net::steady_timer timer(ioc);
  // Poll the connection counts (cheap atomics) until they reach zero or the deadline passes.
  for (;;) {
    uint32_t open = 0;
    for (auto& w : s.workers) open += w->open_connections();
    if (open == 0) break;
    if (s.clock.now() >= deadline) {
      s.log.warn("drain deadline reached; closing remaining connections",
                 {{"connections", static_cast<uint64_t>(open)}});
      break;
    }
    timer.expires_after(std::chrono::milliseconds(10));
    timer.wait();
  }
  for (auto& w : s.workers) w->stop();
  s.log.info("drained");
}

int Gateway::run() {
  auto& s = *impl_;
  net::io_context ioc;
  // Installed before anything is bound: a supervisor may signal as soon as the ready file
  // appears.
  net::signal_set signals(ioc, SIGHUP, SIGTERM, SIGINT);
  start();
  bool stop = false;
  std::function<void()> wait = [&] {
    signals.async_wait([&](const boost::system::error_code& ec, int signo) {
      if (ec) return;
      if (signo == SIGHUP) {
        s.log.info("SIGHUP: reloading");
        reload();
        wait();
        return;
      }
      stop = true;
    });
  };
  wait();
  while (!stop) {
    ioc.run_one();
  }
  // A second SIGTERM during the drain ends the process at once.
  signals.cancel();
  signals.clear();
  std::signal(SIGTERM, SIG_DFL);
  std::signal(SIGINT, SIG_DFL);
  // clear() restored the default action of SIGHUP too, which would end the process; a reload
  // request during the drain (logrotate, a supervisor) is ignored instead.
  std::signal(SIGHUP, SIG_IGN);
  drain();
  if (s.admin) s.admin->stop();
  if (s.shared.access_log) s.shared.access_log->close();
  s.logs.flush();
  return 0;
}

}  // namespace bulwark::gateway::proxy
