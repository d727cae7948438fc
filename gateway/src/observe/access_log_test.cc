#include "observe/access_log.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace bulwark::gateway::observe {
namespace {

using namespace std::chrono_literals;

std::string format(const AccessRecord& r) {
  std::string out;
  format_access_record(out, r);
  return out;
}

AccessRecord sample_record() {
  AccessRecord r;
  r.start = std::chrono::sys_days(std::chrono::year(2026) / 11 / 23) + 12h + 34min + 56s + 789ms;
  r.request_id = "3f2b9c1e-8a4d-4e7f-9b21-5c6d7e8f9a0b";
  r.client = "127.0.0.1:51234";
  r.method = "GET";
  r.path = "/v1/items";
  r.status = 200;
  r.route = "api";
  r.cluster = "backend";
  r.endpoint = "127.0.0.1:9001";
  r.attempts = 1;
  r.duration = 12345678ns;
  r.bytes_in = 0;
  r.bytes_out = 5120;
  return r;
}

TEST(AccessLogFormat, SampleRecordIsExactJson) {
  EXPECT_EQ(
      format(sample_record()),
      R"({"time":"2026-11-23T12:34:56.789Z","request_id":"3f2b9c1e-8a4d-4e7f-9b21-5c6d7e8f9a0b",)"
      R"("client":"127.0.0.1:51234","method":"GET","path":"/v1/items","status":200,)"
      R"("route":"api","cluster":"backend","endpoint":"127.0.0.1:9001","attempts":1,)"
      R"("duration_ms":12.346,"bytes_in":0,"bytes_out":5120,"reason":""})");
}

TEST(AccessLogFormat, AppendsWithoutClearing) {
  std::string out = "prefix ";
  format_access_record(out, sample_record());
  EXPECT_EQ(out.rfind("prefix {\"time\":", 0), 0u) << out;
  EXPECT_EQ(out.back(), '}');
}

TEST(AccessLogFormat, KeysAreAlwaysPresentInOrder) {
  AccessRecord r;  // refused before routing: everything empty or zero
  r.start = std::chrono::system_clock::time_point{};
  const auto j = nlohmann::ordered_json::parse(format(r));
  std::vector<std::string> keys;
  for (const auto& [key, value] : j.items()) keys.push_back(key);
  EXPECT_EQ(keys, (std::vector<std::string>{"time", "request_id", "client", "method", "path",
                                            "status", "route", "cluster", "endpoint", "attempts",
                                            "duration_ms", "bytes_in", "bytes_out", "reason"}));
  EXPECT_EQ(j["time"], "1970-01-01T00:00:00.000Z");
  EXPECT_EQ(j["status"], 0);
  EXPECT_EQ(j["route"], "");
  EXPECT_EQ(j["endpoint"], "");
  EXPECT_EQ(j["attempts"], 0);
  EXPECT_EQ(j["reason"], "");
}

std::string duration_text(std::chrono::nanoseconds d) {
  AccessRecord r;
  r.duration = d;
  const std::string line = format(r);
  const std::string key = "\"duration_ms\":";
  const auto begin = line.find(key) + key.size();
  return line.substr(begin, line.find(',', begin) - begin);
}

TEST(AccessLogFormat, DurationHasThreeDecimalsRoundedToTheMicrosecond) {
  EXPECT_EQ(duration_text(0ns), "0.000");
  EXPECT_EQ(duration_text(499ns), "0.000");
  EXPECT_EQ(duration_text(500ns), "0.001");
  EXPECT_EQ(duration_text(1ms), "1.000");
  EXPECT_EQ(duration_text(12345ns), "0.012");
  EXPECT_EQ(duration_text(1999999500ns), "2000.000");
  EXPECT_EQ(duration_text(10min), "600000.000");
  EXPECT_EQ(duration_text(-5ms), "0.000");  // a clock step never yields a negative duration
}

TEST(AccessLogFormat, LargeCountersAreExact) {
  AccessRecord r;
  r.bytes_in = UINT64_MAX;
  r.bytes_out = (uint64_t{1} << 53) + 1;
  r.attempts = UINT32_MAX;
  const std::string line = format(r);
  EXPECT_NE(line.find("\"bytes_in\":18446744073709551615,"), std::string::npos) << line;
  EXPECT_NE(line.find("\"bytes_out\":9007199254740993,"), std::string::npos) << line;
  EXPECT_NE(line.find("\"attempts\":4294967295,"), std::string::npos) << line;
}

TEST(AccessLogFormat, HostileStringsStayOneLineOfValidJson) {
  const std::string method = "GE\"T\\";
  const std::string path = std::string("/a\"b\\c\n\r\t\b\f\x01\x1f\x7f") + std::string("\0z", 2) +
                           "\xff\xfe" + "\xc0\xaf" /* overlong '/' */ + "\xe2\x82" /* truncated */ +
                           "caf\xc3\xa9";
  AccessRecord r = sample_record();
  r.method = method;
  r.path = path;
  r.client = "\"},\"injected\":{\"";
  r.reason = "</script>\u2028";
  const std::string line = format(r);
  for (char c : line) {
    ASSERT_GE(static_cast<unsigned char>(c), 0x20) << "raw control character in " << line;
    ASSERT_NE(c, '\x7f') << line;
  }
  const auto j = nlohmann::json::parse(line);  // throws on invalid JSON or invalid UTF-8
  ASSERT_TRUE(j.is_object());
  EXPECT_EQ(j.size(), 14u);  // nothing injected
  EXPECT_EQ(j["method"], method);
  EXPECT_EQ(j["client"], "\"},\"injected\":{\"");
  EXPECT_EQ(j["reason"], "</script>\u2028");
  const std::string parsed_path = j["path"];
  EXPECT_EQ(
      parsed_path.rfind(std::string("/a\"b\\c\n\r\t\b\f\x01\x1f\x7f") + std::string("\0z", 2), 0),
      0u);
  EXPECT_NE(parsed_path.find("\xef\xbf\xbd"), std::string::npos);  // U+FFFD for bad bytes
  EXPECT_NE(parsed_path.find("caf\xc3\xa9"), std::string::npos);   // valid UTF-8 kept
  EXPECT_EQ(parsed_path.find('\xff'), std::string::npos);
  EXPECT_EQ(parsed_path.find('\xc0'), std::string::npos);
}

// A fresh directory per test, removed afterwards.
class AccessLogFile : public testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = testing::TempDir() + "bulwark_access_log_XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr) << std::strerror(errno);
    dir_ = tmpl;
  }
  void TearDown() override {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  std::string path(const char* name) const { return (dir_ / name).string(); }

  static std::vector<std::string> read_lines(const std::string& file) {
    std::ifstream in(file);
    std::vector<std::string> lines;
    for (std::string line; std::getline(in, line);) lines.push_back(line);
    return lines;
  }

  std::filesystem::path dir_;
};

