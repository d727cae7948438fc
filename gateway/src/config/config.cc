#include "config/config.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>
#include <sstream>
#include <tuple>

#include "bulwark/retry/classifier.h"
#include "config/pem.h"
#include "config/units.h"
#include "filters/jwt/keys.h"

namespace bulwark::gateway::config {
namespace {

using Keys = std::initializer_list<std::string_view>;

std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diag = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

std::string join(Keys keys) {
  std::string out;
  for (std::string_view k : keys) {
    if (!out.empty()) out += ", ";
    out += k;
  }
  return out;
}

std::optional<Address> parse_address(std::string_view text) {
  Address a;
  std::string_view port_text;
  if (!text.empty() && text.front() == '[') {
    const auto close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      return std::nullopt;
    }
    a.host = std::string(text.substr(1, close - 1));
    port_text = text.substr(close + 2);
  } else {
    const auto colon = text.rfind(':');
    if (colon == std::string_view::npos || colon == 0) return std::nullopt;
    a.host = std::string(text.substr(0, colon));
    if (a.host.find(':') != std::string::npos) return std::nullopt;  // IPv6 needs brackets
    port_text = text.substr(colon + 1);
  }
  unsigned port = 0;
  const auto [end, ec] =
      std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (ec != std::errc() || end != port_text.data() + port_text.size() || port > 65535 ||
      a.host.empty()) {
    return std::nullopt;
  }
  a.port = static_cast<uint16_t>(port);
  return a;
}

// A DNS name (RFC 1123 labels, underscores tolerated as resolvers do): dot-separated labels of
// letters, digits, '-' and '_', 1..63 characters each, not starting or ending with '-'; at most
// 253 characters; one trailing dot allowed.
bool valid_dns_name(std::string_view name) {
  if (!name.empty() && name.back() == '.') name.remove_suffix(1);
  if (name.empty() || name.size() > 253) return false;
  std::size_t start = 0;
  while (start <= name.size()) {
    const std::size_t dot = std::min(name.find('.', start), name.size());
    const std::string_view label = name.substr(start, dot - start);
    if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-') {
      return false;
    }
    for (const char c : label) {
      if (std::isalnum(static_cast<unsigned char>(c)) == 0 && c != '-' && c != '_') return false;
    }
    start = dot + 1;
  }
  return true;
}

// Walks the YAML tree, converting and checking values, and collects every problem with its
// position and key path instead of stopping at the first.
class Loader {
 public:
  Loader(std::string file, EnvLookup env) : file_(std::move(file)), env_(env) {}

  std::vector<Diagnostic> diagnostics;

  const std::string& file() const noexcept { return file_; }

  void error(const YAML::Node& at, const std::string& path, std::string message) {
    Diagnostic d;
    d.file = file_;
    if (at.IsDefined() && !at.Mark().is_null()) {
      d.line = at.Mark().line + 1;
      d.column = at.Mark().column + 1;
    }
    d.path = path;
    d.message = std::move(message);
    diagnostics.push_back(std::move(d));
  }

  bool expect_map(const YAML::Node& node, const std::string& path) {
    if (node.IsMap()) return true;
    error(node, path, "expected a mapping ({key: value, ...})");
    return false;
  }
  bool expect_sequence(const YAML::Node& node, const std::string& path) {
    if (node.IsSequence()) return true;
    error(node, path, "expected a list ([a, b] or '- item' lines)");
    return false;
  }

  // Reports every key of `map` that is not in `allowed`, suggesting the nearest allowed key.
  void check_keys(const YAML::Node& map, const std::string& path, Keys allowed) {
    for (const auto& kv : map) {
      const std::string key = kv.first.Scalar();
      if (std::find(allowed.begin(), allowed.end(), key) != allowed.end()) continue;
      std::string message = "unknown key '" + key + "'";
      std::string_view best;
      std::size_t best_distance = 3;
      for (std::string_view k : allowed) {
        const std::size_t dist = edit_distance(key, k);
        if (dist < best_distance) {
          best_distance = dist;
          best = k;
        }
      }
      if (!best.empty()) {
        message += "; did you mean '" + std::string(best) + "'?";
      } else {
        message += " (allowed: " + join(allowed) + ")";
      }
      error(kv.first, child(path, key), std::move(message));
    }
  }

  // The scalar's text with ${VAR} expanded; nullopt (and an error) if not a scalar.
  std::optional<std::string> scalar(const YAML::Node& node, const std::string& path) {
    if (!node.IsScalar()) {
      error(node, path, "expected a single value");
      return std::nullopt;
    }
    const std::string& raw = node.Scalar();
    std::string out;
    out.reserve(raw.size());
    for (std::size_t i = 0; i < raw.size(); ++i) {
      if (raw[i] != '$') {
        out += raw[i];
        continue;
      }
      if (i + 1 < raw.size() && raw[i + 1] == '$') {
        out += '$';
        ++i;
        continue;
      }
      if (i + 1 < raw.size() && raw[i + 1] == '{') {
        const auto close = raw.find('}', i + 2);
        if (close == std::string::npos) {
          error(node, path, "unterminated ${...} in '" + raw + "'");
          return std::nullopt;
        }
        const std::string name = raw.substr(i + 2, close - i - 2);
        const auto value = env_(name);
        if (!value) {
          error(node, path, "environment variable '" + name + "' is not set");
          return std::nullopt;
        }
        out += *value;
        i = close;
        continue;
      }
      out += '$';
    }
    return out;
  }

  static std::string child(const std::string& path, std::string_view key) {
    return path.empty() ? std::string(key) : path + "." + std::string(key);
  }
  static std::string index(const std::string& path, std::size_t i) {
    return path + "[" + std::to_string(i) + "]";
  }

  // Reads map[key] with `convert` if present; reports "expected <what>" on failure.
  template <class T, class Convert>
  void field(const YAML::Node& map, std::string_view key, const std::string& path, T& out,
             Convert convert, std::string_view what) {
    const YAML::Node node = map[std::string(key)];
    if (!node.IsDefined() || node.IsNull()) return;
    const std::string p = child(path, key);
    const auto text = scalar(node, p);
    if (!text) return;
    auto value = convert(*text);
    if (!value) {
      error(node, p, "expected " + std::string(what) + ", got '" + *text + "'");
      return;
    }
    out = std::move(*value);
  }

