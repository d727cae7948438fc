// What a worker's Redis client connects with (redis/client.h), made from the config's `redis`
// section when a snapshot is built (route/runtime.h): the address resolved, the secrets, the
// bounds. Compared on reload: a client reconnects only when something here changed.
#pragma once

#include <boost/asio/ip/tcp.hpp>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "bulwark/core/clock.h"
#include "http/tls_context.h"

namespace bulwark::gateway::redis {

struct ClientOptions {
  boost::asio::ip::tcp::endpoint endpoint;
  std::string username;  // empty: AUTH <password> (the default user)
  std::string password;  // empty: no AUTH
  uint32_t connections = 1;
  std::size_t max_pending = 4096;
  Duration connect_timeout = std::chrono::seconds(1);
  Duration stall_timeout = std::chrono::seconds(2);
  // redis.tls: the context (shared, built with the snapshot) and the host the certificate must
  // be valid for; no TLS when null.
  std::shared_ptr<http::ClientTls> tls;
  std::string host;

  // Equal when a client need not reconnect: the TLS settings compare by value (each snapshot
  // builds its own context).
  friend bool operator==(const ClientOptions& a, const ClientOptions& b) {
    const bool same_tls = (a.tls == nullptr) == (b.tls == nullptr) &&
                          (a.tls == nullptr || a.tls->spec() == b.tls->spec());
    return a.endpoint == b.endpoint && a.username == b.username && a.password == b.password &&
           a.connections == b.connections && a.max_pending == b.max_pending &&
           a.connect_timeout == b.connect_timeout && a.stall_timeout == b.stall_timeout &&
           same_tls && a.host == b.host;
  }
};

}  // namespace bulwark::gateway::redis
