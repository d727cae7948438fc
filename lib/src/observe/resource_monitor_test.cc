#include "bulwark/observe/resource_monitor.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "bulwark/testing/manual_clock.h"

namespace bulwark::observe {
namespace {

using namespace std::chrono_literals;
using bulwark::testing::ManualClock;

class FakeReader final : public ResourceReader {
 public:
  ResourceReading reading;
  bool throw_next = false;
  int reads = 0;
  ResourceReading read() override {
    ++reads;
    if (throw_next) {
      throw_next = false;
      throw std::runtime_error("read failed");
    }
    return reading;
  }
  // fds used out of 1000; memory readable but unlimited (not monitored) unless a test sets a
  // limit.
  void fds(uint64_t used) {
    reading.open_fds = used;
    reading.fd_limit = 1000;
    if (!reading.rss_bytes) reading.rss_bytes = 1;
  }
};

std::vector<std::string> names(const std::vector<ResourceEvent>& events) {
  std::vector<std::string> out;
  for (const auto& e : events) {
    out.push_back(std::string(e.resource) + ":" + std::string(to_string(e.from)) + "->" +
                  std::string(to_string(e.to)));
  }
  return out;
}

TEST(ResourceLevelTest, ThresholdsAndHysteresisOfNextLevel) {
  const ResourceMonitorOptions o;  // 80/90/95, hysteresis 5 points
  using L = ResourceLevel;
  // Rising: immediate, several levels at once if needed.
  EXPECT_EQ(next_level(L::normal, 0.799, o), L::normal);
  EXPECT_EQ(next_level(L::normal, 0.80, o), L::warning);
  EXPECT_EQ(next_level(L::normal, 0.90, o), L::critical);
  EXPECT_EQ(next_level(L::normal, 0.95, o), L::exhausted);
  EXPECT_EQ(next_level(L::warning, 0.93, o), L::critical);
  EXPECT_EQ(next_level(L::normal, 1.5, o), L::exhausted);
  // Falling: a level is left only `hysteresis` below its entry threshold.
  EXPECT_EQ(next_level(L::exhausted, 0.94, o), L::exhausted);
  EXPECT_EQ(next_level(L::exhausted, 0.90, o), L::exhausted);
  EXPECT_EQ(next_level(L::exhausted, 0.8999, o), L::critical);
  EXPECT_EQ(next_level(L::critical, 0.85, o), L::critical);
  EXPECT_EQ(next_level(L::critical, 0.8499, o), L::warning);
  EXPECT_EQ(next_level(L::warning, 0.75, o), L::warning);
  EXPECT_EQ(next_level(L::warning, 0.7499, o), L::normal);
  // Several levels down at once when usage collapses.
  EXPECT_EQ(next_level(L::exhausted, 0.10, o), L::normal);
  EXPECT_EQ(next_level(L::exhausted, 0.80, o), L::warning);
  // Custom hysteresis.
  ResourceMonitorOptions tight = o;
  tight.hysteresis = 0.0;
  EXPECT_EQ(next_level(L::critical, 0.8999, tight), L::warning);
}

TEST(ResourceLevelTest, InvalidOptionsAreRejected) {
  auto reader = std::make_shared<FakeReader>();
  auto bad = [&](auto mutate) {
    ResourceMonitorOptions o;
    mutate(o);
    EXPECT_THROW(ResourceMonitor(reader, o), std::invalid_argument);
  };
  bad([](auto& o) { o.warning = 0; });
  bad([](auto& o) { o.warning = 1.0; });
  bad([](auto& o) { o.critical = 0.8; });
  bad([](auto& o) { o.exhausted = 0.85; });
  bad([](auto& o) { o.exhausted = 1.01; });
  bad([](auto& o) { o.hysteresis = -0.01; });
  bad([](auto& o) { o.hysteresis = 0.8; });
  bad([](auto& o) { o.poll_interval = 0s; });
  EXPECT_THROW(ResourceMonitor(nullptr), std::invalid_argument);
  try {
    ResourceMonitorOptions o;
    o.critical = 0.5;
    validate(o);
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("ResourceMonitorOptions.critical"), std::string::npos);
  }
}

TEST(ResourceMonitorTest, EveryLevelUpAndDownWithHysteresis) {
  ManualClock clock;
  auto reader = std::make_shared<FakeReader>();
  ResourceMonitor monitor(reader);
  std::vector<ResourceEvent> events;
  monitor.add_listener([&](const ResourceEvent& e) { events.push_back(e); });

  struct Step {
    uint64_t fds;
    ResourceLevel expect;
  };
  const std::vector<Step> steps = {
      {100, ResourceLevel::normal},    {799, ResourceLevel::normal},
      {800, ResourceLevel::warning},   {899, ResourceLevel::warning},
      {900, ResourceLevel::critical},  {949, ResourceLevel::critical},
      {950, ResourceLevel::exhausted}, {999, ResourceLevel::exhausted},
      {900, ResourceLevel::exhausted},  // hysteresis: exhausted is left below 90 %
      {899, ResourceLevel::critical},  {850, ResourceLevel::critical},
      {849, ResourceLevel::warning},   {750, ResourceLevel::warning},
      {749, ResourceLevel::normal},    {10, ResourceLevel::normal},
  };
  for (const Step& s : steps) {
    reader->fds(s.fds);
    clock.advance(1s);
    EXPECT_EQ(monitor.poll(clock.now()), s.expect) << s.fds;
    EXPECT_EQ(monitor.level(), s.expect);
    EXPECT_EQ(monitor.snapshot().fds.level, s.expect);
  }
  EXPECT_EQ(
      names(events),
      (std::vector<std::string>{
          "fds:normal->warning", "overall:normal->warning", "fds:warning->critical",
          "overall:warning->critical", "fds:critical->exhausted", "overall:critical->exhausted",
          "fds:exhausted->critical", "overall:exhausted->critical", "fds:critical->warning",
          "overall:critical->warning", "fds:warning->normal", "overall:warning->normal"}));
  EXPECT_DOUBLE_EQ(events[0].usage, 0.8);
}

TEST(ResourceMonitorTest, ShedAndRejectFollowTheLevel) {
  ManualClock clock;
  auto reader = std::make_shared<FakeReader>();
  ResourceMonitor monitor(reader);
  reader->fds(100);
  monitor.poll(clock.now());
  EXPECT_FALSE(monitor.shed_optional());
  EXPECT_FALSE(monitor.reject_new());
  reader->fds(850);
  monitor.poll(clock.now());
  EXPECT_FALSE(monitor.shed_optional());
  reader->fds(920);
  monitor.poll(clock.now());
  EXPECT_TRUE(monitor.shed_optional());
  EXPECT_FALSE(monitor.reject_new());
  reader->fds(960);
  monitor.poll(clock.now());
  EXPECT_TRUE(monitor.shed_optional());
  EXPECT_TRUE(monitor.reject_new());
  // Automatic recovery: nothing to reset, the next low reading lowers the level.
  reader->fds(0);
  monitor.poll(clock.now());
  EXPECT_FALSE(monitor.shed_optional());
  EXPECT_FALSE(monitor.reject_new());
  EXPECT_EQ(monitor.level(), ResourceLevel::normal);
}

TEST(ResourceMonitorTest, OverallIsTheWorstResource) {
  ManualClock clock;
  auto reader = std::make_shared<FakeReader>();
  ResourceMonitorOptions o;
  o.memory_limit_bytes = 1000;
  ResourceMonitor monitor(reader, o);
  reader->fds(100);                 // 10 %
  reader->reading.rss_bytes = 910;  // 91 %
  monitor.poll(clock.now());
  auto s = monitor.snapshot();
  EXPECT_EQ(s.fds.level, ResourceLevel::normal);
  EXPECT_EQ(s.memory.level, ResourceLevel::critical);
  EXPECT_EQ(s.overall, ResourceLevel::critical);
  EXPECT_TRUE(s.memory.monitored);
  EXPECT_EQ(s.memory.used, 910u);
  EXPECT_EQ(s.memory.limit, 1000u);
  EXPECT_DOUBLE_EQ(s.memory.usage, 0.91);
  reader->fds(960);
  monitor.poll(clock.now());
  EXPECT_EQ(monitor.level(), ResourceLevel::exhausted);
  reader->fds(100);
  reader->reading.rss_bytes = 100;
  monitor.poll(clock.now());
  EXPECT_EQ(monitor.level(), ResourceLevel::normal);
}

TEST(ResourceMonitorTest, MemoryLimitIsTheSmallerOfConfiguredAndCgroup) {
  ManualClock clock;
  auto reader = std::make_shared<FakeReader>();
  reader->reading.rss_bytes = 500;

  ResourceMonitorOptions configured;
  configured.memory_limit_bytes = 2000;
  {
    ResourceMonitor m(reader, configured);
    reader->reading.memory_limit = std::nullopt;  // cgroup: "max"
    m.poll(clock.now());
    EXPECT_EQ(m.snapshot().memory.limit, 2000u);
    reader->reading.memory_limit = 520;  // container limit below the configured one
    m.poll(clock.now());
    EXPECT_EQ(m.snapshot().memory.limit, 520u);
    EXPECT_EQ(m.level(), ResourceLevel::exhausted);
  }
  {
    ResourceMonitor m(reader);  // nothing configured: cgroup alone
    reader->reading.memory_limit = 1000;
    m.poll(clock.now());
    EXPECT_EQ(m.snapshot().memory.limit, 1000u);
    EXPECT_TRUE(m.snapshot().memory.monitored);
    reader->reading.memory_limit = std::nullopt;  // unlimited: not monitored
    m.poll(clock.now());
    EXPECT_FALSE(m.snapshot().memory.monitored);
    EXPECT_EQ(m.snapshot().memory.level, ResourceLevel::normal);
  }
}

TEST(ResourceMonitorTest, FailedReadingKeepsThePreviousLevel) {
  ManualClock clock;
  auto reader = std::make_shared<FakeReader>();
  ResourceMonitor monitor(reader);
  reader->fds(960);
  monitor.poll(clock.now());
  EXPECT_EQ(monitor.level(), ResourceLevel::exhausted);

  reader->reading.open_fds = std::nullopt;  // /proc unreadable for a moment
  monitor.poll(clock.now());
  EXPECT_EQ(monitor.level(), ResourceLevel::exhausted);
  reader->throw_next = true;
  monitor.poll(clock.now());
  EXPECT_EQ(monitor.level(), ResourceLevel::exhausted);
  auto s = monitor.snapshot();
  EXPECT_EQ(s.read_errors, 2u);
  EXPECT_EQ(s.polls, 3u);
  EXPECT_EQ(s.last_poll, clock.now());

  reader->fds(10);
  monitor.poll(clock.now());
  EXPECT_EQ(monitor.level(), ResourceLevel::normal);
}

TEST(ResourceMonitorTest, UnlimitedFdsAreNotMonitored) {
  ManualClock clock;
  auto reader = std::make_shared<FakeReader>();
  reader->reading.open_fds = 1'000'000;
  reader->reading.fd_limit = std::nullopt;
  ResourceMonitor monitor(reader);
  monitor.poll(clock.now());
  EXPECT_FALSE(monitor.snapshot().fds.monitored);
  EXPECT_EQ(monitor.level(), ResourceLevel::normal);
  EXPECT_EQ(monitor.snapshot().read_errors, 1u);  // rss missing in this fake reading
}

TEST(ResourceMonitorTest, ListenerMayReadTheMonitorAndThrowingOnesAreIgnored) {
  ManualClock clock;
  auto reader = std::make_shared<FakeReader>();
  ResourceMonitor monitor(reader);
  std::vector<ResourceLevel> seen;
  monitor.add_listener([](const ResourceEvent&) { throw std::runtime_error("ignored"); });
  monitor.add_listener([&](const ResourceEvent& e) {
    if (e.resource == "overall") seen.push_back(monitor.level());
  });
  reader->fds(990);
  monitor.poll(clock.now());
  EXPECT_EQ(seen, std::vector<ResourceLevel>{ResourceLevel::exhausted});
}

// The poller thread reads through this; the test changes the reading under the same mutex.
struct LockedReader final : ResourceReader {
  std::mutex mu;
  uint64_t fds = 0;
  ResourceReading read() override {
    std::lock_guard lock(mu);
    ResourceReading r;
    r.open_fds = fds;
    r.fd_limit = 1000;
    return r;
  }
};

TEST(ResourceMonitorTest, BackgroundPollerFollowsTheClock) {
  ManualClock clock;
  auto reader = std::make_shared<LockedReader>();
  reader->fds = 960;
  ResourceMonitorOptions o;
  o.poll_interval = 5s;
  ResourceMonitor monitor(reader, o);
  std::mutex mu;
  std::condition_variable cv;
  std::vector<ResourceLevel> overall;
  monitor.add_listener([&](const ResourceEvent& e) {
    if (e.resource != "overall") return;
    {
      std::lock_guard lock(mu);
      overall.push_back(e.to);
    }
    cv.notify_all();
  });
  monitor.start(clock);
  monitor.start(clock);  // no-op
  {
    std::unique_lock lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, 10s, [&] { return overall.size() == 1; }));  // polls at once
    EXPECT_EQ(overall[0], ResourceLevel::exhausted);
  }
  {
    std::lock_guard lock(reader->mu);
    reader->fds = 10;
  }
  clock.advance(5s);
  monitor.wake();
  {
    std::unique_lock lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, 10s, [&] { return overall.size() == 2; }));
    EXPECT_EQ(overall[1], ResourceLevel::normal);
  }
  monitor.stop();
  EXPECT_EQ(monitor.level(), ResourceLevel::normal);
  const uint64_t polls = monitor.snapshot().polls;
  EXPECT_GE(polls, 2u);
  clock.advance(1h);  // stopped: nothing polls any more
  EXPECT_EQ(monitor.snapshot().polls, polls);
}

