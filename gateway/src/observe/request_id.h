// X-Request-Id: kept when the client sent a usable one, generated otherwise.
//
// A usable id is 1..128 characters of [A-Za-z0-9._:-] (enough for UUIDs, ULIDs, trace ids and
// the formats of common load balancers; nothing that could break a log line or a header).
// Generated ids are random UUIDv4 text (36 characters, lower-case hex).
//
// Thread-safety: pure functions; the Random passed in is the caller's (one per worker).
#pragma once

#include <string>
#include <string_view>

#include "bulwark/core/random.h"

namespace bulwark::gateway::observe {

inline constexpr std::size_t kMaxRequestIdBytes = 128;

bool is_valid_request_id(std::string_view id) noexcept;

// A new UUIDv4 string, e.g. "3f2b9c1e-8a4d-4e7f-9b21-5c6d7e8f9a0b".
std::string generate_request_id(Random& random);
// The same into `out` (replacing its contents; a string with room for 36 characters is
// reused without allocating).
void format_request_id(Random& random, std::string& out);

}  // namespace bulwark::gateway::observe
