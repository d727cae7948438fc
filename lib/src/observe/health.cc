#include "bulwark/observe/health.h"

#include <algorithm>
#include <exception>
#include <stdexcept>
#include <utility>

namespace bulwark::observe {

namespace {

// Real-time waits are bounded so that converting a huge clock distance to a steady_clock
// deadline cannot overflow.
constexpr Duration kMaxRealWait = std::chrono::hours(24);

[[noreturn]] void invalid(std::string_view field, std::string_view why) {
  throw std::invalid_argument("HealthCheckOptions." + std::string(field) + ": " + std::string(why));
}

std::string format_timeout(Duration timeout) {
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(timeout).count();
  return "timed out after " + std::to_string(ms) + "ms";
}

}  // namespace

std::string_view to_string(HealthStatus s) noexcept {
  switch (s) {
    case HealthStatus::healthy:
      return "healthy";
    case HealthStatus::degraded:
      return "degraded";
    case HealthStatus::unhealthy:
      return "unhealthy";
  }
  return "unknown";
}

std::string_view to_string(CheckStatus s) noexcept {
  switch (s) {
    case CheckStatus::unknown:
      return "unknown";
    case CheckStatus::passing:
      return "passing";
    case CheckStatus::failing:
      return "failing";
  }
  return "unknown";
}

void validate(const HealthCheckOptions& o) {
  if (o.interval <= Duration::zero()) invalid("interval", "must be > 0");
  if (o.timeout <= Duration::zero()) invalid("timeout", "must be > 0");
  if (o.retries < 1) invalid("retries", "must be >= 1");
  if (o.initial_delay < Duration::zero()) invalid("initial_delay", "must be >= 0");
}

HealthRegistry::HealthRegistry(Clock& clock) : clock_(clock) {}

HealthRegistry::~HealthRegistry() = default;

void HealthRegistry::add(std::string name, HealthCheckFn fn, HealthCheckOptions options) {
  if (name.empty()) throw std::invalid_argument("HealthRegistry::add: empty check name");
  if (!fn) throw std::invalid_argument("HealthRegistry::add: check '" + name + "' has no function");
  validate(options);
  const TimePoint now = clock_.now();
  std::lock_guard lock(mu_);
  if (checks_.contains(name)) {
    throw std::invalid_argument("HealthRegistry::add: duplicate check name '" + name + "'");
  }
  Entry e;
  e.fn = std::move(fn);
  e.options = options;
  e.token = next_token_++;
  e.next_run = saturating_add(now, options.initial_delay);
  checks_.emplace(std::move(name), std::move(e));
}

bool HealthRegistry::remove(std::string_view name) {
  {
    std::lock_guard lock(mu_);
    auto it = checks_.find(name);
    if (it == checks_.end()) return false;
    checks_.erase(it);
    const HealthStatus now_overall = compute_overall_locked();
    // Removing a failing check can change the overall status; that is not a check transition,
    // so no event, but overall() must reflect it.
    overall_.store(now_overall, std::memory_order_release);
  }
  return true;
}

std::vector<DueCheck> HealthRegistry::take_due(TimePoint now) {
  std::vector<DueCheck> due;
  std::lock_guard lock(mu_);
  for (auto& [name, e] : checks_) {
    if (e.running || e.next_run > now) continue;
    e.running = true;
    due.push_back(DueCheck{name, e.token, e.fn, now, Deadline::after(now, e.options.timeout)});
  }
  return due;
}

bool HealthRegistry::record(const DueCheck& due, CheckResult result, TimePoint finished) {
  {
    std::lock_guard lock(mu_);
    auto it = checks_.find(due.name);
    if (it == checks_.end() || it->second.token != due.token || !it->second.running) return false;
    Entry& e = it->second;
    const HealthStatus overall_before = overall_.load(std::memory_order_relaxed);
    const CheckStatus before = e.status;

    const bool timed_out = due.deadline.expired(finished);
    const bool ok = result.ok && !timed_out;
    e.running = false;
    e.last_ok = ok;
    e.last_timed_out = timed_out;
    if (timed_out) {
      e.last_message = format_timeout(e.options.timeout);
      if (!result.message.empty()) e.last_message += " (" + result.message + ")";
    } else {
      e.last_message = std::move(result.message);
    }
    e.last_run = due.started;
    e.last_duration = finished > due.started ? finished - due.started : Duration::zero();
    ++e.runs;
    if (ok) {
      e.consecutive_failures = 0;
      e.status = CheckStatus::passing;
    } else {
      ++e.failures;
      ++e.consecutive_failures;
      // Below `retries` the status does not change: a passing check stays passing, and a check
      // that never passed stays unknown.
      if (e.consecutive_failures >= e.options.retries) e.status = CheckStatus::failing;
    }
    // Next run counts from the end of this one, so a slow check is not run back to back.
    e.next_run = saturating_add(std::max(finished, due.started), e.options.interval);

    const HealthStatus overall_after = compute_overall_locked();
    overall_.store(overall_after, std::memory_order_release);
    if (e.status != before) {
      events_.push(HealthEvent{due.name, before, e.status, overall_before, overall_after, finished,
                               e.last_message});
    }
  }
  events_.deliver();
  return true;
}

std::size_t HealthRegistry::run_due(TimePoint now) {
  std::vector<DueCheck> due = take_due(now);
  for (const DueCheck& d : due) {
    CheckResult result;
    try {
      result = d.fn(d.deadline);
    } catch (const std::exception& ex) {
      result = CheckResult::fail(std::string("exception: ") + ex.what());
    } catch (...) {
      result = CheckResult::fail("exception: unknown");
    }
    record(d, std::move(result), clock_.now());
  }
  return due.size();
}

std::optional<TimePoint> HealthRegistry::next_due() const {
  std::lock_guard lock(mu_);
  std::optional<TimePoint> next;
  for (const auto& [name, e] : checks_) {
    if (e.running) continue;
    if (!next || e.next_run < *next) next = e.next_run;
  }
  return next;
}

HealthStatus HealthRegistry::compute_overall_locked() const {
  HealthStatus s = HealthStatus::healthy;
  for (const auto& [name, e] : checks_) {
    if (e.status != CheckStatus::failing) continue;
    if (e.options.critical) return HealthStatus::unhealthy;
    s = HealthStatus::degraded;
  }
  return s;
}

CheckSnapshot HealthRegistry::snapshot_locked(const std::string& name, const Entry& e) const {
  CheckSnapshot s;
  s.name = name;
  s.status = e.status;
  s.critical = e.options.critical;
  s.last_ok = e.last_ok;
  s.last_timed_out = e.last_timed_out;
  s.last_message = e.last_message;
  s.last_run = e.last_run;
  s.last_duration = e.last_duration;
  s.consecutive_failures = e.consecutive_failures;
  s.runs = e.runs;
  s.failures = e.failures;
  s.next_run = e.next_run;
  s.running = e.running;
  s.options = e.options;
  return s;
}

HealthSnapshot HealthRegistry::snapshot() const {
  HealthSnapshot snap;
  std::lock_guard lock(mu_);
  snap.overall = compute_overall_locked();
  snap.checks.reserve(checks_.size());
  for (const auto& [name, e] : checks_) snap.checks.push_back(snapshot_locked(name, e));
  return snap;
}

std::optional<CheckSnapshot> HealthRegistry::check(std::string_view name) const {
  std::lock_guard lock(mu_);
  auto it = checks_.find(name);
  if (it == checks_.end()) return std::nullopt;
  return snapshot_locked(it->first, it->second);
}

std::size_t HealthRegistry::size() const {
  std::lock_guard lock(mu_);
  return checks_.size();
}

void HealthRegistry::add_listener(Listener listener) { events_.add_listener(std::move(listener)); }

// ---- HealthRunner ----

HealthRunner::HealthRunner(HealthRegistry& registry, Clock& clock, Duration max_idle)
    : registry_(registry), clock_(clock), max_idle_(max_idle) {
  if (max_idle <= Duration::zero()) {
    throw std::invalid_argument("HealthRunner: max_idle must be > 0");
  }
}

HealthRunner::~HealthRunner() { stop(); }

void HealthRunner::start() {
  std::lock_guard lock(mu_);
  if (thread_.joinable()) return;
  stop_ = false;
  woken_ = false;
  thread_ = std::thread([this] { loop(); });
}

void HealthRunner::stop() {
  std::thread t;
  {
    std::lock_guard lock(mu_);
    stop_ = true;
    t = std::move(thread_);
  }
  cv_.notify_all();
  if (t.joinable()) t.join();
}

void HealthRunner::wake() {
  {
    std::lock_guard lock(mu_);
    woken_ = true;
  }
  cv_.notify_all();
}

void HealthRunner::loop() {
  for (;;) {
    {
      std::lock_guard lock(mu_);
      if (stop_) return;
      woken_ = false;
    }
    registry_.run_due(clock_.now());
    passes_.fetch_add(1, std::memory_order_acq_rel);
    const std::optional<TimePoint> next = registry_.next_due();
    const TimePoint now = clock_.now();
    Duration wait = max_idle_;
    if (next) wait = std::min(wait, *next > now ? *next - now : Duration::zero());
    wait = std::min(wait, kMaxRealWait);
    std::unique_lock lock(mu_);
    if (wait > Duration::zero()) {
      cv_.wait_for(lock, wait, [this] { return stop_ || woken_; });
    }
    if (stop_) return;
  }
}

}  // namespace bulwark::observe