  void duration(const YAML::Node& m, std::string_view key, const std::string& path, Duration& out,
                bool allow_zero = false) {
    field(
        m, key, path, out,
        [&](const std::string& s) -> std::optional<Duration> {
          auto d = parse_duration(s);
          if (d && *d == Duration::zero() && !allow_zero) return std::nullopt;
          return d;
        },
        allow_zero ? "a duration such as 250ms, 5s or 2m"
                   : "a positive duration such as 250ms, 5s or 2m");
  }
  void optional_duration(const YAML::Node& m, std::string_view key, const std::string& path,
                         std::optional<Duration>& out) {
    Duration d{};
    const std::size_t before = diagnostics.size();
    if (!m[std::string(key)].IsDefined()) return;
    duration(m, key, path, d);
    if (diagnostics.size() == before) out = d;
  }
  void size(const YAML::Node& m, std::string_view key, const std::string& path, uint64_t& out) {
    field(
        m, key, path, out, [](const std::string& s) { return parse_size(s); },
        "a size such as 8KiB, 1MiB or a byte count");
  }
  template <class Int>
  void integer(const YAML::Node& m, std::string_view key, const std::string& path, Int& out,
               uint64_t min, uint64_t max) {
    field(
        m, key, path, out,
        [&](const std::string& s) -> std::optional<Int> {
          uint64_t v = 0;
          const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
          if (ec != std::errc() || end != s.data() + s.size() || v < min || v > max) {
            return std::nullopt;
          }
          return static_cast<Int>(v);
        },
        "an integer from " + std::to_string(min) + " to " + std::to_string(max));
  }
  void number(const YAML::Node& m, std::string_view key, const std::string& path, double& out,
              double min, double max) {
    field(
        m, key, path, out,
        [&](const std::string& s) -> std::optional<double> {
          double v = 0;
          const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
          if (ec != std::errc() || end != s.data() + s.size() || !(v >= min && v <= max)) {
            return std::nullopt;
          }
          return v;
        },
        "a number from " + trim_number(min) + " to " + trim_number(max));
  }
  void fraction(const YAML::Node& m, std::string_view key, const std::string& path, double& out) {
    field(
        m, key, path, out, [](const std::string& s) { return parse_fraction(s); },
        "a percentage such as 50% (or a fraction from 0 to 1)");
  }
  // For keys named *_percent: "50" and "50%" both mean one half.
  void percent(const YAML::Node& m, std::string_view key, const std::string& path, double& out) {
    field(
        m, key, path, out,
        [](const std::string& s) -> std::optional<double> {
          if (!s.empty() && s.back() == '%') return parse_fraction(s);
          return parse_fraction(s + "%");
        },
        "a percentage from 0 to 100 (such as 50 or 50%)");
  }
  void rate(const YAML::Node& m, std::string_view key, const std::string& path, double& out) {
    field(
        m, key, path, out,
        [](const std::string& s) -> std::optional<double> {
          auto r = parse_rate(s);
          if (r && *r <= 0) return std::nullopt;
          return r;
        },
        "a positive rate such as 100/s or 6000/m");
  }
  void boolean(const YAML::Node& m, std::string_view key, const std::string& path, bool& out) {
    field(
        m, key, path, out,
        [](const std::string& s) -> std::optional<bool> {
          if (s == "true") return true;
          if (s == "false") return false;
          return std::nullopt;
        },
        "true or false");
  }
  void string(const YAML::Node& m, std::string_view key, const std::string& path,
              std::string& out) {
    field(
        m, key, path, out,
        [](const std::string& s) -> std::optional<std::string> {
          if (s.empty()) return std::nullopt;
          return s;
        },
        "a non-empty string");
  }
  template <class Enum>
  void choice(const YAML::Node& m, std::string_view key, const std::string& path, Enum& out,
              std::initializer_list<std::pair<std::string_view, Enum>> choices) {
    std::string names;
    for (const auto& c : choices) names += (names.empty() ? "" : " | ") + std::string(c.first);
    field(
        m, key, path, out,
        [&](const std::string& s) -> std::optional<Enum> {
          for (const auto& c : choices) {
            if (c.first == s) return c.second;
          }
          return std::nullopt;
        },
        "one of " + names);
  }
  void address(const YAML::Node& m, std::string_view key, const std::string& path, Address& out,
               bool allow_port_zero) {
    field(
        m, key, path, out,
        [&](const std::string& s) -> std::optional<Address> {
          auto a = parse_address(s);
          if (a && a->port == 0 && !allow_port_zero) return std::nullopt;
          return a;
        },
        allow_port_zero ? "host:port (port 0 picks a free port)" : "host:port");
  }
  std::vector<std::string> strings(const YAML::Node& m, std::string_view key,
                                   const std::string& path) {
    std::vector<std::string> out;
    const YAML::Node node = m[std::string(key)];
    if (!node.IsDefined() || node.IsNull()) return out;
    const std::string p = child(path, key);
    if (!expect_sequence(node, p)) return out;
    for (std::size_t i = 0; i < node.size(); ++i) {
      if (auto s = scalar(node[i], index(p, i))) out.push_back(std::move(*s));
    }
    return out;
  }

  // Calls `body(node, path)` for map[key] if it is present and a mapping with only `keys`.
  void section(const YAML::Node& m, std::string_view key, const std::string& path, Keys keys,
               const std::function<void(const YAML::Node&, const std::string&)>& body) {
    const YAML::Node node = m[std::string(key)];
    if (!node.IsDefined() || node.IsNull()) return;
    const std::string p = child(path, key);
    if (!expect_map(node, p)) return;
    check_keys(node, p, keys);
    body(node, p);
  }

 private:
  static std::string trim_number(double v) {
    std::ostringstream os;
    os << v;
    return os.str();
  }

  std::string file_;
  EnvLookup env_;
};

bool valid_method(std::string_view m) {
  return !m.empty() && std::all_of(m.begin(), m.end(), [](char c) { return c >= 'A' && c <= 'Z'; });
}

struct SignalName {
  std::string_view name;
  AlertSignalKind kind;
  bool by_route;
  bool by_cluster;
};
constexpr std::array<SignalName, 7> kSignals{{
    {"bulwark_requests_5xx_ratio", AlertSignalKind::requests_5xx_ratio, true, false},
    {"bulwark_request_duration_p99_seconds", AlertSignalKind::request_duration_p99, true, false},
    {"bulwark_requests_per_second", AlertSignalKind::requests_per_second, true, false},
    {"bulwark_retry_budget_exhausted_per_second", AlertSignalKind::retry_budget_exhausted, true,
     false},
    {"bulwark_breakers_open", AlertSignalKind::breakers_open, false, true},
    {"bulwark_endpoints_unusable", AlertSignalKind::endpoints_unusable, false, true},
    {"bulwark_overload_level", AlertSignalKind::overload_level, false, false},
}};

// An HTTP field name (RFC 9110 §5.1: a token).
bool valid_header_name(std::string_view name) {
  constexpr std::string_view kTokenPunctuation = "!#$%&'*+-.^_`|~";
  return !name.empty() && std::all_of(name.begin(), name.end(), [&](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) != 0 ||
           kTokenPunctuation.find(c) != std::string_view::npos;
  });
}

}  // namespace

std::optional<AlertSignal> parse_alert_signal(std::string_view text) {
  const std::size_t brace = text.find('{');
  const std::string_view name = text.substr(0, brace);
  const auto known = std::find_if(kSignals.begin(), kSignals.end(),
                                  [&](const SignalName& s) { return s.name == name; });
  if (known == kSignals.end()) return std::nullopt;
  AlertSignal out;
  out.kind = known->kind;
  if (brace == std::string_view::npos) return out;
  // One selector: {route="name"} or {cluster="name"}.
  std::string_view selector = text.substr(brace);
  if (selector.size() < 2 || selector.back() != '}') return std::nullopt;
  selector = selector.substr(1, selector.size() - 2);
  const std::size_t eq = selector.find("=\"");
  if (eq == std::string_view::npos || selector.size() < eq + 3 || selector.back() != '"') {
    return std::nullopt;
  }
  const std::string_view label = selector.substr(0, eq);
  const std::string_view value = selector.substr(eq + 2, selector.size() - eq - 3);
  if (value.empty() || value.find('"') != std::string_view::npos) return std::nullopt;
  if (label == "route" && known->by_route) {
    out.route = value;
  } else if (label == "cluster" && known->by_cluster) {
    out.cluster = value;
  } else {
    return std::nullopt;
  }
  return out;
}

