// Block patterns: a request filter that refuses, with 400 blocked_pattern, a request whose
// decoded path or query has the shape of an SQL injection (`' or 1=1`, `union select`,
// `sleep(`, ...) or of a cross-site script (`<script`, `javascript:`, `onerror=`, ...). Off by
// default; a route turns it on with `filters.block_patterns`.
//
// What it looks at: the normalised path and the query, each percent-decoded (twice, so that
// `%253Cscript` is caught as well as `%3Cscript`; in the query `+` is a space), lower-cased,
// with runs of white space and SQL comments (`/*...*/`) folded into one space and white space
// before `=` or `(` dropped — so `UNION/**/SELECT`, `union%20%20select` and `onerror =` have
// the shapes they are meant to have. Headers and bodies are not inspected.
//
// This is a first line against scanners and careless payloads, not a web application
// firewall: it knows a fixed list of shapes (kSqlShapes, kXssShapes in block_patterns.cc),
// no HTML entities and no per-application exceptions. Its false positives are the price of
// turning it on for a route whose URLs never carry such text; docs/resilience.md lists them.
//
// Cost: on a route that has it, one copy of the path and of the query into a per-thread
// buffer (reused: no allocation in steady state) and one pass per shape over each.
//
// Config (binding: bind_block_patterns):
//   routes[].filters.block_patterns: {sqli: true, xss: true}   (the section alone: both on)
//
// Metrics (handles resolved when the snapshot is built):
//   bulwark_route_blocked_total{route,pattern="sqli"|"xss"}    counter
//   bulwark_gateway_responses_total{code="400",reason="blocked_pattern"}  (the LocalReply path)
//
// Thread-safety: immutable; the scratch buffer is per thread.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "config/config.h"
#include "filter/filter.h"
#include "observe/gateway_metrics.h"

namespace bulwark::gateway::filters {

enum class PatternKind : uint8_t { none, sqli, xss };

struct PatternMatch {
  PatternKind kind = PatternKind::none;
  std::string_view shape;  // the shape that matched (a static string)
  explicit operator bool() const noexcept { return kind != PatternKind::none; }
};

// Writes `text` as the scan sees it into `out` (see above): percent-decoded twice (`+` as a
// space when `form`), lower-cased, white space and SQL comments folded. Pure; out.size() never
// exceeds text.size().
void fold_for_scan(std::string_view text, bool form, std::string& out);

// The first shape of an enabled kind found in folded text. Pure.
PatternMatch find_pattern(std::string_view folded, const config::BlockPatternsSpec& kinds) noexcept;

// The path, then the query (folded into `scratch`). Pure.
PatternMatch scan_target(std::string_view path, std::string_view query,
                         const config::BlockPatternsSpec& kinds, std::string& scratch);

class BlockPatternsFilter final : public filter::RequestFilter {
 public:
  BlockPatternsFilter(config::BlockPatternsSpec kinds, observe::Counter* sqli_blocked,
                      observe::Counter* xss_blocked) noexcept
      : kinds_(kinds), sqli_blocked_(sqli_blocked), xss_blocked_(xss_blocked) {}

  std::string_view name() const noexcept override { return "block_patterns"; }
  filter::LocalReply on_request(const filter::RequestInfo& request,
                                filter::FilterState& state) const override;

 private:
  config::BlockPatternsSpec kinds_;
  observe::Counter* sqli_blocked_;
  observe::Counter* xss_blocked_;
};

// The route's filter, or null when the route has no block_patterns.
std::unique_ptr<filter::RequestFilter> bind_block_patterns(const config::Route& route,
                                                           observe::RouteMetrics& metrics);

}  // namespace bulwark::gateway::filters
