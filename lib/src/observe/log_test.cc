#include "bulwark/observe/log.h"

#include <gtest/gtest.h>
#include <spdlog/sinks/base_sink.h>
#include <spdlog/sinks/ostream_sink.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <mutex>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace bulwark::observe {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) out.push_back(line);
  return out;
}

std::vector<json> parse_lines(const std::string& text) {
  std::vector<json> out;
  for (const std::string& line : lines_of(text)) out.push_back(json::parse(line));
  return out;
}

struct StreamLogs {
  std::ostringstream out;
  std::shared_ptr<spdlog::sinks::ostream_sink_mt> sink =
      std::make_shared<spdlog::sinks::ostream_sink_mt>(out);
};

LogOptions sync_options(LogLevel level = LogLevel::info) {
  LogOptions o;
  o.async = false;
  o.level = level;
  return o;
}

TEST(LogFormatTest, LineIsJsonWithTimeLevelComponentMessageAndFields) {
  StreamLogs s;
  LogSystem logs({s.sink}, sync_options());
  Logger log = logs.logger("proxy");
  EXPECT_EQ(log.component(), "proxy");
  log.warn("upstream reset", {{"cluster", "backend"},
                              {"attempt", 2},
                              {"latency_ms", 12.5},
                              {"retried", true},
                              {"bytes", uint64_t{18'446'744'073'709'551'615u}},
                              {"delta", int64_t{-5}},
                              {"note", nullptr},
                              {"owner", std::string("team-a")},
                              {"view", std::string_view("v")}});
  const std::string text = s.out.str();
  ASSERT_EQ(lines_of(text).size(), 1u) << text;
  ASSERT_EQ(text.back(), '\n');
  const json j = json::parse(lines_of(text)[0]);
  EXPECT_EQ(j["level"], "warning");
  EXPECT_EQ(j["component"], "proxy");
  EXPECT_EQ(j["msg"], "upstream reset");
  EXPECT_EQ(j["cluster"], "backend");
  EXPECT_EQ(j["attempt"], 2);
  EXPECT_DOUBLE_EQ(j["latency_ms"].get<double>(), 12.5);
  EXPECT_EQ(j["retried"], true);
  EXPECT_EQ(j["bytes"].get<uint64_t>(), std::numeric_limits<uint64_t>::max());
  EXPECT_EQ(j["delta"], -5);
  EXPECT_TRUE(j["note"].is_null());
  EXPECT_EQ(j["owner"], "team-a");
  EXPECT_EQ(j["view"], "v");
  const std::string ts = j["time"];
  EXPECT_TRUE(std::regex_match(ts, std::regex(R"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z)")))
      << ts;
  // The envelope keys come first, in a fixed order.
  EXPECT_EQ(lines_of(text)[0].rfind("{\"time\":\"", 0), 0u);
  EXPECT_NE(lines_of(text)[0].find("\",\"level\":\"warning\",\"component\":\"proxy\",\"msg\":"),
            std::string::npos);
}

TEST(LogFormatTest, Rfc3339UtcWithMilliseconds) {
  using namespace std::chrono;
  std::string out;
  append_rfc3339_utc(out, sys_days{year{2024} / May / 1} + 12h + 34min + 56s + 789ms);
  EXPECT_EQ(out, "2024-05-01T12:34:56.789Z");
  out.clear();
  append_rfc3339_utc(out, system_clock::time_point{});
  EXPECT_EQ(out, "1970-01-01T00:00:00.000Z");
  out.clear();
  append_rfc3339_utc(out, sys_days{year{1999} / December / 31} + 23h + 59min + 59s + 999ms + 999us);
  EXPECT_EQ(out, "1999-12-31T23:59:59.999Z");  // truncated, never rounded into the next second
}

