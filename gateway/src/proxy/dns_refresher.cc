#include "proxy/dns_refresher.h"

#include <netdb.h>
#include <sys/socket.h>

#include <algorithm>
#include <boost/asio/ip/address.hpp>
#include <chrono>
#include <cstring>
#include <optional>
#include <system_error>

namespace bulwark::gateway::proxy {

namespace net = boost::asio;

namespace {

std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& s : items) out += (out.empty() ? "" : ", ") + s;
  return out;
}

std::string millis_text(Duration d) {
  return std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(d).count()) + "ms";
}

}  // namespace

route::DnsAnswer system_resolve(const std::string& host, uint16_t port) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_ADDRCONFIG | AI_NUMERICSERV;
  addrinfo* list = nullptr;
  const int rc = ::getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &list);
  route::DnsAnswer answer;
  if (rc != 0) {
    answer.error = rc == EAI_SYSTEM ? std::system_category().message(errno) : ::gai_strerror(rc);
    return answer;
  }
  for (const addrinfo* a = list; a != nullptr; a = a->ai_next) {
    if (a->ai_family == AF_INET) {
      const auto* in = reinterpret_cast<const sockaddr_in*>(a->ai_addr);
      net::ip::address_v4::bytes_type bytes;
      std::memcpy(bytes.data(), &in->sin_addr, bytes.size());
      answer.addresses.emplace_back(net::ip::address_v4(bytes));
    } else if (a->ai_family == AF_INET6) {
      const auto* in6 = reinterpret_cast<const sockaddr_in6*>(a->ai_addr);
      net::ip::address_v6::bytes_type bytes;
      std::memcpy(bytes.data(), &in6->sin6_addr, bytes.size());
      answer.addresses.emplace_back(net::ip::address_v6(bytes, in6->sin6_scope_id));
    }
  }
  ::freeaddrinfo(list);
  return answer;
}

// One round of lookups: each lookup thread writes its answer here; the waiter reads them.
// Shared with the threads, so that an abandoned round outlives its waiter.
struct DnsRefresher::Batch {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::optional<route::DnsAnswer>> answers;
  bool abandoned = false;
};

DnsRefresher::DnsRefresher(const Clock& clock, bulwark::observe::Registry& registry,
                           bulwark::observe::Logger log, DnsRefresherOptions options)
    : clock_(clock), registry_(registry), log_(std::move(log)), options_(std::move(options)) {
  collector_ = registry_.add_collector([this](bulwark::observe::MetricsSink& s) { collect(s); });
}

DnsRefresher::~DnsRefresher() {
  stop();
  registry_.remove_collector(collector_);
}

std::vector<route::DnsAnswer> DnsRefresher::lookup(const std::vector<Named>& names) {
  auto batch = std::make_shared<Batch>();
  batch->answers.resize(names.size());
  {
    std::lock_guard lock(mu_);
    if (stopping_) return std::vector<route::DnsAnswer>(names.size(), {{}, "stopped"});
    batches_.insert(batch);
  }
  for (std::size_t i = 0; i < names.size(); ++i) {
    try {
      std::thread([batch, i, resolve = options_.resolve, host = names[i].name.host,
                   port = names[i].name.port] {
        route::DnsAnswer answer;
        try {
          answer = resolve(host, port);
        } catch (const std::exception& e) {
          answer.error = e.what();
        }
        std::lock_guard lock(batch->mu);
        batch->answers[i] = std::move(answer);
        batch->cv.notify_all();
      }).detach();
    } catch (const std::system_error& e) {
      std::lock_guard lock(batch->mu);
      batch->answers[i] = route::DnsAnswer{{}, std::string("cannot start a lookup: ") + e.what()};
    }
  }
  std::vector<route::DnsAnswer> out;
  {
    std::unique_lock lock(batch->mu);
    const auto deadline = std::chrono::steady_clock::now() + options_.lookup_timeout;
    batch->cv.wait_until(lock, deadline, [&] {
      if (batch->abandoned) return true;
      for (const auto& a : batch->answers) {
        if (!a) return false;
      }
      return true;
    });
    for (auto& a : batch->answers) {
      if (a) {
        out.push_back(std::move(*a));
      } else {
        out.push_back({{},
                       batch->abandoned
                           ? "stopped"
                           : "no answer within " + millis_text(options_.lookup_timeout)});
      }
    }
  }
  std::lock_guard lock(mu_);
  batches_.erase(batch);
  return out;
}

std::vector<std::string> DnsRefresher::record(const std::vector<Named>& names,
                                              const std::vector<route::DnsAnswer>& answers) {
  std::vector<std::string> changed;
  std::lock_guard lock(mu_);
  if (stopping_) return changed;
  const TimePoint now = clock_.now();
  for (std::size_t i = 0; i < names.size(); ++i) {
    const std::string& key = names[i].key;
    const auto it = table_.entries().find(key);
    if (it == table_.entries().end()) continue;  // forgotten meanwhile
    const uint32_t failures_before = it->second.failures;
    const bool had_addresses = it->second.addresses.has_value();
    if (table_.record(key, answers[i], now)) {
      changed.push_back(key);
      std::vector<std::string> addresses;
      for (const auto& ip : *it->second.addresses) addresses.push_back(ip.to_string());
      log_.info("endpoint name resolved", {{"endpoint", key},
                                           {"clusters", join(it->second.clusters)},
                                           {"addresses", join(addresses)}});
    } else if (it->second.failures > 0 && failures_before == 0) {
      // The first failure of a streak is logged; the others are counted.
      log_.warn(had_addresses ? "endpoint name lookup failed; its last addresses stay in use"
                              : "endpoint name lookup failed; its clusters have no address for "
                                "it until it resolves",
                {{"endpoint", key},
                 {"clusters", join(it->second.clusters)},
                 {"error", it->second.last_error},
                 {"retry_in_ms",
                  std::chrono::duration<double, std::milli>(it->second.due - now).count()}});
    } else if (it->second.failures == 0 && failures_before > 0) {
      log_.info("endpoint name resolves again", {{"endpoint", key}});
    }
  }
  kicked_ = true;
  cv_.notify_all();
  return changed;
}

