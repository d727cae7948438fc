#include "bulwark/observe/log.h"

#include <spdlog/async_logger.h>
#include <spdlog/details/thread_pool.h>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_sinks.h>

#include <cctype>
#include <charconv>
#include <cmath>
#include <ctime>
#include <stdexcept>
#include <utility>

namespace bulwark::observe {

namespace {

// First byte of a payload built by Logger::log: the rest is already an escaped JSON fragment
// ("msg":...,fields), so the formatter copies it instead of escaping it again. A message logged
// directly through spdlog is escaped whole, unless it starts with this control character
// (record separator), which text messages do not.
constexpr char kStructuredMarker = '\x1e';

constexpr char kHex[] = "0123456789abcdef";

// Length of the valid UTF-8 sequence starting at s[i] (a byte >= 0x80), or 0 if it is not one.
// Rejects overlong forms, surrogates and code points above U+10FFFF (RFC 3629, table 3-7).
std::size_t utf8_length(std::string_view s, std::size_t i) noexcept {
  const std::size_t n = s.size();
  auto cont = [&](std::size_t k, unsigned char lo = 0x80, unsigned char hi = 0xBF) {
    if (i + k >= n) return false;
    const auto b = static_cast<unsigned char>(s[i + k]);
    return b >= lo && b <= hi;
  };
  const auto c = static_cast<unsigned char>(s[i]);
  if (c >= 0xC2 && c <= 0xDF) return cont(1) ? 2 : 0;
  if (c == 0xE0) return cont(1, 0xA0, 0xBF) && cont(2) ? 3 : 0;
  if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) return cont(1) && cont(2) ? 3 : 0;
  if (c == 0xED) return cont(1, 0x80, 0x9F) && cont(2) ? 3 : 0;
  if (c == 0xF0) return cont(1, 0x90, 0xBF) && cont(2) && cont(3) ? 4 : 0;
  if (c >= 0xF1 && c <= 0xF3) return cont(1) && cont(2) && cont(3) ? 4 : 0;
  if (c == 0xF4) return cont(1, 0x80, 0x8F) && cont(2) && cont(3) ? 4 : 0;
  return 0;
}

bool plain_ascii(unsigned char c) noexcept {
  return c >= 0x20 && c < 0x7f && c != '"' && c != '\\';
}

// The escaped content of a JSON string, without the quotes.
void append_escaped(std::string& out, std::string_view s) {
  std::size_t i = 0;
  const std::size_t n = s.size();
  while (i < n) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (plain_ascii(c)) {
      std::size_t j = i + 1;
      while (j < n && plain_ascii(static_cast<unsigned char>(s[j]))) ++j;
      out.append(s.data() + i, j - i);
      i = j;
      continue;
    }
    if (c < 0x80) {
      switch (c) {
        case '"':
          out += "\\\"";
          break;
        case '\\':
          out += "\\\\";
          break;
        case '\n':
          out += "\\n";
          break;
        case '\r':
          out += "\\r";
          break;
        case '\t':
          out += "\\t";
          break;
        case '\b':
          out += "\\b";
          break;
        case '\f':
          out += "\\f";
          break;
        default:  // other control characters and DEL
          out += "\\u00";
          out.push_back(kHex[c >> 4]);
          out.push_back(kHex[c & 0xF]);
      }
      ++i;
      continue;
    }
    const std::size_t len = utf8_length(s, i);
    if (len == 0) {
      out += "\\ufffd";  // not UTF-8: one replacement character per bad byte
      ++i;
    } else {
      out.append(s.data() + i, len);
      i += len;
    }
  }
}

bool reserved_key(std::string_view k) noexcept {
  return k == "time" || k == "level" || k == "component" || k == "msg";
}

template <class T>
void append_number(std::string& out, T v) {
  char buf[32];
  auto [p, ec] = std::to_chars(buf, buf + sizeof buf, v);
  if (ec == std::errc()) out.append(buf, p);
}

bool iequals(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) !=
        std::tolower(static_cast<unsigned char>(b[i]))) {
      return false;
    }
  }
  return true;
}

}  // namespace

LogLevel parse_log_level(std::string_view s) {
  std::string_view t = s;
  while (!t.empty() && std::isspace(static_cast<unsigned char>(t.front()))) t.remove_prefix(1);
  while (!t.empty() && std::isspace(static_cast<unsigned char>(t.back()))) t.remove_suffix(1);
  if (iequals(t, "trace")) return LogLevel::trace;
  if (iequals(t, "debug")) return LogLevel::debug;
  if (iequals(t, "info")) return LogLevel::info;
  if (iequals(t, "warn") || iequals(t, "warning")) return LogLevel::warn;
  if (iequals(t, "error") || iequals(t, "err")) return LogLevel::err;
  if (iequals(t, "critical")) return LogLevel::critical;
  if (iequals(t, "off")) return LogLevel::off;
  throw std::invalid_argument("invalid log level '" + std::string(s) +
                              "' (expected trace, debug, info, warn, error, critical or off)");
}

