// The Lua script that makes one global rate decision in Redis, with the state and arithmetic of
// libbulwark's Gcra (limit/gcra.h): one key per limited client holding its theoretical arrival
// time TAT in microseconds; emission interval T and burst come with each call, so gateways
// with the same limit agree without sharing anything else. The time base is Redis `TIME`, so
// the gateways' clocks do not matter. One round trip per decision:
//
//   EVALSHA <sha> 1 <key> <T in us> <burst> <permits>   ->   [allowed, remaining, reset_us,
//                                                              retry_after_us]
//
// The key expires when its TAT has passed (PX), so an idle client costs nothing; a refusal
// writes nothing. Keys are `<prefix>{<limit>|<client key>}`: the hash tag keeps every key's
// script on one node of a Redis Cluster (docs/distributed.md).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "bulwark/core/clock.h"
#include "redis/resp.h"

namespace bulwark::gateway::redis {

// The script's text (SCRIPT LOAD, and EVAL after a SCRIPT FLUSH).
std::string_view gcra_script() noexcept;

struct GcraAnswer {
  bool allowed = false;
  uint64_t remaining = 0;
  Duration reset{0};
  Duration retry_after{0};
};

// The script's reply read as a decision; false when it is not one (an error, a wrong shape).
bool read_gcra_answer(const Reply& reply, GcraAnswer& out) noexcept;

// `<prefix>{<limit>|<key>}` into `out` (cleared first).
void format_limit_key(std::string& out, std::string_view prefix, std::string_view limit,
                      std::string_view key);

}  // namespace bulwark::gateway::redis
