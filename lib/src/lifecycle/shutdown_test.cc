#include "bulwark/lifecycle/shutdown.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "bulwark/testing/manual_clock.h"

namespace bulwark::lifecycle {
namespace {

using namespace std::chrono_literals;
using bulwark::testing::ManualClock;

// ---------------------------------------------------------------------------------------------
// Signal handling, exercised in child processes: the child installs the handlers, the parent
// sends real signals with kill(2) and reads what happened over a pipe. Every wait is bounded.
// These come first in the file so that the test process has no other threads when it forks.

constexpr auto kChildTimeout = 10s;

struct Child {
  pid_t pid = -1;
  int fd = -1;  // read end of the child's report pipe
};

void write_all(int fd, const std::string& s) {
  std::size_t off = 0;
  while (off < s.size()) {
    const ssize_t n = ::write(fd, s.data() + off, s.size() - off);
    if (n <= 0) return;
    off += static_cast<std::size_t>(n);
  }
}

// Runs body(report_fd) in a child process; its return value is the exit code.
template <class Body>
Child spawn(Body body) {
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) return {};
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::close(p[0]);
    int code = 100;
    try {
      code = body(p[1]);
    } catch (const std::exception& e) {
      write_all(p[1], std::string("exception: ") + e.what() + "\n");
      code = 101;
    }
    ::_exit(code);
  }
  ::close(p[1]);
  return {pid, p[0]};
}

// Reads one line from the child, waiting at most `limit` in total. "" on timeout or EOF.
std::string read_line(int fd, std::chrono::milliseconds limit = kChildTimeout) {
  std::string line;
  Clock& clock = SystemClock::instance();
  const TimePoint give_up = clock.now() + limit;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(give_up - clock.now());
    if (left <= 0ms) return "";
    pollfd p{fd, POLLIN, 0};
    const int r = ::poll(&p, 1, static_cast<int>(left.count()));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return "";
    char c;
    const ssize_t n = ::read(fd, &c, 1);
    if (n <= 0) return line;
    if (c == '\n') return line;
    line.push_back(c);
  }
}

// Waits at most `limit` for `pid` to exit (pidfd + poll; `eof_fd`, a pipe the process holds
// open until it exits, when pidfd_open is unavailable); kills it if it does not. Returns the
// waitpid status, or nullopt if it had to be killed.
std::optional<int> wait_exit(pid_t pid, std::chrono::milliseconds limit, int eof_fd = -1) {
  const int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  bool exited = true;
  if (pidfd >= 0) {
    pollfd p{pidfd, POLLIN, 0};
    int r;
    do {
      r = ::poll(&p, 1, static_cast<int>(limit.count()));
    } while (r < 0 && errno == EINTR);
    ::close(pidfd);
    exited = r > 0;
  } else if (eof_fd >= 0) {
    exited = read_line(eof_fd, limit).empty();
  }
  if (!exited) ::kill(pid, SIGKILL);
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (!exited) return std::nullopt;
  return status;
}

// Waits (bounded) for the child to exit and returns its exit code, or -1 if it had to be
// killed or died of a signal.
int reap(const Child& child, std::chrono::milliseconds limit = kChildTimeout) {
  const std::optional<int> status = wait_exit(child.pid, limit, child.fd);
  ::close(child.fd);
  if (!status || !WIFEXITED(*status)) return -1;
  return WEXITSTATUS(*status);
}

// Under ThreadSanitizer a signal sent to the child can stay pending until its main thread
// leaves the blocking wait it is in: seen once in CI under load, the child's report came after
// exactly the 10 s of its wait_requested_for (ten runs on an idle machine passed). The tests
// that send a signal and wait for its effect therefore run in the release and ASan builds
// only, on every CI pass.
#if defined(__SANITIZE_THREAD__)
#define SKIP_UNDER_TSAN() \
  GTEST_SKIP() << "ThreadSanitizer may defer a signal until the blocking call returns"
#else
#define SKIP_UNDER_TSAN() (void)0
#endif

