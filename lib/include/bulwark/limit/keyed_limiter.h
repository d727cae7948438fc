// KeyedLimiter: one rate-limit state per key (client IP, route, header value), in a sharded
// table with a hard memory bound.
//
// Each key gets its own limiter of the configured algorithm (token bucket, GCRA or sliding
// window, with the arithmetic of token_bucket.h, gcra.h and sliding_window.h) on first use. A
// key's decisions are exactly those a single limiter would make for it, as long as the key is
// not evicted while it is still recovering.
//
// Memory model. Keys are not stored: each key is hashed (64-bit, seeded) and a slot holds only
// the hash and the 64-bit state, 16 bytes. The slots live in `shards` open-addressing tables
// (linear probing, at most 3/4 full), each behind its own mutex; a key's shard is chosen by the
// low bits of its hash. Tables are allocated on first use and grow (doubling up to a quarter
// of the shard's share of max_bytes, then one last step to three quarters). stats() counts
// everything the limiter allocates: the object, the shard array and every slot array,
// including the old and the new array during a resize; it never exceeds max_bytes (so the
// largest table is 3/4 of a shard's share: the resize to it needs the previous quarter alive).
// At the bound a key costs about 28.5 bytes of budget. Tables do not shrink; clear() releases
// them.
//
// Eviction. A state that has fully recovered (the bucket is full again, TAT <= now, both
// windows empty) is "idle": it is indistinguishable from a new key, so evicting it changes no
// decision. When a table is full the shard first evicts every idle key it holds. If that frees
// less than a quarter of the table and the table may still grow, it grows. At the bound, if
// the sweep leaves less than 1/8 of the table free, the shard also evicts the keys with the
// least "debt" until 1/8 is free. A key's debt is what evicting it would hand back, as time at
// the limiter's rate: the time until its bucket is full (token bucket), TAT - now (GCRA), or
// the current estimate / limit * window (sliding window); keys are ranked in power-of-two
// buckets of it. These "forced" evictions give keys a fresh state early; taking the least debt
// hands back the fewest permits, so a client that is being limited (large debt) is evicted
// last, only when everything else in its shard owes at least as much. Freeing 1/8 (not just
// one slot) keeps the work per insert O(1) amortized. A new key is never refused for lack of
// room: refusing would let a flood of keys lock out every new client.
//
// Collisions. Two keys with the same 64-bit hash share one state (one limit). For n live keys
// the chance that any two collide is about n^2 / 2^65 (3e-8 for a million keys). The seed is
// random per limiter unless given, so colliding keys cannot be precomputed; the hash is fast,
// not cryptographic, so a determined attacker who learns the seed could build collisions or
// long probe chains within one shard (bounded by the table size).
//
// Thread-safety: every member may be called from any thread. A call locks one shard's mutex
// (stats(), sweep() and clear() lock each shard in turn, so stats() is a sum of per-shard
// snapshots, not one atomic snapshot).
//
// Example:
//   bulwark::limit::KeyedLimiter per_client({.algorithm = bulwark::limit::RateAlgorithm::gcra,
//                                            .rate = bulwark::limit::Rate::per_second(10),
//                                            .burst = 20,
//                                            .max_bytes = 16 << 20});
//   auto d = per_client.try_acquire(client_ip, clock.now());
//   if (!d.allowed) return reply_429(bulwark::limit::to_headers(d));
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string_view>

#include "bulwark/limit/rate_limit.h"

namespace bulwark::limit {

namespace detail {
struct KeyedSlot;
struct KeyedShard;
}  // namespace detail

struct KeyedLimiterOptions {
  RateAlgorithm algorithm = RateAlgorithm::gcra;
  // token_bucket and gcra: refill rate (validated as in TokenBucketOptions / GcraOptions).
  // sliding_window: rate.count permits per window of rate.period (count must be a whole
  // number in 1..262143).
  Rate rate = Rate::per_second(100);
  // token_bucket and gcra: permits at one instant (>= 1). Ignored by sliding_window.
  uint64_t burst = 100;
  // Hard bound on the memory the limiter allocates, in bytes. At least min_bytes(shards).
  std::size_t max_bytes = std::size_t{64} << 20;
  // Number of independently locked tables. A power of two in 1..4096.
  uint32_t shards = 64;
  // Seed of the key hash. Unset: a random seed per limiter. Set it only for reproducible tests.
  std::optional<uint64_t> hash_seed;
};

// The seeded 64-bit hash KeyedLimiter uses for keys (never 0: a hash of 0 is mapped to 1).
uint64_t hash_key(std::string_view key, uint64_t seed) noexcept;

class KeyedLimiter {
 public:
  // Bytes per slot (hash + state); a key takes one slot, the table is at most 3/4 full.
  static constexpr std::size_t kSlotBytes = 16;

