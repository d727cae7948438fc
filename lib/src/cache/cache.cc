#include "bulwark/cache/cache.h"

#include <stdexcept>
#include <string>

namespace bulwark::cache {

void CacheOptions::validate() const {
  const auto fail = [](const char* field, const char* why) {
    throw std::invalid_argument(std::string("CacheOptions.") + field + ": " + why);
  };
  if (max_entries == 0) fail("max_entries", "must be >= 1");
  if (max_bytes == 0) fail("max_bytes", "must be >= 1");
  if (shards == 0) fail("shards", "must be >= 1");
  if (ttl <= Duration::zero()) fail("ttl", "must be > 0");
  if (stale_if_error < Duration::zero()) fail("stale_if_error", "must be >= 0");
}

}  // namespace bulwark::cache
