// Resource monitor: watches open file descriptors and memory, and turns their usage into a load
// level that request paths can read without a lock.
//
// Resources:
//   - fds:    open file descriptors (entries of /proc/self/fd) / RLIMIT_NOFILE soft limit.
//   - memory: resident set size (/proc/self/statm) / memory limit, where the limit is the
//             smaller of ResourceMonitorOptions::memory_limit_bytes (0 = not set) and the cgroup
//             v2 memory.max of this process's cgroup and its ancestors ("max" = unlimited).
//   A resource whose limit is unknown or unlimited is not monitored (level normal).
//
// Levels (usage = used / limit, thresholds configurable):
//   normal    usage <  80 %
//   warning   usage >= 80 %
//   critical  usage >= 90 %   shed optional work          (shed_optional())
//   exhausted usage >= 95 %   reject new requests with 503 (reject_new())
// Levels rise as soon as usage reaches a threshold (several at once if needed). They fall with
// hysteresis: a level is left only when usage drops below its entry threshold minus
// `hysteresis` (default 5 points), e.g. exhausted is left below 90 %, critical below 85 %,
// warning below 75 %. Recovery is automatic: the next poll that sees usage low enough lowers
// the level. The overall level is the worst resource level.
//
// A reading that fails (nullopt from the reader, or an exception) keeps the resource's previous
// level: a transient /proc error must not look like recovery. It is counted in
// snapshot().read_errors.
//
// Deciding is apart from reading: poll(now) reads through a ResourceReader (ProcResourceReader
// for the real process, a fake in tests), computes levels and notifies listeners. start() polls
// every poll_interval on a background thread (real-time waits; see HealthRunner for how it
// behaves with a ManualClock: advance the clock and call wake()).
//
// Thread-safety: every member is safe to call from any thread. level(), shed_optional() and
// reject_new() are one atomic load each. poll() calls are serialised. Listeners are called
// outside the state lock, one event at a time, in order (per-resource events before the overall
// event of the same poll); a listener may call any member (events it causes are delivered after
// it returns). Exceptions from listeners are caught and ignored.
//
// Example:
//   bulwark::observe::ResourceMonitor monitor(
//       std::make_shared<bulwark::observe::ProcResourceReader>(),
//       {.memory_limit_bytes = 1ull << 30});
//   monitor.start(bulwark::SystemClock::instance());
//   ...
//   if (monitor.reject_new()) return respond(503, "overload");
//   if (monitor.shed_optional()) skip_cache_fill();
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "bulwark/core/clock.h"
#include "bulwark/core/event_queue.h"

namespace bulwark::observe {

enum class ResourceLevel : uint8_t { normal, warning, critical, exhausted };
// "normal", "warning", "critical", "exhausted".
std::string_view to_string(ResourceLevel l) noexcept;

// One reading of the process's resources. nullopt: not available (or unlimited, for limits).
struct ResourceReading {
  std::optional<uint64_t> open_fds;
  std::optional<uint64_t> fd_limit;      // RLIMIT_NOFILE soft limit
  std::optional<uint64_t> rss_bytes;     // resident set size
  std::optional<uint64_t> memory_limit;  // cgroup memory.max (smallest along the path)
};

// Where readings come from. read() is called from poll(), one call at a time.
class ResourceReader {
 public:
  virtual ~ResourceReader() = default;
  virtual ResourceReading read() = 0;
};

struct ProcReaderOptions {
  // Directory holding fd/, statm and cgroup of the process to read.
  std::string proc_self = "/proc/self";
  // Mount point of the cgroup v2 hierarchy.
  std::string cgroup_root = "/sys/fs/cgroup";
};

// Reads this process's resources on Linux:
//   open_fds     entries of <proc_self>/fd (the directory's own descriptor not counted)
//   fd_limit     getrlimit(RLIMIT_NOFILE).rlim_cur (nullopt if RLIM_INFINITY)
//   rss_bytes    second field of <proc_self>/statm times the page size
//   memory_limit the smallest numeric memory.max from <cgroup_root><path> up to <cgroup_root>,
//                where <path> is the "0::" line of <proc_self>/cgroup; "max" is unlimited
// Each field is nullopt when its source cannot be read. Costs a directory scan and a few small
// file reads (tens of microseconds with a few hundred fds): poll it, do not call it per request.
class ProcResourceReader final : public ResourceReader {
 public:
  explicit ProcResourceReader(ProcReaderOptions options = {});
  ResourceReading read() override;