TEST(ShutdownSignalTest, SigtermStartsAGracefulStop) {
  SKIP_UNDER_TSAN();
  const Child child = spawn([](int out) {
    ShutdownCoordinator sd(SystemClock::instance(), {.deadline = 10s});
    std::mutex mu;
    std::string order;
    auto hook = [&](std::string name) {
      return [&, name](const HookContext&) {
        std::lock_guard lock(mu);
        order += name + ",";
      };
    };
    sd.add_hook("low", 1, hook("low"));
    sd.add_hook("high", 9, hook("high"));
    SignalHandlers signals(sd);
    write_all(out, "ready\n");
    if (!sd.wait_requested_for(kChildTimeout)) return 3;
    const std::string state_on_request(to_string(sd.state()));
    const ShutdownReport report = sd.run();
    write_all(out, "requested=" + state_on_request + " reason=" + report.reason +
                       " order=" + order + " state=" + std::string(to_string(sd.state())) +
                       " signals=" + std::to_string(signals.received()) + "\n");
    return 0;
  });
  ASSERT_GT(child.pid, 0);
  ASSERT_EQ(read_line(child.fd), "ready");
  ASSERT_EQ(::kill(child.pid, SIGTERM), 0);
  EXPECT_EQ(read_line(child.fd),
            "requested=draining reason=SIGTERM order=high,low, state=stopped signals=1");
  EXPECT_EQ(reap(child), 0);
}

TEST(ShutdownSignalTest, SecondSignalForcesTheStop) {
  SKIP_UNDER_TSAN();
  const Child child = spawn([](int out) {
    ShutdownCoordinator sd(SystemClock::instance(), {.deadline = 60s});
    sd.add_hook(
        "stuck", 5,
        [out](const HookContext& ctx) {
          write_all(out, "hook started\n");
          std::mutex m;
          std::condition_variable_any cv;
          std::unique_lock lock(m);
          cv.wait_for(lock, ctx.stop, 30s, [] { return false; });
        },
        30s);
    sd.add_hook("after", 1, [](const HookContext&) {});
    SignalHandlers signals(sd, {SIGTERM, SIGINT});
    write_all(out, "ready\n");
    if (!sd.wait_requested_for(kChildTimeout)) return 3;
    const ShutdownReport report = sd.run();
    write_all(out, "forced=" + std::to_string(report.forced) +
                       " state=" + std::string(to_string(sd.state())) +
                       " stuck=" + std::string(to_string(report.hooks.at(0).outcome)) +
                       " after=" + std::string(to_string(report.hooks.at(1).outcome)) +
                       " signals=" + std::to_string(signals.received()) + "\n");
    return 0;
  });
  ASSERT_GT(child.pid, 0);
  ASSERT_EQ(read_line(child.fd), "ready");
  ASSERT_EQ(::kill(child.pid, SIGTERM), 0);
  ASSERT_EQ(read_line(child.fd), "hook started");
  ASSERT_EQ(::kill(child.pid, SIGINT), 0);
  EXPECT_EQ(read_line(child.fd), "forced=1 state=forced stuck=abandoned after=skipped signals=2");
  EXPECT_EQ(reap(child), 0);
}

volatile sig_atomic_t g_custom_handler_ran = 0;
extern "C" void custom_usr1_handler(int) { g_custom_handler_ran = 1; }

TEST(ShutdownSignalTest, PreviousHandlersAreRestoredAndOnlyOneInstallationAtATime) {
  const Child child = spawn([](int out) {
    struct sigaction sa {};
    sa.sa_handler = custom_usr1_handler;
    sigemptyset(&sa.sa_mask);
    ::sigaction(SIGUSR1, &sa, nullptr);
    ShutdownCoordinator sd(SystemClock::instance());
    std::string second = "accepted";
    {
      SignalHandlers signals(sd, {SIGUSR1});
      try {
        SignalHandlers again(sd, {SIGUSR2});
      } catch (const std::logic_error&) {
        second = "rejected";
      }
      ::raise(SIGUSR1);  // ours: the watcher requests a stop
      if (!sd.wait_requested_for(kChildTimeout)) return 3;
    }
    const bool custom_before = g_custom_handler_ran != 0;
    ::raise(SIGUSR1);  // restored: the original handler runs
    write_all(out, "second=" + second + " state=" + std::string(to_string(sd.state())) +
                       " custom_before=" + std::to_string(custom_before) +
                       " custom_after=" + std::to_string(g_custom_handler_ran != 0) + "\n");
    // A new installation after the old one is gone works.
    SignalHandlers again(sd, {SIGUSR2});
    return 0;
  });
  ASSERT_GT(child.pid, 0);
  EXPECT_EQ(read_line(child.fd), "second=rejected state=draining custom_before=0 custom_after=1");
  EXPECT_EQ(reap(child), 0);
}

