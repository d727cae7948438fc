#include "observe/access_log.h"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <charconv>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <thread>

#include "bulwark/observe/log.h"

namespace bulwark::gateway::observe {
namespace {

template <class T>
void append_int(std::string& out, T value) {
  char buf[24];
  const auto res = std::to_chars(buf, buf + sizeof buf, value);
  out.append(buf, res.ptr);
}

// Milliseconds with exactly three decimals, rounded to the nearest microsecond. Integer
// arithmetic keeps the text exact (no "12.344999") and locale-independent.
void append_duration_ms(std::string& out, std::chrono::nanoseconds d) {
  const int64_t ns = d.count() < 0 ? 0 : d.count();
  const uint64_t us = (static_cast<uint64_t>(ns) + 500) / 1000;
  append_int(out, us / 1000);
  const auto frac = static_cast<unsigned>(us % 1000);
  out.push_back('.');
  out.push_back(static_cast<char>('0' + frac / 100));
  out.push_back(static_cast<char>('0' + frac / 10 % 10));
  out.push_back(static_cast<char>('0' + frac % 10));
}

void append_key(std::string& out, std::string_view key) {
  out.push_back('"');
  out.append(key);
  out.append("\":");
}

void append_string_field(std::string& out, std::string_view key, std::string_view value) {
  out.push_back(',');
  append_key(out, key);
  bulwark::observe::append_json_string(out, value);
}

template <class T>
void append_int_field(std::string& out, std::string_view key, T value) {
  out.push_back(',');
  append_key(out, key);
  append_int(out, value);
}

// Writes all of `data` to `fd`, retrying partial writes and EINTR. Returns false on an error.
bool write_all(int fd, const char* data, std::size_t size) {
  while (size > 0) {
    const ssize_t n = ::write(fd, data, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    data += n;
    size -= static_cast<std::size_t>(n);
  }
  return true;
}

}  // namespace

void format_access_record(std::string& out, const AccessRecord& r) {
  out.append("{\"time\":\"");
  bulwark::observe::append_rfc3339_utc(out, r.start);
  out.push_back('"');
  append_string_field(out, "request_id", r.request_id);
  append_string_field(out, "client", r.client);
  append_string_field(out, "method", r.method);
  append_string_field(out, "path", r.path);
  out.push_back(',');
  append_key(out, "status");
  append_int(out, r.status);
  append_string_field(out, "route", r.route);
  append_string_field(out, "cluster", r.cluster);
  append_string_field(out, "endpoint", r.endpoint);
  append_int_field(out, "attempts", r.attempts);
  out.push_back(',');
  append_key(out, "duration_ms");
  append_duration_ms(out, r.duration);
  append_int_field(out, "bytes_in", r.bytes_in);
  append_int_field(out, "bytes_out", r.bytes_out);
  append_string_field(out, "reason", r.reason);
  out.push_back('}');
}

// Lines wait in `pending` (newline-terminated, counted in pending_lines). The writer swaps the
// whole buffer out under the lock and writes it with the lock released, so a request thread
// holds the mutex only for one append and never for I/O. The two buffers trade places on every
// batch and keep their capacity: in steady state no line costs an allocation.
struct AccessLog::Impl {
  std::string path;
  std::size_t queue_size = 0;
  int fd = -1;
  bool owns_fd = false;

  std::mutex mu;
  std::condition_variable wake;
  std::string pending;            // guarded by mu
  std::size_t pending_lines = 0;  // guarded by mu
  bool stopping = false;          // guarded by mu
  bool closed = false;            // guarded by mu
  std::thread writer;

  std::atomic<uint64_t> written{0};
  std::atomic<uint64_t> dropped{0};

  void run() {
    std::string batch;
    std::unique_lock lock(mu);
    for (;;) {
      wake.wait(lock, [&] { return pending_lines > 0 || stopping; });
      if (pending_lines == 0) return;  // stopping and drained
      batch.swap(pending);
      const std::size_t lines = pending_lines;
      pending_lines = 0;
      lock.unlock();
      // A failed write (disk full, closed pipe) loses the batch; it is counted, not retried,
      // so that a broken destination cannot make the queue grow or the writer spin.
      if (write_all(fd, batch.data(), batch.size())) {
        written.fetch_add(lines, std::memory_order_relaxed);
      } else {
        dropped.fetch_add(lines, std::memory_order_relaxed);
      }
      batch.clear();
      lock.lock();
    }
  }
};

AccessLog::AccessLog(const Options& options) : impl_(std::make_unique<Impl>()) {
  impl_->path = options.path;
  impl_->queue_size = options.queue_size == 0 ? 1 : options.queue_size;
  if (options.path == "off") {
    impl_->closed = true;
    return;
  }
  if (options.path == "stdout") {
    impl_->fd = STDOUT_FILENO;
  } else if (options.path == "stderr") {
    impl_->fd = STDERR_FILENO;
  } else {
    impl_->fd = ::open(options.path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (impl_->fd < 0) {
      const int err = errno;
      throw std::runtime_error("cannot open access log " + options.path + ": " +
                               std::strerror(err));
    }
    impl_->owns_fd = true;
  }
  try {
    impl_->writer = std::thread([impl = impl_.get()] { impl->run(); });
  } catch (...) {
    if (impl_->owns_fd) ::close(impl_->fd);  // the destructor does not run for a failed ctor
    throw;
  }
}

AccessLog::~AccessLog() { close(); }

bool AccessLog::enabled() const noexcept { return impl_->fd >= 0; }

void AccessLog::log(const AccessRecord& record) {
  if (impl_->fd < 0) return;
  thread_local std::string line;
  line.clear();
  format_access_record(line, record);
  line.push_back('\n');
  {
    std::lock_guard lock(impl_->mu);
    if (!impl_->closed && impl_->pending_lines < impl_->queue_size) {
      impl_->pending.append(line);
      if (impl_->pending_lines++ == 0) {
        impl_->wake.notify_one();
      }
      return;
    }
  }
  impl_->dropped.fetch_add(1, std::memory_order_relaxed);
}

void AccessLog::close() {
  {
    std::lock_guard lock(impl_->mu);
    impl_->closed = true;
    impl_->stopping = true;
  }
  impl_->wake.notify_one();
  if (impl_->writer.joinable()) impl_->writer.join();
  if (impl_->owns_fd) {
    ::close(impl_->fd);
    impl_->owns_fd = false;
  }
}

uint64_t AccessLog::written() const noexcept {
  return impl_->written.load(std::memory_order_relaxed);
}

uint64_t AccessLog::dropped() const noexcept {
  return impl_->dropped.load(std::memory_order_relaxed);
}

}  // namespace bulwark::gateway::observe
