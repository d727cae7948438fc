#include "route/dns.h"

#include <algorithm>

namespace bulwark::gateway::route {

namespace {

constexpr Duration kFirstRetry = std::chrono::seconds(1);

struct Named {
  config::Address name;
  Duration refresh{};
  std::vector<std::string> clusters;
};

// The names among the config's endpoints, by key.
std::map<std::string, Named, std::less<>> names_of(const config::Config& config) {
  std::map<std::string, Named, std::less<>> out;
  for (const config::Cluster& c : config.clusters) {
    for (const config::Address& e : c.endpoints) {
      if (config::is_ip_literal(e.host)) continue;
      auto [it, added] = out.try_emplace(e.text(), Named{e, c.dns_refresh, {}});
      Named& n = it->second;
      n.refresh = std::min(n.refresh, c.dns_refresh);
      if (std::find(n.clusters.begin(), n.clusters.end(), c.name) == n.clusters.end()) {
        n.clusters.push_back(c.name);
      }
    }
  }
  return out;
}

}  // namespace

IpAddresses normalized(IpAddresses addresses) {
  std::sort(addresses.begin(), addresses.end());
  addresses.erase(std::unique(addresses.begin(), addresses.end()), addresses.end());
  return addresses;
}

Duration retry_delay(uint32_t failures, Duration refresh) noexcept {
  Duration delay = kFirstRetry;
  for (uint32_t i = 1; i < failures && delay < refresh; ++i) delay *= 2;
  return std::min(delay, refresh);
}

std::string resolved_label(const config::Address& name, const boost::asio::ip::address& ip) {
  return name.text() + " (" + ip.to_string() + ")";
}

std::vector<std::string> DnsTable::follow(const config::Config& config, TimePoint now) {
  std::vector<std::string> added;
  for (auto& [key, named] : names_of(config)) {
    auto it = entries_.find(key);
    if (it == entries_.end()) {
      Entry e;
      e.name = named.name;
      e.due = now;
      it = entries_.emplace(key, std::move(e)).first;
      added.push_back(key);
    }
    Entry& e = it->second;
    // A shorter interval takes effect now, not after the longer one ran out.
    if (named.refresh < e.refresh) e.due = std::min(e.due, now + named.refresh);
    e.refresh = named.refresh;
    e.clusters = std::move(named.clusters);
  }
  return added;
}

void DnsTable::forget_others(const config::Config& config) {
  const auto wanted = names_of(config);
  std::erase_if(entries_, [&](const auto& kv) { return !wanted.contains(kv.first); });
}

std::vector<std::string> DnsTable::due(TimePoint now) const {
  std::vector<std::string> out;
  for (const auto& [key, e] : entries_) {
    if (e.due <= now) out.push_back(key);
  }
  return out;
}

std::optional<TimePoint> DnsTable::next_due() const {
  std::optional<TimePoint> out;
  for (const auto& [key, e] : entries_) {
    if (!out || e.due < *out) out = e.due;
  }
  return out;
}

bool DnsTable::record(std::string_view key, const DnsAnswer& answer, TimePoint now) {
  const auto it = entries_.find(key);
  if (it == entries_.end()) return false;
  Entry& e = it->second;
  if (!answer.error.empty() || answer.addresses.empty()) {
    ++e.failures;
    ++e.failures_total;
    e.last_error = answer.error.empty() ? "no address" : answer.error;
    e.due = now + retry_delay(e.failures, e.refresh);
    return false;
  }
  ++e.successes;
  e.failures = 0;
  e.last_error.clear();
  e.due = now + e.refresh;
  IpAddresses fresh = normalized(answer.addresses);
  if (e.addresses && *e.addresses == fresh) return false;
  e.addresses = std::move(fresh);
  ++e.changes;
  return true;
}

ResolvedNames DnsTable::resolved() const {
  ResolvedNames out;
  for (const auto& [key, e] : entries_) {
    if (e.addresses) out.emplace(key, *e.addresses);
  }
  return out;
}

}  // namespace bulwark::gateway::route
