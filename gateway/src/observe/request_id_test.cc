#include "observe/request_id.h"

#include <gtest/gtest.h>

#include <set>
#include <string>

namespace bulwark::gateway::observe {
namespace {

TEST(RequestId, AcceptsIdsOfAllowedCharacters) {
  EXPECT_TRUE(is_valid_request_id("a"));
  EXPECT_TRUE(is_valid_request_id("0"));
  EXPECT_TRUE(is_valid_request_id("abcXYZ019._:-"));
  EXPECT_TRUE(is_valid_request_id("3f2b9c1e-8a4d-4e7f-9b21-5c6d7e8f9a0b"));
  EXPECT_TRUE(is_valid_request_id("01ARZ3NDEKTSV4RRFFQ69G5FAV"));  // ULID
  EXPECT_TRUE(
      is_valid_request_id("00-4bf92f3577b34da6a3ce929d0e0e4736-00f0-01"));       // traceparent-ish
  EXPECT_TRUE(is_valid_request_id("Root:1-67891233-abcdef012345678912345678"));  // ALB-ish
}

TEST(RequestId, LengthLimitIs128) {
  EXPECT_FALSE(is_valid_request_id(""));
  EXPECT_TRUE(is_valid_request_id(std::string(127, 'x')));
  EXPECT_TRUE(is_valid_request_id(std::string(kMaxRequestIdBytes, 'x')));
  EXPECT_FALSE(is_valid_request_id(std::string(kMaxRequestIdBytes + 1, 'x')));
  EXPECT_FALSE(is_valid_request_id(std::string(4096, 'x')));
}

TEST(RequestId, RefusesCharactersOutsideTheSet) {
  for (std::string_view bad :
       {" ", "a b", "a/b", "a\"b", "a\\b", "a\nb", "a\rb", "a\tb", "a;b", "a,b", "a+b", "a=b",
        "a%20b", "<script>", "caf\xc3\xa9", "\xff", "a\x7f", "{}"}) {
    EXPECT_FALSE(is_valid_request_id(bad)) << bad;
  }
  EXPECT_FALSE(is_valid_request_id(std::string_view("ab\0cd", 5)));
  // One bad character anywhere spoils the id, including first and last position.
  std::string id(kMaxRequestIdBytes, 'a');
  id.front() = ' ';
  EXPECT_FALSE(is_valid_request_id(id));
  id.front() = 'a';
  id.back() = '\n';
  EXPECT_FALSE(is_valid_request_id(id));
}

bool is_lower_hex(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }

TEST(RequestId, GeneratedIdsAreValidUuidV4AndDistinct) {
  Random random(42);
  std::set<std::string> seen;
  std::set<char> variants;
  for (int i = 0; i < 1000; ++i) {
    const std::string id = generate_request_id(random);
    ASSERT_EQ(id.size(), 36u) << id;
    for (std::size_t j = 0; j < id.size(); ++j) {
      if (j == 8 || j == 13 || j == 18 || j == 23) {
        ASSERT_EQ(id[j], '-') << id;
      } else {
        ASSERT_TRUE(is_lower_hex(id[j])) << id;
      }
    }
    EXPECT_EQ(id[14], '4') << id;                                                    // version
    ASSERT_NE(std::string_view("89ab").find(id[19]), std::string_view::npos) << id;  // variant
    variants.insert(id[19]);
    EXPECT_TRUE(is_valid_request_id(id)) << id;
    seen.insert(id);
  }
  EXPECT_EQ(seen.size(), 1000u);
  // The two free bits of the variant octet are random, not fixed.
  EXPECT_EQ(variants.size(), 4u);
}

TEST(RequestId, GenerationIsReproducibleFromTheSeed) {
  Random a(7);
  Random b(7);
  Random c(8);
  const std::string first = generate_request_id(a);
  EXPECT_EQ(first, generate_request_id(b));
  EXPECT_NE(first, generate_request_id(c));
  EXPECT_NE(first, generate_request_id(a));
}

}  // namespace
}  // namespace bulwark::gateway::observe
