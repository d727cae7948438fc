#include "http/hygiene.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace bulwark::gateway::http {
namespace {

std::string reason_of(std::string_view target, std::string_view method = "GET",
                      std::size_t max = 2048) {
  return std::string(check_target(target, method, max).verdict.reason);
}

std::string normalized(std::string_view target) {
  const TargetResult r = check_target(target, "GET", 2048);
  EXPECT_FALSE(r.verdict) << target << " refused: " << r.verdict.reason;
  return r.target.path;
}

TEST(Target, DotSegmentsAndSlashesAreNormalised) {
  EXPECT_EQ(normalized("/"), "/");
  EXPECT_EQ(normalized("/a/b"), "/a/b");
  EXPECT_EQ(normalized("/a//b///c"), "/a/b/c");
  EXPECT_EQ(normalized("/a/./b"), "/a/b");
  EXPECT_EQ(normalized("/a/b/../c"), "/a/c");
  EXPECT_EQ(normalized("/a/b/.."), "/a/");
  EXPECT_EQ(normalized("/a/b/."), "/a/b/");
  EXPECT_EQ(normalized("/a/b/"), "/a/b/");
  EXPECT_EQ(normalized("/a/%2e/b"), "/a/b");   // encoded dot is a dot
  EXPECT_EQ(normalized("/a/%2E%2e/b"), "/b");  // and encoded dot-dot resolves
  EXPECT_EQ(normalized("/a/.."), "/");
  EXPECT_EQ(normalized("//"), "/");
  EXPECT_EQ(normalized("/caf%C3%A9/x"), "/caf%C3%A9/x");  // encoding is kept
  EXPECT_EQ(normalized("/a/..b/c"), "/a/..b/c");          // "..b" is a name, not a dot segment
}

TEST(Target, QueryIsKeptAsIs) {
  const TargetResult r = check_target("/a/../b?x=1&y=/../z", "GET", 2048);
  ASSERT_FALSE(r.verdict);
  EXPECT_EQ(r.target.path, "/b");
  EXPECT_TRUE(r.target.has_query);
  EXPECT_EQ(r.target.query, "x=1&y=/../z");
}

TEST(Target, TraversalInEveryEncodingIsRefused) {
  for (const char* t : {
           "/../etc/passwd",
           "/a/../../etc/passwd",
           "/..",
           "/%2e%2e/etc/passwd",
           "/%2E%2E/etc/passwd",
           "/a/%2e%2e%2f%2e%2e%2fetc/passwd",  // encoded slashes inside one segment
           "/a/%2e%2e%2fetc",
           "/a/..%2fb",
           "/%252e%252e%252fetc/passwd",  // double encoding
           "/a%252fb",
           "/a%255cb",
           "/..\\etc\\passwd",  // backslash
           "/a\\b",
           "/a/%5c../b",  // encoded backslash
           "/a/%5C",
           "/%c0%ae%c0%ae/etc/passwd",  // overlong UTF-8 '.'
           "/a%c0%afb",                 // overlong '/'
           "/a%e0%80%aeb",
           "/a%f0%80%80%aeb",
       }) {
    EXPECT_EQ(reason_of(t), "path_traversal") << t;
  }
}

TEST(Target, EncodedNullAndBadEncoding) {
  EXPECT_EQ(reason_of("/a%00b"), "encoded_null");
  EXPECT_EQ(reason_of("/a?x=%00"), "encoded_null");
  EXPECT_EQ(reason_of("/a%252500"), "path_traversal");  // %25 25 00... double-encoded %00
  EXPECT_EQ(reason_of("/a%zz"), "bad_encoding");
  EXPECT_EQ(reason_of("/a%2"), "bad_encoding");
  EXPECT_EQ(reason_of("/a%"), "bad_encoding");
}

TEST(Target, BadCharacters) {
  for (const char* t : {"/a b", "/a\tb", "/a\x01", "/a\x7f", "/a\"b", "/a<b>", "/a{b}", "/a|b",
                        "/a`b", "/a^b", "/caf\xc3\xa9"}) {
    EXPECT_EQ(reason_of(t), "bad_characters") << t;
  }
}

TEST(Target, Forms) {
  EXPECT_EQ(reason_of("a/b"), "bad_request_target");
  EXPECT_EQ(reason_of(""), "bad_request_target");
  EXPECT_EQ(reason_of("*", "GET"), "bad_request_target");
  const TargetResult star = check_target("*", "OPTIONS", 2048);
  EXPECT_FALSE(star.verdict);
  EXPECT_TRUE(star.target.asterisk);
  const TargetResult abs = check_target("http://example.com:8080/a/./b?q", "GET", 2048);
  ASSERT_FALSE(abs.verdict);
  EXPECT_EQ(abs.target.authority, "example.com:8080");
  EXPECT_EQ(abs.target.path, "/a/b");
  EXPECT_EQ(abs.target.query, "q");
  const TargetResult bare = check_target("HTTP://example.com", "GET", 2048);
  ASSERT_FALSE(bare.verdict);
  EXPECT_EQ(bare.target.path, "/");
  EXPECT_EQ(reason_of("http:///a"), "bad_request_target");
  EXPECT_EQ(reason_of("http://x/../a"), "path_traversal");
}

TEST(Target, TooLong) {
  const std::string t = "/" + std::string(2048, 'a');
  EXPECT_EQ(reason_of(t, "GET", 2048), "uri_too_long");
  EXPECT_EQ(check_target(t, "GET", 2048).verdict.status, 414);
  EXPECT_EQ(reason_of(t.substr(0, 2048), "GET", 2048), "");
}

std::string header_reason(std::vector<HeaderField> fields, int minor = 1, HeaderLimits limits = {},
                          Framing* framing = nullptr) {
  return std::string(check_headers(fields, minor, limits, framing).reason);
}

TEST(Headers, HostRules) {
  EXPECT_EQ(header_reason({{"Host", "example.com"}}), "");
  EXPECT_EQ(header_reason({{"host", "[::1]:8080"}}), "");
  EXPECT_EQ(header_reason({}), "missing_host");
  EXPECT_EQ(header_reason({}, 0), "");  // HTTP/1.0 may omit Host
  EXPECT_EQ(header_reason({{"Host", "a"}, {"HOST", "b"}}), "duplicate_host");
  EXPECT_EQ(header_reason({{"Host", ""}}), "bad_host");
  EXPECT_EQ(header_reason({{"Host", "a b"}}), "bad_host");
  EXPECT_EQ(header_reason({{"Host", "evil.com/x"}}), "bad_host");
  EXPECT_EQ(header_reason({{"Host", "user@evil.com"}}), "bad_host");
  EXPECT_EQ(header_reason({{"Host", "example.com:8080"}}), "");
  EXPECT_EQ(header_reason({{"Host", "example.com:http"}}), "bad_host");
  EXPECT_EQ(header_reason({{"Host", "example.com:65536"}}), "bad_host");
  EXPECT_EQ(header_reason({{"Host", "example.com:"}}), "bad_host");
  EXPECT_EQ(header_reason({{"Host", ":80"}}), "bad_host");
  EXPECT_EQ(header_reason({{"Host", "[::1"}}), "bad_host");
  EXPECT_EQ(header_reason({{"Host", "[::1]x"}}), "bad_host");
  EXPECT_EQ(header_reason({{"Host", "a\"b"}}), "bad_host");
}

TEST(Headers, NamesAndValues) {
  EXPECT_EQ(header_reason({{"Host", "h"}, {"X Bad", "v"}}), "bad_header_name");
  EXPECT_EQ(header_reason({{"Host", "h"}, {"", "v"}}), "bad_header_name");
  EXPECT_EQ(header_reason({{"Host", "h"}, {"X-A:", "v"}}), "bad_header_name");
  EXPECT_EQ(header_reason({{"Host", "h"}, {"X-A", std::string_view("a\0b", 3)}}),
            "bad_header_value");
  EXPECT_EQ(header_reason({{"Host", "h"}, {"X-A", "a\rb"}}), "bad_header_value");
  EXPECT_EQ(header_reason({{"Host", "h"}, {"X-A", "a\nb"}}), "bad_header_value");
  EXPECT_EQ(header_reason({{"Host", "h"}, {"X-A", "a\x1b"}}), "bad_header_value");
  EXPECT_EQ(header_reason({{"Host", "h"}, {"X-A", "a\tb"}}), "");  // HTAB is allowed
}

TEST(Headers, ContentLengthAndTransferEncoding) {
  Framing f;
  EXPECT_EQ(header_reason({{"Host", "h"}, {"Content-Length", "42"}}, 1, {}, &f), "");
  EXPECT_EQ(f.content_length, 42u);
  EXPECT_FALSE(f.chunked);
  EXPECT_EQ(header_reason({{"Host", "h"}, {"Transfer-Encoding", "chunked"}}, 1, {}, &f), "");
  EXPECT_TRUE(f.chunked);
  EXPECT_EQ(header_reason({{"Host", "h"}, {"Transfer-Encoding", "gzip, chunked"}}), "");
  EXPECT_EQ(
      header_reason({{"Host", "h"}, {"Content-Length", "1"}, {"Transfer-Encoding", "chunked"}}),
      "smuggling");
  EXPECT_EQ(header_reason({{"Host", "h"}, {"Content-Length", "1"}, {"Content-Length", "1"}}),
            "duplicate_content_length");
  EXPECT_EQ(header_reason({{"Host", "h"}, {"Content-Length", "1, 1"}}), "duplicate_content_length");
  EXPECT_EQ(header_reason({{"Host", "h"}, {"Content-Length", "1, 2"}}), "bad_content_length");
  EXPECT_EQ(header_reason({{"Host", "h"}, {"Content-Length", "-1"}}), "bad_content_length");
  EXPECT_EQ(header_reason({{"Host", "h"}, {"Content-Length", "0x10"}}), "bad_content_length");
  EXPECT_EQ(header_reason({{"Host", "h"}, {"Content-Length", "+5"}}), "bad_content_length");
  EXPECT_EQ(header_reason({{"Host", "h"}, {"Content-Length", ""}}), "bad_content_length");
  EXPECT_EQ(header_reason({{"Host", "h"}, {"Content-Length", "99999999999999999999"}}),
            "bad_content_length");
  EXPECT_EQ(header_reason({{"Host", "h"}, {"Transfer-Encoding", "gzip"}}), "bad_transfer_encoding");
  EXPECT_EQ(header_reason({{"Host", "h"}, {"Transfer-Encoding", "chunked, gzip"}}),
            "bad_transfer_encoding");
  EXPECT_EQ(
      header_reason(
          {{"Host", "h"}, {"Transfer-Encoding", "chunked"}, {"Transfer-Encoding", "chunked"}}),
      "bad_transfer_encoding");
  EXPECT_EQ(header_reason({{"Host", "h"}, {"Transfer-Encoding", "chunked"}}, 0),
            "bad_transfer_encoding");
  EXPECT_EQ(header_reason({{"Host", "h"}, {"Transfer-Encoding", ""}}), "bad_transfer_encoding");
  EXPECT_EQ(header_reason({{"Host", "h"}, {"Transfer-Encoding", "\"chunked\""}}),
            "bad_transfer_encoding");
}

TEST(Headers, Limits) {
  std::vector<HeaderField> many(101, HeaderField{"X-A", "1"});
  many[0] = {"Host", "h"};
  EXPECT_EQ(header_reason(many), "too_many_headers");
  EXPECT_EQ(check_headers(many, 1, {}, nullptr).status, 431);
  many.resize(100);
  EXPECT_EQ(header_reason(many), "");
  const std::string big(9000, 'x');
  EXPECT_EQ(header_reason({{"Host", "h"}, {"X-Big", big}}), "headers_too_large");
}

TEST(RawHeaders, FoldingAndBareLineEnds) {
  EXPECT_EQ(check_raw_header_block("Host: a\r\nX: b\r\n").reason, "");
  EXPECT_EQ(check_raw_header_block("Host: a\r\nX: b\r\n c\r\n").reason, "obs_fold");
  EXPECT_EQ(check_raw_header_block("Host: a\r\nX: b\r\n\tc\r\n").reason, "obs_fold");
  EXPECT_EQ(check_raw_header_block(" Host: a\r\n").reason, "obs_fold");
  EXPECT_EQ(check_raw_header_block("Host: a\nX: b\r\n").reason, "bad_header_value");
  EXPECT_EQ(check_raw_header_block("Host: a\rX: b\r\n").reason, "bad_header_value");
  EXPECT_EQ(check_raw_header_block(std::string_view("Host: a\0\r\n", 10)).reason,
            "bad_header_value");
}

TEST(Token, Rules) {
  EXPECT_TRUE(is_token("GET"));
  EXPECT_TRUE(is_token("X-Custom_Header.1~"));
  EXPECT_FALSE(is_token(""));
  EXPECT_FALSE(is_token("a b"));
  EXPECT_FALSE(is_token("a:b"));
  EXPECT_FALSE(is_token("a\"b"));
}

}  // namespace
}  // namespace bulwark::gateway::http