TEST_F(AccessLogFile, WritesEveryLineByCloseFromManyThreads) {
  const std::string file = path("access.log");
  AccessLog log({.path = file});
  ASSERT_TRUE(log.enabled());
  constexpr int kThreads = 4;
  constexpr int kPerThread = 500;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&log, t] {
      for (int i = 0; i < kPerThread; ++i) {
        const std::string id = std::to_string(t) + "-" + std::to_string(i);
        AccessRecord r = sample_record();
        r.request_id = id;
        r.status = 200 + i % 300;
        log.log(r);
      }
    });
  }
  for (auto& th : threads) th.join();
  log.close();
  EXPECT_EQ(log.dropped(), 0u);
  EXPECT_EQ(log.written(), uint64_t{kThreads * kPerThread});

  const auto lines = read_lines(file);
  ASSERT_EQ(lines.size(), std::size_t{kThreads * kPerThread});
  std::set<std::string> ids;
  for (const auto& line : lines) {
    const auto j = nlohmann::json::parse(line);
    EXPECT_EQ(j["path"], "/v1/items");
    ids.insert(j["request_id"].get<std::string>());
  }
  EXPECT_EQ(ids.size(), std::size_t{kThreads * kPerThread});
  EXPECT_TRUE(ids.count("3-499"));
}

