// Health checks: a registry of named checks whose last results are cached, and runners that
// execute the checks that are due.
//
// Deciding is kept apart from acting. HealthRegistry decides which checks are due at `now`
// (take_due) and records results (record); it never starts a thread or reads a socket. A runner
// executes what is due: run_due(now) runs them synchronously on the calling thread (tests, or an
// application that has its own timer), HealthRunner runs them on a background thread, and an
// event loop can call take_due/record itself and run checks asynchronously.
//
// Per check:
//   - interval: a check runs at registration + initial_delay, then `interval` after the previous
//     run finished (never back to back, never in a burst to catch up).
//   - timeout: the check is given Deadline::after(start, timeout). Timeouts are cooperative: the
//     check should give up by then. A result recorded at or after the deadline counts as a
//     failed run with last_timed_out = true, whatever the check returned.
//   - retries: a check counts as failing once `retries` runs in a row have failed (retries = 1:
//     the first failure). One passing run makes it passing again.
//   - critical: a failing critical check makes the overall status unhealthy; a failing
//     non-critical check makes it degraded.
// A check is `unknown` until its first passing run or its `retries`-th failed run in a row, and
// does not count as failing meanwhile; runners run every check as soon as it is registered
// (unless initial_delay says otherwise), so this lasts one run for a check that works.
//
// Overall status: unhealthy if any critical check is failing, else degraded if any check is
// failing, else healthy. snapshot() and overall() serve cached results; they never run a check.
//
// Thread-safety: every member of HealthRegistry is safe to call from any thread. Checks run with
// no registry lock held, so a check may read snapshot(). A check handed out by take_due is not
// handed out again until its result is recorded (or it is removed), so two runners never run the
// same check at once.
//
// Listeners are called on every change of a check's status (unknown/passing/failing), outside
// the registry lock, one event at a time and in order. If another thread is delivering events,
// a new event is queued and delivered by that thread. A listener may call any member (events it
// causes are delivered after it returns). Exceptions thrown by listeners are caught and ignored.
//
// Example:
//   bulwark::observe::HealthRegistry health(clock);
//   health.add("db", [&](bulwark::Deadline dl) {
//     return db.ping(dl) ? CheckResult::pass() : CheckResult::fail("ping failed");
//   }, {.interval = 5s, .timeout = 1s, .retries = 3, .critical = true});
//   bulwark::observe::HealthRunner runner(health, clock);
//   runner.start();
//   ...
//   if (health.overall() == HealthStatus::unhealthy) return 503;
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "bulwark/core/clock.h"
#include "bulwark/core/deadline.h"
#include "bulwark/core/event_queue.h"

namespace bulwark::observe {

enum class HealthStatus : uint8_t { healthy, degraded, unhealthy };
// "healthy", "degraded", "unhealthy".
std::string_view to_string(HealthStatus s) noexcept;

enum class CheckStatus : uint8_t { unknown, passing, failing };
// "unknown", "passing", "failing".
std::string_view to_string(CheckStatus s) noexcept;

// What one run of a check reports.
struct CheckResult {
  bool ok = true;
  std::string message;  // why it failed (or a note when it passed); may be empty

  static CheckResult pass(std::string message = {}) { return {true, std::move(message)}; }
  static CheckResult fail(std::string message) { return {false, std::move(message)}; }
};

struct HealthCheckOptions {
  // Time between the end of one run and the start of the next. > 0.
  Duration interval = std::chrono::seconds(10);
  // Longest a run may take; the check receives Deadline::after(start, timeout). > 0.
  Duration timeout = std::chrono::seconds(1);
  // Failed runs in a row before the check counts as failing. >= 1.
  uint32_t retries = 3;
  // A failing critical check makes the service unhealthy; a non-critical one degraded.
  bool critical = true;
  // Delay of the first run after registration. >= 0.
  Duration initial_delay = Duration::zero();
};

// Throws std::invalid_argument naming the field ("HealthCheckOptions.interval: ...").
void validate(const HealthCheckOptions& options);

// A check: gets the deadline of this run, returns the result. Exceptions count as a failed run
// whose message is the exception's what().
using HealthCheckFn = std::function<CheckResult(Deadline)>;

// Cached state of one check.
struct CheckSnapshot {
  std::string name;
  CheckStatus status = CheckStatus::unknown;
  bool critical = true;
  bool last_ok = false;               // outcome of the last finished run (false before any run)
  bool last_timed_out = false;        // the last run's result came at or after its deadline
  std::string last_message;           // message of the last finished run
  std::optional<TimePoint> last_run;  // start of the last finished run
  Duration last_duration{};           // how long the last finished run took
  uint32_t consecutive_failures = 0;
  uint64_t runs = 0;      // finished runs
  uint64_t failures = 0;  // finished runs that failed (including timeouts)
  TimePoint next_run{};   // when the check is next due (meaningless while running)
  bool running = false;   // handed out by take_due, result not recorded yet
  HealthCheckOptions options;
};

struct HealthSnapshot {
  HealthStatus overall = HealthStatus::healthy;
  std::vector<CheckSnapshot> checks;  // sorted by name
};

// A check handed out for running: call `fn(deadline)` and pass the result to record().
struct DueCheck {
  std::string name;
  uint64_t token = 0;  // identifies this registration and run; stale tokens are dropped
  HealthCheckFn fn;
  TimePoint started{};
  Deadline deadline;
};

struct HealthEvent {
  std::string check;
  CheckStatus from;
  CheckStatus to;
  HealthStatus overall_from;
  HealthStatus overall_to;
  TimePoint at;
  std::string message;  // message of the run that caused the change
};

class HealthRegistry {
 public:
  // `clock` stamps registrations and the end of runs done by run_due; it must outlive the
  // registry.
  explicit HealthRegistry(Clock& clock);
  ~HealthRegistry();
  HealthRegistry(const HealthRegistry&) = delete;
  HealthRegistry& operator=(const HealthRegistry&) = delete;

