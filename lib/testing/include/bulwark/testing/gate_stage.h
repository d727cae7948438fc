// GateStage: a pipeline stage whose calls wait at a gate until the test opens it, for testing
// how executors run Step::wait (grant, refusal, deadline, caller cancellation).
//
// Every call's enter() returns Step::wait with a GateWaiter and the configured max wait; the
// test grants or refuses pending waiters with open_next(). After the wait, enter() proceeds if
// the waiter was granted, or finishes with errc::wait_timeout (withdrawn at the deadline) or
// errc::rejected (refused). Counters tell which path each call took.
//
// Thread-safety: all members are safe from any thread.
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>

#include "bulwark/pipeline/stage.h"

namespace bulwark::testing {

class GateStage final : public Stage {
 public:
  explicit GateStage(Duration max_wait = Duration::max()) : max_wait_(max_wait) {}

  // Grants (or refuses) the oldest started waiter; returns false if none is waiting.
  bool open_next(bool grant = true);
  // Blocks (real time, bounded by `timeout`) until `n` waiters have started waiting.
  bool wait_for_waiters(std::size_t n, Duration timeout = std::chrono::seconds(10));

  std::unique_ptr<StageRun> start() const override;
  std::size_t run_size() const noexcept override;
  std::size_t run_align() const noexcept override;
  StageRun* start_in(void* storage) const override;
  std::string_view kind() const noexcept override { return "gate"; }

  mutable std::atomic<int> started{0};    // waits started
  mutable std::atomic<int> cancelled{0};  // waits withdrawn by the executor
  mutable std::atomic<int> abandoned{0};  // runs abandoned (caller cancellation)
  mutable std::atomic<int> passed{0};     // calls that went through the gate

 private:
  class Waiter;
  class Run;
  Duration max_wait_;
  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  mutable std::deque<std::shared_ptr<Waiter>> waiting_;
};

}  // namespace bulwark::testing
