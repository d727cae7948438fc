// Fuzzes request-target checking and normalisation: must never crash, and whatever it accepts
// must be normalised for good: it starts with '/', has no dot segment, no "//", no backslash,
// no encoded NUL, and normalising it again changes nothing. The same input is also run as a
// whole raw request head through check_request_head (what the gateway runs on heads the parser
// refused), which must never crash and must answer only 400/414/431 or accept. The data path's
// shortcut for already-normal paths (check_target_into) must agree with the full check
// (check_target_reference) on every input: same verdict, same normalised target.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "http/hygiene.h"

using bulwark::gateway::http::check_request_head;
using bulwark::gateway::http::check_target;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view target(reinterpret_cast<const char*>(data), size);
  {
    const auto v = check_request_head(target, {.max_headers = 20, .max_header_bytes = 1024}, 512);
    if (v.status != 0 && v.status != 400 && v.status != 414 && v.status != 431) std::abort();
    if (v.status != 0 && v.reason.empty()) std::abort();
  }
  {
    bulwark::gateway::http::NormalizedTarget fast;
    bulwark::gateway::http::NormalizedTarget full;
    const auto a = bulwark::gateway::http::check_target_into(target, "GET", 4096, fast);
    const auto b = bulwark::gateway::http::check_target_reference(target, "GET", 4096, full);
    if (a.status != b.status || a.reason != b.reason) std::abort();
    if (!a && (fast.path != full.path || fast.query != full.query ||
               fast.has_query != full.has_query || fast.authority != full.authority)) {
      std::abort();
    }
  }
  const auto r = check_target(target, "GET", 4096);
  if (r.verdict) return 0;
  const std::string& p = r.target.path;
  if (p.empty() || p.front() != '/') std::abort();
  if (p.find("//") != std::string::npos || p.find('\\') != std::string::npos) std::abort();
  if (p.find("/./") != std::string::npos || p.find("/../") != std::string::npos) std::abort();
  if (p.ends_with("/.") || p.ends_with("/..")) std::abort();
  if (p.find("%00") != std::string::npos) std::abort();
  const auto again = check_target(p, "GET", 4096);
  if (again.verdict || again.target.path != p) std::abort();
  return 0;
}