TEST(LogFormatTest, QuotesNewlinesAndControlCharactersAreEscaped) {
  StreamLogs s;
  LogSystem logs({s.sink}, sync_options());
  const std::string nasty = std::string("say \"hi\"\\ line1\nline2\r\t\b\f end") + '\x01' + '\x1f' +
                            '\x7f' + std::string(1, '\0') + "!";
  logs.logger("c").info(nasty, {{"k\"ey\n", nasty}});
  const std::string text = s.out.str();
  ASSERT_EQ(lines_of(text).size(), 1u) << "a raw newline leaked into the line: " << text;
  for (char c : text.substr(0, text.size() - 1)) {
    EXPECT_GE(static_cast<unsigned char>(c), 0x20) << "raw control character in output";
  }
  EXPECT_NE(text.find(R"(say \"hi\"\\ line1\nline2\r\t\b\f end\u0001\u001f\u007f\u0000!)"),
            std::string::npos)
      << text;
  const json j = json::parse(lines_of(text)[0]);
  EXPECT_EQ(j["msg"], nasty);
  EXPECT_EQ(j["k\"ey\n"], nasty);
}

TEST(LogFormatTest, Utf8IsKeptAndInvalidBytesAreReplaced) {
  std::string out;
  append_json_string(out, "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");  // é € 😀
  EXPECT_EQ(out, "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"");
  EXPECT_EQ(json::parse(out).get<std::string>(), "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");

  struct Case {
    std::string in;
    std::string expect;
  };
  const std::vector<Case> bad = {
      {"a\xff"
       "b",
       "\"a\\ufffdb\""},                                         // never valid
      {"\xc0\xaf", "\"\\ufffd\\ufffd\""},                        // overlong '/'
      {"\xe0\x80\xaf", "\"\\ufffd\\ufffd\\ufffd\""},             // overlong
      {"\xed\xa0\x80", "\"\\ufffd\\ufffd\\ufffd\""},             // UTF-16 surrogate
      {"\xf4\x90\x80\x80", "\"\\ufffd\\ufffd\\ufffd\\ufffd\""},  // above U+10FFFF
      {"\xe2\x82", "\"\\ufffd\\ufffd\""},                        // truncated
      {"\x80", "\"\\ufffd\""},                                   // lone continuation byte
  };
  for (const Case& c : bad) {
    out.clear();
    append_json_string(out, c.in);
    EXPECT_EQ(out, c.expect);
    EXPECT_TRUE(json::accept(out)) << out;
  }
}

TEST(LogFormatTest, ReservedKeysAndNonFiniteNumbers) {
  StreamLogs s;
  LogSystem logs({s.sink}, sync_options());
  logs.logger("c").info("m", {{"msg", "field"},
                              {"time", 1},
                              {"level", "x"},
                              {"component", "y"},
                              {"nan", std::numeric_limits<double>::quiet_NaN()},
                              {"inf", -std::numeric_limits<double>::infinity()},
                              {"f", 0.1f},
                              {"nullstr", static_cast<const char*>(nullptr)}});
  const json j = json::parse(lines_of(s.out.str())[0]);
  EXPECT_EQ(j["msg"], "m");
  EXPECT_EQ(j["_msg"], "field");
  EXPECT_EQ(j["_time"], 1);
  EXPECT_EQ(j["_level"], "x");
  EXPECT_EQ(j["_component"], "y");
  EXPECT_EQ(j["component"], "c");
  EXPECT_TRUE(j["nan"].is_null());
  EXPECT_TRUE(j["inf"].is_null());
  EXPECT_NEAR(j["f"].get<double>(), 0.1, 1e-6);
  EXPECT_TRUE(j["nullstr"].is_null());
}

TEST(LogFormatTest, PlainSpdlogMessagesAreWrappedAndEscaped) {
  StreamLogs s;
  LogSystem logs({s.sink}, sync_options());
  Logger log = logs.logger("raw");
  log.spdlog_logger()->info("value {} \"quoted\"\n", 7);
  const json j = json::parse(lines_of(s.out.str())[0]);
  EXPECT_EQ(j["msg"], "value 7 \"quoted\"\n");
  EXPECT_EQ(j["component"], "raw");
  EXPECT_EQ(j["level"], "info");
}

TEST(LogLevelTest, FilteringAndRuntimeChanges) {
  StreamLogs s;
  LogSystem logs({s.sink}, sync_options(LogLevel::warn));
  Logger a = logs.logger("a");
  Logger b = logs.logger("b");
  EXPECT_FALSE(a.enabled(LogLevel::info));
  EXPECT_TRUE(a.enabled(LogLevel::warn));
  a.info("dropped");
  a.debug("dropped");
  a.error("kept 1");
  b.critical("kept 2");

  logs.set_level(LogLevel::debug);  // every component, at run time
  EXPECT_EQ(logs.level(), LogLevel::debug);
  a.debug("kept 3");
  a.trace("dropped");
  b.info("kept 4");

  logs.set_level("b", LogLevel::err);  // one component
  EXPECT_EQ(logs.level("b"), LogLevel::err);
  EXPECT_EQ(logs.level("a"), LogLevel::debug);
  b.warn("dropped");
  a.info("kept 5");
  logs.set_level(LogLevel::info);  // b keeps its override
  b.warn("dropped");
  logs.clear_level("b");
  b.warn("kept 6");

  // A component created later starts at the current level, and honours an override set before
  // it existed.
  logs.set_level("later", LogLevel::trace);
  logs.logger("later").trace("kept 7");
  logs.logger("other").debug("dropped");

  std::vector<std::string> msgs;
  for (const json& j : parse_lines(s.out.str())) msgs.push_back(j["msg"]);
  EXPECT_EQ(msgs, (std::vector<std::string>{"kept 1", "kept 2", "kept 3", "kept 4", "kept 5",
                                            "kept 6", "kept 7"}));
  const auto lines = parse_lines(s.out.str());
  EXPECT_EQ(lines[0]["level"], "error");
  EXPECT_EQ(lines[1]["level"], "critical");
  EXPECT_EQ(lines[2]["level"], "debug");
  EXPECT_EQ(lines[6]["level"], "trace");
}

TEST(LogLevelTest, ParseAndNames) {
  EXPECT_EQ(parse_log_level("trace"), LogLevel::trace);
  EXPECT_EQ(parse_log_level("DEBUG"), LogLevel::debug);
  EXPECT_EQ(parse_log_level(" info "), LogLevel::info);
  EXPECT_EQ(parse_log_level("warn"), LogLevel::warn);
  EXPECT_EQ(parse_log_level("warning"), LogLevel::warn);
  EXPECT_EQ(parse_log_level("error"), LogLevel::err);
  EXPECT_EQ(parse_log_level("critical"), LogLevel::critical);
  EXPECT_EQ(parse_log_level("off"), LogLevel::off);
  for (const char* bad : {"", "verbose", "inf", "fatal", "warnings"}) {
    EXPECT_THROW(parse_log_level(bad), std::invalid_argument) << bad;
  }
  for (LogLevel l : {LogLevel::trace, LogLevel::debug, LogLevel::info, LogLevel::warn,
                     LogLevel::err, LogLevel::critical, LogLevel::off}) {
    EXPECT_EQ(parse_log_level(to_string(l)), l);
  }
}

TEST(LogSystemTest, SameComponentSameLoggerAndInvalidConstruction) {
  StreamLogs s;
  LogSystem logs({s.sink}, sync_options());
  EXPECT_EQ(logs.logger("x").spdlog_logger(), logs.logger("x").spdlog_logger());
  EXPECT_NE(logs.logger("x").spdlog_logger(), logs.logger("y").spdlog_logger());
  EXPECT_THROW(LogSystem({}, sync_options()), std::invalid_argument);
  EXPECT_THROW(LogSystem({nullptr}, sync_options()), std::invalid_argument);
  LogOptions zero;
  zero.queue_size = 0;
  EXPECT_THROW(LogSystem({s.sink}, zero), std::invalid_argument);
  Logger none;
  EXPECT_FALSE(none.enabled(LogLevel::critical));
  none.critical("goes nowhere");  // must not crash
  EXPECT_EQ(none.component(), "");
}

TEST(LogAsyncTest, CloseWritesEverythingQueuedInOrder) {
  StreamLogs s;
  LogOptions o;  // async, drop_oldest, 8192
  LogSystem logs({s.sink}, o);
  Logger log = logs.logger("async");
  for (int i = 0; i < 1000; ++i) log.info("m", {{"i", i}});
  logs.close();
  const auto lines = parse_lines(s.out.str());
  ASSERT_EQ(lines.size(), 1000u);
  for (int i = 0; i < 1000; ++i) EXPECT_EQ(lines[i]["i"], i);
  EXPECT_EQ(logs.dropped(), 0u);

  // After close: handles and new loggers drop silently.
  log.error("after close");
  logs.logger("new").error("after close");
  logs.close();  // idempotent
  EXPECT_EQ(lines_of(s.out.str()).size(), 1000u);
}

// A sink that holds the async worker inside its first write until the test opens the gate.
class GateSink final : public spdlog::sinks::base_sink<std::mutex> {
 public:
  void wait_entered() {
    std::unique_lock lock(m_);
    ASSERT_TRUE(cv_.wait_for(lock, 10s, [&] { return entered_; }));
  }
  void open() {
    {
      std::lock_guard lock(m_);
      open_ = true;
    }
    cv_.notify_all();
  }
  std::vector<json> lines() {
    std::lock_guard lock(m_);
    std::vector<json> out;
    for (const auto& l : lines_) out.push_back(json::parse(l));
    return out;
  }

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    spdlog::memory_buf_t buf;
    formatter_->format(msg, buf);
    std::unique_lock lock(m_);
    entered_ = true;
    cv_.notify_all();
    cv_.wait(lock, [&] { return open_; });
    lines_.emplace_back(buf.data(), buf.size());
  }
  void flush_() override {}

 private:
  std::mutex m_;
  std::condition_variable cv_;
  bool entered_ = false;
  bool open_ = false;
  std::vector<std::string> lines_;
};

