// Graceful shutdown: a coordinator that runs cleanup hooks in priority order under per-hook
// timeouts and an overall deadline, and signal handling that drives it (SIGTERM/SIGINT start a
// graceful stop, a second signal forces it).
//
// States:
//
//   running --request_stop--> draining --run()--> stopping --hooks done--> stopped
//      |                         |                   |
//      +------------------------ force() ------------+----> forced   (terminal)
//
//   running:  normal operation.
//   draining: a stop was requested; the application should refuse new work (readiness fails,
//             listeners close) and let work in flight finish. Lasts until run() is called.
//   stopping: run() is executing the hooks.
//   stopped:  every hook completed, failed, timed out or was skipped.
//   forced:   force() (or a second signal) cut the shutdown short: the hook running at that
//             moment is abandoned, the rest are skipped. run() returns at once.
// draining() is true in every state except running: it is what readiness checks and accept
// loops should test.
//
// Hooks: add_hook(name, priority, fn, timeout). run() calls them one at a time, higher priority
// first, equal priorities in registration order. Each hook runs on a thread of its own and gets
// a HookContext: its deadline, min(start + timeout, overall deadline), and a stop_token that is
// requested when the hook is abandoned. The overall deadline is ShutdownOptions::deadline after
// the stop request. If a hook has not returned by its deadline it is abandoned: its stop_token
// is requested, its thread is DETACHED (it keeps running until the function returns; whatever
// it captured must stay valid until then) and the next hook starts. Once the overall deadline
// has passed the remaining hooks are skipped. A hook that throws is reported as failed; the
// next hook runs.
//
// Time: deadlines are measured with the Clock given to the constructor. run() waits for a hook
// in real time, for as long as the clock says is left, and re-reads the clock whenever it is
// woken. With SystemClock that is all there is to it. With a clock that only moves when told to
// (testing::ManualClock), advance it and call wake() so that run() notices.
//
// Thread-safety: every member is safe to call from any thread. state() and draining() are one
// atomic load. Concurrent run() calls: the first runs the hooks, the others wait for its report.
// Listeners get one ShutdownEvent per state change, outside the internal lock, one at a time and
// in order (a listener may call any member except run(); events it causes are delivered after
// it returns). Exceptions thrown by listeners are caught and ignored.
//
// Signals: SignalHandlers installs async-signal-safe handlers (sigaction) that only write the
// signal number to a self-pipe; a watcher thread reads the pipe and calls request_stop() for the
// first signal and force() for any later one. Nothing else happens in signal context.
//
// Example:
//   bulwark::lifecycle::ShutdownCoordinator shutdown(bulwark::SystemClock::instance(),
//                                                    {.deadline = 30s});
//   shutdown.add_hook("http", 100, [&](const HookContext& ctx) { server.drain(ctx.deadline); },
//                     20s);
//   shutdown.add_hook("flush-logs", 0, [&](const HookContext&) { logs.close(); }, 2s);
//   bulwark::lifecycle::SignalHandlers signals(shutdown);   // SIGTERM, SIGINT
//   shutdown.wait_requested();
//   ShutdownReport report = shutdown.run();
//   return report.forced ? 1 : 0;
#pragma once

#include <signal.h>

#include <atomic>
#include <csignal>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <stop_token>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "bulwark/core/clock.h"
#include "bulwark/core/deadline.h"
#include "bulwark/core/event_queue.h"

namespace bulwark::lifecycle {

enum class ShutdownState : uint8_t { running, draining, stopping, forced, stopped };
// "running", "draining", "stopping", "forced", "stopped".
std::string_view to_string(ShutdownState s) noexcept;

struct HookContext {
  Deadline deadline;     // min(start + hook timeout, overall deadline)
  std::stop_token stop;  // requested when the hook is abandoned (timeout, deadline or force)
};

using ShutdownHook = std::function<void(const HookContext&)>;

struct ShutdownOptions {
  // Overall time budget, counted from the stop request (request_stop, the first signal, or
  // run() when nothing requested a stop before). > 0.
  Duration deadline = std::chrono::seconds(30);
  // Timeout of hooks registered without one. > 0.
  Duration default_hook_timeout = std::chrono::seconds(5);
};

// Throws std::invalid_argument naming the field ("ShutdownOptions.deadline: ...").
void validate(const ShutdownOptions& options);

enum class HookOutcome : uint8_t {
  completed,  // returned in time
  failed,     // threw (message = what()), or its thread could not be started
  timed_out,  // still running at its deadline: abandoned (thread detached)
  abandoned,  // still running when the shutdown was forced (thread detached)
  skipped,    // never started: the overall deadline had passed, or the shutdown was forced
};
// "completed", "failed", "timed_out", "abandoned", "skipped".
std::string_view to_string(HookOutcome o) noexcept;

struct HookReport {
  std::string name;
  int priority = 0;
  HookOutcome outcome = HookOutcome::skipped;
  std::string message;
  Duration elapsed{};  // start to return or abandonment, by the clock
};

struct ShutdownReport {
  std::string reason;             // reason of the stop request
  std::vector<HookReport> hooks;  // in the order they were (or would have been) run
  bool forced = false;
  bool deadline_exceeded = false;  // the overall deadline cut a hook short or skipped hooks
  Duration elapsed{};              // stop request to the end of run(), by the clock
};

struct ShutdownEvent {
  ShutdownState from;
  ShutdownState to;
  std::string reason;
  TimePoint at;
};

class ShutdownCoordinator {
 public:
  // Throws std::invalid_argument for invalid options. `clock` must outlive the coordinator.
  explicit ShutdownCoordinator(Clock& clock, ShutdownOptions options = {});
  ~ShutdownCoordinator();
  ShutdownCoordinator(const ShutdownCoordinator&) = delete;
  ShutdownCoordinator& operator=(const ShutdownCoordinator&) = delete;

