// The access log: one JSON object per line per request, written asynchronously so that a slow
// disk never slows a request down.
//
// Line (keys always present, in this order):
//   {"time":"2026-11-23T12:34:56.789Z","request_id":"...","client":"127.0.0.1:51234",
//    "method":"GET","path":"/v1/items","status":200,"route":"api","cluster":"backend",
//    "endpoint":"127.0.0.1:9001","attempts":1,"duration_ms":12.345,"bytes_in":0,
//    "bytes_out":5120,"reason":""}
//   time        RFC 3339 UTC, milliseconds: when the request started
//   path        the normalised path (without the query), as routed
//   status      the status sent to the client (0 when the connection closed before a status)
//   route/cluster/endpoint   "" when not known (refused before routing, no endpoint picked)
//   attempts    upstream attempts made (0 when refused before reaching an upstream)
//   bytes_in    request body bytes read from the client; bytes_out: response body bytes written
//   reason      the x-bulwark-reason of a response the gateway made itself, or the stream
//               guard that cut an answer short (stream_idle_timeout, ...); "" otherwise
// Strings are JSON-escaped with bulwark::observe::append_json_string (every line is valid JSON
// whatever the client sent).
//
// Destinations (logging.access.path): "stdout", "stderr", "off" (nothing is written), or a file
// path (appended to; created if missing). format must be "json".
//
// Queue: bounded (queue_size lines). When full the line is dropped and dropped() counts it:
// request threads never wait for log I/O. close() (and the destructor) writes what is queued.
//
// Thread-safety: log() is safe from any thread; open/close are not concurrent with log().
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace bulwark::gateway::observe {

struct AccessRecord {
  std::chrono::system_clock::time_point start;
  std::string_view request_id;
  std::string_view client;  // "ip:port"
  std::string_view method;
  std::string_view path;
  int status = 0;
  std::string_view route;
  std::string_view cluster;
  std::string_view endpoint;
  uint32_t attempts = 0;
  std::chrono::nanoseconds duration{0};
  uint64_t bytes_in = 0;
  uint64_t bytes_out = 0;
  std::string_view reason;
};

// Appends the JSON line for `r` (without the trailing newline) to `out`.
void format_access_record(std::string& out, const AccessRecord& r);

class AccessLog {
 public:
  struct Options {
    std::string path = "stdout";
    std::size_t queue_size = 64 * 1024UL;
  };
  // Throws std::runtime_error when the file cannot be opened (a start-up/reload error).
  explicit AccessLog(const Options& options);
  ~AccessLog();
  AccessLog(const AccessLog&) = delete;
  AccessLog& operator=(const AccessLog&) = delete;

  bool enabled() const noexcept;
  void log(const AccessRecord& record);
  // Writes everything queued and stops the writer thread. Idempotent.
  void close();
  uint64_t written() const noexcept;
  uint64_t dropped() const noexcept;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace bulwark::gateway::observe
