// Structured logging on spdlog: one JSON object per line, a logger per component, an optional
// asynchronous sink with a bounded queue, and levels that can change at run time.
//
// Line format (keys in this order, then the fields in the order given):
//   {"time":"2024-05-01T12:34:56.789Z","level":"info","component":"proxy","msg":"upstream reset",
//    "cluster":"backend","attempt":2,"latency_ms":12.5}
//   time       RFC 3339, UTC, millisecond precision, taken when the log call was made
//   level      trace | debug | info | warning | error | critical
//   component  the name passed to LogSystem::logger()
//   msg        the message
// Strings (message, keys and string values) are JSON-escaped: `"` and `\` are escaped,
// control characters become \n, \r, \t, \b, \f or \u00XX (DEL too), and bytes that are not
// valid UTF-8 become \ufffd, so every line is valid JSON whatever the input. Numbers that are
// not finite (NaN, inf) are written as null. A field whose key is one of the four reserved
// keys is written with a leading underscore ("_msg"), so a line never holds a duplicate key.
//
// Asynchronous mode (the default): log calls format the fields into a buffer and enqueue it;
// one worker thread writes to the sinks. The queue holds LogOptions::queue_size messages. When
// it is full, OverflowPolicy::drop_oldest (the default) discards the oldest queued message so
// that request threads never wait for log I/O (dropped() counts them), and
// OverflowPolicy::block makes the log call wait for room (nothing lost, but a slow disk slows
// requests down). Synchronous mode writes on the calling thread.
//
// Levels: a message is written when its level is >= its component's level. set_level() changes
// the level of every component (and of those created later) at run time; set_level(component,
// level) overrides one component. Both are atomic stores; concurrent log calls see the change
// at once or at their next call.
//
// Lifetime: close() (or the destructor) writes everything queued and stops the worker. Logger
// handles may outlive the LogSystem; their calls are then dropped silently. Sinks passed in
// must be thread-safe (spdlog's *_mt sinks) and get a JsonFormatter installed.
//
// Thread-safety: Logger is a cheap copyable handle, safe to use from any thread. Every
// LogSystem member is safe from any thread.
//
// Example:
//   bulwark::observe::LogSystem logs({bulwark::observe::make_stdout_sink()},
//                                    {.level = LogLevel::info});
//   auto log = logs.logger("proxy");
//   log.warn("upstream reset", {{"cluster", "backend"}, {"attempt", 2}, {"latency_ms", 12.5}});
//   logs.set_level("proxy", LogLevel::debug);   // e.g. from the admin API
#pragma once

#include <spdlog/formatter.h>
#include <spdlog/logger.h>
#include <spdlog/sinks/sink.h>

#include <atomic>
#include <chrono>
#include <concepts>
#include <cstdint>
#include <initializer_list>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace spdlog::details {
class thread_pool;
}

namespace bulwark::observe {

using LogLevel = spdlog::level::level_enum;

// "trace", "debug", "info", "warn" or "warning", "error", "critical", "off" (case-insensitive).
// Throws std::invalid_argument otherwise.
LogLevel parse_log_level(std::string_view s);
// The name used in log lines: "trace", "debug", "info", "warning", "error", "critical", "off".
std::string_view to_string(LogLevel level) noexcept;

// Appends `s` to `out` as a JSON string literal (quotes included), escaped as described above.
void append_json_string(std::string& out, std::string_view s);
// Appends `t` as RFC 3339 UTC with milliseconds, e.g. 2024-05-01T12:34:56.789Z.
void append_rfc3339_utc(std::string& out, std::chrono::system_clock::time_point t);

// One key/value pair of a log line. Holds views of its arguments: build it in the log call.
class LogField {
 public:
  LogField(std::string_view key, std::string_view value) noexcept
      : key_(key), kind_(Kind::string), str_(value) {}
  LogField(std::string_view key, const char* value) noexcept
      : key_(key), kind_(value ? Kind::string : Kind::null), str_(value ? value : "") {}
  LogField(std::string_view key, const std::string& value) noexcept
      : key_(key), kind_(Kind::string), str_(value) {}
  LogField(std::string_view key, bool value) noexcept
      : key_(key), kind_(Kind::boolean), u_(value ? 1 : 0) {}
  template <std::signed_integral T>
  LogField(std::string_view key, T value) noexcept
      : key_(key), kind_(Kind::i64), i_(static_cast<int64_t>(value)) {}
  template <std::unsigned_integral T>
  requires(!std::same_as<T, bool>) LogField(std::string_view key, T value)
  noexcept : key_(key), kind_(Kind::u64), u_(static_cast<uint64_t>(value)) {}
  template <std::floating_point T>
  LogField(std::string_view key, T value) noexcept
      : key_(key), kind_(Kind::f64), d_(static_cast<double>(value)) {}
  LogField(std::string_view key, std::nullptr_t) noexcept : key_(key), kind_(Kind::null) {}

  std::string_view key() const noexcept { return key_; }
  // Appends `"key":value` (escaped; reserved keys prefixed with '_').
  void append_to(std::string& out) const;

