// Seedable pseudo-random source used for jitter and sampling.
//
// Random is xoshiro256** seeded through splitmix64: fast (a few ns per draw), good enough
// statistically for jitter, and fully reproducible from a 64-bit seed, so tests that involve
// jitter pin exact values. It is NOT cryptographically secure; never use it for tokens or ids
// that must be unguessable.
//
// Thread-safety: a Random object is not thread-safe. Give each thread (or each call) its own,
// or use thread_random(), which returns a per-thread instance seeded from std::random_device.
//
// Example:
//   bulwark::Random rng(42);                       // deterministic in tests
//   bulwark::Duration d = rng.uniform(0ms, 100ms);  // inclusive bounds
#pragma once

#include <array>
#include <cstdint>

#include "bulwark/core/clock.h"

namespace bulwark {

class Random {
 public:
  explicit Random(uint64_t seed) noexcept { reseed(seed); }

  // A Random seeded from std::random_device (non-deterministic).
  static Random from_entropy();

  void reseed(uint64_t seed) noexcept {
    for (auto& word : s_) word = splitmix64(seed);
  }

  uint64_t next_u64() noexcept {
    const uint64_t result = rotl(s_[1] * 5, 7) * 9;
    const uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return result;
  }

  // Uniform in [0, n). n == 0 returns 0. Uses the multiply-shift reduction (bias < 2^-64 * n,
  // irrelevant for jitter).
  uint64_t below(uint64_t n) noexcept {
    __extension__ using U128 = unsigned __int128;  // GCC/Clang builtin; silences -Wpedantic
    return static_cast<uint64_t>((static_cast<U128>(next_u64()) * n) >> 64);
  }

  // Uniform in [0.0, 1.0).
  double uniform01() noexcept { return static_cast<double>(next_u64() >> 11) * 0x1.0p-53; }

  // Uniform duration in [lo, hi] (inclusive). If hi < lo, returns lo.
  Duration uniform(Duration lo, Duration hi) noexcept {
    if (hi <= lo) return lo;
    const uint64_t span = static_cast<uint64_t>(hi.count() - lo.count());
    return lo + Duration(static_cast<int64_t>(span == UINT64_MAX ? next_u64() : below(span + 1)));
  }

 private:
  static uint64_t rotl(uint64_t x, int k) noexcept { return (x << k) | (x >> (64 - k)); }
  static uint64_t splitmix64(uint64_t& state) noexcept {
    uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }

  std::array<uint64_t, 4> s_{};
};

// A per-thread Random seeded from std::random_device. For production paths that need jitter
// and have no injected source; tests inject a seeded Random instead.
Random& thread_random() noexcept;

}  // namespace bulwark
