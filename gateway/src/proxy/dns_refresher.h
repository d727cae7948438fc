// DnsRefresher: looks up the names among clusters[].endpoints at start, on reload and every
// dns_refresh, off the data path, and tells the gateway when a name's addresses changed so
// that it builds a new snapshot from the same configuration (proxy/gateway.cc). The decisions
// (which names, when, keep the last good set on failure) are route::DnsTable's (route/dns.h).
//
// Lookups: each runs on a short-lived thread of its own (getaddrinfo blocks and cannot be
// cancelled), so that names are looked up side by side and a lookup that hangs costs neither
// a worker nor the refresher: the refresher waits at most `lookup_timeout` for an answer
// (then the lookup counts as failed) and stop() does not wait for lookups at all. The
// refresher's own thread exists only while the configuration has names: a configuration of IP
// literals costs nothing.
//
// Metrics (collected at scrape time; endpoint: the name as written, "api.example.com:443"):
//   bulwark_dns_resolutions_total{cluster,endpoint,result}  counter  result: success | failure
//   bulwark_dns_addresses{cluster,endpoint}                 gauge    addresses in use
//   bulwark_dns_changes_total{cluster,endpoint}             counter  times the set changed
// A name listed by two clusters is looked up once and reported under each.
//
// Thread-safety: every member may be called from any thread.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "bulwark/core/clock.h"
#include "bulwark/observe/log.h"
#include "bulwark/observe/registry.h"
#include "config/config.h"
#include "route/dns.h"

namespace bulwark::gateway::proxy {

// Looks one name up; may block. Must be safe to call from any thread.
using Resolve = std::function<route::DnsAnswer(const std::string& host, uint16_t port)>;

// The system's resolver: getaddrinfo (AF_UNSPEC, AI_ADDRCONFIG), every TCP address it returns.
route::DnsAnswer system_resolve(const std::string& host, uint16_t port);

struct DnsRefresherOptions {
  Resolve resolve = system_resolve;
  Duration lookup_timeout = std::chrono::seconds(10);
};

// What /clusters shows about one name of a cluster.
struct DnsNameStatus {
  std::string name;                    // "host:port"
  std::vector<std::string> addresses;  // in use (the last good set)
  std::string last_error;              // "" when the last lookup succeeded
  uint32_t consecutive_failures = 0;
};

class DnsRefresher {
 public:
  // Called on the refresher's thread after lookups changed the addresses of `names`.
  using OnChange = std::function<void(const std::vector<std::string>& names)>;

  DnsRefresher(const Clock& clock, bulwark::observe::Registry& registry,
               bulwark::observe::Logger log, DnsRefresherOptions options = {});
  ~DnsRefresher();  // stop()s
  DnsRefresher(const DnsRefresher&) = delete;
  DnsRefresher& operator=(const DnsRefresher&) = delete;

  // Follows the names of `config` (route::DnsTable::follow) and looks up, on the calling
  // thread, those it did not know, waiting for their answers (each at most lookup_timeout):
  // at start and on reload, before the snapshot is built. Returns the names that have no
  // address (never resolved).
  std::vector<std::string> follow(const config::Config& config);
  // Drops the names `config` does not have (the configuration in force after a reload).
  void forget_others(const config::Config& config);

  // Looks up the names due now and records the answers; returns the names whose addresses
  // changed. What the thread runs at each name's due time.
  std::vector<std::string> refresh_due();

  route::ResolvedNames resolved() const;
  std::vector<DnsNameStatus> status(const std::string& cluster) const;

  // Runs the refresher's thread from now on (whenever there are names), calling `on_change`.
  void start(OnChange on_change);
  // Ends the thread; lookups in flight are abandoned. Idempotent.
  void stop();

 private:
  struct Batch;
  struct Named {
    std::string key;
    config::Address name;
  };

  // Looks `names` up side by side; one answer per name, in order.
  std::vector<route::DnsAnswer> lookup(const std::vector<Named>& names);
  // Records answers under mu_ and logs what changed; returns the keys whose set changed.
  std::vector<std::string> record(const std::vector<Named>& names,
                                  const std::vector<route::DnsAnswer>& answers);
  void ensure_thread();  // under mu_
  void run();
  void collect(bulwark::observe::MetricsSink& sink);

  const Clock& clock_;
  bulwark::observe::Registry& registry_;
  bulwark::observe::Logger log_;
  DnsRefresherOptions options_;
  bulwark::observe::Registry::CollectorId collector_ = 0;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  route::DnsTable table_;
  std::set<std::shared_ptr<Batch>> batches_;  // lookups being waited for
  OnChange on_change_;
  bool started_ = false;
  bool stopping_ = false;
  bool kicked_ = false;  // the table changed: the thread recomputes its next wake-up
  std::thread thread_;
};

}  // namespace bulwark::gateway::proxy