std::string_view to_string(LogLevel level) noexcept {
  switch (level) {
    case LogLevel::trace:
      return "trace";
    case LogLevel::debug:
      return "debug";
    case LogLevel::info:
      return "info";
    case LogLevel::warn:
      return "warning";
    case LogLevel::err:
      return "error";
    case LogLevel::critical:
      return "critical";
    case LogLevel::off:
    case LogLevel::n_levels:
      break;
  }
  return "off";
}

void append_json_string(std::string& out, std::string_view s) {
  out.push_back('"');
  append_escaped(out, s);
  out.push_back('"');
}

void append_rfc3339_utc(std::string& out, std::chrono::system_clock::time_point t) {
  using namespace std::chrono;
  const auto secs = floor<seconds>(t);
  const auto ms = duration_cast<milliseconds>(t - secs).count();
  const std::time_t tt = system_clock::to_time_t(secs);
  std::tm tm{};
  ::gmtime_r(&tt, &tm);
  char buf[40];
  const int n = std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
                              tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                              tm.tm_sec, static_cast<int>(ms));
  if (n > 0) out.append(buf, static_cast<std::size_t>(n));
}

// ---- LogField ----

void LogField::append_to(std::string& out) const {
  out.push_back('"');
  if (reserved_key(key_)) out.push_back('_');
  append_escaped(out, key_);
  out += "\":";
  switch (kind_) {
    case Kind::string:
      append_json_string(out, str_);
      break;
    case Kind::boolean:
      out += u_ ? "true" : "false";
      break;
    case Kind::i64:
      append_number(out, i_);
      break;
    case Kind::u64:
      append_number(out, u_);
      break;
    case Kind::f64:
      // JSON has no NaN or infinity.
      if (std::isfinite(d_)) {
        append_number(out, d_);
      } else {
        out += "null";
      }
      break;
    case Kind::null:
      out += "null";
      break;
  }
}

// ---- JsonFormatter ----

void JsonFormatter::format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) {
  // A sink calls its formatter under the sink's lock, so the scratch buffer is not shared.
  std::string& line = line_;
  line.clear();
  line += "{\"time\":\"";
  const auto secs = std::chrono::floor<std::chrono::seconds>(msg.time);
  const int64_t sec_count = secs.time_since_epoch().count();
  if (sec_count != cached_second_) {
    cached_prefix_.clear();
    append_rfc3339_utc(cached_prefix_, secs);
    cached_prefix_.resize(cached_prefix_.size() - 5);  // drop ".000Z"
    cached_second_ = sec_count;
  }
  line += cached_prefix_;
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(msg.time - secs).count();
  line.push_back('.');
  line.push_back(static_cast<char>('0' + ms / 100));
  line.push_back(static_cast<char>('0' + ms / 10 % 10));
  line.push_back(static_cast<char>('0' + ms % 10));
  line += "Z\",\"level\":\"";
  line += to_string(msg.level);
  line += "\",\"component\":";
  append_json_string(line, std::string_view(msg.logger_name.data(), msg.logger_name.size()));
  line.push_back(',');
  const std::string_view payload(msg.payload.data(), msg.payload.size());
  if (!payload.empty() && payload.front() == kStructuredMarker) {
    line.append(payload.substr(1));
  } else {
    line += "\"msg\":";
    append_json_string(line, payload);
  }
  line += "}\n";
  dest.append(line.data(), line.data() + line.size());
  if (line.capacity() > 64 * 1024) std::string().swap(line);
}

std::unique_ptr<spdlog::formatter> JsonFormatter::clone() const {
  return std::make_unique<JsonFormatter>();
}

// ---- Logger ----

void Logger::log(LogLevel level, std::string_view msg,
                 std::initializer_list<LogField> fields) const {
  if (!enabled(level)) return;
  // Reused per thread: the payload is copied into the queue (or written) before log() returns.
  thread_local std::string buf;
  buf.clear();
  buf.push_back(kStructuredMarker);
  buf += "\"msg\":";
  append_json_string(buf, msg);
  for (const LogField& f : fields) {
    buf.push_back(',');
    f.append_to(buf);
  }
  impl_->log(level, spdlog::string_view_t(buf.data(), buf.size()));
  // One huge message must not pin its buffer for the thread's lifetime.
  if (buf.capacity() > 64 * 1024) std::string().swap(buf);
}

std::string_view Logger::component() const noexcept {
  if (!impl_) return {};
  return impl_->name();
}

// ---- LogSystem ----