 private:
  enum class Kind : uint8_t { string, boolean, i64, u64, f64, null };
  std::string_view key_;
  Kind kind_;
  std::string_view str_;
  union {
    int64_t i_;
    uint64_t u_;
    double d_;
  };
};

// spdlog formatter that writes each message as one JSON line. Messages logged through Logger
// carry their fields; messages logged directly through the spdlog logger become {"msg": text}
// (except a text starting with the control character U+001E, which marks Logger's payloads).
class JsonFormatter final : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override;
  std::unique_ptr<spdlog::formatter> clone() const override;

 private:
  // The date-and-time part of the last second formatted: most lines share it.
  int64_t cached_second_ = -1;
  std::string cached_prefix_;
  std::string line_;  // scratch
};

// A component's logger. Default-constructed: logs nothing.
class Logger {
 public:
  Logger() = default;
  explicit Logger(std::shared_ptr<spdlog::logger> impl) noexcept : impl_(std::move(impl)) {}

  bool enabled(LogLevel level) const noexcept { return impl_ && impl_->should_log(level); }
  void log(LogLevel level, std::string_view msg, std::initializer_list<LogField> fields = {}) const;

  void trace(std::string_view msg, std::initializer_list<LogField> fields = {}) const {
    log(LogLevel::trace, msg, fields);
  }
  void debug(std::string_view msg, std::initializer_list<LogField> fields = {}) const {
    log(LogLevel::debug, msg, fields);
  }
  void info(std::string_view msg, std::initializer_list<LogField> fields = {}) const {
    log(LogLevel::info, msg, fields);
  }
  void warn(std::string_view msg, std::initializer_list<LogField> fields = {}) const {
    log(LogLevel::warn, msg, fields);
  }
  void error(std::string_view msg, std::initializer_list<LogField> fields = {}) const {
    log(LogLevel::err, msg, fields);
  }
  void critical(std::string_view msg, std::initializer_list<LogField> fields = {}) const {
    log(LogLevel::critical, msg, fields);
  }

  std::string_view component() const noexcept;
  // The underlying spdlog logger (null for a default-constructed Logger).
  const std::shared_ptr<spdlog::logger>& spdlog_logger() const noexcept { return impl_; }

 private:
  std::shared_ptr<spdlog::logger> impl_;
};

enum class OverflowPolicy : uint8_t {
  drop_oldest,  // a full queue discards its oldest message (counted in dropped())
  block,        // a full queue makes the log call wait
};

struct LogOptions {
  // Write on a background thread (true) or on the calling thread (false).
  bool async = true;
  // Async queue capacity in messages. >= 1.
  std::size_t queue_size = 8192;
  OverflowPolicy overflow = OverflowPolicy::drop_oldest;
  // Initial level of every component.
  LogLevel level = LogLevel::info;
  // Sinks are flushed after every message at or above this level (async: by the worker).
  LogLevel flush_level = LogLevel::warn;
};

class LogSystem {
 public:
  // Installs a JsonFormatter on each sink. Throws std::invalid_argument for no sinks, a null
  // sink or queue_size 0.
  explicit LogSystem(std::vector<spdlog::sink_ptr> sinks, LogOptions options = {});
  ~LogSystem();
  LogSystem(const LogSystem&) = delete;
  LogSystem& operator=(const LogSystem&) = delete;

  // The logger of `component` (created on first use; the same one afterwards). After close(),
  // returns a logger that drops everything.
  Logger logger(std::string_view component);

  // Level of every component without an override, and of components created later.
  void set_level(LogLevel level);
  // Overrides one component's level.
  void set_level(std::string_view component, LogLevel level);
  // Removes the override: the component follows set_level(LogLevel) again.
  void clear_level(std::string_view component);
  LogLevel level() const;
  LogLevel level(std::string_view component) const;

  // Synchronous mode: flushes the sinks now. Async mode: asks the worker to flush after the
  // messages queued so far (does not wait).
  void flush();
  // Writes everything queued, flushes and stops the worker (if no other thread is inside a log
  // call at that moment; otherwise that call finishes the job). Later log calls are dropped.
  // Idempotent.
  void close();

  // Messages discarded by drop_oldest.
  uint64_t dropped() const;
  // Errors reported by sinks (e.g. a failed write), and log calls that raced with close().
  uint64_t errors() const noexcept { return errors_->load(std::memory_order_relaxed); }

 private:
  std::shared_ptr<spdlog::logger> make_logger_locked(const std::string& component);

  const LogOptions options_;
  std::vector<spdlog::sink_ptr> sinks_;
  std::shared_ptr<std::atomic<uint64_t>> errors_;
  mutable std::mutex mu_;
  // Guarded by mu_.
  std::shared_ptr<spdlog::details::thread_pool> pool_;
  std::map<std::string, std::shared_ptr<spdlog::logger>, std::less<>> loggers_;
  std::map<std::string, LogLevel, std::less<>> overrides_;
  LogLevel level_;
  bool closed_ = false;
  uint64_t dropped_at_close_ = 0;
};

// Thread-safe sinks for common destinations (the JsonFormatter is installed by LogSystem).
spdlog::sink_ptr make_stdout_sink();
spdlog::sink_ptr make_stderr_sink();
// Appends to `path` (created if missing). Throws spdlog::spdlog_ex if it cannot be opened.
spdlog::sink_ptr make_file_sink(const std::string& path);

}  // namespace bulwark::observe
