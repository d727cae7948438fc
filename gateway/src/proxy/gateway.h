// Gateway: the whole running proxy — workers, admin listener, reload and drain.
//
// Start-up (start()): builds the first snapshot, binds every listener in every worker
// (SO_REUSEPORT; a port 0 in the config is resolved by the first worker and reused by the
// others), binds the admin listener, starts the threads, then writes the ready file if one
// was asked for: {"pid":N,"admin":PORT,"listeners":{"name":PORT,...}} (written to a temporary
// name and renamed, so a reader never sees half a file).
//
// Reload (reload(), from SIGHUP or POST /reload): reads and validates the file; on any error
// the running config stays and the error is logged, counted
// (bulwark_config_reloads_total{result="failure"}) and returned. On success the new snapshot is
// installed in every worker; requests in flight finish on the snapshot they started with.
// Listener addresses and `workers` are fixed at start-up: a change there is reported in the log
// as needing a restart and otherwise ignored.
//
// Drain (drain(), from SIGTERM/SIGINT): /readyz turns 503, every worker stops accepting and
// closes idle keep-alive connections; requests in flight finish (their responses carry
// Connection: close) until none is left or shutdown.drain_timeout passes; then the workers
// stop. run() returns 0 after a drain.
//
// Thread-safety: reload() and the admin handlers are safe from any thread; start(), drain()
// and run() belong to the controlling thread.
#pragma once

#include <memory>
#include <string>

#include "admin/admin_server.h"
#include "bulwark/core/clock.h"
#include "config/config.h"

namespace bulwark::gateway::proxy {

struct GatewayOptions {
  std::string config_path;
  std::string ready_file;  // empty: none
  // Every time reading of the gateway and its workers (deadlines, durations, drain). Null: the
  // system's steady clock.
  Clock* clock = nullptr;
};

class Gateway {
 public:
  // Throws std::runtime_error (e.g. an endpoint name that does not resolve, an access log
  // that cannot be opened).
  Gateway(GatewayOptions options, config::Config config);
  ~Gateway();
  Gateway(const Gateway&) = delete;
  Gateway& operator=(const Gateway&) = delete;

  // Throws std::runtime_error naming the address when one cannot be bound.
  void start();
  admin::ReloadOutcome reload();
  void drain();
  // start(), then serve until SIGTERM/SIGINT (drain) while SIGHUP reloads. Returns the exit
  // code (0 after a clean drain).
  int run();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace bulwark::gateway::proxy
