#include "filters/overload/overload.h"

#include <gtest/gtest.h>

#include "filter/reasons.h"

namespace bulwark::gateway::filters {
namespace {

using config::RoutePriority;

TEST(Overload, ShedsLowPriorityAtCriticalAndEverythingWhenExhausted) {
  for (auto p : {RoutePriority::low, RoutePriority::normal, RoutePriority::high}) {
    EXPECT_FALSE(sheds(OverloadLevel::normal, p));
    EXPECT_FALSE(sheds(OverloadLevel::warning, p));
    EXPECT_EQ(sheds(OverloadLevel::critical, p), p == RoutePriority::low);
    EXPECT_TRUE(sheds(OverloadLevel::exhausted, p));
  }
  EXPECT_TRUE(keep_alive_allowed(OverloadLevel::warning));
  EXPECT_FALSE(keep_alive_allowed(OverloadLevel::critical));
  EXPECT_EQ(worse(OverloadLevel::warning, OverloadLevel::critical), OverloadLevel::critical);
}

TEST(Overload, AForcedLevelShedsThroughTheFilterAndRecovers) {
  bulwark::observe::Registry registry;
  OverloadManager manager(registry);  // not started: the measured level is normal
  OverloadFilter low(manager, RoutePriority::low);
  OverloadFilter normal(manager, RoutePriority::normal);
  filter::FilterState state;
  EXPECT_FALSE(low.on_request({}, state));
  manager.force(OverloadLevel::critical);
  const filter::LocalReply reply = low.on_request({}, state);
  EXPECT_EQ(reply.status, 503);
  EXPECT_EQ(reply.reason, reason::kOverloaded);
  EXPECT_FALSE(normal.on_request({}, state));
  EXPECT_FALSE(manager.keep_alive_allowed());
  manager.force(OverloadLevel::exhausted);
  EXPECT_EQ(normal.on_request({}, state).status, 503);
  manager.force(OverloadLevel::normal);
  EXPECT_FALSE(normal.on_request({}, state));
  EXPECT_TRUE(manager.keep_alive_allowed());
}

}  // namespace
}  // namespace bulwark::gateway::filters