TEST(ShutdownSignalTest, ForkedChildWithInheritedHandlersGetsTheDefaultAction) {
#if defined(__SANITIZE_THREAD__)
  // The child forks again while its watcher thread runs; under ThreadSanitizer a process forked
  // from a multi-threaded one never runs its signal handlers, so there is nothing to observe.
  GTEST_SKIP() << "ThreadSanitizer does not deliver signals after a multi-threaded fork";
#endif
  const Child child = spawn([](int out) {
    ShutdownCoordinator sd(SystemClock::instance());
    SignalHandlers signals(sd, {SIGTERM, SIGUSR1});
    const pid_t grandchild = ::fork();
    if (grandchild == 0) {
      for (;;) ::pause();  // inherits the handlers; SIGTERM must kill it
    }
    if (grandchild < 0) return 4;
    ::kill(grandchild, SIGTERM);
    const std::optional<int> status = wait_exit(grandchild, kChildTimeout);
    const bool killed_by_term = status && WIFSIGNALED(*status) && WTERMSIG(*status) == SIGTERM;
    // Had the grandchild's SIGTERM gone into the shared pipe, it would be ahead of this one
    // and the stop reason would be SIGTERM.
    ::raise(SIGUSR1);
    if (!sd.wait_requested_for(kChildTimeout)) return 3;
    const ShutdownReport report = sd.run();
    write_all(out, "grandchild_killed_by_sigterm=" + std::to_string(killed_by_term) +
                       " reason=" + report.reason + "\n");
    return 0;
  });
  ASSERT_GT(child.pid, 0);
  EXPECT_EQ(read_line(child.fd), "grandchild_killed_by_sigterm=1 reason=SIGUSR1");
  EXPECT_EQ(reap(child), 0);
}

TEST(ShutdownSignalTest, InvalidSignalListsAreRejected) {
  // Validation happens before anything is installed, so this is safe in the test process.
  ShutdownCoordinator sd(SystemClock::instance());
  EXPECT_THROW(SignalHandlers(sd, {}), std::invalid_argument);
  EXPECT_THROW(SignalHandlers(sd, {SIGKILL}), std::invalid_argument);
  EXPECT_THROW(SignalHandlers(sd, {0}), std::invalid_argument);
}

// ---------------------------------------------------------------------------------------------
// The coordinator on a ManualClock.

// Ordered record of what hooks did (hooks run on their own threads).
struct Journal {
  std::mutex mu;
  std::vector<std::string> entries;
  void add(std::string s) {
    std::lock_guard lock(mu);
    entries.push_back(std::move(s));
  }
  std::vector<std::string> get() {
    std::lock_guard lock(mu);
    return entries;
  }
};

ShutdownHook note(Journal& j, std::string name) {
  return [&j, name](const HookContext&) { j.add(name); };
}

// A hook that blocks until its stop_token is requested (or 30 s pass), reporting when it
// started and when it finished. Shared so that an abandoned hook outlives the test's frame.
struct Blocker {
  std::promise<void> started;
  std::shared_future<void> started_f = started.get_future().share();
  std::promise<bool> finished;  // value: the stop_token was requested
  std::future<bool> finished_f = finished.get_future();

  static ShutdownHook hook(const std::shared_ptr<Blocker>& b) {
    return [b](const HookContext& ctx) {
      b->started.set_value();
      std::mutex m;
      std::condition_variable_any cv;
      std::unique_lock lock(m);
      cv.wait_for(lock, ctx.stop, 30s, [] { return false; });
      b->finished.set_value(ctx.stop.stop_requested());
    };
  }
  bool wait_started() { return started_f.wait_for(10s) == std::future_status::ready; }
  // True if the hook returned because it was told to stop.
  bool finished_by_stop() {
    return finished_f.wait_for(10s) == std::future_status::ready && finished_f.get();
  }
};

std::future<ShutdownReport> run_async(ShutdownCoordinator& sd) {
  return std::async(std::launch::async, [&sd] { return sd.run(); });
}

bool ready(std::future<ShutdownReport>& f) { return f.wait_for(10s) == std::future_status::ready; }

