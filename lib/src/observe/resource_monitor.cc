#include "bulwark/observe/resource_monitor.h"

#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <utility>

namespace bulwark::observe {

namespace {

constexpr Duration kMaxRealWait = std::chrono::hours(24);

std::optional<std::string> read_small_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) return std::nullopt;
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return std::nullopt;
  return std::move(ss).str();
}

std::optional<uint64_t> parse_u64(std::string_view s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ' || s.back() == '\t')) {
    s.remove_suffix(1);
  }
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  uint64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || s.empty()) return std::nullopt;
  return v;
}

double threshold_of(ResourceLevel l, const ResourceMonitorOptions& o) noexcept {
  switch (l) {
    case ResourceLevel::warning:
      return o.warning;
    case ResourceLevel::critical:
      return o.critical;
    case ResourceLevel::exhausted:
      return o.exhausted;
    case ResourceLevel::normal:
      break;
  }
  return 0.0;
}

ResourceLevel lower(ResourceLevel l) noexcept {
  return static_cast<ResourceLevel>(static_cast<uint8_t>(l) - 1);
}

}  // namespace

std::string_view to_string(ResourceLevel l) noexcept {
  switch (l) {
    case ResourceLevel::normal:
      return "normal";
    case ResourceLevel::warning:
      return "warning";
    case ResourceLevel::critical:
      return "critical";
    case ResourceLevel::exhausted:
      return "exhausted";
  }
  return "?";
}

// ---- ProcResourceReader ----

ProcResourceReader::ProcResourceReader(ProcReaderOptions options)
    : options_(std::move(options)), own_proc_(options_.proc_self == "/proc/self") {}

ResourceReading ProcResourceReader::read() {
  ResourceReading r;
  r.open_fds = count_fds();
  rlimit lim{};
  if (::getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur != RLIM_INFINITY) {
    r.fd_limit = static_cast<uint64_t>(lim.rlim_cur);
  }
  r.rss_bytes = read_rss();
  r.memory_limit = read_cgroup_memory_max();
  return r;
}

std::optional<uint64_t> ProcResourceReader::count_fds() const {
  const std::string path = options_.proc_self + "/fd";
  DIR* dir = ::opendir(path.c_str());
  if (dir == nullptr) return std::nullopt;
  // opendir holds a descriptor of its own while scanning; it is not one of the process's.
  const std::string own = own_proc_ ? std::to_string(::dirfd(dir)) : std::string();
  uint64_t n = 0;
  while (const dirent* e = ::readdir(dir)) {
    const std::string_view name = e->d_name;
    if (name == "." || name == "..") continue;
    if (own_proc_ && name == own) continue;
    ++n;
  }
  ::closedir(dir);
  return n;
}

std::optional<uint64_t> ProcResourceReader::read_rss() const {
  const auto text = read_small_file(options_.proc_self + "/statm");
  if (!text) return std::nullopt;
  std::istringstream in(*text);
  uint64_t size_pages = 0;
  uint64_t resident_pages = 0;
  if (!(in >> size_pages >> resident_pages)) return std::nullopt;
  const long page = ::sysconf(_SC_PAGESIZE);
  return resident_pages * static_cast<uint64_t>(page > 0 ? page : 4096);
}

std::optional<uint64_t> ProcResourceReader::read_cgroup_memory_max() const {
  // cgroup v2: the line "0::<path>" names this process's cgroup. A limit set on any ancestor
  // applies too, so the effective limit is the smallest one on the way up to the root.
  std::string rel;
  if (const auto text = read_small_file(options_.proc_self + "/cgroup")) {
    std::istringstream in(*text);
    std::string line;
    while (std::getline(in, line)) {
      if (line.rfind("0::", 0) == 0) {
        rel = line.substr(3);
        break;
      }
    }
  }
  while (!rel.empty() && rel.back() == '/') rel.pop_back();
  if (!rel.empty() && rel.front() != '/') rel.insert(rel.begin(), '/');
  // Refuse to walk outside the hierarchy on a malformed path.
  if (rel.find("/..") != std::string::npos) rel.clear();

  std::optional<uint64_t> limit;
  for (;;) {
    if (const auto text = read_small_file(options_.cgroup_root + rel + "/memory.max")) {
      // "max" (unlimited) and anything unparsable leave the limit as it is.
      if (const auto v = parse_u64(*text)) limit = limit ? std::min(*limit, *v) : *v;
    }
    if (rel.empty()) break;
    rel.resize(rel.rfind('/'));
  }
  return limit;
}

// ---- levels ----

void validate(const ResourceMonitorOptions& o) {
  auto bad = [](std::string_view field, std::string_view why) {
    throw std::invalid_argument("ResourceMonitorOptions." + std::string(field) + ": " +
                                std::string(why));
  };
  if (!(o.warning > 0.0 && o.warning < 1.0)) bad("warning", "must be in (0, 1)");
  if (!(o.critical > o.warning)) bad("critical", "must be > warning");
  if (!(o.exhausted > o.critical && o.exhausted <= 1.0)) {
    bad("exhausted", "must be > critical and <= 1");
  }
  if (!(o.hysteresis >= 0.0 && o.hysteresis < o.warning)) {
    bad("hysteresis", "must be >= 0 and < warning");
  }
  if (o.poll_interval <= Duration::zero()) bad("poll_interval", "must be > 0");
}