 private:
  std::optional<uint64_t> count_fds() const;
  std::optional<uint64_t> read_rss() const;
  std::optional<uint64_t> read_cgroup_memory_max() const;

  ProcReaderOptions options_;
  bool own_proc_;  // proc_self names this process: skip the scan's own descriptor
};

struct ResourceMonitorOptions {
  // Entry thresholds as fractions of the limit: 0 < warning < critical < exhausted <= 1.
  double warning = 0.80;
  double critical = 0.90;
  double exhausted = 0.95;
  // A level is left when usage < its entry threshold - hysteresis. 0 <= hysteresis < warning.
  double hysteresis = 0.05;
  // Memory limit in bytes; 0 = none configured (use the cgroup limit alone).
  uint64_t memory_limit_bytes = 0;
  // Time between polls of the background poller. > 0.
  Duration poll_interval = std::chrono::seconds(1);
};

// Throws std::invalid_argument naming the field ("ResourceMonitorOptions.critical: ...").
void validate(const ResourceMonitorOptions& options);

// The level a resource moves to from `current` at `usage`, with hysteresis (see the header
// comment). Exposed for tests and for callers with their own readings.
ResourceLevel next_level(ResourceLevel current, double usage,
                         const ResourceMonitorOptions& options) noexcept;

struct ResourceUsage {
  bool monitored = false;  // a reading and a limit are known
  uint64_t used = 0;       // fds or bytes
  uint64_t limit = 0;      // 0 when not monitored
  double usage = 0.0;      // used / limit (may exceed 1)
  ResourceLevel level = ResourceLevel::normal;
};

struct ResourceSnapshot {
  ResourceUsage fds;
  ResourceUsage memory;
  ResourceLevel overall = ResourceLevel::normal;
  std::optional<TimePoint> last_poll;
  uint64_t polls = 0;
  uint64_t read_errors = 0;  // readings that threw or missed a value
};

struct ResourceEvent {
  std::string_view resource;  // "fds", "memory" or "overall"
  ResourceLevel from;
  ResourceLevel to;
  double usage;  // the resource's usage; for "overall", the usage of the worst resource
  TimePoint at;
};

class ResourceMonitor {
 public:
  // Throws std::invalid_argument for a null reader or invalid options.
  explicit ResourceMonitor(std::shared_ptr<ResourceReader> reader,
                           ResourceMonitorOptions options = {});
  ~ResourceMonitor();
  ResourceMonitor(const ResourceMonitor&) = delete;
  ResourceMonitor& operator=(const ResourceMonitor&) = delete;

  // Reads, updates levels, notifies listeners. Returns the overall level.
  ResourceLevel poll(TimePoint now);

  ResourceLevel level() const noexcept { return overall_.load(std::memory_order_acquire); }
  bool shed_optional() const noexcept { return level() >= ResourceLevel::critical; }
  bool reject_new() const noexcept { return level() >= ResourceLevel::exhausted; }

  ResourceSnapshot snapshot() const;
  const ResourceMonitorOptions& options() const noexcept { return options_; }

  using Listener = std::function<void(const ResourceEvent&)>;
  void add_listener(Listener listener);

  // Background poller: polls at once, then every poll_interval as measured by `clock` (which
  // must outlive the monitor or the next stop()). No-op if already started.
  void start(Clock& clock);
  void stop();
  void wake();

 private:
  void update_locked(ResourceUsage& u, std::string_view name, std::optional<uint64_t> used,
                     std::optional<uint64_t> limit, TimePoint now, bool& error);
  void loop(Clock& clock);

  const std::shared_ptr<ResourceReader> reader_;
  const ResourceMonitorOptions options_;
  std::atomic<ResourceLevel> overall_{ResourceLevel::normal};

  std::mutex poll_mu_;  // serialises poll()
  mutable std::mutex mu_;
  // Guarded by mu_.
  ResourceSnapshot state_;
  EventQueue<ResourceEvent> events_;

  // Background poller.
  std::mutex run_mu_;
  std::condition_variable run_cv_;
  bool stop_ = false;   // guarded by run_mu_
  bool woken_ = false;  // guarded by run_mu_
  std::thread thread_;
};

}  // namespace bulwark::observe
