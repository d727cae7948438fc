#include "http/head_writer.h"

#include <gtest/gtest.h>

#include <vector>

#include "filter/reasons.h"

namespace bulwark::gateway::http {
namespace {

TEST(LocalReply, HeadAndJsonBodyWithAnExactLength) {
  std::string out;
  filter::LocalReply reply = filter::refuse(503, reason::kConcurrencyLimit);
  write_local_reply(out, reply, "abc-1", /*keep_alive=*/false, /*head_only=*/false);
  const std::string body =
      R"({"error":"Service Unavailable","reason":"concurrency_limit","request_id":"abc-1"})";
  EXPECT_EQ(out, "HTTP/1.1 503 Service Unavailable\r\nServer: bulwark\r\n"
                 "Content-Type: application/json\r\nx-bulwark-reason: concurrency_limit\r\n"
                 "x-request-id: abc-1\r\nRetry-After: 1\r\nConnection: close\r\n"
                 "Content-Length: " +
                     std::to_string(body.size()) + "\r\n\r\n" + body);
}

TEST(LocalReply, HeadRequestsGetTheLengthWithoutTheBody) {
  std::string out;
  filter::LocalReply reply = filter::refuse(405, reason::kMethodNotAllowed);
  reply.add_header("Allow", "GET, HEAD");
  write_local_reply(out, reply, "id", true, /*head_only=*/true);
  EXPECT_NE(out.find("Allow: GET, HEAD\r\n"), std::string::npos);
  EXPECT_EQ(out.find("Retry-After"), std::string::npos);
  EXPECT_EQ(out.find("Connection"), std::string::npos);
  EXPECT_TRUE(out.ends_with("\r\n\r\n"));
}

TEST(RequestHead, HopByHopOutForwardingIn) {
  const std::vector<HeaderField> fields{{"Host", "a.test"},
                                        {"Connection", "keep-alive, X-Secret"},
                                        {"X-Secret", "1"},
                                        {"Keep-Alive", "timeout=5"},
                                        {"X-Forwarded-For", "10.0.0.1"},
                                        {"x-request-id", "old"},
                                        {"Expect", "100-continue"},
                                        {"Accept", "*/*"}};
  UpstreamRequestHead head;
  head.method = "GET";
  head.path = "/a";
  head.query = "q=1";
  head.has_query = true;
  head.fields = fields;
  head.client_ip = "127.0.0.1";
  head.request_id = "new";
  std::string out;
  std::vector<std::string_view> tokens;
  append_request_head(out, head, tokens);
  EXPECT_EQ(out, "GET /a?q=1 HTTP/1.1\r\nHost: a.test\r\nAccept: */*\r\n"
                 "x-forwarded-for: 10.0.0.1, 127.0.0.1\r\nx-forwarded-proto: http\r\n"
                 "x-request-id: new\r\n\r\n");
}

TEST(RequestHead, FiltersAddLinesAndRemoveTheClientsByName) {
  const std::vector<HeaderField> fields{{"Host", "a.test"},
                                        {"Authorization", "Bearer secret"},
                                        {"X-User-Id", "forged"},
                                        {"Accept", "*/*"}};
  const std::vector<HeaderField> added{{"X-User-Id", "alice"}};
  const std::vector<std::string_view> removed{"Authorization", "x-user-id"};
  UpstreamRequestHead head;
  head.method = "GET";
  head.path = "/";
  head.fields = fields;
  head.client_ip = "127.0.0.1";
  head.request_id = "id";
  head.forwarded_proto = "https";
  head.added = added;
  head.removed = removed;
  std::string out;
  std::vector<std::string_view> tokens;
  append_request_head(out, head, tokens);
  EXPECT_EQ(out, "GET / HTTP/1.1\r\nHost: a.test\r\nAccept: */*\r\n"
                 "x-forwarded-for: 127.0.0.1\r\nx-forwarded-proto: https\r\n"
                 "x-request-id: id\r\nX-User-Id: alice\r\n\r\n");
}

TEST(RequestHead, AuthorityReplacesHostAndHttp10GetsOne) {
  const std::vector<HeaderField> fields{{"Host", "ignored.test"}};
  UpstreamRequestHead head;
  head.method = "GET";
  head.path = "/";
  head.fields = fields;
  head.authority = "abs.test:8080";
  head.request_id = "id";
  std::string out;
  std::vector<std::string_view> tokens;
  append_request_head(out, head, tokens);
  EXPECT_NE(out.find("Host: abs.test:8080\r\n"), std::string::npos);
  EXPECT_EQ(out.find("ignored.test"), std::string::npos);

  head.fields = {};
  head.authority = {};
  head.default_host = "127.0.0.1:9001";
  out.clear();
  append_request_head(out, head, tokens);
  EXPECT_NE(out.find("Host: 127.0.0.1:9001\r\n"), std::string::npos);
}

TEST(ResponseFraming, EveryCase) {
  ResponseFacts f;
  f.status = 200;
  f.has_content_length = true;
  auto r = decide_response_framing(f);
  EXPECT_FALSE(r.chunk_out || r.unchunk || r.close_after || r.no_body);
  EXPECT_TRUE(r.reusable);

  f = {.status = 200};  // close-delimited
  r = decide_response_framing(f);
  EXPECT_TRUE(r.chunk_out);
  EXPECT_FALSE(r.reusable);
  f.client_version = 10;
  r = decide_response_framing(f);
  EXPECT_FALSE(r.chunk_out);
  EXPECT_TRUE(r.close_after);

  f = {.status = 200, .upstream_chunked = true, .client_version = 10};
  r = decide_response_framing(f);
  EXPECT_TRUE(r.unchunk);
  EXPECT_TRUE(r.close_after);

  f = {.status = 204, .upstream_chunked = true, .client_version = 10};
  r = decide_response_framing(f);
  EXPECT_TRUE(r.no_body);
  EXPECT_TRUE(r.drop_te);

  f = {.status = 200, .head_request = true, .has_content_length = true,
       .client_keep_alive = false};
  r = decide_response_framing(f);
  EXPECT_TRUE(r.no_body);
  EXPECT_TRUE(r.close_after);
}

TEST(ResponseHead, ReframedForTheClient) {
  const std::vector<HeaderField> fields{{"Content-Type", "text/plain"},
                                        {"Transfer-Encoding", "chunked"},
                                        {"Connection", "close"},
                                        {"Keep-Alive", "x"}};
  ClientResponseHead head;
  head.status = 200;
  head.reason = "";
  head.version = 10;
  head.fields = fields;
  head.request_id = "rid";
  head.framing = decide_response_framing(
      {.status = 200, .upstream_chunked = true, .client_version = 10});
  std::string out;
  std::vector<std::string_view> tokens;
  append_response_head(out, head, tokens);
  EXPECT_EQ(out, "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nx-request-id: rid\r\n\r\n");
}

TEST(Chunks, SizeInHex) {
  std::string out;
  append_chunk(out, std::string(26, 'x'));
  EXPECT_EQ(out.substr(0, 4), "1a\r\n");
  EXPECT_TRUE(out.ends_with("x\r\n"));
  EXPECT_EQ(reason_phrase(404), "Not Found");
}

}  // namespace
}  // namespace bulwark::gateway::http