std::vector<std::string> DnsRefresher::follow(const config::Config& config) {
  std::vector<Named> fresh;
  {
    std::lock_guard lock(mu_);
    for (const std::string& key : table_.follow(config, clock_.now())) {
      fresh.push_back({key, table_.entries().at(key).name});
    }
    if (started_) ensure_thread();
    kicked_ = true;
    cv_.notify_all();
  }
  if (!fresh.empty()) record(fresh, lookup(fresh));
  std::vector<std::string> unresolved;
  std::lock_guard lock(mu_);
  for (const auto& [key, e] : table_.entries()) {
    if (!e.addresses) unresolved.push_back(key);
  }
  return unresolved;
}

void DnsRefresher::forget_others(const config::Config& config) {
  std::lock_guard lock(mu_);
  table_.forget_others(config);
  kicked_ = true;
  cv_.notify_all();
}

std::vector<std::string> DnsRefresher::refresh_due() {
  std::vector<Named> due;
  {
    std::lock_guard lock(mu_);
    for (const std::string& key : table_.due(clock_.now())) {
      due.push_back({key, table_.entries().at(key).name});
    }
  }
  if (due.empty()) return {};
  return record(due, lookup(due));
}

route::ResolvedNames DnsRefresher::resolved() const {
  std::lock_guard lock(mu_);
  return table_.resolved();
}

std::vector<DnsNameStatus> DnsRefresher::status(const std::string& cluster) const {
  std::vector<DnsNameStatus> out;
  std::lock_guard lock(mu_);
  for (const auto& [key, e] : table_.entries()) {
    if (std::find(e.clusters.begin(), e.clusters.end(), cluster) == e.clusters.end()) continue;
    DnsNameStatus s{key, {}, e.last_error, e.failures};
    if (e.addresses) {
      for (const auto& ip : *e.addresses) s.addresses.push_back(ip.to_string());
    }
    out.push_back(std::move(s));
  }
  return out;
}

void DnsRefresher::start(OnChange on_change) {
  std::lock_guard lock(mu_);
  if (started_ || stopping_) return;
  started_ = true;
  on_change_ = std::move(on_change);
  ensure_thread();
}

void DnsRefresher::ensure_thread() {
  if (thread_.joinable() || table_.empty() || stopping_) return;
  thread_ = std::thread([this] { run(); });
}

void DnsRefresher::stop() {
  std::thread thread;
  {
    std::lock_guard lock(mu_);
    if (stopping_) return;
    stopping_ = true;
    cv_.notify_all();
    for (const auto& batch : batches_) {
      std::lock_guard batch_lock(batch->mu);
      batch->abandoned = true;
      batch->cv.notify_all();
    }
    thread = std::move(thread_);
  }
  if (thread.joinable()) thread.join();
}

void DnsRefresher::run() {
  std::unique_lock lock(mu_);
  while (!stopping_) {
    kicked_ = false;
    const auto next = table_.next_due();
    const TimePoint now = clock_.now();
    if (!next || *next > now) {
      const auto woken = [&] { return stopping_ || kicked_; };
      if (next) {
        cv_.wait_for(lock, *next - now, woken);
      } else {
        cv_.wait(lock, woken);
      }
      continue;
    }
    lock.unlock();
    const std::vector<std::string> changed = refresh_due();
    if (!changed.empty() && on_change_) on_change_(changed);
    lock.lock();
  }
}

void DnsRefresher::collect(bulwark::observe::MetricsSink& sink) {
  std::lock_guard lock(mu_);
  for (const auto& [key, e] : table_.entries()) {
    for (const std::string& cluster : e.clusters) {
      sink.counter("bulwark_dns_resolutions_total",
                   "Lookups of an endpoint name, by result (success, failure).",
                   {{"cluster", cluster}, {"endpoint", key}, {"result", "success"}},
                   static_cast<double>(e.successes));
      sink.counter("bulwark_dns_resolutions_total",
                   "Lookups of an endpoint name, by result (success, failure).",
                   {{"cluster", cluster}, {"endpoint", key}, {"result", "failure"}},
                   static_cast<double>(e.failures_total));
      sink.gauge("bulwark_dns_addresses",
                 "Addresses of an endpoint name in use (the last good answer).",
                 {{"cluster", cluster}, {"endpoint", key}},
                 e.addresses ? static_cast<double>(e.addresses->size()) : 0.0);
      sink.counter("bulwark_dns_changes_total",
                   "Times the addresses of an endpoint name changed (a new snapshot each).",
                   {{"cluster", cluster}, {"endpoint", key}}, static_cast<double>(e.changes));
    }
  }
}

}  // namespace bulwark::gateway::proxy
