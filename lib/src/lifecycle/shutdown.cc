#include "bulwark/lifecycle/shutdown.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <stdexcept>
#include <system_error>
#include <utility>

namespace bulwark::lifecycle {

namespace {

// Real-time waits are bounded so that a huge clock distance cannot overflow the steady_clock
// deadline the condition variable computes.
constexpr Duration kMaxRealWait = std::chrono::hours(24);

std::string signal_name(int signo) {
  switch (signo) {
    case SIGTERM:
      return "SIGTERM";
    case SIGINT:
      return "SIGINT";
    case SIGHUP:
      return "SIGHUP";
    case SIGQUIT:
      return "SIGQUIT";
    case SIGUSR1:
      return "SIGUSR1";
    case SIGUSR2:
      return "SIGUSR2";
    default:
      return "signal " + std::to_string(signo);
  }
}

}  // namespace

std::string_view to_string(ShutdownState s) noexcept {
  switch (s) {
    case ShutdownState::running:
      return "running";
    case ShutdownState::draining:
      return "draining";
    case ShutdownState::stopping:
      return "stopping";
    case ShutdownState::forced:
      return "forced";
    case ShutdownState::stopped:
      return "stopped";
  }
  return "?";
}

std::string_view to_string(HookOutcome o) noexcept {
  switch (o) {
    case HookOutcome::completed:
      return "completed";
    case HookOutcome::failed:
      return "failed";
    case HookOutcome::timed_out:
      return "timed_out";
    case HookOutcome::abandoned:
      return "abandoned";
    case HookOutcome::skipped:
      return "skipped";
  }
  return "?";
}

void validate(const ShutdownOptions& o) {
  if (o.deadline <= Duration::zero()) {
    throw std::invalid_argument("ShutdownOptions.deadline: must be > 0");
  }
  if (o.default_hook_timeout <= Duration::zero()) {
    throw std::invalid_argument("ShutdownOptions.default_hook_timeout: must be > 0");
  }
}

// Everything a hook thread may touch. Held by shared_ptr from the coordinator and from every
// hook thread, so that an abandoned hook that returns after the coordinator is destroyed still
// has a live mutex to lock.
struct ShutdownCoordinator::Shared {
  struct Run {
    bool done = false;
    bool threw = false;
    std::string message;
  };