TEST(ProcResourceReaderTest, ReadsThisProcess) {
  ProcResourceReader reader;
  const ResourceReading r = reader.read();
  ASSERT_TRUE(r.open_fds.has_value());
  EXPECT_GT(*r.open_fds, 0u);
  ASSERT_TRUE(r.rss_bytes.has_value());
  EXPECT_GT(*r.rss_bytes, 0u);
  if (r.fd_limit) {
    EXPECT_GE(*r.fd_limit, *r.open_fds);
  }

  // Opening a descriptor is visible in the next reading.
  const int fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  const ResourceReading after = reader.read();
  ::close(fd);
  ASSERT_TRUE(after.open_fds.has_value());
  EXPECT_EQ(*after.open_fds, *r.open_fds + 1);
}

class FakeProcTree : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/bulwark_proc_XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    root_ = tmpl;
    std::filesystem::create_directories(root_ / "self" / "fd");
    std::filesystem::create_directories(root_ / "cg" / "a" / "b");
  }
  void TearDown() override { std::filesystem::remove_all(root_); }
  void write(const std::filesystem::path& p, const std::string& text) {
    std::ofstream out(root_ / p);
    out << text;
  }
  ProcResourceReader reader() {
    return ProcResourceReader({(root_ / "self").string(), (root_ / "cg").string()});
  }
  std::filesystem::path root_;
};

