#include "redis/gcra_script.h"

#include <chrono>

namespace bulwark::gateway::redis {

namespace {

// KEYS[1]: the client's key. ARGV: T (us), burst, permits. Numbers stay below 2^53 (us since
// the epoch), exact in Lua's doubles.
constexpr std::string_view kScript = R"lua(local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local permits = tonumber(ARGV[3])
local stored = redis.call('GET', KEYS[1])
local tat = now
if stored then tat = math.max(tonumber(stored), now) end
local new_tat = tat + permits * interval
local window = burst * interval
local allowed = new_tat - now <= window
local after = tat
if allowed then
  after = new_tat
  redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX',
             math.floor((new_tat - now) / 1000) + 1)
end
local remaining = math.floor((now + window - after) / interval)
if remaining < 0 then remaining = 0 end
local reset = after - now
if reset < 0 then reset = 0 end
local retry = 0
if not allowed then retry = new_tat - window - now end
return {allowed and 1 or 0, remaining, reset, retry}
)lua";

}  // namespace

std::string_view gcra_script() noexcept { return kScript; }

bool read_gcra_answer(const Reply& reply, GcraAnswer& out) noexcept {
  if (reply.kind != Reply::Kind::array || reply.elements != 4 || reply.integer_elements != 4) {
    return false;
  }
  const auto& v = reply.integers;
  if (v[0] != 0 && v[0] != 1) return false;
  if (v[1] < 0 || v[2] < 0 || v[3] < 0) return false;
  out.allowed = v[0] == 1;
  out.remaining = static_cast<uint64_t>(v[1]);
  out.reset = std::chrono::microseconds(v[2]);
  out.retry_after = std::chrono::microseconds(v[3]);
  return true;
}

void format_limit_key(std::string& out, std::string_view prefix, std::string_view limit,
                      std::string_view key) {
  out.clear();
  out.append(prefix).append("{").append(limit).append("|").append(key).append("}");
}

}  // namespace bulwark::gateway::redis
