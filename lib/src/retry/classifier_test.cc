#include "bulwark/retry/classifier.h"

#include <gtest/gtest.h>

#include <chrono>
#include <stdexcept>
#include <string>
#include <vector>

namespace bulwark::retry {
namespace {

using namespace std::chrono_literals;

struct Row {
  int status;
  Outcome expected;
};

TEST(HttpClassifierTest, DefaultTable) {
  const HttpClassifier c;
  const Row rows[] = {
      {100, Outcome::success},           {101, Outcome::success},
      {200, Outcome::success},           {204, Outcome::success},
      {206, Outcome::success},           {301, Outcome::success},
      {304, Outcome::success},           {399, Outcome::success},
      {400, Outcome::caller_error},      {401, Outcome::caller_error},
      {403, Outcome::caller_error},      {404, Outcome::caller_error},
      {409, Outcome::caller_error},      {416, Outcome::caller_error},
      {429, Outcome::caller_error},      {499, Outcome::caller_error},
      {500, Outcome::final_failure},     {501, Outcome::final_failure},
      {502, Outcome::retryable_failure}, {503, Outcome::retryable_failure},
      {504, Outcome::retryable_failure}, {505, Outcome::final_failure},
      {599, Outcome::final_failure},     {0, Outcome::final_failure},
      {99, Outcome::final_failure},      {600, Outcome::final_failure},
      {-1, Outcome::final_failure},      {1000, Outcome::final_failure},
  };
  for (const Row& r : rows) EXPECT_EQ(c.classify(r.status), r.expected) << r.status;
  EXPECT_EQ(c.classify(TransportFailure::connect_failure), Outcome::retryable_failure);
  EXPECT_EQ(c.classify(TransportFailure::reset), Outcome::retryable_failure);
  EXPECT_EQ(c.classify(TransportFailure::per_try_timeout), Outcome::retryable_failure);
}

TEST(HttpClassifierTest, FiveXxRetriesEveryServerError) {
  const HttpClassifier c({"5xx"});
  for (int s = 500; s <= 599; ++s) EXPECT_EQ(c.classify(s), Outcome::retryable_failure) << s;
  EXPECT_EQ(c.classify(429), Outcome::caller_error);
  EXPECT_EQ(c.classify(200), Outcome::success);
  EXPECT_EQ(c.classify(TransportFailure::reset), Outcome::final_failure);
}

TEST(HttpClassifierTest, ExplicitStatusesAndTransportNames) {
  const HttpClassifier c({"429", "503", "reset"});
  EXPECT_EQ(c.classify(429), Outcome::retryable_failure);
  EXPECT_EQ(c.classify(503), Outcome::retryable_failure);
  EXPECT_EQ(c.classify(502), Outcome::final_failure);
  EXPECT_EQ(c.classify(504), Outcome::final_failure);
  EXPECT_EQ(c.classify(TransportFailure::reset), Outcome::retryable_failure);
  EXPECT_EQ(c.classify(TransportFailure::connect_failure), Outcome::final_failure);
  EXPECT_EQ(c.classify(TransportFailure::per_try_timeout), Outcome::final_failure);
  EXPECT_TRUE(c.retries(429));
  EXPECT_FALSE(c.retries(500));
}

TEST(HttpClassifierTest, GatewayErrorIs502To504) {
  const HttpClassifier c({"gateway-error", "connect-failure", "per-try-timeout"});
  EXPECT_EQ(c.classify(501), Outcome::final_failure);
  EXPECT_EQ(c.classify(502), Outcome::retryable_failure);
  EXPECT_EQ(c.classify(503), Outcome::retryable_failure);
  EXPECT_EQ(c.classify(504), Outcome::retryable_failure);
  EXPECT_EQ(c.classify(505), Outcome::final_failure);
  EXPECT_EQ(c.classify(TransportFailure::connect_failure), Outcome::retryable_failure);
  EXPECT_EQ(c.classify(TransportFailure::per_try_timeout), Outcome::retryable_failure);
  EXPECT_EQ(c.classify(TransportFailure::reset), Outcome::final_failure);
}

TEST(HttpClassifierTest, EmptyListRetriesNothing) {
  const HttpClassifier c(std::vector<std::string>{});
  EXPECT_EQ(c.classify(503), Outcome::final_failure);
  EXPECT_EQ(c.classify(TransportFailure::reset), Outcome::final_failure);
  EXPECT_EQ(c.classify(200), Outcome::success);
}

TEST(HttpClassifierTest, RejectsUnknownNamesAndNamesThem) {
  // Names are case-sensitive and exact; always-final and non-error statuses are refused.
  const char* const bad[] = {"connect_failure",
                             "5XX",
                             "4xx",
                             "",
                             "50",
                             "5030",
                             "abc",
                             "200",
                             "399",
                             "600",
                             "404",
                             "400",
                             "401",
                             "403",
                             "416",
                             " 503",
                             "+503",
                             "5o3"};
  for (const std::string name : bad) {
    try {
      HttpClassifier c({"reset", name});
      ADD_FAILURE() << "accepted \"" << name << "\"";
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find("\"" + name + "\""), std::string::npos) << e.what();
    }
  }
}

TEST(HttpClassifierTest, AcceptsEdgeStatuses) {
  const HttpClassifier c({"405", "599", "408", "425"});
  EXPECT_EQ(c.classify(405), Outcome::retryable_failure);
  EXPECT_EQ(c.classify(599), Outcome::retryable_failure);
  EXPECT_EQ(c.classify(408), Outcome::retryable_failure);
  EXPECT_EQ(c.classify(425), Outcome::retryable_failure);
  EXPECT_EQ(c.classify(406), Outcome::caller_error);
}

// --- parse_retry_after ------------------------------------------------------------------------

TEST(ParseRetryAfterTest, DeltaSeconds) {
  EXPECT_EQ(parse_retry_after("0"), Duration::zero());
  EXPECT_EQ(parse_retry_after("1"), Duration(1s));
  EXPECT_EQ(parse_retry_after("120"), Duration(120s));
  EXPECT_EQ(parse_retry_after("007"), Duration(7s));
  EXPECT_EQ(parse_retry_after(" 5\t"), Duration(5s));
}

TEST(ParseRetryAfterTest, RejectsGarbage) {
  for (std::string_view v : {"", " ", "\t", "-1", "+1", "1.5", "1s", "abc", "1 2", "0x10", "１",
                             "Fri, 31 Dec 1999 23:59:59 GMT", "Wed, 21 Oct 2015 07:28:00 GMT"}) {
    EXPECT_EQ(parse_retry_after(v), std::nullopt) << "\"" << v << "\"";
  }
  EXPECT_EQ(parse_retry_after(std::string_view("1\0", 2)), std::nullopt);
}

TEST(ParseRetryAfterTest, OverflowSaturatesAtTwoToTheThirtyOneSeconds) {
  const Duration limit = std::chrono::seconds(int64_t{1} << 31);
  EXPECT_EQ(parse_retry_after("2147483647"), Duration(std::chrono::seconds(2147483647)));
  EXPECT_EQ(parse_retry_after("2147483648"), limit);
  EXPECT_EQ(parse_retry_after("2147483649"), limit);
  EXPECT_EQ(parse_retry_after("99999999999999999999999999999999999999"), limit);
  EXPECT_EQ(parse_retry_after("99999999999999999999999999999999999999x"), std::nullopt);
}

}  // namespace
}  // namespace bulwark::retry
