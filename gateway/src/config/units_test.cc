#include "config/units.h"

#include <gtest/gtest.h>

namespace bulwark::gateway::config {
namespace {

using namespace std::chrono_literals;

TEST(Units, Durations) {
  EXPECT_EQ(parse_duration("250ms"), Duration(250ms));
  EXPECT_EQ(parse_duration("5s"), Duration(5s));
  EXPECT_EQ(parse_duration("2m"), Duration(2min));
  EXPECT_EQ(parse_duration("1h"), Duration(1h));
  EXPECT_EQ(parse_duration("1.5s"), Duration(1500ms));
  EXPECT_EQ(parse_duration("10us"), Duration(10us));
  EXPECT_EQ(parse_duration("7ns"), Duration(7ns));
  EXPECT_EQ(parse_duration("0"), Duration::zero());
  for (const char* bad :
       {"", "5", "s", "-1s", "+1s", "5 s", "5sec", "1e3s", "5S", "nans", "99999999999h"}) {
    EXPECT_FALSE(parse_duration(bad).has_value()) << bad;
  }
}

TEST(Units, Sizes) {
  EXPECT_EQ(parse_size("0"), 0u);
  EXPECT_EQ(parse_size("512"), 512u);
  EXPECT_EQ(parse_size("512B"), 512u);
  EXPECT_EQ(parse_size("8KiB"), 8u * 1024);
  EXPECT_EQ(parse_size("1MiB"), 1u << 20);
  EXPECT_EQ(parse_size("256MiB"), 256u << 20);
  EXPECT_EQ(parse_size("1GiB"), 1ull << 30);
  EXPECT_EQ(parse_size("2TiB"), 2ull << 40);
  for (const char* bad : {"", "KiB", "8kb", "8KB", "8 KiB", "-8KiB", "1.5MiB", "99999999TiB"}) {
    EXPECT_FALSE(parse_size(bad).has_value()) << bad;
  }
}

TEST(Units, Rates) {
  EXPECT_DOUBLE_EQ(*parse_rate("100/s"), 100.0);
  EXPECT_DOUBLE_EQ(*parse_rate("6000/m"), 100.0);
  EXPECT_DOUBLE_EQ(*parse_rate("3600/h"), 1.0);
  EXPECT_DOUBLE_EQ(*parse_rate("0.5/s"), 0.5);
  for (const char* bad : {"", "100", "100/", "/s", "100/d", "-1/s", "100s/s", "100 /s"}) {
    EXPECT_FALSE(parse_rate(bad).has_value()) << bad;
  }
}

TEST(Units, Fractions) {
  EXPECT_DOUBLE_EQ(*parse_fraction("50%"), 0.5);
  EXPECT_DOUBLE_EQ(*parse_fraction("100%"), 1.0);
  EXPECT_DOUBLE_EQ(*parse_fraction("0.25"), 0.25);
  EXPECT_DOUBLE_EQ(*parse_fraction("12.5%"), 0.125);
  for (const char* bad : {"", "%", "101%", "1.5", "-5%", "50 %", "half"}) {
    EXPECT_FALSE(parse_fraction(bad).has_value()) << bad;
  }
}

}  // namespace
}  // namespace bulwark::gateway::config
