#include "route/router.h"

#include <algorithm>

namespace bulwark::gateway::route {
namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

}  // namespace

Router::Router(const std::vector<config::Route>& routes) {
  entries_.reserve(routes.size());
  for (const auto& r : routes) {
    Entry e;
    const std::string host = lower(r.match.host);
    if (host.empty() || host == "*") {
      e.host_kind = Entry::HostKind::any;
    } else if (host.starts_with("*.")) {
      e.host_kind = Entry::HostKind::suffix;
      e.host = host.substr(1);
    } else {
      e.host_kind = Entry::HostKind::exact;
      e.host = host;
    }
    e.prefix = r.match.path_prefix;
    e.methods = r.match.methods;
    entries_.push_back(std::move(e));
  }
}

std::string Router::host_of(std::string_view h) { return lower(host_view(h)); }

std::string_view Router::host_view(std::string_view h) noexcept {
  if (!h.empty() && h.front() == '[') {  // [v6]:port
    const auto close = h.find(']');
    return close == std::string_view::npos ? h : h.substr(0, close + 1);
  }
  const auto colon = h.rfind(':');
  return colon == std::string_view::npos ? h : h.substr(0, colon);
}

namespace {

// `lowered` is already lower-case; `s` may be in any case.
bool equals_lowered(std::string_view s, std::string_view lowered) noexcept {
  if (s.size() != lowered.size()) return false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (c != lowered[i]) return false;
  }
  return true;
}

}  // namespace

bool Router::host_matches(const Entry& e, std::string_view host) noexcept {
  switch (e.host_kind) {
    case Entry::HostKind::any:
      return true;
    case Entry::HostKind::suffix:
      return host.size() > e.host.size() &&
             equals_lowered(host.substr(host.size() - e.host.size()), e.host);
    case Entry::HostKind::exact:
      return equals_lowered(host, e.host);
  }
  return false;
}

Router::Match Router::match(std::string_view host_header, std::string_view path,
                            std::string_view method) const {
  Match m;
  const std::string_view host = host_view(host_header);
  for (std::size_t i = 0; i < entries_.size(); ++i) {
    const Entry& e = entries_[i];
    if (!host_matches(e, host) || !path.starts_with(e.prefix)) continue;
    if (e.methods.empty() ||
        std::find(e.methods.begin(), e.methods.end(), method) != e.methods.end()) {
      m.route = static_cast<int>(i);
      m.method_mismatch = false;
      m.allowed.clear();
      return m;
    }
    m.method_mismatch = true;
    m.allowed.insert(m.allowed.end(), e.methods.begin(), e.methods.end());
  }
  std::sort(m.allowed.begin(), m.allowed.end());
  m.allowed.erase(std::unique(m.allowed.begin(), m.allowed.end()), m.allowed.end());
  return m;
}

}  // namespace bulwark::gateway::route
