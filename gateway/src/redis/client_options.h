// What a worker's Redis client connects with (redis/client.h), made from the config's `redis`
// section when a snapshot is built (route/runtime.h): the address resolved, the secrets, the
// bounds. Compared on reload: a client reconnects only when something here changed.
#pragma once

#include <boost/asio/ip/tcp.hpp>
#include <cstddef>
#include <cstdint>
#include <string>

#include "bulwark/core/clock.h"

namespace bulwark::gateway::redis {

struct ClientOptions {
  boost::asio::ip::tcp::endpoint endpoint;
  std::string username;  // empty: AUTH <password> (the default user)
  std::string password;  // empty: no AUTH
  uint32_t connections = 1;
  std::size_t max_pending = 4096;
  Duration connect_timeout = std::chrono::seconds(1);
  Duration stall_timeout = std::chrono::seconds(2);

  friend bool operator==(const ClientOptions&, const ClientOptions&) = default;
};

}  // namespace bulwark::gateway::redis