namespace {

void load_rate_spec(Loader& l, const YAML::Node& m, const std::string& path, RateSpec& out,
                    bool required) {
  if (required && !m["rate"].IsDefined()) l.error(m, path, "missing required key 'rate'");
  l.rate(m, "rate", path, out.per_second);
  // The limiter counts in microseconds: one request per microsecond at most.
  if (out.per_second > kMaxRatePerSecond) {
    l.error(m["rate"], Loader::child(path, "rate"),
            "at most 1000000/s (the limiter's resolution is one request per microsecond)");
  }
  l.integer(m, "burst", path, out.burst, 1, 1'000'000'000);
}

void load_tls_version(Loader& l, const YAML::Node& m, const std::string& q, TlsVersion& out) {
  l.choice(m, "min_version", q, out, {{"1.2", TlsVersion::v1_2}, {"1.3", TlsVersion::v1_3}});
}

// A PEM file named by `key` of `m` must be readable and hold what `check` expects; the error
// names the file and what is wrong with it.
void check_pem_file(Loader& l, const YAML::Node& m, std::string_view key, const std::string& q,
                    const std::string& file, PemKind kind) {
  if (file.empty()) return;
  if (std::string problem = pem_problem(file, kind); !problem.empty()) {
    l.error(m[std::string(key)], Loader::child(q, key), problem);
  }
}

ListenerTls load_listener_tls(Loader& l, const YAML::Node& m, const std::string& q) {
  ListenerTls tls;
  CertificateSpec first;
  l.string(m, "cert", q, first.cert);
  l.string(m, "key", q, first.key);
  if (!first.cert.empty() || !first.key.empty()) {
    if (first.cert.empty() || first.key.empty()) {
      l.error(m, q, "'cert' and 'key' go together");
    } else {
      check_pem_file(l, m, "cert", q, first.cert, PemKind::certificate);
      check_pem_file(l, m, "key", q, first.key, PemKind::private_key);
      if (std::string mismatch = key_mismatch(first.cert, first.key); !mismatch.empty()) {
        l.error(m["key"], Loader::child(q, "key"), mismatch);
      }
      tls.certificates.push_back(first);
    }
  }
  if (const YAML::Node list = m["certificates"]; list.IsDefined() && !list.IsNull()) {
    const std::string lp = Loader::child(q, "certificates");
    if (l.expect_sequence(list, lp)) {
      for (std::size_t i = 0; i < list.size(); ++i) {
        const std::string ip = Loader::index(lp, i);
        if (!l.expect_map(list[i], ip)) continue;
        l.check_keys(list[i], ip, {"cert", "key"});
        CertificateSpec c;
        l.string(list[i], "cert", ip, c.cert);
        l.string(list[i], "key", ip, c.key);
        if (c.cert.empty() || c.key.empty()) {
          l.error(list[i], ip, "needs 'cert' and 'key'");
          continue;
        }
        check_pem_file(l, list[i], "cert", ip, c.cert, PemKind::certificate);
        check_pem_file(l, list[i], "key", ip, c.key, PemKind::private_key);
        if (std::string mismatch = key_mismatch(c.cert, c.key); !mismatch.empty()) {
          l.error(list[i]["key"], Loader::child(ip, "key"), mismatch);
        }
        tls.certificates.push_back(std::move(c));
      }
    }
  }
  if (tls.certificates.empty()) l.error(m, q, "needs a certificate: 'cert' and 'key'");
  load_tls_version(l, m, q, tls.min_version);
  l.string(m, "ciphers", q, tls.ciphers);
  if (m["alpn"].IsDefined()) {
    tls.alpn = l.strings(m, "alpn", q);
    for (std::size_t i = 0; i < tls.alpn.size(); ++i) {
      if (tls.alpn[i] != "http/1.1") {
        l.error(m["alpn"][i], Loader::index(Loader::child(q, "alpn"), i),
                "only http/1.1 is spoken (the gateway is an HTTP/1.1 proxy)");
      }
    }
  }
  l.string(m, "client_ca", q, tls.client_ca);
  check_pem_file(l, m, "client_ca", q, tls.client_ca, PemKind::certificate);
  l.boolean(m, "require_client_cert", q, tls.require_client_cert);
  if (tls.require_client_cert && tls.client_ca.empty()) {
    l.error(m["require_client_cert"], Loader::child(q, "require_client_cert"),
            "needs 'client_ca' (the CAs client certificates are checked against)");
  }
  l.string(m, "client_subject_header", q, tls.client_subject_header);
  l.duration(m, "handshake_timeout", q, tls.handshake_timeout);
  return tls;
}

ClusterTls load_cluster_tls(Loader& l, const YAML::Node& m, const std::string& q) {
  ClusterTls tls;
  l.string(m, "sni", q, tls.sni);
  l.boolean(m, "verify", q, tls.verify);
  l.string(m, "ca_file", q, tls.ca_file);
  check_pem_file(l, m, "ca_file", q, tls.ca_file, PemKind::certificate);
  l.string(m, "client_cert", q, tls.client_cert);
  l.string(m, "client_key", q, tls.client_key);
  if (tls.client_cert.empty() != tls.client_key.empty()) {
    l.error(m, q, "'client_cert' and 'client_key' go together");
  } else if (!tls.client_cert.empty()) {
    check_pem_file(l, m, "client_cert", q, tls.client_cert, PemKind::certificate);
    check_pem_file(l, m, "client_key", q, tls.client_key, PemKind::private_key);
  }
  load_tls_version(l, m, q, tls.min_version);
  return tls;
}

Listener load_listener(Loader& l, const YAML::Node& n, const std::string& p) {
  Listener out;
  l.check_keys(n, p, {"name", "listen", "limits", "timeouts", "rate_limit", "tls"});
  l.section(n, "tls", p,
            {"cert", "key", "certificates", "min_version", "ciphers", "alpn", "client_ca",
             "require_client_cert", "client_subject_header", "handshake_timeout"},
            [&](const YAML::Node& m, const std::string& q) { out.tls = load_listener_tls(l, m, q); });
  l.string(n, "name", p, out.name);
  if (!n["listen"].IsDefined()) l.error(n, p, "missing required key 'listen'");
  l.address(n, "listen", p, out.listen, true);
  l.section(n, "limits", p,
            {"max_header_bytes", "max_headers", "max_uri_bytes", "max_body_bytes",
             "max_connections", "max_concurrent_requests"},
            [&](const YAML::Node& m, const std::string& q) {
              l.size(m, "max_header_bytes", q, out.limits.max_header_bytes);
              l.integer(m, "max_headers", q, out.limits.max_headers, 1, 10000);
              l.size(m, "max_uri_bytes", q, out.limits.max_uri_bytes);
              l.size(m, "max_body_bytes", q, out.limits.max_body_bytes);
              l.integer(m, "max_connections", q, out.limits.max_connections, 1, 10'000'000);
              l.integer(m, "max_concurrent_requests", q, out.limits.max_concurrent_requests, 1,
                        10'000'000);
            });
  l.section(n, "timeouts", p, {"header_read", "idle", "request"},
            [&](const YAML::Node& m, const std::string& q) {
              l.duration(m, "header_read", q, out.timeouts.header_read);
              l.duration(m, "idle", q, out.timeouts.idle);
              l.duration(m, "request", q, out.timeouts.request);
            });
  l.section(n, "rate_limit", p, {"per_client"}, [&](const YAML::Node& m, const std::string& q) {
    l.section(m, "per_client", q, {"rate", "burst", "dry_run", "scope"},
              [&](const YAML::Node& pc, const std::string& r) {
                RateSpec spec;
                load_rate_spec(l, pc, r, spec, true);
                l.boolean(pc, "dry_run", r, out.per_client_dry_run);
                l.choice(pc, "scope", r, out.per_client_scope,
                         {{"local", RateLimitScope::local}, {"global", RateLimitScope::global}});
                out.per_client_rate_limit = spec;
              });
  });
  return out;
}

// routes[].filters.fault: at least one of abort and delay, each reachable by its percentage or
// the header.
void load_fault(Loader& l, const YAML::Node& n, const std::string& p, FaultSpec& out) {
  l.string(n, "header", p, out.header);
  if (n["header"].IsDefined() && !valid_header_name(out.header)) {
    l.error(n["header"], Loader::child(p, "header"), "expected a header name");
  }
  std::transform(out.header.begin(), out.header.end(), out.header.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  l.section(n, "abort", p, {"percent", "status"}, [&](const YAML::Node& m, const std::string& q) {
    FaultAbortSpec abort;
    l.percent(m, "percent", q, abort.fraction);
    l.integer(m, "status", q, abort.status, 400, 599);
    if (abort.fraction == 0 && out.header.empty()) {
      l.error(m, q, "aborts nothing: set percent above 0 or fault.header");
    }
    out.abort = abort;
  });
  l.section(n, "delay", p, {"percent", "duration"}, [&](const YAML::Node& m, const std::string& q) {
    FaultDelaySpec delay;
    l.percent(m, "percent", q, delay.fraction);
    if (!m["duration"].IsDefined()) l.error(m, q, "missing required key 'duration'");
    l.duration(m, "duration", q, delay.duration);
    if (m["duration"].IsDefined() && (delay.duration < 1ms || delay.duration > 1h)) {
      l.error(m["duration"], Loader::child(q, "duration"), "expected a duration from 1ms to 1h");
    }
    if (delay.fraction == 0 && out.header.empty()) {
      l.error(m, q, "delays nothing: set percent above 0 or fault.header");
    }
    out.delay = delay;
  });
  if (!out.abort && !out.delay) l.error(n, p, "expected abort, delay or both");
}

void load_route_filters(Loader& l, const YAML::Node& n, const std::string& p, Route& out) {
  l.section(n, "block_patterns", p, {"sqli", "xss"},
            [&](const YAML::Node& m, const std::string& q) {
              BlockPatternsSpec spec;
              l.boolean(m, "sqli", q, spec.sqli);
              l.boolean(m, "xss", q, spec.xss);
              out.filters.block_patterns = spec;
            });
  l.section(n, "fault", p, {"header", "abort", "delay"},
            [&](const YAML::Node& m, const std::string& q) {
              FaultSpec spec;
              load_fault(l, m, q, spec);
              out.filters.fault = std::move(spec);
            });
}

// Header names a forwarded claim may not take: the framing, hop-by-hop and forwarding fields
// the gateway writes itself, and the credentials.
std::string lower(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return text;
}

bool reserved_forward_header(const std::string& header) {
  const std::string name = lower(header);
  for (std::string_view reserved :
       {"host", "content-length", "transfer-encoding", "connection", "keep-alive",
        "proxy-connection", "te", "trailer", "upgrade", "expect", "x-forwarded-for",
        "x-forwarded-proto", "x-request-id", "authorization", "cookie"}) {
    if (name == reserved) return true;
  }
  return false;
}

// The text of the key file at `path` (at most 1 MiB), or nullopt with `why`.
std::optional<std::string> read_key_file(const std::string& path, std::string& why) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    why = std::strerror(errno);
    return std::nullopt;
  }
  std::string text;
  char buffer[4096];
  while (in.read(buffer, sizeof buffer) || in.gcount() > 0) {
    text.append(buffer, static_cast<std::size_t>(in.gcount()));
    if (text.size() > 1024 * 1024) {
      why = "larger than 1MiB";
      return std::nullopt;
    }
  }
  if (in.bad()) {
    why = "read error";
    return std::nullopt;
  }
  return text;
}

// routes[].auth.jwt (filters/jwt). The keys are read and built here: a bad jwks_file is a
// config error like any other bad value.
void load_jwt(Loader& l, const YAML::Node& n, const std::string& p, JwtSpec& out) {
  namespace jwt = filters::jwt;
  l.string(n, "issuer", p, out.issuer);
  out.audiences = l.strings(n, "audiences", p);
  for (std::size_t i = 0; i < out.audiences.size(); ++i) {
    if (out.audiences[i].empty()) {
      l.error(n["audiences"][i], Loader::index(Loader::child(p, "audiences"), i),
              "expected a non-empty string");
    }
  }
  const std::string alg_path = Loader::child(p, "algorithms");
  std::vector<std::optional<jwt::Algorithm>> algorithms;
  if (!n["algorithms"].IsDefined()) {
    l.error(n, p, "missing required key 'algorithms'");
  } else {
    out.algorithms = l.strings(n, "algorithms", p);
    if (out.algorithms.empty() && n["algorithms"].IsSequence()) {
      l.error(n["algorithms"], alg_path, "must not be empty");
    }
  }
  for (std::size_t i = 0; i < out.algorithms.size(); ++i) {
    const std::string& name = out.algorithms[i];
    algorithms.push_back(jwt::parse_algorithm(name));
    if (algorithms.back()) continue;
    l.error(n["algorithms"][i], Loader::index(alg_path, i),
            lower(name) == "none"
                ? "'none' (unsigned tokens) is never accepted"
                : "expected one of HS256 HS384 HS512 RS256 RS384 RS512 PS256 PS384 PS512 ES256 "
                  "ES384 ES512 EdDSA, got '" +
                      name + "'");
  }
  l.string(n, "jwks_file", p, out.jwks_file);
  l.string(n, "secret", p, out.secret);
  l.duration(n, "leeway", p, out.leeway, true);
  if (out.leeway > 1h) l.error(n["leeway"], Loader::child(p, "leeway"), "must be at most 1h");
  out.required_claims = l.strings(n, "required_claims", p);
  for (std::size_t i = 0; i < out.required_claims.size(); ++i) {
    if (out.required_claims[i].empty()) {
      l.error(n["required_claims"][i], Loader::index(Loader::child(p, "required_claims"), i),
              "expected a claim name");
    }
  }
  if (const YAML::Node fc = n["forward_claims"]; fc.IsDefined() && !fc.IsNull()) {
    const std::string q = Loader::child(p, "forward_claims");
    if (l.expect_map(fc, q)) {
      if (fc.size() > kMaxForwardClaims) {
        l.error(fc, q, "at most " + std::to_string(kMaxForwardClaims) + " claims are forwarded");
      }
      for (const auto& kv : fc) {
        const std::string claim = kv.first.Scalar();
        const std::string r = Loader::child(q, claim);
        const auto header = l.scalar(kv.second, r);
        if (!header) continue;
        if (claim.empty()) l.error(kv.first, r, "expected a claim name");
        if (!valid_header_name(*header)) {
          l.error(kv.second, r, "expected a header name, got '" + *header + "'");
        } else if (reserved_forward_header(*header)) {
          l.error(kv.second, r, "'" + *header + "' is a header the gateway owns");
        } else if (std::any_of(out.forward_claims.begin(), out.forward_claims.end(),
                               [&](const auto& f) { return lower(f.second) == lower(*header); })) {
          l.error(kv.second, r, "header '" + *header + "' is already given to another claim");
        }
        out.forward_claims.emplace_back(claim, *header);
      }
    }
  }
  l.boolean(n, "strip_token", p, out.strip_token);
  l.string(n, "cookie", p, out.cookie);
  if (n["cookie"].IsDefined() && !out.cookie.empty() && !valid_header_name(out.cookie)) {
    l.error(n["cookie"], Loader::child(p, "cookie"), "expected a cookie name (an HTTP token)");
  }
  l.size(n, "max_token_bytes", p, out.max_token_bytes);
  if (out.max_token_bytes < 64 || out.max_token_bytes > 1024 * 1024) {
    l.error(n["max_token_bytes"], Loader::child(p, "max_token_bytes"),
            "expected a size from 64 to 1MiB");
  }

  // The keys.
  if (!n["jwks_file"].IsDefined() && !n["secret"].IsDefined()) {
    l.error(n, p, "needs jwks_file, secret or both");
    return;
  }
  auto keys = std::make_shared<jwt::KeySet>();
  bool keys_ok = true;
  if (!out.jwks_file.empty()) {
    std::filesystem::path path(out.jwks_file);
    if (path.is_relative()) path = std::filesystem::path(l.file()).parent_path() / path;
    std::string why;
    const auto text = read_key_file(path.string(), why);
    if (!text) {
      l.error(n["jwks_file"], Loader::child(p, "jwks_file"),
              "cannot read '" + path.string() + "': " + why);
      keys_ok = false;
    } else if (!jwt::add_jwks(*keys, *text, why)) {
      l.error(n["jwks_file"], Loader::child(p, "jwks_file"),
              "'" + path.string() + "' is not a usable JWK Set: " + why);
      keys_ok = false;
    }
  } else if (n["jwks_file"].IsDefined()) {
    keys_ok = false;  // reported by l.string
  }
  if (!out.secret.empty()) {
    std::string why;
    if (!jwt::add_secret(*keys, out.secret, why)) {
      l.error(n["secret"], Loader::child(p, "secret"), why);
      keys_ok = false;
    }
  } else if (n["secret"].IsDefined()) {
    keys_ok = false;
  }
  // Every algorithm the route accepts needs a key that can verify it.
  for (std::size_t i = 0; keys_ok && i < algorithms.size(); ++i) {
    if (algorithms[i] && !keys->can_verify(*algorithms[i])) {
      const bool hmac = out.algorithms[i].rfind("HS", 0) == 0;
      l.error(n["algorithms"][i], Loader::index(alg_path, i),
              "no key can verify " + out.algorithms[i] +
                  (hmac ? ": set secret, or put an oct key in jwks_file"
                        : ": put a key of its type in jwks_file"));
    }
  }
  out.keys = std::move(keys);
}

Route load_route(Loader& l, const YAML::Node& n, const std::string& p) {
  Route out;
  l.check_keys(n, p,
               {"name", "match", "cluster", "fallback", "timeouts", "retry", "rate_limit", "cache",
                "stream", "hedge", "priority", "filters", "auth"});
  l.choice(n, "priority", p, out.priority,
           {{"low", RoutePriority::low},
            {"normal", RoutePriority::normal},
            {"high", RoutePriority::high}});
  l.string(n, "name", p, out.name);
  if (!n["cluster"].IsDefined()) l.error(n, p, "missing required key 'cluster'");
  l.string(n, "cluster", p, out.cluster);
  out.fallback = l.strings(n, "fallback", p);
  if (out.fallback.size() > kMaxFallbacks) {
    l.error(n["fallback"], Loader::child(p, "fallback"),
            "at most " + std::to_string(kMaxFallbacks) + " fallback clusters");
  }
  l.section(n, "match", p, {"path_prefix", "host", "methods"},
            [&](const YAML::Node& m, const std::string& q) {
              l.string(m, "path_prefix", q, out.match.path_prefix);
              if (out.match.path_prefix.front() != '/') {
                l.error(m["path_prefix"], Loader::child(q, "path_prefix"), "must start with '/'");
              }
              l.string(m, "host", q, out.match.host);
              out.match.methods = l.strings(m, "methods", q);
              for (std::size_t i = 0; i < out.match.methods.size(); ++i) {
                if (!valid_method(out.match.methods[i])) {
                  l.error(m["methods"][i], Loader::index(Loader::child(q, "methods"), i),
                          "expected an upper-case HTTP method such as GET, got '" +
                              out.match.methods[i] + "'");
                }
              }
            });
  l.section(n, "timeouts", p, {"request", "per_try", "first_byte", "stream_idle", "stream_total"},
            [&](const YAML::Node& m, const std::string& q) {
              l.duration(m, "request", q, out.timeouts.request);
              l.optional_duration(m, "per_try", q, out.timeouts.per_try);
              l.optional_duration(m, "first_byte", q, out.timeouts.first_byte);
              l.duration(m, "stream_idle", q, out.timeouts.stream_idle);
              l.duration(m, "stream_total", q, out.timeouts.stream_total);
            });
  l.section(n, "retry", p,
            {"attempts", "on", "backoff", "budget", "non_idempotent", "max_retry_after"},
            [&](const YAML::Node& m, const std::string& q) {
              RetrySpec r;
              l.integer(m, "attempts", q, r.attempts, 1, 100);
              if (m["on"].IsDefined()) {
                r.on = l.strings(m, "on", q);
                try {
                  retry::HttpClassifier check(r.on);
                } catch (const std::invalid_argument& e) {
                  l.error(m["on"], Loader::child(q, "on"), e.what());
                }
              }
              l.boolean(m, "non_idempotent", q, r.non_idempotent);
              l.duration(m, "max_retry_after", q, r.max_retry_after, true);
              l.section(m, "backoff", q, {"kind", "base", "max", "multiplier", "jitter"},
                        [&](const YAML::Node& b, const std::string& s) {
                          l.choice(b, "kind", s, r.backoff.kind,
                                   {{"constant", retry::BackoffKind::constant},
                                    {"linear", retry::BackoffKind::linear},
                                    {"exponential", retry::BackoffKind::exponential},
                                    {"fibonacci", retry::BackoffKind::fibonacci},
                                    {"decorrelated", retry::BackoffKind::decorrelated}});
                          l.duration(b, "base", s, r.backoff.base);
                          l.duration(b, "max", s, r.backoff.max);
                          l.number(b, "multiplier", s, r.backoff.multiplier, 1, 100);
                          l.choice(b, "jitter", s, r.backoff.jitter,
                                   {{"none", retry::Jitter::none},
                                    {"full", retry::Jitter::full},
                                    {"equal", retry::Jitter::equal},
                                    {"proportional", retry::Jitter::proportional}});
                          try {
                            retry::Backoff check(r.backoff);
                          } catch (const std::invalid_argument& e) {
                            l.error(b, s, e.what());
                          }
                        });
              l.section(m, "budget", q, {"ratio", "min_per_second"},
                        [&](const YAML::Node& b, const std::string& s) {
                          l.number(b, "ratio", s, r.budget.ratio, 0, 10);
                          l.number(b, "min_per_second", s, r.budget.min_per_second, 0, 1e9);
                        });
              out.retry = std::move(r);
            });
  l.section(n, "rate_limit", p, {"key", "rate", "burst", "scope", "dry_run", "max_key_bytes"},
            [&](const YAML::Node& m, const std::string& q) {
              RouteRateLimit rl;
              if (const auto key = m["key"]; key.IsDefined()) {
                if (auto text = l.scalar(key, Loader::child(q, "key"))) {
                  if (*text == "client_ip") {
                    rl.key = RateLimitKey::client_ip;
                  } else if (*text == "route") {
                    rl.key = RateLimitKey::route;
                  } else if (text->rfind("header:", 0) == 0 && text->size() > 7) {
                    rl.key = RateLimitKey::header;
                    rl.header = text->substr(7);
                  } else {
                    l.error(key, Loader::child(q, "key"),
                            "expected client_ip, route or header:<name>, got '" + *text + "'");
                  }
                }
              }
              load_rate_spec(l, m, q, rl.rate, true);
              l.choice(m, "scope", q, rl.scope,
                       {{"local", RateLimitScope::local}, {"global", RateLimitScope::global}});
              l.boolean(m, "dry_run", q, rl.dry_run);
              l.integer(m, "max_key_bytes", q, rl.max_key_bytes, 1, 4096);
              out.rate_limit = std::move(rl);
            });
  l.section(n, "cache", p, {"ttl", "max_entry_bytes", "stale_if_error"},
            [&](const YAML::Node& m, const std::string& q) {
              RouteCache c;
              l.duration(m, "ttl", q, c.ttl);
              l.size(m, "max_entry_bytes", q, c.max_entry_bytes);
              l.duration(m, "stale_if_error", q, c.stale_if_error, true);
              out.cache = c;
            });
  l.section(n, "stream", p, {"max_chunk_bytes", "max_bytes", "max_chunks"},
            [&](const YAML::Node& m, const std::string& q) {
              l.size(m, "max_chunk_bytes", q, out.stream.max_chunk_bytes);
              l.size(m, "max_bytes", q, out.stream.max_bytes);
              l.integer(m, "max_chunks", q, out.stream.max_chunks, 0, UINT64_MAX);
            });
  l.section(n, "hedge", p, {"delay", "max_attempts"},
            [&](const YAML::Node& m, const std::string& q) {
              HedgeSpec h;
              l.duration(m, "delay", q, h.delay);
              l.integer(m, "max_attempts", q, h.max_attempts, 2, 10);
              out.hedge = h;
            });
  l.section(n, "filters", p, {"block_patterns", "fault"},
            [&](const YAML::Node& m, const std::string& q) { load_route_filters(l, m, q, out); });
  l.section(n, "auth", p, {"jwt"}, [&](const YAML::Node& m, const std::string& q) {
    l.section(m, "jwt", q,
              {"issuer", "audiences", "algorithms", "jwks_file", "secret", "leeway",
               "required_claims", "forward_claims", "strip_token", "cookie", "max_token_bytes"},
              [&](const YAML::Node& j, const std::string& r) {
                JwtSpec spec;
                load_jwt(l, j, r, spec);
                out.auth.jwt = std::move(spec);
              });
    if (!m["jwt"].IsDefined() || m["jwt"].IsNull()) l.error(m, q, "expected jwt");
  });
  return out;
}

// A status written as a number first..last ("503"), or nullopt.
std::optional<int> parse_status(const std::string& name, int first, int last) {
  int status = 0;
  const auto [end, ec] = std::from_chars(name.data(), name.data() + name.size(), status);
  if (ec != std::errc{} || end != name.data() + name.size() || status < first || status > last) {
    return std::nullopt;
  }
  return status;
}

// health_check.expected_statuses: the statuses a probe passes on ("2xx" classes or statuses).
void load_expected_statuses(Loader& l, const YAML::Node& n, const std::string& p,
                            HealthCheckSpec& out) {
  if (!n["expected_statuses"].IsDefined()) return;
  const std::string q = Loader::child(p, "expected_statuses");
  out.expected_statuses = l.strings(n, "expected_statuses", p);
  out.expected = {};
  if (out.expected_statuses.empty()) l.error(n["expected_statuses"], q, "must not be empty");
  for (std::size_t i = 0; i < out.expected_statuses.size(); ++i) {
    const std::string& name = out.expected_statuses[i];
    if (name.size() == 3 && name[0] >= '1' && name[0] <= '5' && name.substr(1) == "xx") {
      const int base = (name[0] - '0') * 100;
      out.expected.add(base, base + 99);
    } else if (const auto status = parse_status(name, 100, 599)) {
      out.expected.add(*status);
    } else {
      l.error(n["expected_statuses"][i], Loader::index(q, i),
              "expected a status 100..599 or a class such as 2xx, got '" + name + "'");
    }
  }
}

// circuit_breaker.failure_on: the outcomes the breaker counts as failures.
void load_failure_set(Loader& l, const YAML::Node& n, const std::string& p, FailureSet& out) {
  if (!n["failure_on"].IsDefined()) return;
  const std::string q = Loader::child(p, "failure_on");
  const std::vector<std::string> names = l.strings(n, "failure_on", p);
  out = FailureSet{};
  out.connect_failure = out.reset = out.timeout = out.bad_response = false;
  out.status = {};
  for (std::size_t i = 0; i < names.size(); ++i) {
    const std::string& name = names[i];
    if (name == "connect-failure") {
      out.connect_failure = true;
    } else if (name == "reset") {
      out.reset = true;
    } else if (name == "timeout") {
      out.timeout = true;
    } else if (name == "bad-response") {
      out.bad_response = true;
    } else if (name == "5xx") {
      out.status.add(500, 599);
    } else if (name == "gateway-error") {
      out.status.add(502, 504);
    } else if (const auto status = parse_status(name, 400, 599)) {
      out.status.add(*status);
    } else {
      l.error(n["failure_on"][i], Loader::index(q, i),
              "expected connect-failure, reset, timeout, bad-response, 5xx, gateway-error or a "
              "status 400..599, got '" +
                  name + "'");
    }
  }
}

circuit::BreakerOptions load_breaker(Loader& l, const YAML::Node& n, const std::string& p) {
  circuit::BreakerOptions o;
  l.check_keys(n, p,
               {"window", "min_calls", "failure_rate", "slow_call", "consecutive_failures", "open",
                "half_open", "failure_on"});
  l.section(n, "window", p, {"type", "size"}, [&](const YAML::Node& m, const std::string& q) {
    l.choice(m, "type", q, o.window_type,
             {{"count", circuit::WindowType::count}, {"time", circuit::WindowType::time}});
    // A time window's size is a duration in whole seconds; a count window's a number of calls.
    if (o.window_type == circuit::WindowType::time) {
      Duration d = std::chrono::seconds(o.window_size);
      l.duration(m, "size", q, d);
      o.window_size =
          static_cast<uint32_t>(std::chrono::duration_cast<std::chrono::seconds>(d).count());
    } else {
      l.integer(m, "size", q, o.window_size, 1, circuit::kMaxCountWindow);
    }
  });
  l.integer(n, "min_calls", p, o.min_calls, 1, circuit::kMaxCountWindow);
  l.fraction(n, "failure_rate", p, o.failure_rate);
  l.section(n, "slow_call", p, {"duration", "rate"},
            [&](const YAML::Node& m, const std::string& q) {
              l.duration(m, "duration", q, o.slow_call_duration);
              l.fraction(m, "rate", q, o.slow_call_rate);
            });
  l.integer(n, "consecutive_failures", p, o.consecutive_failures, 0, 1'000'000);
  l.section(n, "open", p, {"duration", "multiplier", "max"},
            [&](const YAML::Node& m, const std::string& q) {
              l.duration(m, "duration", q, o.open_duration);
              l.number(m, "multiplier", q, o.open_multiplier, 1, 100);
              l.duration(m, "max", q, o.max_open_duration);
            });
  l.section(n, "half_open", p, {"probes", "success_threshold", "max_wait"},
            [&](const YAML::Node& m, const std::string& q) {
              l.integer(m, "probes", q, o.half_open_probes, 1, 10000);
              l.integer(m, "success_threshold", q, o.success_threshold, 1, 10000);
              l.duration(m, "max_wait", q, o.half_open_max_wait);
            });
  try {
    circuit::validate(o);
  } catch (const std::invalid_argument& e) {
    l.error(n, p, e.what());
  }
  return o;
}

Cluster load_cluster(Loader& l, const YAML::Node& n, const std::string& p) {
  Cluster out;
  l.check_keys(n, p,
               {"name", "endpoints", "dns_refresh", "lb", "connect_timeout", "pool",
                "max_concurrent_requests", "queue", "circuit_breaker", "outlier_detection",
                "health_check", "critical", "tls"});
  l.section(n, "tls", p, {"sni", "verify", "ca_file", "client_cert", "client_key", "min_version"},
            [&](const YAML::Node& m, const std::string& q) { out.tls = load_cluster_tls(l, m, q); });
  l.string(n, "name", p, out.name);
  l.boolean(n, "critical", p, out.critical);
  const YAML::Node eps = n["endpoints"];
  const std::string ep_path = Loader::child(p, "endpoints");
  if (!eps.IsDefined() || eps.IsNull()) {
    l.error(n, p, "missing required key 'endpoints'");
  } else if (l.expect_sequence(eps, ep_path)) {
    if (eps.size() == 0) l.error(eps, ep_path, "needs at least one endpoint");
    for (std::size_t i = 0; i < eps.size(); ++i) {
      const std::string q = Loader::index(ep_path, i);
      if (auto text = l.scalar(eps[i], q)) {
        auto a = parse_address(*text);
        if (!a || a->port == 0) {
          l.error(eps[i], q, "expected host:port, got '" + *text + "'");
        } else if (!is_ip_literal(a->host) && !valid_dns_name(a->host)) {
          l.error(eps[i], q,
                  "expected host:port with an IP address or a DNS name as the host, got '" + *text +
                      "'");
        } else {
          out.endpoints.push_back(std::move(*a));
        }
      }
    }
  }
  l.duration(n, "dns_refresh", p, out.dns_refresh);
  if (n["dns_refresh"].IsDefined() &&
      (out.dns_refresh < kMinDnsRefresh || out.dns_refresh > kMaxDnsRefresh)) {
    l.error(n["dns_refresh"], Loader::child(p, "dns_refresh"),
            "expected a duration from 1s to 24h");
  }
  l.choice(n, "lb", p, out.lb,
           {{"round_robin", LoadBalancing::round_robin},
            {"least_request", LoadBalancing::least_request}});
  l.duration(n, "connect_timeout", p, out.connect_timeout);
  l.section(n, "pool", p, {"max_per_endpoint", "max_idle", "idle_timeout"},
            [&](const YAML::Node& m, const std::string& q) {
              l.integer(m, "max_per_endpoint", q, out.pool.max_per_endpoint, 1, 1'000'000);
              l.integer(m, "max_idle", q, out.pool.max_idle, 0, 1'000'000);
              l.duration(m, "idle_timeout", q, out.pool.idle_timeout);
            });
  l.integer(n, "max_concurrent_requests", p, out.max_concurrent_requests, 1, 10'000'000);
  l.section(n, "queue", p, {"max_size", "max_wait"},
            [&](const YAML::Node& m, const std::string& q) {
              QueueSpec queue;
              l.integer(m, "max_size", q, queue.max_size, 1, 1'000'000);
              l.duration(m, "max_wait", q, queue.max_wait);
              if (queue.max_wait > std::chrono::hours(1)) {
                l.error(m["max_wait"], Loader::child(q, "max_wait"), "must be at most 1h");
              }
              out.queue = queue;
            });
  if (const YAML::Node cb = n["circuit_breaker"]; cb.IsDefined() && !cb.IsNull()) {
    const std::string q = Loader::child(p, "circuit_breaker");
    if (l.expect_map(cb, q)) {
      out.circuit_breaker = load_breaker(l, cb, q);
      load_failure_set(l, cb, q, out.breaker_failures);
    }
  }
  l.section(n, "outlier_detection", p, {"consecutive_5xx", "base_ejection", "max_ejection_percent"},
            [&](const YAML::Node& m, const std::string& q) {
              OutlierDetection od;
              l.integer(m, "consecutive_5xx", q, od.consecutive_5xx, 1, 1'000'000);
              l.duration(m, "base_ejection", q, od.base_ejection);
              l.percent(m, "max_ejection_percent", q, od.max_ejection_percent);
              out.outlier_detection = od;
            });
  l.section(n, "health_check", p,
            {"path", "interval", "timeout", "healthy_threshold", "unhealthy_threshold",
             "expected_statuses"},
            [&](const YAML::Node& m, const std::string& q) {
              HealthCheckSpec hc;
              l.string(m, "path", q, hc.path);
              if (hc.path.front() != '/')
                l.error(m["path"], Loader::child(q, "path"), "must start with '/'");
              l.duration(m, "interval", q, hc.interval);
              l.duration(m, "timeout", q, hc.timeout);
              l.integer(m, "healthy_threshold", q, hc.healthy_threshold, 1, 1000);
              l.integer(m, "unhealthy_threshold", q, hc.unhealthy_threshold, 1, 1000);
              load_expected_statuses(l, m, q, hc);
              out.health_check = hc;
            });
  return out;
}

template <class T, class LoadOne>
std::vector<T> load_list(Loader& l, const YAML::Node& root, std::string_view key, LoadOne load) {
  std::vector<T> out;
  const YAML::Node node = root[std::string(key)];
  if (!node.IsDefined() || node.IsNull()) return out;
  const std::string path(key);
  if (!l.expect_sequence(node, path)) return out;
  // One element per YAML item, so that out[i] is node[i] for the checks that look back at the
  // file; an item that is not a mapping has been reported and leaves a default in its place
  // (the file is rejected anyway).
  for (std::size_t i = 0; i < node.size(); ++i) {
    const std::string p = Loader::index(path, i);
    out.push_back(l.expect_map(node[i], p) ? load(l, node[i], p) : T{});
  }
  return out;
}

// Names must be present and unique within a list; reports at the duplicate.
template <class T>
void check_names(Loader& l, const YAML::Node& root, std::string_view key,
                 const std::vector<T>& items) {
  std::set<std::string> seen;
  for (std::size_t i = 0; i < items.size(); ++i) {
    const std::string p = Loader::index(std::string(key), i);
    const YAML::Node n = root[std::string(key)][i];
    if (!n.IsMap()) continue;  // already reported by load_list
    if (items[i].name.empty()) {
      if (!n["name"].IsDefined()) l.error(n, p, "missing required key 'name'");
    } else if (!seen.insert(items[i].name).second) {
      l.error(n["name"], Loader::child(p, "name"), "duplicate name '" + items[i].name + "'");
    }
  }
}

Config load(Loader& l, const YAML::Node& root) {
  Config c;
  if (!root.IsDefined() || root.IsNull()) {
    l.error(root, "", "the file is empty");
    return c;
  }
  if (!l.expect_map(root, "")) return c;
  l.check_keys(root, "",
               {"workers", "admin", "listeners", "routes", "clusters", "cache", "redis", "overload",
                "alerts", "logging", "shutdown"});
  l.integer(root, "workers", "", c.workers, 0, 1024);
  l.section(root, "admin", "", {"listen", "token", "tls"}, [&](const YAML::Node& m,
                                                                const std::string& q) {
    l.address(m, "listen", q, c.admin, true);
    l.section(m, "tls", q,
              {"cert", "key", "certificates", "min_version", "ciphers", "alpn", "client_ca",
               "require_client_cert", "client_subject_header", "handshake_timeout"},
              [&](const YAML::Node& t, const std::string& tq) {
                c.admin_tls = load_listener_tls(l, t, tq);
              });
    l.string(m, "token", q, c.admin_token);
    const bool visible = std::all_of(c.admin_token.begin(), c.admin_token.end(),
                                     [](char ch) { return ch > ' ' && ch < 0x7f; });
    if (!visible) {
      l.error(m["token"], Loader::child(q, "token"),
              "expected visible ASCII characters without spaces (a bearer token)");
    }
    // Off loopback, anyone who reaches the port could reload the gateway and read its state.
    if (m["listen"].IsDefined() && !is_loopback_host(c.admin.host) && c.admin_token.empty() &&
        !m["token"].IsDefined()) {
      l.error(m["listen"], Loader::child(q, "listen"),
              "an admin listener off loopback needs a token: set admin.token (for example "
              "token: \"${ADMIN_TOKEN}\")");
    }
  });
  c.listeners = load_list<Listener>(l, root, "listeners", load_listener);
  c.routes = load_list<Route>(l, root, "routes", load_route);
  c.clusters = load_list<Cluster>(l, root, "clusters", load_cluster);
  check_names(l, root, "listeners", c.listeners);
  check_names(l, root, "routes", c.routes);
  check_names(l, root, "clusters", c.clusters);
  if (c.listeners.empty() && !root["listeners"].IsDefined()) {
    l.error(root, "listeners", "at least one listener is required");
  }
  l.section(root, "cache", "", {"max_bytes", "max_entries"},
            [&](const YAML::Node& m, const std::string& q) {
              l.size(m, "max_bytes", q, c.cache.max_bytes);
              l.integer(m, "max_entries", q, c.cache.max_entries, 1, 1'000'000'000);
            });
  l.section(root, "redis", "",
            {"address", "timeout", "on_failure", "username", "password", "connections",
             "max_pending", "connect_timeout", "key_prefix", "circuit_breaker", "tls"},
            [&](const YAML::Node& m, const std::string& q) {
              RedisSpec r;
              if (!m["address"].IsDefined()) l.error(m, q, "missing required key 'address'");
              l.address(m, "address", q, r.address, false);
              l.duration(m, "timeout", q, r.timeout);
              l.choice(m, "on_failure", q, r.on_failure,
                       {{"local", RedisFailureMode::local},
                        {"allow", RedisFailureMode::allow},
                        {"deny", RedisFailureMode::deny}});
              l.string(m, "username", q, r.username);
              l.string(m, "password", q, r.password);
              if (!r.username.empty() && r.password.empty()) {
                l.error(m["username"], Loader::child(q, "username"), "needs a password");
              }
              l.integer(m, "connections", q, r.connections, 1, 16);
              l.integer(m, "max_pending", q, r.max_pending, 16, 1'000'000);
              l.duration(m, "connect_timeout", q, r.connect_timeout);
              l.string(m, "key_prefix", q, r.key_prefix);
              l.section(m, "tls", q,
                        {"sni", "verify", "ca_file", "client_cert", "client_key", "min_version"},
                        [&](const YAML::Node& t, const std::string& tq) {
                          r.tls = load_cluster_tls(l, t, tq);
                        });
              if (const YAML::Node cb = m["circuit_breaker"]; cb.IsDefined() && !cb.IsNull()) {
                const std::string bq = Loader::child(q, "circuit_breaker");
                if (l.expect_map(cb, bq)) r.circuit_breaker = load_breaker(l, cb, bq);
              }
              c.redis = std::move(r);
            });
  l.section(root, "shutdown", "", {"drain_timeout"},
            [&](const YAML::Node& m, const std::string& q) {
              l.duration(m, "drain_timeout", q, c.shutdown.drain_timeout, true);
            });
  l.section(root, "overload", "", {"memory_limit", "force_level"},
            [&](const YAML::Node& m, const std::string& q) {
              uint64_t limit = 0;
              l.size(m, "memory_limit", q, limit);
              if (limit > 0) c.overload.memory_limit = limit;
              l.choice(m, "force_level", q, c.overload.force_level,
                       {{"normal", OverloadLevel::normal},
                        {"warning", OverloadLevel::warning},
                        {"critical", OverloadLevel::critical},
                        {"exhausted", OverloadLevel::exhausted}});
            });
  c.alerts = load_list<AlertSpec>(
      l, root, "alerts", [](Loader& ll, const YAML::Node& n, const std::string& p) {
        AlertSpec a;
        ll.check_keys(n, p, {"name", "metric", "op", "threshold", "for", "severity"});
        ll.string(n, "name", p, a.name);
        ll.string(n, "metric", p, a.metric);
        ll.field(
            n, "op", p, a.op,
            [](const std::string& s) -> std::optional<std::string> {
              if (s == ">" || s == "<" || s == ">=" || s == "<=") return s;
              return std::nullopt;
            },
            "one of > < >= <=");
        ll.number(n, "threshold", p, a.threshold, -1e300, 1e300);
        ll.duration(n, "for", p, a.for_duration, true);
        ll.field(
            n, "severity", p, a.severity,
            [](const std::string& s) -> std::optional<std::string> {
              if (s == "info" || s == "warning" || s == "critical") return s;
              return std::nullopt;
            },
            "one of info | warning | critical");
        if (!n["metric"].IsDefined()) {
          ll.error(n, p, "missing required key 'metric'");
        } else if (const auto signal = parse_alert_signal(a.metric)) {
          a.signal = *signal;
        } else {
          ll.error(n["metric"], Loader::child(p, "metric"),
                   "expected one of the gateway's alert signals (docs/resilience.md), such as "
                   "bulwark_requests_5xx_ratio or bulwark_request_duration_p99_seconds"
                   "{route=\"api\"}, got '" +
                       a.metric + "'");
        }
        return a;
      });
  check_names(l, root, "alerts", c.alerts);
  l.section(root, "logging", "", {"level", "access"},
            [&](const YAML::Node& m, const std::string& q) {
              l.field(
                  m, "level", q, c.logging.level,
                  [](const std::string& s) -> std::optional<std::string> {
                    for (const char* lv :
                         {"trace", "debug", "info", "warn", "error", "critical", "off"}) {
                      if (s == lv) return s;
                    }
                    return std::nullopt;
                  },
                  "one of trace | debug | info | warn | error | critical | off");
              l.section(m, "access", q, {"path", "format"},
                        [&](const YAML::Node& a, const std::string& r) {
                          l.string(a, "path", r, c.logging.access.path);
                          l.field(
                              a, "format", r, c.logging.access.format,
                              [](const std::string& s) -> std::optional<std::string> {
                                if (s == "json") return s;
                                return std::nullopt;
                              },
                              "json");
                        });
            });

  // References: every route's cluster and fallbacks must exist.
  for (std::size_t i = 0; i < c.routes.size(); ++i) {
    const Route& r = c.routes[i];
    const YAML::Node rn = root["routes"][i];
    if (!rn.IsMap()) continue;  // already reported by load_list
    const std::string p = Loader::index("routes", i);
    if (!r.cluster.empty() && !c.find_cluster(r.cluster)) {
      l.error(rn["cluster"], Loader::child(p, "cluster"), "no cluster named '" + r.cluster + "'");
    }
    for (std::size_t j = 0; j < r.fallback.size(); ++j) {
      if (!c.find_cluster(r.fallback[j])) {
        l.error(rn["fallback"][j], Loader::index(Loader::child(p, "fallback"), j),
                "no cluster named '" + r.fallback[j] + "'");
      }
    }
  }
  // A global rate limit needs the store it is shared through.
  if (!c.redis) {
    for (std::size_t i = 0; i < c.routes.size(); ++i) {
      const auto& rl = c.routes[i].rate_limit;
      if (!rl || rl->scope != RateLimitScope::global) continue;
      const YAML::Node rn = root["routes"][i]["rate_limit"];
      l.error(rn["scope"], Loader::child(Loader::child(Loader::index("routes", i), "rate_limit"),
                                         "scope"),
              "scope: global needs a 'redis' section");
    }
    for (std::size_t i = 0; i < c.listeners.size(); ++i) {
      if (!c.listeners[i].per_client_rate_limit ||
          c.listeners[i].per_client_scope != RateLimitScope::global) {
        continue;
      }
      const YAML::Node pn = root["listeners"][i]["rate_limit"]["per_client"];
      l.error(pn["scope"],
              Loader::child(Loader::child(Loader::index("listeners", i), "rate_limit.per_client"),
                            "scope"),
              "scope: global needs a 'redis' section");
    }
  }
  // An alert scoped to a route or a cluster must name one.
  for (std::size_t i = 0; i < c.alerts.size(); ++i) {
    const AlertSignal& signal = c.alerts[i].signal;
    const YAML::Node an = root["alerts"][i];
    if (!an.IsMap()) continue;
    const std::string p = Loader::child(Loader::index("alerts", i), "metric");
    const bool route_known =
        signal.route.empty() || std::any_of(c.routes.begin(), c.routes.end(),
                                            [&](const Route& r) { return r.name == signal.route; });
    if (!route_known) l.error(an["metric"], p, "no route named '" + signal.route + "'");
    if (!signal.cluster.empty() && !c.find_cluster(signal.cluster)) {
      l.error(an["metric"], p, "no cluster named '" + signal.cluster + "'");
    }
  }
  return c;
}

}  // namespace

bool is_ip_literal(std::string_view host) noexcept {
  if (host.empty() || host.size() >= INET6_ADDRSTRLEN) return false;
  char text[INET6_ADDRSTRLEN] = {};
  std::memcpy(text, host.data(), host.size());
  unsigned char binary[sizeof(in6_addr)];
  return ::inet_pton(AF_INET, text, binary) == 1 || ::inet_pton(AF_INET6, text, binary) == 1;
}

bool is_loopback_host(std::string_view host) noexcept {
  if (host.size() == 9 || host.size() == 10) {
    std::string lower(host);
    std::transform(lower.begin(), lower.end(), lower.begin(),
                   [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
    if (lower == "localhost" || lower == "localhost.") return true;
  }
  if (host.empty() || host.size() >= INET6_ADDRSTRLEN) return false;
  char text[INET6_ADDRSTRLEN] = {};
  std::memcpy(text, host.data(), host.size());
  in_addr v4{};
  if (::inet_pton(AF_INET, text, &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
  in6_addr v6{};
  if (::inet_pton(AF_INET6, text, &v6) != 1) return false;
  if (IN6_IS_ADDR_LOOPBACK(&v6)) return true;
  return IN6_IS_ADDR_V4MAPPED(&v6) && v6.s6_addr[12] == 127;
}

std::string Address::text() const {
  const bool v6 = host.find(':') != std::string::npos;
  return (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

const Cluster* Config::find_cluster(std::string_view name) const {
  for (const Cluster& c : clusters) {
    if (c.name == name) return &c;
  }
  return nullptr;
}

std::string Diagnostic::text() const {
  std::string out = file;
  if (line > 0) out += ":" + std::to_string(line) + ":" + std::to_string(column);
  out += ": ";
  if (!path.empty()) out += path + ": ";
  out += message;
  return out;
}

namespace {
std::string summarize(const std::vector<Diagnostic>& diagnostics) {
  std::string out;
  for (const Diagnostic& d : diagnostics) {
    if (!out.empty()) out += "\n";
    out += d.text();
  }
  return out;
}
}  // namespace

ConfigError::ConfigError(std::vector<Diagnostic> diagnostics)
    : std::runtime_error(summarize(diagnostics)), diagnostics_(std::move(diagnostics)) {}

std::optional<std::string> process_env(const std::string& name) {
  const char* v = std::getenv(name.c_str());
  if (!v) return std::nullopt;
  return std::string(v);
}

Config parse(const std::string& text, const std::string& file, EnvLookup env) {
  Loader loader(file, env);
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    Diagnostic d;
    d.file = file;
    d.line = e.mark.is_null() ? 0 : e.mark.line + 1;
    d.column = e.mark.is_null() ? 0 : e.mark.column + 1;
    d.message = "YAML syntax error: " + e.msg;
    throw ConfigError({d});
  }
  Config config;
  try {
    config = load(loader, root);
  } catch (const YAML::Exception& e) {
    // A shape the loader did not expect must still end as a diagnostic, never as a crash.
    Diagnostic d;
    d.file = file;
    d.line = e.mark.is_null() ? 0 : e.mark.line + 1;
    d.column = e.mark.is_null() ? 0 : e.mark.column + 1;
    d.message = "unexpected structure: " + e.msg;
    loader.diagnostics.push_back(std::move(d));
  }
  if (!loader.diagnostics.empty()) {
    // In file order, as a reader goes through the file (the loader visits sections in its own
    // order).
    std::stable_sort(loader.diagnostics.begin(), loader.diagnostics.end(),
                     [](const Diagnostic& a, const Diagnostic& b) {
                       return std::tie(a.line, a.column) < std::tie(b.line, b.column);
                     });
    throw ConfigError(std::move(loader.diagnostics));
  }
  return config;
}

Config load_file(const std::string& path, EnvLookup env) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    Diagnostic d;
    d.file = path;
    d.message = "cannot open the file";
    throw ConfigError({d});
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  return parse(ss.str(), path, env);
}

}  // namespace bulwark::gateway::config
