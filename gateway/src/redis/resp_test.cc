#include "redis/resp.h"

#include <gtest/gtest.h>

#include "redis/gcra_script.h"

namespace bulwark::gateway::redis {
namespace {

TEST(Resp, CommandsAreArraysOfBulkStrings) {
  std::string out;
  append_command(out, {"EVALSHA", "abc", "1", "k{x}", ""});
  EXPECT_EQ(out, "*5\r\n$7\r\nEVALSHA\r\n$3\r\nabc\r\n$1\r\n1\r\n$4\r\nk{x}\r\n$0\r\n\r\n");
  append_command(out, {"PING"});
  EXPECT_TRUE(out.ends_with("*1\r\n$4\r\nPING\r\n"));
}

TEST(Resp, RepliesAreReadWholeAcrossFeedsOfAnySize) {
  const std::string stream =
      "+OK\r\n-NOSCRIPT No matching script\r\n:42\r\n$5\r\nhello\r\n$-1\r\n"
      "*4\r\n:1\r\n:9\r\n:100000\r\n:0\r\n";
  for (std::size_t piece = 1; piece <= stream.size(); ++piece) {
    ReplyReader reader;
    std::vector<std::string> seen;
    for (std::size_t at = 0; at < stream.size(); at += piece) {
      ASSERT_TRUE(reader.feed(std::string_view(stream).substr(at, piece)));
      while (const Reply* r = reader.next()) {
        switch (r->kind) {
          case Reply::Kind::status:
            seen.push_back("status:" + r->text);
            break;
          case Reply::Kind::error:
            seen.push_back("error:" + r->text);
            break;
          case Reply::Kind::integer:
            seen.push_back("int:" + std::to_string(r->integer));
            break;
          case Reply::Kind::string:
            seen.push_back("string:" + r->text);
            break;
          case Reply::Kind::nil:
            seen.push_back("nil");
            break;
          case Reply::Kind::array: {
            std::string a = "array:";
            for (std::size_t i = 0; i < r->integer_elements; ++i) {
              a += std::to_string(r->integers[i]) + ",";
            }
            seen.push_back(a);
            break;
          }
        }
      }
    }
    EXPECT_EQ(seen, (std::vector<std::string>{"status:OK", "error:NOSCRIPT No matching script",
                                              "int:42", "string:hello", "nil",
                                              "array:1,9,100000,0,"}))
        << "feeding " << piece << " bytes at a time";
    EXPECT_FALSE(reader.broken());
  }
}

TEST(Resp, AStreamThatIsNotRespBreaksTheReader) {
  ReplyReader reader;
  reader.feed("HTTP/1.1 200 OK\r\n");
  EXPECT_EQ(reader.next(), nullptr);
  EXPECT_TRUE(reader.broken());
  EXPECT_FALSE(reader.feed("+OK\r\n"));
  reader.reset();
  ASSERT_TRUE(reader.feed("+OK\r\n"));
  ASSERT_NE(reader.next(), nullptr);
}

TEST(GcraScript, TheAnswerIsFourNonNegativeIntegers) {
  ReplyReader reader;
  reader.feed("*4\r\n:0\r\n:0\r\n:1500000\r\n:250000\r\n");
  const Reply* r = reader.next();
  ASSERT_NE(r, nullptr);
  GcraAnswer a;
  ASSERT_TRUE(read_gcra_answer(*r, a));
  EXPECT_FALSE(a.allowed);
  EXPECT_EQ(a.remaining, 0u);
  EXPECT_EQ(a.reset, std::chrono::milliseconds(1500));
  EXPECT_EQ(a.retry_after, std::chrono::milliseconds(250));

  for (const char* bad : {"*3\r\n:1\r\n:1\r\n:1\r\n", "*4\r\n:2\r\n:1\r\n:1\r\n:0\r\n",
                          "*4\r\n:1\r\n:-1\r\n:1\r\n:0\r\n", "*4\r\n:1\r\n$1\r\nx\r\n:1\r\n:0\r\n",
                          "-ERR busy\r\n", ":1\r\n"}) {
    ReplyReader other;
    other.feed(bad);
    const Reply* reply = other.next();
    ASSERT_NE(reply, nullptr) << bad;
    EXPECT_FALSE(read_gcra_answer(*reply, a)) << bad;
  }
}

TEST(GcraScript, KeysAreHashTaggedByLimitAndClient) {
  std::string key;
  format_limit_key(key, "bulwark:rl:", "api", "10.0.0.7");
  EXPECT_EQ(key, "bulwark:rl:{api|10.0.0.7}");
  EXPECT_NE(gcra_script().find("redis.call('TIME')"), std::string_view::npos);
}

}  // namespace
}  // namespace bulwark::gateway::redis
