// The config binding of block patterns (see block_patterns.h).
#include "filters/block_patterns/block_patterns.h"

namespace bulwark::gateway::filters {

std::unique_ptr<filter::RequestFilter> bind_block_patterns(const config::Route& route,
                                                           observe::RouteMetrics& metrics) {
  const auto& spec = route.filters.block_patterns;
  if (!spec || (!spec->sqli && !spec->xss)) return nullptr;
  return std::make_unique<BlockPatternsFilter>(*spec, metrics.blocked[0], metrics.blocked[1]);
}

}  // namespace bulwark::gateway::filters
