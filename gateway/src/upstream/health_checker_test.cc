#include "upstream/health_checker.h"

#include <gtest/gtest.h>

namespace bulwark::gateway::upstream {
namespace {

TEST(HealthProbe, PassesOnAnExpectedStatusOnly) {
  config::HealthCheckSpec spec;  // any 2xx
  EXPECT_TRUE(probe_passed("HTTP/1.1 200 OK\r\n", spec));
  EXPECT_TRUE(probe_passed("HTTP/1.0 204 No Content\r\n", spec));
  EXPECT_FALSE(probe_passed("HTTP/1.1 503 Service Unavailable\r\n", spec));
  EXPECT_FALSE(probe_passed("HTTP/1.1 301 Moved\r\n", spec));
  EXPECT_FALSE(probe_passed("HTTP/2 200\r\n", spec));
  EXPECT_FALSE(probe_passed("HTTP/1.1 2x0 OK\r\n", spec));
  EXPECT_FALSE(probe_passed("garbage", spec));
  EXPECT_FALSE(probe_passed("", spec));
  spec.expected = config::StatusSet::range(301, 301);
  EXPECT_TRUE(probe_passed("HTTP/1.1 301 Moved\r\n", spec));
  EXPECT_FALSE(probe_passed("HTTP/1.1 200 OK\r\n", spec));
}

}  // namespace
}  // namespace bulwark::gateway::upstream