TEST_F(FakeProcTree, ParsesStatmFdsAndTheSmallestCgroupLimit) {
  for (const char* n : {"0", "1", "2"}) write(std::filesystem::path("self/fd") / n, "");
  write("self/statm", "1000 25 10 1 0 100 0\n");
  write("self/cgroup", "0::/a/b\n");
  write("cg/a/b/memory.max", "max\n");
  write("cg/a/memory.max", "1048576\n");
  write("cg/memory.max", "4194304\n");
  const ResourceReading r = reader().read();
  EXPECT_EQ(r.open_fds, 3u);
  EXPECT_EQ(r.rss_bytes, 25u * static_cast<uint64_t>(::sysconf(_SC_PAGESIZE)));
  EXPECT_EQ(r.memory_limit, 1048576u);
}

TEST_F(FakeProcTree, MaxEverywhereIsUnlimitedAndMissingFilesAreUnknown) {
  write("self/cgroup", "0::/a/b\n");
  write("cg/a/b/memory.max", "max\n");
  ResourceReading r = reader().read();
  EXPECT_FALSE(r.memory_limit.has_value());
  EXPECT_FALSE(r.rss_bytes.has_value());  // no statm
  EXPECT_EQ(r.open_fds, 0u);

  // A root-level cgroup ("0::/") reads the root's memory.max.
  write("self/cgroup", "0::/\n");
  write("cg/memory.max", "123456\n");
  write("self/statm", "garbage\n");
  r = reader().read();
  EXPECT_EQ(r.memory_limit, 123456u);
  EXPECT_FALSE(r.rss_bytes.has_value());

  // A path that tries to leave the hierarchy is ignored (the root is still read).
  write("self/cgroup", "0::/../../etc\n");
  r = reader().read();
  EXPECT_EQ(r.memory_limit, 123456u);
}

TEST(ResourceStringsTest, Names) {
  EXPECT_EQ(to_string(ResourceLevel::normal), "normal");
  EXPECT_EQ(to_string(ResourceLevel::warning), "warning");
  EXPECT_EQ(to_string(ResourceLevel::critical), "critical");
  EXPECT_EQ(to_string(ResourceLevel::exhausted), "exhausted");
}

}  // namespace
}  // namespace bulwark::observe
