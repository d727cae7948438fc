// Counting heap allocations, for tests and benchmarks that pin "allocations per call".
//
// What: linking the `bulwark_alloc_counter` object library into an executable replaces the
// global operator new / new[] (every form: sized, aligned, nothrow) and operator delete with
// versions over malloc/free that count each allocation made by the calling thread.
// thread_allocations() reads that count; the difference around a piece of code is what it
// allocated on this thread.
//
// Thread-safety: the count is thread-local (constant-initialised, so it is valid from the first
// allocation of the process on); each thread reads its own.
//
// Only for executables of their own: the replacement applies to the whole program, and under a
// sanitizer the sanitizer's allocator changes what allocates (assert counts only without one).
//
// Example:
//   const uint64_t before = bulwark::testing::thread_allocations();
//   pipeline.execute(call);
//   EXPECT_EQ(bulwark::testing::thread_allocations() - before, 0u);
#pragma once

#include <cstdint>

namespace bulwark::testing {

// Calls of the global operator new / new[] made by this thread since it started.
uint64_t thread_allocations() noexcept;

}  // namespace bulwark::testing