  // Registers a cleanup hook. timeout == 0 uses default_hook_timeout; Duration::max() leaves
  // only the overall deadline. Throws std::invalid_argument for an empty name, an empty hook or
  // a negative timeout, std::logic_error once run() has started.
  void add_hook(std::string name, int priority, ShutdownHook hook,
                Duration timeout = Duration::zero());

  // running -> draining. Returns false (and changes nothing) in any other state.
  bool request_stop(std::string_view reason = "requested");
  // running, draining or stopping -> forced. Returns false once forced or stopped.
  bool force(std::string_view reason = "forced");

  // Runs the hooks (requesting a stop first if none was requested) and returns the report.
  // Blocks until every hook has returned, been abandoned or been skipped. Called again, or
  // concurrently, it returns the report of the first run.
  ShutdownReport run();

  // Blocks until a stop is requested (state != running).
  void wait_requested();
  // Same, for at most `real_timeout` of real time. True if a stop was requested.
  bool wait_requested_for(std::chrono::nanoseconds real_timeout);

  ShutdownState state() const noexcept { return state_.load(std::memory_order_acquire); }
  bool draining() const noexcept { return state() != ShutdownState::running; }
  // When the stop was requested; nullopt while running.
  std::optional<TimePoint> requested_at() const;
  // The report once run() has finished.
  std::optional<ShutdownReport> report() const;
  std::size_t hook_count() const;

  // Makes a waiting run() re-read the clock (see "Time" above).
  void wake();

  using Listener = std::function<void(const ShutdownEvent&)>;
  void add_listener(Listener listener);

 private:
  struct Shared;
  struct Hook {
    std::string name;
    int priority;
    Duration timeout;
    ShutdownHook fn;
  };

  void transition_locked(ShutdownState to, std::string_view reason, TimePoint at);

  Clock& clock_;
  const ShutdownOptions options_;
  std::atomic<ShutdownState> state_{ShutdownState::running};
  // Lock, condition variable and the record of running hooks, shared with hook threads so that
  // an abandoned hook can finish after the coordinator is gone.
  std::shared_ptr<Shared> shared_;
};

// Installs handlers for `signals` (default SIGTERM and SIGINT) that drive `coordinator`: the
// first signal received calls request_stop("SIGTERM"), every later one force("SIGINT") (the
// reason is the signal's name). The previous handlers are restored by the destructor.
//
// Only one SignalHandlers may exist at a time in a process (std::logic_error otherwise);
// installation failures throw std::system_error. The self-pipe is created once per process
// and kept open (two descriptors, close-on-exec) so that a handler running concurrently with
// the destructor never writes to a closed descriptor. The coordinator must outlive this object.
class SignalHandlers {
 public:
  explicit SignalHandlers(ShutdownCoordinator& coordinator,
                          std::vector<int> signals = {SIGTERM, SIGINT});
  ~SignalHandlers();
  SignalHandlers(const SignalHandlers&) = delete;
  SignalHandlers& operator=(const SignalHandlers&) = delete;

  // Signals handled so far.
  uint64_t received() const noexcept { return received_.load(std::memory_order_acquire); }

 private:
  void watch();
  void handle(int signo);

  ShutdownCoordinator& coordinator_;
  std::vector<int> signals_;
  std::vector<struct sigaction> previous_;
  std::atomic<uint64_t> received_{0};
  std::atomic<bool> stop_{false};
  int read_fd_ = -1;
  std::thread watcher_;
};

}  // namespace bulwark::lifecycle
