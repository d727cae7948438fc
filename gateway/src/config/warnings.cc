#include "config/warnings.h"

#include <cstdint>
#include <utility>

namespace bulwark::gateway::config {

namespace {

std::string at(const std::string& list, std::size_t i, const std::string& key) {
  return list + "[" + std::to_string(i) + "]." + key;
}

std::string size_text(uint64_t bytes) {
  if (bytes % (1ull << 30) == 0) return std::to_string(bytes >> 30) + "GiB";
  if (bytes % (1ull << 20) == 0) return std::to_string(bytes >> 20) + "MiB";
  if (bytes % (1ull << 10) == 0) return std::to_string(bytes >> 10) + "KiB";
  return std::to_string(bytes);
}

std::string count_text(uint64_t n) { return std::to_string(n); }

// A limit set above what we consider safe: "<value> is above <threshold>: <why>".
void warn_above(std::vector<Warning>& out, std::string path, uint64_t value, uint64_t threshold,
                std::string (*text)(uint64_t), const char* why) {
  if (value <= threshold) return;
  out.push_back({std::move(path), text(value) + " is above " + text(threshold) + ": " + why});
}

}  // namespace

std::string Warning::text(const std::string& file) const {
  return file + ": warning: " + path + ": " + message;
}

std::vector<Warning> warnings(const Config& config) {
  std::vector<Warning> out;
  if (!is_loopback_host(config.admin.host)) {
    out.push_back({"admin.listen", "the admin API (" + config.admin.text() +
                                       ") is reachable off loopback, guarded by admin.token "
                                       "alone: keep it behind a firewall or on loopback"});
  }
  if (!config.admin_token.empty() && config.admin_token.size() < kMinAdminTokenLength) {
    out.push_back({"admin.token", "shorter than " + std::to_string(kMinAdminTokenLength) +
                                      " characters: easy to guess; use a long random value "
                                      "(for example openssl rand -hex 32)"});
  }
  for (std::size_t i = 0; i < config.listeners.size(); ++i) {
    const Listener& l = config.listeners[i];
    if (!l.tls && !is_loopback_host(l.listen.host)) {
      out.push_back({at("listeners", i, "listen"),
                     "plain HTTP on " + l.listen.text() +
                         ", off loopback: requests, cookies and tokens cross the network "
                         "unencrypted; add listeners[" +
                         std::to_string(i) + "].tls or terminate TLS in front"});
    }
    const ListenerLimits& lim = l.limits;
    warn_above(out, at("listeners", i, "limits.max_header_bytes"), lim.max_header_bytes,
               kWarnHeaderBytes, size_text,
               "every connection may hold that much before its request is even routed (the "
               "default is 8KiB)");
    warn_above(out, at("listeners", i, "limits.max_headers"), lim.max_headers, kWarnHeaders,
               count_text,
               "many small fields cost parsing time and upstream memory (the default is 100)");
    warn_above(out, at("listeners", i, "limits.max_uri_bytes"), lim.max_uri_bytes, kWarnUriBytes,
               size_text,
               "long targets are a common way to attack parsers and logs (the default is 2KiB)");
    warn_above(out, at("listeners", i, "limits.max_body_bytes"), lim.max_body_bytes, kWarnBodyBytes,
               size_text,
               "any client may send the upstreams that much per request (the default is "
               "100MiB)");
  }
  for (std::size_t i = 0; i < config.routes.size(); ++i) {
    const Route& r = config.routes[i];
    if (r.retry && r.retry->budget.ratio >= kWarnRetryBudgetRatio) {
      out.push_back({at("routes", i, "retry.budget.ratio"),
                     "retries may reach as many as the requests themselves: while cluster '" +
                         r.cluster +
                         "' fails, retries add at least as much load as the traffic (the "
                         "default is 0.2)"});
    }
  }
  for (std::size_t i = 0; i < config.clusters.size(); ++i) {
    const Cluster& c = config.clusters[i];
    if (c.tls && !c.tls->verify) {
      out.push_back({at("clusters", i, "tls.verify"),
                     "certificate verification is off: anyone on the path to the upstream "
                     "can impersonate it and read the traffic"});
    }
  }
  return out;
}

}  // namespace bulwark::gateway::config