  std::mutex mu;
  std::condition_variable cv;
  // Guarded by mu.
  std::vector<Hook> hooks;
  std::string reason;
  std::optional<TimePoint> requested_at;
  bool run_started = false;
  std::optional<ShutdownReport> report;
  EventQueue<ShutdownEvent> events;
};

ShutdownCoordinator::ShutdownCoordinator(Clock& clock, ShutdownOptions options)
    : clock_(clock), options_(options), shared_(std::make_shared<Shared>()) {
  validate(options_);
}

ShutdownCoordinator::~ShutdownCoordinator() = default;

void ShutdownCoordinator::add_hook(std::string name, int priority, ShutdownHook hook,
                                   Duration timeout) {
  if (name.empty()) throw std::invalid_argument("ShutdownCoordinator::add_hook: empty name");
  if (!hook) {
    throw std::invalid_argument("ShutdownCoordinator::add_hook: hook '" + name + "' is empty");
  }
  if (timeout < Duration::zero()) {
    throw std::invalid_argument("ShutdownCoordinator::add_hook: hook '" + name +
                                "': timeout must be >= 0");
  }
  std::lock_guard lock(shared_->mu);
  if (shared_->run_started) {
    throw std::logic_error("ShutdownCoordinator::add_hook: shutdown already running");
  }
  shared_->hooks.push_back(
      Hook{std::move(name), priority,
           timeout == Duration::zero() ? options_.default_hook_timeout : timeout, std::move(hook)});
}

void ShutdownCoordinator::transition_locked(ShutdownState to, std::string_view reason,
                                            TimePoint at) {
  const ShutdownState from = state_.load(std::memory_order_relaxed);
  if (from == to) return;
  state_.store(to, std::memory_order_release);
  shared_->events.push(ShutdownEvent{from, to, std::string(reason), at});
  shared_->cv.notify_all();
}

bool ShutdownCoordinator::request_stop(std::string_view reason) {
  {
    std::lock_guard lock(shared_->mu);
    if (state() != ShutdownState::running) return false;
    const TimePoint now = clock_.now();
    shared_->reason = std::string(reason);
    shared_->requested_at = now;
    transition_locked(ShutdownState::draining, reason, now);
  }
  shared_->events.deliver();
  return true;
}

bool ShutdownCoordinator::force(std::string_view reason) {
  {
    std::lock_guard lock(shared_->mu);
    const ShutdownState s = state();
    if (s == ShutdownState::forced || s == ShutdownState::stopped) return false;
    const TimePoint now = clock_.now();
    if (!shared_->requested_at) {
      shared_->reason = std::string(reason);
      shared_->requested_at = now;
    }
    transition_locked(ShutdownState::forced, reason, now);
  }
  shared_->events.deliver();
  return true;
}

ShutdownReport ShutdownCoordinator::run() {
  Shared& sh = *shared_;
  std::unique_lock lock(sh.mu);
  if (sh.run_started) {
    sh.cv.wait(lock, [&] { return sh.report.has_value(); });
    return *sh.report;
  }
  sh.run_started = true;
  if (state() == ShutdownState::running) {
    const TimePoint now = clock_.now();
    sh.reason = "run";
    sh.requested_at = now;
    transition_locked(ShutdownState::draining, sh.reason, now);
  }
  if (state() == ShutdownState::draining) {
    transition_locked(ShutdownState::stopping, sh.reason, clock_.now());
  }

  std::vector<Hook> hooks = sh.hooks;
  // Higher priority first; stable keeps registration order among equals.
  std::stable_sort(hooks.begin(), hooks.end(),
                   [](const Hook& a, const Hook& b) { return a.priority > b.priority; });
  const Deadline overall = Deadline::after(*sh.requested_at, options_.deadline);
  ShutdownReport report;
  report.reason = sh.reason;

  for (Hook& hook : hooks) {
    HookReport hr{hook.name, hook.priority, HookOutcome::skipped, {}, Duration::zero()};
    if (sh.events.has_pending()) {
      // Events queued so far (e.g. -> stopping) go out before the next hook starts, and
      // listeners' time is not charged to the hook.
      lock.unlock();
      shared_->events.deliver();
      lock.lock();
    }
    if (state() == ShutdownState::forced) {
      hr.message = "shutdown forced";
      report.hooks.push_back(std::move(hr));
      continue;
    }
    const TimePoint start = clock_.now();
    if (overall.expired(start)) {
      hr.message = "overall deadline exceeded";
      report.deadline_exceeded = true;
      report.hooks.push_back(std::move(hr));
      continue;
    }
    const Deadline deadline = earliest(Deadline::after(start, hook.timeout), overall);
    auto run = std::make_shared<Shared::Run>();
    std::stop_source stop;
    const HookContext ctx{deadline, stop.get_token()};

    // Started under the lock, so a force() cannot slip in between the check above and the
    // wait below; the hook thread takes the lock only when it has returned.
    std::thread thread;
    try {
      thread = std::thread([shared = shared_, run, fn = std::move(hook.fn), ctx] {
        bool threw = false;
        std::string message;
        try {
          fn(ctx);
        } catch (const std::exception& ex) {
          threw = true;
          message = ex.what();
        } catch (...) {
          threw = true;
          message = "unknown exception";
        }
        std::lock_guard l(shared->mu);
        run->done = true;
        run->threw = threw;
        run->message = std::move(message);
        shared->cv.notify_all();
      });
    } catch (const std::system_error& ex) {
      hr.outcome = HookOutcome::failed;
      hr.message = std::string("could not start a thread: ") + ex.what();
      report.hooks.push_back(std::move(hr));
      continue;
    }

    while (!run->done && state() != ShutdownState::forced) {
      const TimePoint now = clock_.now();
      if (deadline.expired(now)) break;
      sh.cv.wait_for(lock, std::min(deadline.remaining(now), kMaxRealWait));
    }
    if (run->done) {
      hr.outcome = run->threw ? HookOutcome::failed : HookOutcome::completed;
      hr.message = run->message;
      lock.unlock();
      thread.join();  // it has finished its work; only the return is left
      lock.lock();
    } else {
      stop.request_stop();
      thread.detach();
      if (state() == ShutdownState::forced) {
        hr.outcome = HookOutcome::abandoned;
        hr.message = "abandoned: shutdown forced";
      } else {
        hr.outcome = HookOutcome::timed_out;
        const bool by_overall = deadline == overall;
        if (by_overall) report.deadline_exceeded = true;
        hr.message = by_overall ? "abandoned: overall deadline exceeded"
                                : "abandoned: hook timeout exceeded";
      }
    }
    const TimePoint end = clock_.now();
    hr.elapsed = end > start ? end - start : Duration::zero();
    report.hooks.push_back(std::move(hr));
  }

  const TimePoint end = clock_.now();
  report.forced = state() == ShutdownState::forced;
  report.elapsed = end > *sh.requested_at ? end - *sh.requested_at : Duration::zero();
  if (!report.forced) transition_locked(ShutdownState::stopped, sh.reason, end);
  sh.report = report;
  sh.cv.notify_all();
  lock.unlock();
  shared_->events.deliver();
  return report;
}

void ShutdownCoordinator::wait_requested() {
  std::unique_lock lock(shared_->mu);
  shared_->cv.wait(lock, [&] { return state() != ShutdownState::running; });
}

bool ShutdownCoordinator::wait_requested_for(std::chrono::nanoseconds real_timeout) {
  std::unique_lock lock(shared_->mu);
  return shared_->cv.wait_for(lock, std::min(real_timeout, kMaxRealWait),
                              [&] { return state() != ShutdownState::running; });
}

std::optional<TimePoint> ShutdownCoordinator::requested_at() const {
  std::lock_guard lock(shared_->mu);
  return shared_->requested_at;
}

std::optional<ShutdownReport> ShutdownCoordinator::report() const {
  std::lock_guard lock(shared_->mu);
  return shared_->report;
}

std::size_t ShutdownCoordinator::hook_count() const {
  std::lock_guard lock(shared_->mu);
  return shared_->hooks.size();
}

void ShutdownCoordinator::wake() {
  // Taking the lock orders the notification after a waiter's clock read (no lost wake-up).
  std::lock_guard lock(shared_->mu);
  shared_->cv.notify_all();
}

void ShutdownCoordinator::add_listener(Listener listener) {
  shared_->events.add_listener(std::move(listener));
}

// ---- signals ----

namespace {

// Process-wide self-pipe. The write end is what the handler uses; it is an atomic int so that
// the handler's read of it is a plain lock-free load.
std::atomic<int> g_write_fd{-1};
// Process that owns the pipe. A child forked while the handlers are installed inherits them
// (until it calls exec); its signals must not reach the parent's watcher through the shared pipe.
std::atomic<pid_t> g_pipe_pid{-1};
std::mutex g_install_mu;  // guards everything below; never touched in signal context
int g_read_fd = -1;
bool g_installed = false;

extern "C" void bulwark_on_shutdown_signal(int signo) {
  // Only async-signal-safe calls: atomic loads, getpid, write, signal, raise. errno is preserved
  // for the interrupted code.
  const int saved = errno;
  if (::getpid() != g_pipe_pid.load(std::memory_order_relaxed)) {
    // A forked child that did not install handlers of its own: default action, as if we were
    // not there.
    ::signal(signo, SIG_DFL);
    ::raise(signo);
    errno = saved;
    return;
  }
  const int fd = g_write_fd.load(std::memory_order_relaxed);
  if (fd >= 0) {
    const unsigned char b = static_cast<unsigned char>(signo);
    [[maybe_unused]] const ssize_t n = ::write(fd, &b, 1);
  }
  errno = saved;
}

// Requires g_install_mu. Creates the pipe once per process (again in a forked child, which must
// not share the parent's pipe) and empties it.
void ensure_pipe_locked() {
  const pid_t pid = ::getpid();
  if (g_pipe_pid.load(std::memory_order_relaxed) != pid) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0) {
      throw std::system_error(errno, std::generic_category(), "SignalHandlers: pipe2");
    }
    // A forked child inherits the parent's pipe; it keeps those descriptors open (closing one a
    // concurrent handler might be using is worse than two idle descriptors).
    g_read_fd = fds[0];
    g_write_fd.store(fds[1], std::memory_order_relaxed);
    g_pipe_pid.store(pid, std::memory_order_relaxed);
  }
  unsigned char buf[256];
  while (::read(g_read_fd, buf, sizeof buf) > 0) {
  }
}

}  // namespace

