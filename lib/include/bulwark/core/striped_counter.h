// StripedCounter: a monotonically increasing counter for hot paths shared by many threads.
//
// Each thread adds to one of kStripes cache-line-sized cells (chosen once per thread), so two
// threads counting the same event do not bounce one cache line between cores. Reading sums
// the cells: value() is exact once writers are quiescent and never lower than any value
// observed earlier by the same reader.
//
// Cost: add() is one relaxed fetch_add on a (usually) uncontended line; value() reads
// kStripes cells. Size: kStripes * 64 bytes.
//
// Thread-safety: all members are safe from any thread.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>

namespace bulwark {

namespace detail {
// Index of the calling thread's stripe, assigned round-robin on first use.
std::size_t this_thread_stripe() noexcept;
}  // namespace detail

class StripedCounter {
 public:
  static constexpr std::size_t kStripes = 16;

  void add(uint64_t n = 1) noexcept {
    cells_[detail::this_thread_stripe() % kStripes].value.fetch_add(n, std::memory_order_relaxed);
  }
  uint64_t value() const noexcept {
    uint64_t sum = 0;
    for (const auto& c : cells_) sum += c.value.load(std::memory_order_relaxed);
    return sum;
  }

 private:
  struct alignas(64) Cell {
    std::atomic<uint64_t> value{0};
  };
  std::array<Cell, kStripes> cells_{};
};

}  // namespace bulwark
