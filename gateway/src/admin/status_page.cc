// render_status_page(): the HTML behind GET / on the admin listener.
//
// The documents come from the running gateway and may be partial (a field not yet reported, a
// cluster without endpoints, a handler that returned null): every lookup is defensive and a
// missing value prints as "-". Every string taken from the documents is HTML-escaped, because
// names, addresses and error messages come from the config file and from upstreams.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

#include "admin/admin_server.h"

namespace bulwark::gateway::admin {
namespace {

using nlohmann::json;

void append_escaped(std::string& out, std::string_view text) {
  for (const char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
}

std::string escaped(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  append_escaped(out, text);
  return out;
}

// obj[key] when obj is an object holding key; nullptr otherwise.
const json* field(const json* obj, const char* key) {
  if (obj == nullptr || !obj->is_object()) return nullptr;
  const auto it = obj->find(key);
  return it == obj->end() ? nullptr : &*it;
}

const json* field(const json& obj, const char* key) { return field(&obj, key); }

std::string format_number(double value) {
  char buf[64];
  if (std::isfinite(value) && value == std::floor(value) && std::abs(value) < 1e15) {
    std::snprintf(buf, sizeof buf, "%.0f", value);
  } else {
    std::snprintf(buf, sizeof buf, "%.3g", value);
  }
  return buf;
}

// Any JSON value as escaped cell text: "-" when missing or null.
std::string text(const json* value) {
  if (value == nullptr || value->is_null()) return "-";
  if (value->is_string()) return escaped(value->get_ref<const std::string&>());
  if (value->is_boolean()) return value->get<bool>() ? "yes" : "no";
  if (value->is_number_integer() || value->is_number_unsigned()) return value->dump();
  if (value->is_number_float()) return format_number(value->get<double>());
  return escaped(value->dump());
}

std::string milliseconds(const json* value) {
  if (value == nullptr || !value->is_number()) return text(value);
  return format_number(value->get<double>()) + " ms";
}

std::string duration_text(const json* seconds) {
  if (seconds == nullptr || !seconds->is_number()) return text(seconds);
  const double total = seconds->get<double>();
  if (!(total >= 0) || total > 1e12) return text(seconds);
  auto s = static_cast<uint64_t>(total);
  const uint64_t days = s / 86400;
  s %= 86400;
  char buf[64];
  if (days > 0) {
    std::snprintf(buf, sizeof buf, "%llud %02lluh %02llum %02llus",
                  static_cast<unsigned long long>(days), static_cast<unsigned long long>(s / 3600),
                  static_cast<unsigned long long>(s / 60 % 60),
                  static_cast<unsigned long long>(s % 60));
  } else {
    std::snprintf(
        buf, sizeof buf, "%lluh %02llum %02llus", static_cast<unsigned long long>(s / 3600),
        static_cast<unsigned long long>(s / 60 % 60), static_cast<unsigned long long>(s % 60));
  }
  return buf;
}

// CSS class for a health or breaker state. Only fixed class names are ever emitted, so a
// state string cannot inject markup through the attribute.
const char* state_class(const json* value) {
  if (value == nullptr || !value->is_string()) return "unknown";
  const std::string& s = value->get_ref<const std::string&>();
  if (s == "healthy" || s == "closed" || s == "up") return "good";
  if (s == "unhealthy" || s == "open" || s == "down" || s == "ejected") return "bad";
  if (s == "firing") return "bad";
  if (s == "inactive" || s == "resolved") return "good";
  if (s == "half_open" || s == "half-open" || s == "degraded" || s == "unknown" || s == "pending") {
    return "warn";
  }
  return "unknown";
}

const json* array_field(const json* obj, const char* key) {
  const json* v = field(obj, key);
  return v != nullptr && v->is_array() ? v : nullptr;
}

void cell(std::string& out, const std::string& content, const char* cls = nullptr) {
  out += cls ? std::string("<td class=\"") + cls + "\">" : std::string("<td>");
  out += content;
  out += "</td>";
}

constexpr std::string_view kStyle = R"(<style>
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.6em}h3{font-size:1em}
table{border-collapse:collapse;margin:.4em 0 1em}
th,td{border:1px solid #bbb;padding:.25em .6em;text-align:right}
th{background:#e8e8f0}td:first-child,th:first-child{text-align:left}
td.good{background:#c8f0c8}td.bad{background:#f4b8b8}td.warn{background:#f8e8a8}
td.text{text-align:left}.empty{color:#777;font-style:italic}
</style>)";

void render_summary(std::string& out, const json& stats) {
  const json* draining = field(stats, "draining");
  const bool is_draining = draining != nullptr && draining->is_boolean() && draining->get<bool>();
  out += "<table class=\"summary\">";
  out += "<tr><th>version</th><td class=\"text\">" + text(field(stats, "version")) + "</td></tr>";
  out += "<tr><th>uptime</th><td class=\"text\">" + duration_text(field(stats, "uptime_seconds")) +
         "</td></tr>";
  out += "<tr><th>config generation</th><td>" + text(field(stats, "generation")) + "</td></tr>";
  out += "<tr><th>workers</th><td>" + text(field(stats, "workers")) + "</td></tr>";
  if (const json* log = field(stats, "access_log"); log != nullptr && log->is_object()) {
    out += "<tr><th>access log lines</th><td>" + text(field(log, "written")) + " written, " +
           text(field(log, "dropped")) + " dropped</td></tr>";
  }
  out += std::string("<tr><th>state</th><td class=\"") + (is_draining ? "bad" : "good") + "\">" +
         (is_draining ? "draining" : "serving") + "</td></tr>";
  out += "</table>";
}

void render_listeners(std::string& out, const json& stats) {
  out += "<h2>Listeners</h2>";
  const json* listeners = array_field(&stats, "listeners");
  if (listeners == nullptr || listeners->empty()) {
    out += "<p class=\"empty\">no listeners reported</p>";
    return;
  }
  out +=
      "<table><tr><th>name</th><th>address</th><th>open connections</th>"
      "<th>connections accepted</th><th>requests in flight</th></tr>";
  for (const json& l : *listeners) {
    out += "<tr>";
    cell(out, text(field(l, "name")));
    cell(out, text(field(l, "address")));
    cell(out, text(field(l, "connections_active")));
    cell(out, text(field(l, "connections_total")));
    cell(out, text(field(l, "requests_active")));
    out += "</tr>";
  }
  out += "</table>";
}

// Summary of a {"name": count} object: the non-zero entries, "none" when there are none;
// `failed` gets the total of the entries other than `good`.
std::string counts_summary(const json* counts, std::string_view good, double& failed) {
  std::string summary;
  failed = 0;
  if (counts == nullptr || !counts->is_object()) return "-";
  for (const auto& [name, count] : counts->items()) {
    if (!count.is_number() || count.get<double>() == 0) continue;
    if (name != good) failed += count.get<double>();
    summary += (summary.empty() ? "" : ", ") + escaped(name) + " " + text(&count);
  }
  return summary.empty() ? std::string("none") : summary;
}

// Listeners with TLS: handshakes by result, connections by version.
void render_tls(std::string& out, const json& stats) {
  const json* listeners = array_field(&stats, "listeners");
  if (listeners == nullptr) return;
  std::string rows;
  for (const json& l : *listeners) {
    const json* tls = field(l, "tls");
    if (tls == nullptr || !tls->is_object()) continue;
    double failed = 0;
    const std::string handshakes = counts_summary(field(tls, "handshakes"), "ok", failed);
    rows += "<tr>";
    cell(rows, text(field(l, "name")));
    cell(rows, handshakes, failed > 0 ? "warn" : nullptr);
    cell(rows, text(field(tls, "TLSv1.2")));
    cell(rows, text(field(tls, "TLSv1.3")));
    rows += "</tr>";
  }
  if (rows.empty()) return;
  out +=
      "<h2>TLS</h2><table><tr><th>listener</th><th>handshakes</th><th>TLS 1.2</th>"
      "<th>TLS 1.3</th></tr>" +
      rows + "</table>";
}

// Routes with authentication: results by reason.
void render_auth(std::string& out, const json& stats) {
  const json* routes = array_field(&stats, "routes");
  if (routes == nullptr) return;
  std::string rows;
  for (const json& r : *routes) {
    const json* auth = field(r, "auth");
    if (auth == nullptr || !auth->is_object()) continue;
    double refused = 0;
    const std::string results = counts_summary(auth, "ok", refused);
    rows += "<tr>";
    cell(rows, text(field(r, "name")));
    cell(rows, results, refused > 0 ? "warn" : nullptr);
    rows += "</tr>";
  }
  if (rows.empty()) return;
  out += "<h2>Authentication</h2><table><tr><th>route</th><th>results</th></tr>" + rows +
         "</table>";
}

void render_routes(std::string& out, const json& stats) {
  static constexpr const char* kClasses[] = {"1xx", "2xx", "3xx", "4xx", "5xx"};
  out += "<h2>Routes</h2>";
  const json* routes = array_field(&stats, "routes");
  if (routes == nullptr || routes->empty()) {
    out += "<p class=\"empty\">no routes reported</p>";
    return;
  }
  out += "<table><tr><th>name</th><th>cluster</th>";
  for (const char* c : kClasses) out += std::string("<th>") + c + "</th>";
  out += "<th>total</th><th>p50</th><th>p99</th></tr>";
  for (const json& r : *routes) {
    out += "<tr>";
    cell(out, text(field(r, "name")));
    cell(out, text(field(r, "cluster")), "text");
    const json* requests = field(r, "requests");
    double total = 0;
    bool any = false;
    for (const char* c : kClasses) {
      const json* n = field(requests, c);
      if (n != nullptr && n->is_number()) {
        total += n->get<double>();
        any = true;
      }
      cell(out, text(n),
           c[0] == '5' && n != nullptr && n->is_number() && n->get<double>() > 0 ? "bad" : nullptr);
    }
    cell(out, any ? format_number(total) : "-");
    cell(out, milliseconds(field(r, "p50_ms")));
    cell(out, milliseconds(field(r, "p99_ms")));
    out += "</tr>";
  }
  out += "</table>";
}

// stats.alerts: the rules with their state (proxy/alerting.h).
void render_alerts(std::string& out, const json& stats) {
  const json* alerts = array_field(&stats, "alerts");
  if (alerts == nullptr) return;
  out += "<h2>Alerts</h2>";
  if (alerts->empty()) {
    out += "<p class=\"empty\">no alert rules</p>";
    return;
  }
  out +=
      "<table><tr><th>alert</th><th>state</th><th>value</th><th>condition</th>"
      "<th>severity</th></tr>";
  for (const json& a : *alerts) {
    out += "<tr>";
    cell(out, text(field(a, "name")), "text");
    const json* state = field(a, "state");
    cell(out, text(state), state_class(state));
    cell(out, text(field(a, "value")));
    cell(out,
         text(field(a, "metric")) + " " + text(field(a, "op")) + " " + text(field(a, "threshold")),
         "text");
    cell(out, text(field(a, "severity")));
    out += "</tr>";
  }
  out += "</table>";
}

void render_reloads(std::string& out, const json& stats) {
  const json* reloads = field(stats, "reloads");
  if (reloads == nullptr || !reloads->is_object()) return;
  out +=
      "<h2>Config reloads</h2><table><tr><th>succeeded</th><th>failed</th>"
      "<th>last error</th></tr><tr>";
  cell(out, text(field(reloads, "success")));
  const json* failure = field(reloads, "failure");
  cell(out, text(failure),
       failure != nullptr && failure->is_number() && failure->get<double>() > 0 ? "warn" : nullptr);
  cell(out, text(field(reloads, "last_error")), "text");
  out += "</tr></table>";
}

// Global rate limits' store (redis), when the config has one.
void render_redis(std::string& out, const json& stats) {
  const json* redis = field(stats, "redis");
  if (redis == nullptr || !redis->is_object()) return;
  out +=
      "<h2>Redis (global rate limits)</h2><table><tr><th>address</th><th>connections up</th>"
      "<th>breaker</th><th>round trip p99</th><th>errors</th></tr><tr>";
  cell(out, text(field(redis, "address")), "text");
  cell(out, text(field(redis, "connections_up")));
  const json* breaker = field(redis, "breaker");
  cell(out, text(breaker), state_class(breaker));
  const json* p99 = field(redis, "round_trip_p99_ms");
  cell(out, p99 != nullptr && p99->is_number() ? text(p99) + " ms" : std::string("-"));
  std::string errors;
  double total = 0;
  if (const json* e = field(redis, "errors"); e != nullptr && e->is_object()) {
    for (const auto& [kind, count] : e->items()) {
      if (!count.is_number() || count.get<double>() == 0) continue;
      total += count.get<double>();
      errors += (errors.empty() ? "" : ", ") + escaped(kind) + " " + text(&count);
    }
  }
  cell(out, errors.empty() ? std::string("none") : errors, total > 0 ? "warn" : nullptr);
  out += "</tr></table>";
}

void render_clusters(std::string& out, const json& clusters) {
  out += "<h2>Clusters</h2>";
  if (!clusters.is_array() || clusters.empty()) {
    out += "<p class=\"empty\">no clusters reported</p>";
    return;
  }
  for (const json& c : clusters) {
    out += "<h3>" + text(field(c, "name"));
    if (const json* lb = field(c, "lb"); lb != nullptr && !lb->is_null()) {
      out += " <small>(" + text(lb) + ")</small>";
    }
    out += "</h3>";
    if (field(c, "requests_active") != nullptr) {
      // The cluster's limit and its queue (clusters[].queue).
      out += "<p>in flight " + text(field(c, "requests_active")) + ", queued " +
             text(field(c, "queued")) + ", estimated wait " +
             text(field(c, "queue_estimated_wait_ms")) + " ms</p>";
    }
    const json* endpoints = array_field(&c, "endpoints");
    if (endpoints == nullptr || endpoints->empty()) {
      out += "<p class=\"empty\">no endpoints reported</p>";
      continue;
    }
    out +=
        "<table><tr><th>endpoint</th><th>active requests</th><th>idle pool</th>"
        "<th>busy pool</th><th>requests</th><th>connect failures</th><th>health</th>"
        "<th>breaker</th></tr>";
    for (const json& e : *endpoints) {
      out += "<tr>";
      cell(out, text(field(e, "address")));
      cell(out, text(field(e, "requests_active")));
      cell(out, text(field(e, "pool_idle")));
      cell(out, text(field(e, "pool_busy")));
      cell(out, text(field(e, "requests_total")));
      cell(out, text(field(e, "connect_failures")));
      const json* health = field(e, "health");
      cell(out, text(health), state_class(health));
      const json* breaker = field(e, "breaker");
      cell(out, text(breaker), state_class(breaker));
      out += "</tr>";
    }
    out += "</table>";
  }
}

}  // namespace

std::string render_status_page(const nlohmann::json& stats, const nlohmann::json& clusters) {
  std::string out;
  out.reserve(8192);
  out +=
      "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
      "<title>bulwark status</title>";
  out += kStyle;
  out += "</head><body><h1>bulwark";
  if (const json* version = field(stats, "version"); version != nullptr && !version->is_null()) {
    out += ' ';
    out += text(version);
  }
  out += "</h1>";
  render_summary(out, stats);
  render_listeners(out, stats);
  render_tls(out, stats);
  render_routes(out, stats);
  render_auth(out, stats);
  render_clusters(out, clusters);
  render_redis(out, stats);
  render_alerts(out, stats);
  render_reloads(out, stats);
  out +=
      "<p class=\"empty\">JSON: <a href=\"/stats\">/stats</a> <a href=\"/clusters\">/clusters</a>"
      " <a href=\"/config\">/config</a> <a href=\"/alerts\">/alerts</a>"
      " <a href=\"/metrics\">/metrics</a></p>";
  out += "</body></html>\n";
  return out;
}

}  // namespace bulwark::gateway::admin