namespace bulwark::gateway::http {
namespace {

std::string_view head_reason(std::string_view head) {
  return check_request_head(head, HeaderLimits{}, 2048).reason;
}

TEST(Headers, ConnectionMayNotNameFramingFields) {
  EXPECT_EQ(header_reason({{"Host", "h"}, {"Connection", "keep-alive, Content-Length"}}),
            "smuggling");
  EXPECT_EQ(header_reason({{"Host", "h"}, {"Connection", "transfer-encoding"}}), "smuggling");
  EXPECT_EQ(header_reason({{"Host", "h"}, {"Connection", "close, HOST"}}), "smuggling");
  EXPECT_EQ(header_reason({{"Host", "h"}, {"Connection", "keep-alive, x-custom"}}), "");
}

TEST(RequestHead, NamesThePreciseRuleOnARawHead) {
  EXPECT_EQ(head_reason("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n"
                        "Transfer-Encoding: chunked\r\n\r\n"),
            "smuggling");
  EXPECT_EQ(head_reason("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 4\r\n\r\n"),
            "bad_content_length");
  EXPECT_EQ(head_reason("GET /a/../../b HTTP/1.1\r\nHost: a\r\n\r\n"), "path_traversal");
  EXPECT_EQ(head_reason("GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n 2\r\n\r\n"), "obs_fold");
  EXPECT_EQ(head_reason("GET / HTTP/1.1\r\nBad Name: a\r\nHost: a\r\n\r\n"), "bad_header_name");
  EXPECT_EQ(head_reason("GET / HTTP/1.1\r\n\r\n"), "missing_host");
  EXPECT_EQ(head_reason("GET / HTTP/1.0\r\n\r\n"), "");  // HTTP/1.0 needs no Host
  EXPECT_EQ(head_reason("GARBAGE\r\n\r\n"), "");  // no rule of ours: the caller says malformed
  EXPECT_EQ(head_reason("GET / HTTP/9.9\r\nHost: a\r\n\r\n"), "");
  EXPECT_EQ(head_reason("GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n"), "bad_header_name");
  EXPECT_EQ(head_reason("GET / HTTP/1.1\r\nHost: a\r\n\r\n"), "");
}

}  // namespace
}  // namespace bulwark::gateway::http
