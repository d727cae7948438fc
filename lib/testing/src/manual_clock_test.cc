#include "bulwark/testing/manual_clock.h"

#include <gtest/gtest.h>

#include <vector>

namespace bulwark::testing {
namespace {

using namespace std::chrono_literals;

TEST(ManualClock, OnlyMovesWhenAdvanced) {
  ManualClock clock;
  const TimePoint t0 = clock.now();
  EXPECT_EQ(clock.now(), t0);
  clock.advance(250ms);
  EXPECT_EQ(clock.now(), t0 + 250ms);
  clock.advance(-1s);  // ignored: time never goes backwards
  EXPECT_EQ(clock.now(), t0 + 250ms);
  clock.advance_to(t0);  // ignored
  EXPECT_EQ(clock.now(), t0 + 250ms);
}

TEST(ManualClock, SleepForAdvances) {
  ManualClock clock;
  const TimePoint t0 = clock.now();
  clock.sleep_for(3s);
  EXPECT_EQ(clock.now(), t0 + 3s);
}

TEST(ManualClock, TimersFireInDueOrderThenSchedulingOrder) {
  ManualClock clock;
  const TimePoint t0 = clock.now();
  std::vector<int> order;
  std::vector<TimePoint> seen_at;
  auto record = [&](int id) {
    return [&, id] {
      order.push_back(id);
      seen_at.push_back(clock.now());
    };
  };
  clock.schedule_after(30ms, record(3));
  clock.schedule_after(10ms, record(1));
  clock.schedule_after(10ms, record(2));  // same due time: after 1
  clock.schedule_after(50ms, record(4));
  clock.advance(40ms);
  EXPECT_EQ(order, (std::vector<int>{1, 2, 3}));
  // While a callback runs, now() reads its due time.
  EXPECT_EQ(seen_at, (std::vector<TimePoint>{t0 + 10ms, t0 + 10ms, t0 + 30ms}));
  EXPECT_EQ(clock.now(), t0 + 40ms);
  EXPECT_EQ(clock.pending_timers(), 1u);
  EXPECT_EQ(clock.next_due(), t0 + 50ms);
}

TEST(ManualClock, CancelledTimerDoesNotFire) {
  ManualClock clock;
  bool fired = false;
  const auto id = clock.schedule_after(10ms, [&] { fired = true; });
  EXPECT_TRUE(clock.cancel(id));
  EXPECT_FALSE(clock.cancel(id));
  clock.advance(1s);
  EXPECT_FALSE(fired);
  EXPECT_FALSE(clock.next_due().has_value());
}

TEST(ManualClock, CallbackMayScheduleATimerThatFallsDueInTheSameAdvance) {
  ManualClock clock;
  const TimePoint t0 = clock.now();
  std::vector<TimePoint> fired;
  clock.schedule_after(10ms, [&] {
    fired.push_back(clock.now());
    clock.schedule_after(5ms, [&] { fired.push_back(clock.now()); });
  });
  clock.advance(20ms);
  EXPECT_EQ(fired, (std::vector<TimePoint>{t0 + 10ms, t0 + 15ms}));
}

TEST(ManualClock, TimerInThePastFiresOnNextAdvanceWithoutMovingTimeBack) {
  ManualClock clock;
  clock.advance(1s);
  const TimePoint now = clock.now();
  TimePoint seen{};
  clock.schedule_at(now - 500ms, [&] { seen = clock.now(); });
  clock.advance(0ns + 1ns);
  EXPECT_EQ(seen, now);
}

TEST(SeededRandom, IsDeterministic) {
  auto a = seeded_random(9);
  auto b = seeded_random(9);
  EXPECT_EQ(a.next_u64(), b.next_u64());
}

}  // namespace
}  // namespace bulwark::testing