LogSystem::LogSystem(std::vector<spdlog::sink_ptr> sinks, LogOptions options)
    : options_(options),
      sinks_(std::move(sinks)),
      errors_(std::make_shared<std::atomic<uint64_t>>(0)),
      level_(options.level) {
  if (sinks_.empty()) throw std::invalid_argument("LogSystem: at least one sink is required");
  for (const auto& s : sinks_) {
    if (!s) throw std::invalid_argument("LogSystem: null sink");
  }
  if (options_.async && options_.queue_size == 0) {
    throw std::invalid_argument("LogOptions.queue_size: must be >= 1");
  }
  for (const auto& s : sinks_) s->set_formatter(std::make_unique<JsonFormatter>());
  if (options_.async) {
    pool_ = std::make_shared<spdlog::details::thread_pool>(options_.queue_size, 1);
  }
}

LogSystem::~LogSystem() { close(); }

std::shared_ptr<spdlog::logger> LogSystem::make_logger_locked(const std::string& component) {
  std::shared_ptr<spdlog::logger> l;
  if (options_.async) {
    const auto policy = options_.overflow == OverflowPolicy::block
                            ? spdlog::async_overflow_policy::block
                            : spdlog::async_overflow_policy::overrun_oldest;
    l = std::make_shared<spdlog::async_logger>(component, sinks_.begin(), sinks_.end(), pool_,
                                               policy);
  } else {
    l = std::make_shared<spdlog::logger>(component, sinks_.begin(), sinks_.end());
  }
  auto it = overrides_.find(component);
  l->set_level(it != overrides_.end() ? it->second : level_);
  l->flush_on(options_.flush_level);
  // spdlog's default handler prints to stderr; a logging failure must not make more noise.
  l->set_error_handler(
      [errors = errors_](const std::string&) { errors->fetch_add(1, std::memory_order_relaxed); });
  return l;
}

Logger LogSystem::logger(std::string_view component) {
  std::lock_guard lock(mu_);
  if (closed_) return Logger();
  auto it = loggers_.find(component);
  if (it == loggers_.end()) {
    std::string name(component);
    it = loggers_.emplace(name, make_logger_locked(name)).first;
  }
  return Logger(it->second);
}

void LogSystem::set_level(LogLevel level) {
  std::lock_guard lock(mu_);
  level_ = level;
  if (closed_) return;
  for (auto& [name, l] : loggers_) {
    if (!overrides_.contains(name)) l->set_level(level);
  }
}

void LogSystem::set_level(std::string_view component, LogLevel level) {
  std::lock_guard lock(mu_);
  overrides_.insert_or_assign(std::string(component), level);
  if (closed_) return;
  if (auto it = loggers_.find(component); it != loggers_.end()) it->second->set_level(level);
}

void LogSystem::clear_level(std::string_view component) {
  std::lock_guard lock(mu_);
  if (auto it = overrides_.find(component); it != overrides_.end()) overrides_.erase(it);
  if (closed_) return;
  if (auto it = loggers_.find(component); it != loggers_.end()) it->second->set_level(level_);
}

LogLevel LogSystem::level() const {
  std::lock_guard lock(mu_);
  return level_;
}

LogLevel LogSystem::level(std::string_view component) const {
  std::lock_guard lock(mu_);
  if (auto it = overrides_.find(component); it != overrides_.end()) return it->second;
  return level_;
}

void LogSystem::flush() {
  std::lock_guard lock(mu_);
  if (closed_) return;
  if (options_.async) {
    for (auto& [name, l] : loggers_) l->flush();
  } else {
    for (const auto& s : sinks_) s->flush();
  }
}

void LogSystem::close() {
  std::shared_ptr<spdlog::details::thread_pool> pool;
  decltype(loggers_) loggers;
  {
    std::lock_guard lock(mu_);
    if (closed_) return;
    closed_ = true;
    for (auto& [name, l] : loggers_) l->set_level(LogLevel::off);
    if (pool_) dropped_at_close_ = pool_->overrun_counter();
    pool = std::move(pool_);
    loggers.swap(loggers_);
  }
  // Destroying the pool queues a stop message behind everything already queued and joins the
  // worker, so every message logged before close() is written first. If a log call on another
  // thread holds the pool at this instant, that call's release does the same.
  pool.reset();
  // Queued messages hold references to their logger; the loggers are released only after the
  // worker that dropped those references has been joined, so the last release is never a
  // race between this thread and the worker.
  loggers.clear();
  for (const auto& s : sinks_) {
    try {
      s->flush();
    } catch (...) {
      errors_->fetch_add(1, std::memory_order_relaxed);
    }
  }
}

uint64_t LogSystem::dropped() const {
  std::lock_guard lock(mu_);
  return pool_ ? pool_->overrun_counter() : dropped_at_close_;
}

spdlog::sink_ptr make_stdout_sink() { return std::make_shared<spdlog::sinks::stdout_sink_mt>(); }

spdlog::sink_ptr make_stderr_sink() { return std::make_shared<spdlog::sinks::stderr_sink_mt>(); }

spdlog::sink_ptr make_file_sink(const std::string& path) {
  return std::make_shared<spdlog::sinks::basic_file_sink_mt>(path, /*truncate=*/false);
}

}  // namespace bulwark::observe