SignalHandlers::SignalHandlers(ShutdownCoordinator& coordinator, std::vector<int> signals)
    : coordinator_(coordinator), signals_(std::move(signals)) {
  if (signals_.empty()) throw std::invalid_argument("SignalHandlers: no signals");
  for (int s : signals_) {
    if (s <= 0 || s > 255 || s == SIGKILL || s == SIGSTOP) {
      throw std::invalid_argument("SignalHandlers: cannot handle signal " + std::to_string(s));
    }
  }
  std::lock_guard lock(g_install_mu);
  if (g_installed) throw std::logic_error("SignalHandlers: already installed in this process");
  ensure_pipe_locked();
  read_fd_ = g_read_fd;

  previous_.resize(signals_.size());
  struct sigaction sa {};
  sa.sa_handler = bulwark_on_shutdown_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  for (std::size_t i = 0; i < signals_.size(); ++i) {
    if (::sigaction(signals_[i], &sa, &previous_[i]) != 0) {
      const int err = errno;
      for (std::size_t j = 0; j < i; ++j) ::sigaction(signals_[j], &previous_[j], nullptr);
      throw std::system_error(err, std::generic_category(), "SignalHandlers: sigaction");
    }
  }
  try {
    watcher_ = std::thread([this] { watch(); });
  } catch (...) {
    for (std::size_t j = 0; j < signals_.size(); ++j) {
      ::sigaction(signals_[j], &previous_[j], nullptr);
    }
    throw;
  }
  g_installed = true;
}