  // Throws std::invalid_argument naming the option ("KeyedLimiterOptions.max_bytes: ...").
  explicit KeyedLimiter(KeyedLimiterOptions options = {});
  ~KeyedLimiter();

  KeyedLimiter(const KeyedLimiter&) = delete;
  KeyedLimiter& operator=(const KeyedLimiter&) = delete;

  // Takes `permits` permits from the key's limiter at `now` (creating it on first use).
  // permits == 0 is a query; a refused request for a key that has no state creates none.
  RateDecision try_acquire(std::string_view key, TimePoint now, uint64_t permits = 1) noexcept;
  // The same for a key already hashed with hash() (e.g. to hash once and use several limiters
  // with the same seed, or to key by a number).
  RateDecision try_acquire_hash(uint64_t key_hash, TimePoint now, uint64_t permits = 1) noexcept;

  // What one permit would get now (see RateLimiter::peek); creates nothing.
  RateDecision peek(std::string_view key, TimePoint now) const noexcept;
  RateDecision peek_hash(uint64_t key_hash, TimePoint now) const noexcept;

  // Whether the key currently has a state (was used and not evicted or erased).
  bool contains(std::string_view key) const noexcept;
  // Forgets the key's state (an operator's "unblock this client"). Returns whether it had one.
  bool erase(std::string_view key) noexcept;
  // Evicts every idle key now (never changes a decision). Returns how many. Optional: full
  // tables do this themselves; call it to get accurate key counts in stats().
  std::size_t sweep(TimePoint now) noexcept;
  // Forgets every key and releases every table.
  void clear() noexcept;

  uint64_t hash(std::string_view key) const noexcept { return hash_key(key, seed_); }
  // RateDecision::limit of every decision: burst, or the sliding window's limit.
  uint64_t limit() const noexcept { return limit_; }
  const KeyedLimiterOptions& options() const noexcept { return options_; }

  struct Stats {
    uint64_t keys = 0;      // keys with a state now
    uint64_t admitted = 0;  // allowed decisions (permits == 0 queries included)
    uint64_t rejected = 0;  // refused decisions
    // Keys evicted when idle (fully recovered): invisible to clients.
    uint64_t evictions_idle = 0;
    // Keys evicted before they had recovered (their next request starts from a fresh state).
    uint64_t evictions_forced = 0;
    // Of evictions_forced, keys that could not have taken one permit when evicted.
    uint64_t evictions_limited = 0;
    uint64_t memory_bytes = 0;       // allocated now, everything included
    uint64_t peak_memory_bytes = 0;  // highest memory_bytes so far (resizes included)
    uint64_t max_bytes = 0;          // the bound
    uint64_t capacity_slots = 0;     // slots allocated now
    uint64_t max_keys = 0;           // keys the limiter can hold at its bound
  };
  Stats stats() const noexcept;

  // The smallest max_bytes accepted for `shards` shards.
  static std::size_t min_bytes(uint32_t shards) noexcept;

 private:
  using Shard = detail::KeyedShard;
  template <class Kernel>
  RateDecision acquire(const Kernel& k, uint64_t h, int64_t now, uint64_t n) noexcept;
  template <class Kernel>
  RateDecision peek_in(const Kernel& k, uint64_t h, int64_t now) const noexcept;
  template <class Kernel>
  bool make_room(const Kernel& k, Shard& s, int64_t now) noexcept;
  template <class Kernel>
  std::size_t sweep_shard(const Kernel& k, Shard& s, int64_t now,
                          std::array<uint32_t, 65>* histogram) noexcept;
  template <class Kernel>
  void evict_least_debt(const Kernel& k, Shard& s, int64_t now, std::size_t count,
                        const std::array<uint32_t, 65>& histogram) noexcept;
  bool grow(Shard& s) noexcept;
  void add_bytes(std::size_t n) noexcept;
  void sub_bytes(std::size_t n) noexcept;
  static uint64_t normalize(uint64_t h) noexcept { return h == 0 ? 1 : h; }

  static constexpr std::size_t kMaxRungs = 40;

  KeyedLimiterOptions options_;
  uint64_t seed_;
  uint64_t limit_;
  // Kernel parameters (see lib/src/limit/rate_kernel.h): interval (ns or us) or window (ns),
  // and burst * interval.
  int64_t period_;
  int64_t capacity_;
  uint32_t shard_mask_;
  // Capacities a shard's table goes through, smallest first.
  std::array<uint32_t, kMaxRungs> rungs_{};
  uint32_t rung_count_ = 0;
  std::unique_ptr<Shard[]> shards_;
  std::atomic<std::size_t> bytes_{0};
  std::atomic<std::size_t> peak_bytes_{0};
};

}  // namespace bulwark::limit