  // Registers a check, first due at clock.now() + initial_delay. Throws std::invalid_argument
  // for an empty or duplicate name, an empty fn or invalid options.
  void add(std::string name, HealthCheckFn fn, HealthCheckOptions options = {});
  // Unregisters a check; a result of a run in progress is dropped. False if unknown.
  bool remove(std::string_view name);

  // Checks due at `now` that are not already running, in name order; marks them running.
  std::vector<DueCheck> take_due(TimePoint now);
  // Records the result of a run handed out by take_due, finished at `finished`. A result at or
  // after due.deadline is recorded as a timeout failure. Returns false (and records nothing) if
  // the check was removed or re-registered since it was handed out.
  bool record(const DueCheck& due, CheckResult result, TimePoint finished);
  // take_due(now), then runs each check on this thread and records its result with
  // clock.now() as the finish time. Returns how many checks ran.
  std::size_t run_due(TimePoint now);

  // Earliest next_run of the checks that are not running; nullopt if there is none.
  std::optional<TimePoint> next_due() const;

  HealthStatus overall() const noexcept { return overall_.load(std::memory_order_acquire); }
  HealthSnapshot snapshot() const;
  std::optional<CheckSnapshot> check(std::string_view name) const;
  std::size_t size() const;

  using Listener = std::function<void(const HealthEvent&)>;
  void add_listener(Listener listener);

 private:
  struct Entry {
    HealthCheckFn fn;
    HealthCheckOptions options;
    uint64_t token = 0;  // registration id; a run's token equals it while the run is current
    CheckStatus status = CheckStatus::unknown;
    bool running = false;
    bool last_ok = false;
    bool last_timed_out = false;
    std::string last_message;
    std::optional<TimePoint> last_run;
    Duration last_duration{};
    uint32_t consecutive_failures = 0;
    uint64_t runs = 0;
    uint64_t failures = 0;
    TimePoint next_run{};
  };

  HealthStatus compute_overall_locked() const;
  CheckSnapshot snapshot_locked(const std::string& name, const Entry& e) const;

  Clock& clock_;
  std::atomic<HealthStatus> overall_{HealthStatus::healthy};

  mutable std::mutex mu_;
  // Guarded by mu_.
  std::map<std::string, Entry, std::less<>> checks_;
  uint64_t next_token_ = 1;
  EventQueue<HealthEvent> events_;
};

// Runs a registry's due checks on a background thread.
//
// The thread runs what is due at clock.now(), then waits until the next check is due (at most
// `max_idle`, so checks added later start within max_idle without a wake()), or until wake() or
// stop(). Checks run one after another on that thread: a check that ignores its deadline delays
// the others (timeouts are cooperative), and is still recorded as a timeout.
//
// The wait is in real time, computed from the clock's readings: with SystemClock the runner is
// self-driving. With a clock that only moves when told to (testing::ManualClock), advance the
// clock and call wake().
//
// Thread-safety: start/stop/wake are safe from any thread; the destructor stops the thread.
// Do not call stop() from inside a check (it would wait for itself).
class HealthRunner {
 public:
  HealthRunner(HealthRegistry& registry, Clock& clock, Duration max_idle = std::chrono::seconds(1));
  ~HealthRunner();
  HealthRunner(const HealthRunner&) = delete;
  HealthRunner& operator=(const HealthRunner&) = delete;

  // Starts the thread (no-op if running). Throws std::system_error if it cannot start.
  void start();
  // Stops and joins the thread after the check it is running, if any, returns.
  void stop();
  // Makes the thread look at the clock and the registry again now.
  void wake();
  // Passes of the loop so far (each pass runs whatever was due).
  uint64_t passes() const noexcept { return passes_.load(std::memory_order_acquire); }

 private:
  void loop();

  HealthRegistry& registry_;
  Clock& clock_;
  const Duration max_idle_;
  std::atomic<uint64_t> passes_{0};
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;   // guarded by mu_
  bool woken_ = false;  // guarded by mu_
  std::thread thread_;
};

}  // namespace bulwark::observe