SignalHandlers::~SignalHandlers() {
  std::lock_guard lock(g_install_mu);
  for (std::size_t i = signals_.size(); i-- > 0;) ::sigaction(signals_[i], &previous_[i], nullptr);
  stop_.store(true, std::memory_order_release);
  // Wake the watcher. If the pipe is full the write fails, but then the watcher has bytes to
  // read and sees stop_ after reading them.
  const unsigned char zero = 0;
  [[maybe_unused]] const ssize_t n = ::write(g_write_fd.load(std::memory_order_relaxed), &zero, 1);
  watcher_.join();
  g_installed = false;
}

void SignalHandlers::watch() {
  while (!stop_.load(std::memory_order_acquire)) {
    pollfd p{read_fd_, POLLIN, 0};
    const int r = ::poll(&p, 1, -1);
    if (r < 0 && errno != EINTR) return;
    unsigned char buf[64];
    for (;;) {
      const ssize_t n = ::read(read_fd_, buf, sizeof buf);
      if (n <= 0) break;
      for (ssize_t i = 0; i < n; ++i) {
        if (buf[i] != 0) handle(buf[i]);
      }
    }
  }
}

void SignalHandlers::handle(int signo) {
  const uint64_t n = received_.fetch_add(1, std::memory_order_acq_rel) + 1;
  const std::string name = signal_name(signo);
  if (n == 1) {
    coordinator_.request_stop(name);
  } else {
    coordinator_.force(name);
  }
}

}  // namespace bulwark::lifecycle
