#include "listener/connection.h"

#include <gtest/gtest.h>

namespace bulwark::gateway::listener {
namespace {

TEST(IdleWait, KeepsStateWhileFewConnectionsAreOpenAndGivesItBackBeyond) {
  EXPECT_FALSE(release_while_idle(1));
  EXPECT_FALSE(release_while_idle(kKeepStateUpToConnections));
  EXPECT_TRUE(release_while_idle(kKeepStateUpToConnections + 1));
  EXPECT_TRUE(release_while_idle(8000));
}

}  // namespace
}  // namespace bulwark::gateway::listener