TEST_F(AccessLogFile, AppendsToAnExistingFile) {
  const std::string file = path("access.log");
  { std::ofstream(file) << "earlier line\n"; }
  {
    AccessLog log({.path = file});
    log.log(sample_record());
  }  // the destructor writes what is queued
  const auto lines = read_lines(file);
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0], "earlier line");
  EXPECT_EQ(lines[1], format(sample_record()));
}

TEST_F(AccessLogFile, CloseIsIdempotentAndLaterLinesAreDropped) {
  const std::string file = path("access.log");
  AccessLog log({.path = file});
  log.log(sample_record());
  log.close();
  log.close();
  log.log(sample_record());
  log.close();
  EXPECT_EQ(log.written(), 1u);
  EXPECT_EQ(log.dropped(), 1u);
  EXPECT_EQ(read_lines(file).size(), 1u);
}

TEST_F(AccessLogFile, OffWritesNothing) {
  AccessLog log({.path = "off"});
  EXPECT_FALSE(log.enabled());
  for (int i = 0; i < 10; ++i) log.log(sample_record());
  log.close();
  EXPECT_EQ(log.written(), 0u);
  EXPECT_EQ(log.dropped(), 0u);
  EXPECT_FALSE(std::filesystem::exists("off"));
}

TEST_F(AccessLogFile, UnopenableFileThrowsNamingPathAndCause) {
  const std::string file = path("missing-dir/access.log");
  try {
    AccessLog log({.path = file});
    FAIL() << "opened " << file;
  } catch (const std::runtime_error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find(file), std::string::npos) << what;
    EXPECT_NE(what.find(std::strerror(ENOENT)), std::string::npos) << what;
  }
}

// The writer is stalled deterministically: the log goes to a FIFO whose buffer the test has
// filled, so the writer's first write() blocks until the test starts reading. With a queue of
// one line, at most one line is in the blocked write and one waits; every other is dropped.
TEST_F(AccessLogFile, FullQueueDropsAndCountsWhileTheWriterIsStalled) {
  const std::string fifo = path("access.fifo");
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0) << std::strerror(errno);
  const int reader = ::open(fifo.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  ASSERT_GE(reader, 0) << std::strerror(errno);
  const int filler = ::open(fifo.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC);
  ASSERT_GE(filler, 0) << std::strerror(errno);
  std::size_t filled = 0;
  const std::string block(4096, 'f');
  for (std::size_t chunk : {block.size(), std::size_t{1}}) {
    for (;;) {
      const ssize_t n = ::write(filler, block.data(), chunk);
      if (n < 0) {
        ASSERT_EQ(errno, EAGAIN) << std::strerror(errno);
        break;
      }
      filled += static_cast<std::size_t>(n);
    }
  }
  ASSERT_GT(filled, 0u);
  ::close(filler);

  constexpr uint64_t kLines = 200;
  AccessLog log({.path = fifo, .queue_size = 1});
  for (uint64_t i = 0; i < kLines; ++i) log.log(sample_record());
  // Nothing can have been written: the pipe is full and nobody reads yet.
  EXPECT_EQ(log.written(), 0u);
  EXPECT_GE(log.dropped(), kLines - 2);
  EXPECT_LE(log.dropped(), kLines - 1);  // the first line always finds an empty queue

  // Drain the pipe; close() then finishes the stalled write and closes the FIFO (EOF).
  ASSERT_EQ(::fcntl(reader, F_SETFL, 0), 0);
  std::string received;
  std::thread drain([&] {
    char buf[8192];
    for (;;) {
      const ssize_t n = ::read(reader, buf, sizeof buf);
      if (n > 0) {
        received.append(buf, static_cast<std::size_t>(n));
      } else if (n == 0 || errno != EINTR) {
        return;
      }
    }
  });
  log.close();
  drain.join();
  ::close(reader);

  EXPECT_EQ(log.written() + log.dropped(), kLines);
  EXPECT_GE(log.written(), 1u);
  ASSERT_GE(received.size(), filled);
  EXPECT_EQ(received.find_first_not_of('f'), filled);
  std::istringstream rest(received.substr(filled));
  uint64_t lines = 0;
  for (std::string line; std::getline(rest, line); ++lines) {
    EXPECT_EQ(line, format(sample_record()));
  }
  EXPECT_EQ(lines, log.written());
}

}  // namespace
}  // namespace bulwark::gateway::observe