ResourceLevel next_level(ResourceLevel current, double usage,
                         const ResourceMonitorOptions& o) noexcept {
  if (std::isnan(usage)) return current;
  const ResourceLevel raw = usage >= o.exhausted  ? ResourceLevel::exhausted
                            : usage >= o.critical ? ResourceLevel::critical
                            : usage >= o.warning  ? ResourceLevel::warning
                                                  : ResourceLevel::normal;
  if (raw >= current) return raw;
  // Falling: leave each level only once usage is `hysteresis` below its entry threshold.
  ResourceLevel l = current;
  while (l > raw && usage < threshold_of(l, o) - o.hysteresis) l = lower(l);
  return l;
}

// ---- ResourceMonitor ----

ResourceMonitor::ResourceMonitor(std::shared_ptr<ResourceReader> reader,
                                 ResourceMonitorOptions options)
    : reader_(std::move(reader)), options_(options) {
  if (!reader_) throw std::invalid_argument("ResourceMonitor: reader must not be null");
  validate(options_);
}

ResourceMonitor::~ResourceMonitor() { stop(); }

void ResourceMonitor::update_locked(ResourceUsage& u, std::string_view name,
                                    std::optional<uint64_t> used, std::optional<uint64_t> limit,
                                    TimePoint now, bool& error) {
  if (!used) {
    error = true;  // keep the previous level: a failed read is not a recovery
    return;
  }
  const ResourceLevel before = u.level;
  u.used = *used;
  if (!limit || *limit == 0) {
    u.monitored = false;
    u.limit = 0;
    u.usage = 0.0;
    u.level = ResourceLevel::normal;
  } else {
    u.monitored = true;
    u.limit = *limit;
    u.usage = static_cast<double>(*used) / static_cast<double>(*limit);
    u.level = next_level(u.level, u.usage, options_);
  }
  if (u.level != before) events_.push(ResourceEvent{name, before, u.level, u.usage, now});
}

ResourceLevel ResourceMonitor::poll(TimePoint now) {
  ResourceLevel result;
  {
    std::lock_guard poll_lock(poll_mu_);
    bool error = false;
    ResourceReading r;
    try {
      r = reader_->read();
    } catch (...) {
      error = true;
      // Nothing of a failed read may be used. (GCC 12's ThreadSanitizer build was seen to leave
      // `r` half-assigned when read() threw; resetting it keeps a failed read a no-op.)
      r = ResourceReading{};
    }
    std::optional<uint64_t> mem_limit = r.memory_limit;
    if (options_.memory_limit_bytes > 0) {
      mem_limit = mem_limit ? std::min(*mem_limit, options_.memory_limit_bytes)
                            : options_.memory_limit_bytes;
    }
    std::lock_guard lock(mu_);
    const ResourceLevel before = state_.overall;
    update_locked(state_.fds, "fds", r.open_fds, r.fd_limit, now, error);
    update_locked(state_.memory, "memory", r.rss_bytes, mem_limit, now, error);
    const ResourceUsage& worst =
        state_.memory.level > state_.fds.level ||
                (state_.memory.level == state_.fds.level && state_.memory.usage > state_.fds.usage)
            ? state_.memory
            : state_.fds;
    state_.overall = worst.level;
    state_.last_poll = now;
    ++state_.polls;
    if (error) ++state_.read_errors;
    overall_.store(state_.overall, std::memory_order_release);
    if (state_.overall != before) {
      events_.push(ResourceEvent{"overall", before, state_.overall, worst.usage, now});
    }
    result = state_.overall;
  }
  events_.deliver();
  return result;
}

ResourceSnapshot ResourceMonitor::snapshot() const {
  std::lock_guard lock(mu_);
  return state_;
}

void ResourceMonitor::add_listener(Listener listener) { events_.add_listener(std::move(listener)); }

void ResourceMonitor::start(Clock& clock) {
  std::lock_guard lock(run_mu_);
  if (thread_.joinable()) return;
  stop_ = false;
  woken_ = false;
  thread_ = std::thread([this, &clock] { loop(clock); });
}

void ResourceMonitor::stop() {
  std::thread t;
  {
    std::lock_guard lock(run_mu_);
    stop_ = true;
    t = std::move(thread_);
  }
  run_cv_.notify_all();
  if (t.joinable()) t.join();
}

void ResourceMonitor::wake() {
  {
    std::lock_guard lock(run_mu_);
    woken_ = true;
  }
  run_cv_.notify_all();
}

void ResourceMonitor::loop(Clock& clock) {
  for (;;) {
    {
      std::lock_guard lock(run_mu_);
      if (stop_) return;
      woken_ = false;
    }
    const TimePoint started = clock.now();
    poll(started);
    // Wait for the rest of the interval as the clock measures it; a wake() re-reads the clock.
    for (;;) {
      const TimePoint now = clock.now();
      const TimePoint due = saturating_add(started, options_.poll_interval);
      std::unique_lock lock(run_mu_);
      if (stop_) return;
      if (now >= due) break;
      if (woken_) {
        woken_ = false;
        continue;
      }
      // Loop after the wait: the clock, not the real wait, decides whether the interval is over.
      run_cv_.wait_for(lock, std::min(due - now, kMaxRealWait), [this] { return stop_ || woken_; });
    }
  }
}

}  // namespace bulwark::observe