TEST(ShutdownTest, InvalidOptionsAndHooksAreRejected) {
  ManualClock clock;
  EXPECT_THROW(ShutdownCoordinator(clock, {.deadline = 0s}), std::invalid_argument);
  EXPECT_THROW(ShutdownCoordinator(clock, {.deadline = 1s, .default_hook_timeout = -1s}),
               std::invalid_argument);
  ShutdownCoordinator sd(clock);
  auto noop = [](const HookContext&) {};
  EXPECT_THROW(sd.add_hook("", 0, noop), std::invalid_argument);
  EXPECT_THROW(sd.add_hook("x", 0, ShutdownHook{}), std::invalid_argument);
  EXPECT_THROW(sd.add_hook("x", 0, noop, -1s), std::invalid_argument);
  sd.add_hook("x", 0, noop);
  EXPECT_EQ(sd.hook_count(), 1u);
  sd.run();
  EXPECT_THROW(sd.add_hook("late", 0, noop), std::logic_error);
}

TEST(ShutdownTest, HooksRunByPriorityThenRegistrationOrder) {
  ManualClock clock;
  ShutdownCoordinator sd(clock);
  Journal j;
  sd.add_hook("low", -5, note(j, "low"));
  sd.add_hook("mid-1", 10, note(j, "mid-1"));
  sd.add_hook("high", 100, note(j, "high"));
  sd.add_hook("mid-2", 10, note(j, "mid-2"));
  sd.add_hook("mid-3", 10, note(j, "mid-3"));
  EXPECT_TRUE(sd.request_stop("test"));
  const ShutdownReport report = sd.run();
  EXPECT_EQ(j.get(), (std::vector<std::string>{"high", "mid-1", "mid-2", "mid-3", "low"}));
  ASSERT_EQ(report.hooks.size(), 5u);
  for (const HookReport& h : report.hooks) {
    EXPECT_EQ(h.outcome, HookOutcome::completed) << h.name;
  }
  EXPECT_EQ(report.hooks[0].name, "high");
  EXPECT_EQ(report.hooks[0].priority, 100);
  EXPECT_EQ(report.reason, "test");
  EXPECT_FALSE(report.forced);
  EXPECT_FALSE(report.deadline_exceeded);
  EXPECT_EQ(sd.state(), ShutdownState::stopped);
  EXPECT_TRUE(sd.draining());
}

TEST(ShutdownTest, StopRequestDrainsUntilRun) {
  ManualClock clock;
  ShutdownCoordinator sd(clock);
  EXPECT_EQ(sd.state(), ShutdownState::running);
  EXPECT_FALSE(sd.draining());
  EXPECT_FALSE(sd.requested_at().has_value());
  EXPECT_FALSE(sd.wait_requested_for(0s));
  EXPECT_TRUE(sd.request_stop("SIGTERM"));
  EXPECT_FALSE(sd.request_stop("again"));
  EXPECT_EQ(sd.state(), ShutdownState::draining);
  EXPECT_TRUE(sd.draining());
  EXPECT_EQ(sd.requested_at(), clock.now());
  EXPECT_TRUE(sd.wait_requested_for(0s));
  sd.wait_requested();  // returns at once
  EXPECT_FALSE(sd.report().has_value());
  const ShutdownReport report = sd.run();
  EXPECT_EQ(report.reason, "SIGTERM");
  EXPECT_EQ(sd.report()->reason, "SIGTERM");
  EXPECT_FALSE(sd.request_stop("late"));
  EXPECT_FALSE(sd.force("late"));
}

TEST(ShutdownTest, WaitRequestedWakesWhenAnotherThreadRequestsAStop) {
  ManualClock clock;
  ShutdownCoordinator sd(clock);
  auto waiter = std::async(std::launch::async, [&] {
    sd.wait_requested();
    return sd.state();
  });
  sd.request_stop("other thread");
  ASSERT_EQ(waiter.wait_for(10s), std::future_status::ready);
  EXPECT_EQ(waiter.get(), ShutdownState::draining);
}