TEST(LogAsyncTest, FullQueueDropsTheOldestAndCountsThem) {
  auto sink = std::make_shared<GateSink>();
  LogOptions o;
  o.queue_size = 2;
  o.overflow = OverflowPolicy::drop_oldest;
  LogSystem logs({sink}, o);
  Logger log = logs.logger("q");
  log.info("m", {{"i", 0}});
  sink->wait_entered();  // the worker holds message 0; the queue is empty
  for (int i = 1; i <= 9; ++i) log.info("m", {{"i", i}});  // never blocks
  EXPECT_EQ(logs.dropped(), 7u);
  sink->open();
  logs.close();
  std::vector<int> got;
  for (const json& j : sink->lines()) got.push_back(j["i"]);
  EXPECT_EQ(got, (std::vector<int>{0, 8, 9}));  // 1..7 were the oldest when the queue overflowed
  EXPECT_EQ(logs.dropped(), 7u);
}

TEST(LogAsyncTest, BlockPolicyLosesNothingUnderConcurrentLoad) {
  StreamLogs s;
  LogOptions o;
  o.queue_size = 4;
  o.overflow = OverflowPolicy::block;
  LogSystem logs({s.sink}, o);
  constexpr int kThreads = 4;
  constexpr int kPerThread = 500;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      Logger log = logs.logger("worker");
      for (int i = 0; i < kPerThread; ++i) log.info("m", {{"t", t}, {"i", i}});
    });
  }
  // Runtime level changes race with the writers; they must be safe (TSan) and not lose lines
  // at levels that stay enabled.
  logs.set_level(LogLevel::debug);
  logs.set_level("worker", LogLevel::info);
  for (auto& th : threads) th.join();
  logs.close();
  const auto lines = parse_lines(s.out.str());
  ASSERT_EQ(lines.size(), static_cast<std::size_t>(kThreads * kPerThread));
  std::vector<int> next(kThreads, 0);
  for (const json& j : lines) {
    const int t = j["t"];
    EXPECT_EQ(j["i"], next[t]) << "per-thread order must be kept";
    ++next[t];
  }
  EXPECT_EQ(logs.dropped(), 0u);
}

TEST(LogSinkTest, FileSinkAppendsJsonLines) {
  char tmpl[] = "/tmp/bulwark_log_XXXXXX";
  const int fd = ::mkstemp(tmpl);
  ASSERT_GE(fd, 0);
  ::close(fd);
  const std::string path = tmpl;
  {
    std::ofstream pre(path);
    pre << "{\"existing\":true}\n";
  }
  {
    LogSystem logs({make_file_sink(path)});
    logs.logger("file").info("hello", {{"n", 1}});
  }  // destructor closes and flushes
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  std::filesystem::remove(path);
  const auto lines = parse_lines(ss.str());
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0]["existing"], true);  // appended, not truncated
  EXPECT_EQ(lines[1]["msg"], "hello");
  EXPECT_EQ(lines[1]["n"], 1);
  EXPECT_NE(make_stdout_sink(), nullptr);
  EXPECT_NE(make_stderr_sink(), nullptr);
}

}  // namespace
}  // namespace bulwark::observe
