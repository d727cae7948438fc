// Hostname endpoints: the decisions about the names among clusters[].endpoints, kept apart from
// the lookups themselves (proxy/dns_refresher.h runs them on a thread of its own, never on a
// worker, never per request).
//
// A name stands for every address it resolves to: each address is an endpoint of its own for
// load balancing, health checks, outlier ejection and metrics, labelled
// "<host>:<port> (<address>)" (resolved_label). The table keeps, per name ("host:port"), the
// last good set of addresses (sorted, so that a resolver rotating its answers changes nothing),
// when it is due again, and its counts:
//   - a lookup that succeeds replaces the set; the name is due again after dns_refresh (the
//     shortest of the clusters that list it); record() says whether the set changed, which is
//     when the gateway builds a new snapshot;
//   - a lookup that fails (or answers no address) keeps the last good set and is counted; the
//     name is due again after 1s, 2s, 4s ... (never later than dns_refresh): a name that has
//     never resolved, at start say, has no address (its cluster may have no endpoint: 503) and
//     is tried again soon.
//
// Pure: no I/O and no clock reads (`now` comes in); unit-tested on ManualClock (dns_test.cc).
// Thread-safety: none; the refresher guards its table.
#pragma once

#include <boost/asio/ip/address.hpp>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "bulwark/core/clock.h"
#include "config/config.h"

namespace bulwark::gateway::route {

using IpAddresses = std::vector<boost::asio::ip::address>;

// The addresses in use per name, by "host:port": what a snapshot is built from.
using ResolvedNames = std::map<std::string, IpAddresses, std::less<>>;

// What one lookup gave.
struct DnsAnswer {
  IpAddresses addresses;  // in any order, duplicates allowed
  std::string error;      // non-empty: the lookup failed
};

// Sorted and without duplicates.
IpAddresses normalized(IpAddresses addresses);

// How long after `failures` consecutive failures a name is looked up again: 1s doubling, at
// most `refresh`.
Duration retry_delay(uint32_t failures, Duration refresh) noexcept;

// The endpoint label of one address of a name: "api.example.com:443 (10.0.0.5)".
std::string resolved_label(const config::Address& name, const boost::asio::ip::address& ip);

class DnsTable {
 public:
  struct Entry {
    config::Address name;
    Duration refresh{};                    // the shortest dns_refresh of the clusters listing it
    std::vector<std::string> clusters;     // the clusters listing it, in config order
    std::optional<IpAddresses> addresses;  // the last good set; none before the first
    TimePoint due{};
    uint32_t failures = 0;   // consecutive failed lookups
    std::string last_error;  // of the last failed lookup ("" after a success)
    uint64_t successes = 0;
    uint64_t failures_total = 0;
    uint64_t changes = 0;  // times the set changed (the first set counts)
  };

  // Adds the names of `config` that are not known yet (due at `now`) and updates the refresh
  // and clusters of those that are; returns the keys added. Names that `config` no longer has
  // stay until forget_others().
  std::vector<std::string> follow(const config::Config& config, TimePoint now);
  // Drops the names that `config` does not have.
  void forget_others(const config::Config& config);

  // Names due at `now`, by key.
  std::vector<std::string> due(TimePoint now) const;
  // When the next name is due; none without names.
  std::optional<TimePoint> next_due() const;

  // Records one lookup of `key` (ignored for an unknown key). Returns true when the name's
  // set of addresses changed.
  bool record(std::string_view key, const DnsAnswer& answer, TimePoint now);

  ResolvedNames resolved() const;
  const std::map<std::string, Entry, std::less<>>& entries() const noexcept { return entries_; }
  bool empty() const noexcept { return entries_.empty(); }

 private:
  std::map<std::string, Entry, std::less<>> entries_;
};

}  // namespace bulwark::gateway::route