TEST(ShutdownTest, HooksGetTheirDeadlineClampedByTheOverallOne) {
  ManualClock clock;
  ShutdownCoordinator sd(clock, {.deadline = 30s, .default_hook_timeout = 5s});
  std::mutex mu;
  std::vector<Deadline> seen;
  auto record = [&](Duration takes) {
    return [&, takes](const HookContext& ctx) {
      {
        std::lock_guard lock(mu);
        seen.push_back(ctx.deadline);
      }
      clock.advance(takes);
    };
  };
  sd.add_hook("default-timeout", 3, record(1s));
  sd.add_hook("own-timeout", 2, record(1s), 20s);
  sd.add_hook("no-timeout", 1, record(0s), Duration::max());
  const TimePoint t0 = clock.now();
  sd.request_stop();
  const ShutdownReport report = sd.run();
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_EQ(seen[0].time(), t0 + 5s);
  EXPECT_EQ(seen[1].time(), t0 + 1s + 20s);
  EXPECT_EQ(seen[2].time(), t0 + 30s);  // only the overall deadline
  EXPECT_EQ(report.hooks[0].elapsed, 1s);
  EXPECT_EQ(report.elapsed, 2s);
}

TEST(ShutdownTest, HookOverrunningItsTimeoutIsAbandonedAndTheNextRuns) {
  ManualClock clock;
  ShutdownCoordinator sd(clock, {.deadline = 30s});
  Journal j;
  auto stuck = std::make_shared<Blocker>();
  sd.add_hook("stuck", 10, Blocker::hook(stuck), 2s);
  sd.add_hook("next", 5, note(j, "next"));
  auto result = run_async(sd);
  ASSERT_TRUE(stuck->wait_started());
  EXPECT_EQ(sd.state(), ShutdownState::stopping);
  clock.advance(1999ms);
  sd.wake();
  EXPECT_EQ(result.wait_for(0s), std::future_status::timeout) << "abandoned before its timeout";
  clock.advance(1ms);
  sd.wake();
  ASSERT_TRUE(ready(result));
  const ShutdownReport report = result.get();
  ASSERT_EQ(report.hooks.size(), 2u);
  EXPECT_EQ(report.hooks[0].outcome, HookOutcome::timed_out);
  EXPECT_EQ(report.hooks[0].message, "abandoned: hook timeout exceeded");
  EXPECT_EQ(report.hooks[0].elapsed, 2s);
  EXPECT_EQ(report.hooks[1].outcome, HookOutcome::completed);
  EXPECT_EQ(j.get(), std::vector<std::string>{"next"});
  EXPECT_FALSE(report.deadline_exceeded);
  EXPECT_EQ(sd.state(), ShutdownState::stopped);
  // The abandoned hook was told to stop and, being cooperative, returned.
  EXPECT_TRUE(stuck->finished_by_stop());
}

TEST(ShutdownTest, OverallDeadlineCutsTheCurrentHookAndSkipsTheRest) {
  ManualClock clock;
  ShutdownCoordinator sd(clock, {.deadline = 10s});
  auto first = std::make_shared<Blocker>();
  auto second = std::make_shared<Blocker>();
  Journal j;
  sd.add_hook("first", 3, Blocker::hook(first), 8s);
  sd.add_hook("second", 2, Blocker::hook(second), 8s);  // only 2 s of the budget left for it
  sd.add_hook("third", 1, note(j, "third"));
  sd.request_stop();
  auto result = run_async(sd);
  ASSERT_TRUE(first->wait_started());
  clock.advance(8s);
  sd.wake();
  ASSERT_TRUE(second->wait_started());
  clock.advance(2s);
  sd.wake();
  ASSERT_TRUE(ready(result));
  const ShutdownReport report = result.get();
  ASSERT_EQ(report.hooks.size(), 3u);
  EXPECT_EQ(report.hooks[0].outcome, HookOutcome::timed_out);
  EXPECT_EQ(report.hooks[0].message, "abandoned: hook timeout exceeded");
  EXPECT_EQ(report.hooks[1].outcome, HookOutcome::timed_out);
  EXPECT_EQ(report.hooks[1].message, "abandoned: overall deadline exceeded");
  EXPECT_EQ(report.hooks[1].elapsed, 2s);
  EXPECT_EQ(report.hooks[2].outcome, HookOutcome::skipped);
  EXPECT_EQ(report.hooks[2].message, "overall deadline exceeded");
  EXPECT_TRUE(j.get().empty());
  EXPECT_TRUE(report.deadline_exceeded);
  EXPECT_EQ(report.elapsed, 10s);
  EXPECT_EQ(sd.state(), ShutdownState::stopped);
  EXPECT_TRUE(first->finished_by_stop());
  EXPECT_TRUE(second->finished_by_stop());
}

TEST(ShutdownTest, DeadlineCountsFromTheStopRequest) {
  ManualClock clock;
  ShutdownCoordinator sd(clock, {.deadline = 10s});
  const TimePoint requested = clock.now();
  sd.request_stop();
  clock.advance(3s);  // time between the request and run() comes out of the budget
  std::mutex mu;
  std::vector<Deadline> seen;
  auto record = [&](Duration takes) {
    return [&, takes](const HookContext& ctx) {
      {
        std::lock_guard lock(mu);
        seen.push_back(ctx.deadline);
      }
      clock.advance(takes);  // stays within the hook's deadline
    };
  };
  sd.add_hook("first", 2, record(6s), Duration::max());
  sd.add_hook("second", 1, record(0s), 5s);  // 1 s of the budget is left when it starts
  const ShutdownReport report = sd.run();
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[0].time(), requested + 10s);
  EXPECT_EQ(seen[1].time(), requested + 10s);
  EXPECT_EQ(report.hooks[0].outcome, HookOutcome::completed);
  EXPECT_EQ(report.hooks[1].outcome, HookOutcome::completed);
  EXPECT_EQ(report.elapsed, 9s);
  EXPECT_FALSE(report.deadline_exceeded);

  // A run() after the budget is spent skips every hook without starting it.
  Journal j;
  ShutdownCoordinator late(clock, {.deadline = 10s});
  late.add_hook("never", 0, note(j, "never"));
  late.request_stop();
  clock.advance(10s);
  const ShutdownReport r2 = late.run();
  EXPECT_EQ(r2.hooks[0].outcome, HookOutcome::skipped);
  EXPECT_EQ(r2.hooks[0].message, "overall deadline exceeded");
  EXPECT_TRUE(r2.deadline_exceeded);
  EXPECT_TRUE(j.get().empty());
}

TEST(ShutdownTest, ForceAbandonsTheRunningHookAndSkipsTheRest) {
  ManualClock clock;
  ShutdownCoordinator sd(clock, {.deadline = 60s});
  std::vector<std::string> events;
  std::mutex mu;
  sd.add_listener([&](const ShutdownEvent& e) {
    std::lock_guard lock(mu);
    events.push_back(std::string(to_string(e.from)) + "->" + std::string(to_string(e.to)) + ":" +
                     e.reason);
  });
  auto stuck = std::make_shared<Blocker>();
  Journal j;
  sd.add_hook("stuck", 2, Blocker::hook(stuck), 30s);
  sd.add_hook("rest", 1, note(j, "rest"));
  sd.request_stop("SIGTERM");
  auto result = run_async(sd);
  ASSERT_TRUE(stuck->wait_started());
  EXPECT_TRUE(sd.force("SIGINT"));
  EXPECT_FALSE(sd.force("again"));
  ASSERT_TRUE(ready(result));
  const ShutdownReport report = result.get();
  EXPECT_TRUE(report.forced);
  EXPECT_EQ(report.hooks[0].outcome, HookOutcome::abandoned);
  EXPECT_EQ(report.hooks[1].outcome, HookOutcome::skipped);
  EXPECT_EQ(report.hooks[1].message, "shutdown forced");
  EXPECT_TRUE(j.get().empty());
  EXPECT_EQ(sd.state(), ShutdownState::forced);
  EXPECT_TRUE(stuck->finished_by_stop());
  std::lock_guard lock(mu);
  EXPECT_EQ(events,
            (std::vector<std::string>{"running->draining:SIGTERM", "draining->stopping:SIGTERM",
                                      "stopping->forced:SIGINT"}));
}

TEST(ShutdownTest, ForceBeforeRunSkipsEverything) {
  ManualClock clock;
  ShutdownCoordinator sd(clock);
  Journal j;
  sd.add_hook("a", 1, note(j, "a"));
  EXPECT_TRUE(sd.force("operator"));
  EXPECT_EQ(sd.state(), ShutdownState::forced);
  EXPECT_TRUE(sd.draining());
  EXPECT_FALSE(sd.request_stop("late"));
  const ShutdownReport report = sd.run();
  EXPECT_TRUE(report.forced);
  EXPECT_EQ(report.reason, "operator");
  EXPECT_EQ(report.hooks[0].outcome, HookOutcome::skipped);
  EXPECT_TRUE(j.get().empty());
  EXPECT_EQ(sd.state(), ShutdownState::forced);
}

TEST(ShutdownTest, ThrowingHookFailsAndTheNextRuns) {
  ManualClock clock;
  ShutdownCoordinator sd(clock);
  Journal j;
  sd.add_hook("bad", 2, [](const HookContext&) { throw std::runtime_error("flush failed"); });
  sd.add_hook("good", 1, note(j, "good"));
  const ShutdownReport report = sd.run();  // no request before: run() requests itself
  EXPECT_EQ(report.reason, "run");
  EXPECT_EQ(report.hooks[0].outcome, HookOutcome::failed);
  EXPECT_EQ(report.hooks[0].message, "flush failed");
  EXPECT_EQ(report.hooks[1].outcome, HookOutcome::completed);
  EXPECT_EQ(j.get(), std::vector<std::string>{"good"});
  EXPECT_EQ(sd.state(), ShutdownState::stopped);
}

TEST(ShutdownTest, ConcurrentAndRepeatedRunsShareOneReport) {
  ManualClock clock;
  ShutdownCoordinator sd(clock);
  auto stuck = std::make_shared<Blocker>();
  std::atomic<int> calls{0};
  sd.add_hook("counted", 2, [&](const HookContext&) { ++calls; });
  sd.add_hook("stuck", 1, Blocker::hook(stuck), 1s);
  auto first = run_async(sd);
  ASSERT_TRUE(stuck->wait_started());
  auto second = run_async(sd);  // waits for the first run's report
  EXPECT_EQ(second.wait_for(0s), std::future_status::timeout);
  clock.advance(1s);
  sd.wake();
  ASSERT_TRUE(ready(first));
  ASSERT_TRUE(ready(second));
  const ShutdownReport a = first.get();
  const ShutdownReport b = second.get();
  const ShutdownReport c = sd.run();
  EXPECT_EQ(calls.load(), 1);
  ASSERT_EQ(b.hooks.size(), 2u);
  ASSERT_EQ(c.hooks.size(), 2u);
  EXPECT_EQ(a.hooks[1].outcome, HookOutcome::timed_out);
  EXPECT_EQ(b.hooks[1].outcome, HookOutcome::timed_out);
  EXPECT_EQ(c.hooks[1].outcome, HookOutcome::timed_out);
  EXPECT_TRUE(stuck->finished_by_stop());
}

TEST(ShutdownTest, ListenersSeeEveryStateInOrderAndMayReadState) {
  ManualClock clock;
  ShutdownCoordinator sd(clock);
  std::vector<std::string> events;
  sd.add_listener([&](const ShutdownEvent& e) {
    events.push_back(std::string(to_string(e.from)) + "->" + std::string(to_string(e.to)) +
                     " now " + std::string(to_string(sd.state())));
  });
  sd.add_listener([](const ShutdownEvent&) { throw std::runtime_error("ignored"); });
  sd.add_hook("a", 0, [](const HookContext&) {});
  sd.request_stop("deploy");
  sd.run();
  EXPECT_EQ(events, (std::vector<std::string>{"running->draining now draining",
                                              "draining->stopping now stopping",
                                              "stopping->stopped now stopped"}));
}

TEST(ShutdownStringsTest, Names) {
  EXPECT_EQ(to_string(ShutdownState::running), "running");
  EXPECT_EQ(to_string(ShutdownState::draining), "draining");
  EXPECT_EQ(to_string(ShutdownState::stopping), "stopping");
  EXPECT_EQ(to_string(ShutdownState::forced), "forced");
  EXPECT_EQ(to_string(ShutdownState::stopped), "stopped");
  EXPECT_EQ(to_string(HookOutcome::completed), "completed");
  EXPECT_EQ(to_string(HookOutcome::failed), "failed");
  EXPECT_EQ(to_string(HookOutcome::timed_out), "timed_out");
  EXPECT_EQ(to_string(HookOutcome::abandoned), "abandoned");
  EXPECT_EQ(to_string(HookOutcome::skipped), "skipped");
}

}  // namespace
}  // namespace bulwark::lifecycle
