#include "bulwark/limit/keyed_limiter.h"

#include <bit>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>
#include <stdexcept>
#include <string>

#include "bulwark/core/random.h"
#include "rate_kernel.h"

namespace bulwark::limit {

// ---------------------------------------------------------------------------------------------
// Key hash: 16 bytes per round folded through a 64x64->128-bit multiply. Both multiplicands
// are masked with seed-derived secrets, so input that zeroes a product (and with it everything
// hashed before) cannot be chosen without knowing the seed. Keys of 16 bytes or less (IPv4 and
// most IPv6 addresses as text are 7..39 bytes) take one or two rounds.

namespace {

uint64_t fold(uint64_t a, uint64_t b) noexcept {
  const detail::UInt128 p = static_cast<detail::UInt128>(a) * b;
  return static_cast<uint64_t>(p) ^ static_cast<uint64_t>(p >> 64);
}

uint64_t load64(const unsigned char* p) noexcept {
  uint64_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

uint64_t load32(const unsigned char* p) noexcept {
  uint32_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

}  // namespace

uint64_t hash_key(std::string_view key, uint64_t seed) noexcept {
  constexpr uint64_t kGolden = 0x9e3779b97f4a7c15ULL;
  constexpr uint64_t kOdd1 = 0xbf58476d1ce4e5b9ULL;
  constexpr uint64_t kOdd2 = 0x94d049bb133111ebULL;
  const uint64_t s1 = seed ^ kOdd1;
  const uint64_t s2 = std::rotl(seed, 29) ^ kOdd2;
  const auto* p = reinterpret_cast<const unsigned char*>(key.data());
  std::size_t n = key.size();
  uint64_t h = seed ^ (static_cast<uint64_t>(n) * kGolden);
  while (n > 16) {
    h = fold(load64(p) ^ s1, load64(p + 8) ^ s2 ^ h);
    p += 16;
    n -= 16;
  }
  // 0..16 bytes left; the reads may overlap (the length is already in h).
  uint64_t a = 0;
  uint64_t b = 0;
  if (n >= 8) {
    a = load64(p);
    b = load64(p + n - 8);
  } else if (n >= 4) {
    a = load32(p);
    b = load32(p + n - 4);
  } else if (n > 0) {
    a = (uint64_t{p[0]} << 16) | (uint64_t{p[n / 2]} << 8) | p[n - 1];
  }
  h = fold(a ^ s1, b ^ s2 ^ h);
  h = fold(h ^ kGolden, s1 | 1);
  h ^= h >> 31;
  return h == 0 ? 1 : h;
}

// ---------------------------------------------------------------------------------------------
// Table

namespace detail {

struct KeyedSlot {
  uint64_t hash;  // 0: empty
  uint64_t word;  // the kernel's state
};
static_assert(sizeof(KeyedSlot) == KeyedLimiter::kSlotBytes);

struct alignas(64) KeyedShard {
  std::mutex mu;
  KeyedSlot* slots = nullptr;
  uint32_t capacity = 0;  // slots
  // Copies of slots and capacity readable without the lock, only to prefetch a key's slot
  // before taking it (a stale pair prefetches a useless line; prefetching never faults).
  std::atomic<KeyedSlot*> slots_hint{nullptr};
  std::atomic<uint32_t> capacity_hint{0};
  uint32_t size = 0;  // keys
  uint32_t rung = 0;  // index of `capacity` in rungs_ (meaningful when capacity > 0)
  uint64_t admitted = 0;
  uint64_t rejected = 0;
  uint64_t evictions_idle = 0;
  uint64_t evictions_forced = 0;
  uint64_t evictions_limited = 0;
};

}  // namespace detail

namespace {

using Slot = detail::KeyedSlot;

constexpr uint32_t kFirstCapacity = 64;
constexpr uint32_t kMinSlotsPerShard = 16;

constexpr uint32_t max_keys(uint32_t capacity) noexcept { return capacity - capacity / 4; }

// Home slot of a hash: multiply-shift of the whole hash onto [0, capacity). Uses the high bits
// of the hash, while the shard was picked with the low bits.
inline uint32_t home(uint64_t h, uint32_t capacity) noexcept {
  return static_cast<uint32_t>(
      (static_cast<detail::UInt128>(h) * static_cast<detail::UInt128>(capacity)) >> 64);
}

inline uint32_t next_slot(uint32_t i, uint32_t capacity) noexcept {
  return i + 1 == capacity ? 0 : i + 1;
}

// The slot holding h, or the empty slot where it would go. The table always has an empty slot.
inline uint32_t probe(const Slot* slots, uint32_t capacity, uint64_t h, bool& found) noexcept {
  uint32_t i = home(h, capacity);
  for (;;) {
    const uint64_t sh = slots[i].hash;
    if (sh == h) {
      found = true;
      return i;
    }
    if (sh == 0) {
      found = false;
      return i;
    }
    i = next_slot(i, capacity);
  }
}

// Removes slot i, shifting later members of its cluster back so that every key stays reachable
// from its home slot without tombstones.
void erase_at(Slot* slots, uint32_t capacity, uint32_t i) noexcept {
  uint32_t j = i;
  for (;;) {
    j = next_slot(j, capacity);
    if (slots[j].hash == 0) break;
    const uint32_t k = home(slots[j].hash, capacity);
    // The entry at j may fill the hole at i only if its home is not cyclically in (i, j].
    const bool home_between = i <= j ? (i < k && k <= j) : (i < k || k <= j);
    if (home_between) continue;
    slots[i] = slots[j];
    i = j;
  }
  slots[i] = Slot{0, 0};
}

// An empty slot to start a full pass from: starting right after it, every cluster is visited
// whole and erase_at() only ever moves not-yet-visited entries into the current position.
uint32_t find_empty(const Slot* slots, uint32_t capacity) noexcept {
  for (uint32_t i = 0; i < capacity; ++i) {
    if (slots[i].hash == 0) return i;
  }
  return 0;  // unreachable: tables are at most 3/4 full
}

// Power-of-two bucket of a duration: 0..63.
inline int debt_bucket(Duration d) noexcept {
  return std::bit_width(static_cast<uint64_t>(d.count()));
}

void publish(detail::KeyedShard& s) noexcept {
  s.slots_hint.store(s.slots, std::memory_order_relaxed);
  s.capacity_hint.store(s.capacity, std::memory_order_relaxed);
}

Slot* allocate_slots(uint32_t capacity) noexcept {
  return static_cast<Slot*>(std::calloc(capacity, sizeof(Slot)));
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Construction

std::size_t KeyedLimiter::min_bytes(uint32_t shards) noexcept {
  return sizeof(KeyedLimiter) + std::size_t{shards} * sizeof(Shard) +
         std::size_t{shards} * kMinSlotsPerShard * sizeof(Slot);
}

KeyedLimiter::KeyedLimiter(KeyedLimiterOptions options)
    : options_(options),
      seed_(options.hash_seed ? *options.hash_seed : thread_random().next_u64()),
      limit_(0),
      period_(0),
      capacity_(0),
      shard_mask_(0) {
  if (options.shards < 1 || options.shards > 4096 || !std::has_single_bit(options.shards)) {
    throw std::invalid_argument("KeyedLimiterOptions.shards: must be a power of two in 1..4096");
  }
  switch (options.algorithm) {
    case RateAlgorithm::token_bucket:
      period_ = detail::checked_interval_ns(options.rate, "KeyedLimiterOptions.rate");
      detail::check_burst(options.burst, period_, int64_t{1} << 62, "KeyedLimiterOptions.burst");
      limit_ = options.burst;
      break;
    case RateAlgorithm::gcra: {
      detail::checked_interval_ns(options.rate, "KeyedLimiterOptions.rate");
      const double us = std::round(static_cast<double>(options.rate.period.count()) / 1000.0 /
                                   options.rate.count);
      if (us < 1 || us > static_cast<double>(int64_t{1} << 52)) {
        throw std::invalid_argument(
            "KeyedLimiterOptions.rate: the GCRA emission interval must round to 1 us .. 2^52 us");
      }
      period_ = static_cast<int64_t>(us);
      detail::check_burst(options.burst, period_, int64_t{1} << 52, "KeyedLimiterOptions.burst");
      limit_ = options.burst;
      break;
    }
    case RateAlgorithm::sliding_window: {
      const double c = options.rate.count;
      if (!(c >= 1) || c > static_cast<double>(detail::SlidingWindowKernel::kMaxLimit) ||
          c != std::floor(c)) {
        throw std::invalid_argument(
            "KeyedLimiterOptions.rate: count must be a whole number in 1..262143 for "
            "sliding_window");
      }
      if (options.rate.period.count() <= 0 || options.rate.period.count() > (int64_t{1} << 62)) {
        throw std::invalid_argument("KeyedLimiterOptions.rate: period must be > 0 and <= 2^62 ns");
      }
      period_ = options.rate.period.count();
      limit_ = static_cast<uint64_t>(c);
      break;
    }
    default:
      throw std::invalid_argument("KeyedLimiterOptions.algorithm: unknown");
  }
  capacity_ = period_ * static_cast<int64_t>(limit_);

  const std::size_t fixed = sizeof(KeyedLimiter) + std::size_t{options.shards} * sizeof(Shard);
  if (options.max_bytes < min_bytes(options.shards)) {
    throw std::invalid_argument("KeyedLimiterOptions.max_bytes: must be at least " +
                                std::to_string(min_bytes(options.shards)) + " for " +
                                std::to_string(options.shards) + " shards");
  }
  // Slots one shard may have allocated at any moment, resizes included.
  const std::size_t budget = std::min<std::size_t>(
      (options.max_bytes - fixed) / options.shards / sizeof(Slot), std::size_t{1} << 31);
  const auto b = static_cast<uint32_t>(budget);
  // Rungs: P = budget / 4 and its halves down to kFirstCapacity or more, then one last step
  // to budget - P (the old and the new table exist together while it is taken), so the
  // largest table is 3/4 of the budget. A budget too small for growth gets one fixed table.
  if (b < 4 * kFirstCapacity) {
    rungs_[rung_count_++] = b;
  } else {
    const uint32_t p = b / 4;
    int halvings = 0;
    while ((p >> (halvings + 1)) >= kFirstCapacity && halvings + 2 < static_cast<int>(kMaxRungs)) {
      ++halvings;
    }
    for (int h = halvings; h >= 0; --h) rungs_[rung_count_++] = p >> h;
    rungs_[rung_count_++] = b - p;
  }
  shard_mask_ = options.shards - 1;
  shards_ = std::unique_ptr<Shard[]>(new Shard[options.shards]);
  add_bytes(fixed);
}

KeyedLimiter::~KeyedLimiter() {
  for (uint32_t i = 0; i <= shard_mask_; ++i) std::free(shards_[i].slots);
}

void KeyedLimiter::add_bytes(std::size_t n) noexcept {
  const std::size_t now = bytes_.fetch_add(n, std::memory_order_relaxed) + n;
  std::size_t peak = peak_bytes_.load(std::memory_order_relaxed);
  while (now > peak && !peak_bytes_.compare_exchange_weak(peak, now, std::memory_order_relaxed)) {
  }
}

void KeyedLimiter::sub_bytes(std::size_t n) noexcept {
  bytes_.fetch_sub(n, std::memory_order_relaxed);
}

// ---------------------------------------------------------------------------------------------
// Dispatch: one switch per call, then code specialised for the algorithm.

namespace {
template <class F>
decltype(auto) with_kernel(RateAlgorithm a, int64_t period, uint64_t limit, int64_t capacity,
                           F&& f) {
  switch (a) {
    case RateAlgorithm::token_bucket:
      return f(detail::TokenBucketKernel{period, limit, capacity});
    case RateAlgorithm::gcra:
      return f(detail::GcraKernel{period, limit, capacity});
    case RateAlgorithm::sliding_window:
      break;
  }
  return f(detail::SlidingWindowKernel{period, limit});
}
}  // namespace

RateDecision KeyedLimiter::try_acquire(std::string_view key, TimePoint now,
                                       uint64_t permits) noexcept {
  return try_acquire_hash(hash(key), now, permits);
}

RateDecision KeyedLimiter::try_acquire_hash(uint64_t key_hash, TimePoint now,
                                            uint64_t permits) noexcept {
  return with_kernel(options_.algorithm, period_, limit_, capacity_, [&](const auto& k) {
    return acquire(k, normalize(key_hash), detail::ns(now), permits);
  });
}

RateDecision KeyedLimiter::peek(std::string_view key, TimePoint now) const noexcept {
  return peek_hash(hash(key), now);
}

RateDecision KeyedLimiter::peek_hash(uint64_t key_hash, TimePoint now) const noexcept {
  return with_kernel(options_.algorithm, period_, limit_, capacity_, [&](const auto& k) {
    return peek_in(k, normalize(key_hash), detail::ns(now));
  });
}

template <class Kernel>
RateDecision KeyedLimiter::acquire(const Kernel& k, uint64_t h, int64_t now, uint64_t n) noexcept {
  Shard& s = shards_[h & shard_mask_];
  // The slot is most likely not in cache (a large table, random keys): start loading it
  // before the lock, so the miss overlaps the lock's atomic operation.
  if (Slot* hint = s.slots_hint.load(std::memory_order_relaxed); hint != nullptr) {
    __builtin_prefetch(hint + home(h, s.capacity_hint.load(std::memory_order_relaxed)));
  }
  std::lock_guard lock(s.mu);
  bool found = false;
  uint32_t i = 0;
  if (s.capacity != 0) i = probe(s.slots, s.capacity, h, found);
  uint64_t next;
  const RateDecision d = k.decide(found ? s.slots[i].word : Kernel::kFresh, now, n, next);
  if (!d.allowed) {
    ++s.rejected;
    return d;
  }
  ++s.admitted;
  if (found) {
    s.slots[i].word = next;
  } else if (n != 0) {
    if (s.capacity == 0 || s.size + 1 > max_keys(s.capacity)) {
      if (!make_room(k, s, now)) return d;  // no table at all (allocation failed): not recorded
      i = probe(s.slots, s.capacity, h, found);
    }
    s.slots[i] = Slot{h, next};
    ++s.size;
  }
  return d;
}

template <class Kernel>
RateDecision KeyedLimiter::peek_in(const Kernel& k, uint64_t h, int64_t now) const noexcept {
  Shard& s = shards_[h & shard_mask_];
  uint64_t word = Kernel::kFresh;
  {
    std::lock_guard lock(s.mu);
    bool found = false;
    if (s.capacity != 0) {
      const uint32_t i = probe(s.slots, s.capacity, h, found);
      if (found) word = s.slots[i].word;
    }
  }
  return detail::peek_one(k, word, now);
}

// Makes room for one more key in a full (or not yet allocated) shard: sweep idle keys, grow,
// or evict the keys with the least debt. Returns false only if the shard has no table.
template <class Kernel>
bool KeyedLimiter::make_room(const Kernel& k, Shard& s, int64_t now) noexcept {
  if (s.capacity == 0) {
    s.rung = 0;
    Slot* slots = allocate_slots(rungs_[0]);
    if (slots == nullptr) return false;
    add_bytes(std::size_t{rungs_[0]} * sizeof(Slot));
    s.slots = slots;
    s.capacity = rungs_[0];
    publish(s);
    return true;
  }
  const uint32_t keys_max = max_keys(s.capacity);
  if (s.rung + 1 < rung_count_) {
    sweep_shard(k, s, now, nullptr);
    if (s.size <= keys_max - keys_max / 4) return true;
    if (grow(s)) return true;
    // Allocation failed: treat the table as being at its bound.
  }
  std::array<uint32_t, 65> histogram{};
  sweep_shard(k, s, now, &histogram);
  const uint32_t target = keys_max - std::max<uint32_t>(1, keys_max / 8);
  if (s.size > target) evict_least_debt(k, s, now, s.size - target, histogram);
  return true;
}

// Evicts every idle key of the shard. With `histogram`, also counts the keys that stay by the
// power-of-two bucket of their debt.
template <class Kernel>
std::size_t KeyedLimiter::sweep_shard(const Kernel& k, Shard& s, int64_t now,
                                      std::array<uint32_t, 65>* histogram) noexcept {
  if (s.capacity == 0 || s.size == 0) return 0;
  std::size_t evicted = 0;
  const uint32_t start = find_empty(s.slots, s.capacity);
  uint32_t i = next_slot(start, s.capacity);
  while (i != start) {
    Slot& slot = s.slots[i];
    if (slot.hash != 0) {
      const Duration r = k.recovery(slot.word, now);
      if (r.count() == 0) {
        erase_at(s.slots, s.capacity, i);
        --s.size;
        ++evicted;
        continue;  // slot i now holds a not-yet-visited entry (or is empty)
      }
      if (histogram != nullptr) ++(*histogram)[debt_bucket(k.debt(slot.word, now))];
    }
    i = next_slot(i, s.capacity);
  }
  s.evictions_idle += evicted;
  return evicted;
}

// Evicts `count` keys with the least debt: every key in the buckets below the one where the
// count is reached, and an evenly spread share of that bucket's keys. Spreading matters: taking
// a contiguous run of the table would leave the rest of it denser than average, and linear
// probing degrades quickly in dense regions.
template <class Kernel>
void KeyedLimiter::evict_least_debt(const Kernel& k, Shard& s, int64_t now, std::size_t count,
                                    const std::array<uint32_t, 65>& histogram) noexcept {
  int threshold = 64;
  std::size_t below = 0;
  for (int b = 0; b <= 64; ++b) {
    if (below + histogram[b] >= count) {
      threshold = b;
      break;
    }
    below += histogram[b];
  }
  // Of the `in_bucket` keys of the threshold bucket, evict `wanted`: the j-th one seen (from
  // 1) goes when floor(j * wanted / in_bucket) steps up.
  const uint64_t in_bucket = histogram[threshold];
  const uint64_t wanted = count - std::min(count, below);
  uint64_t seen = 0;
  const uint32_t start = find_empty(s.slots, s.capacity);
  uint32_t i = next_slot(start, s.capacity);
  while (i != start) {
    Slot& slot = s.slots[i];
    if (slot.hash != 0) {
      const int bucket = debt_bucket(k.debt(slot.word, now));
      bool evict = bucket < threshold;
      if (bucket == threshold && seen < in_bucket) {
        ++seen;
        evict = (seen * wanted) / in_bucket != ((seen - 1) * wanted) / in_bucket;
      }
      if (evict) {
        uint64_t next;
        if (k.decide(slot.word, now, 0, next).remaining == 0) ++s.evictions_limited;
        ++s.evictions_forced;
        erase_at(s.slots, s.capacity, i);
        --s.size;
        continue;  // slot i now holds a not-yet-visited entry (or is empty)
      }
    }
    i = next_slot(i, s.capacity);
  }
}

bool KeyedLimiter::grow(Shard& s) noexcept {
  const uint32_t capacity = rungs_[s.rung + 1];
  Slot* slots = allocate_slots(capacity);
  if (slots == nullptr) return false;
  add_bytes(std::size_t{capacity} * sizeof(Slot));
  for (uint32_t i = 0; i < s.capacity; ++i) {
    if (s.slots[i].hash == 0) continue;
    bool found;
    const uint32_t j = probe(slots, capacity, s.slots[i].hash, found);
    slots[j] = s.slots[i];
  }
  std::free(s.slots);
  sub_bytes(std::size_t{s.capacity} * sizeof(Slot));
  s.slots = slots;
  s.capacity = capacity;
  publish(s);
  ++s.rung;
  return true;
}

// ---------------------------------------------------------------------------------------------
// Maintenance and introspection

bool KeyedLimiter::contains(std::string_view key) const noexcept {
  const uint64_t h = normalize(hash(key));
  Shard& s = shards_[h & shard_mask_];
  std::lock_guard lock(s.mu);
  if (s.capacity == 0) return false;
  bool found = false;
  probe(s.slots, s.capacity, h, found);
  return found;
}

bool KeyedLimiter::erase(std::string_view key) noexcept {
  const uint64_t h = normalize(hash(key));
  Shard& s = shards_[h & shard_mask_];
  std::lock_guard lock(s.mu);
  if (s.capacity == 0) return false;
  bool found = false;
  const uint32_t i = probe(s.slots, s.capacity, h, found);
  if (!found) return false;
  erase_at(s.slots, s.capacity, i);
  --s.size;
  return true;
}

std::size_t KeyedLimiter::sweep(TimePoint now) noexcept {
  return with_kernel(options_.algorithm, period_, limit_, capacity_, [&](const auto& k) {
    std::size_t total = 0;
    for (uint32_t i = 0; i <= shard_mask_; ++i) {
      std::lock_guard lock(shards_[i].mu);
      total += sweep_shard(k, shards_[i], detail::ns(now), nullptr);
    }
    return total;
  });
}

void KeyedLimiter::clear() noexcept {
  for (uint32_t i = 0; i <= shard_mask_; ++i) {
    Shard& s = shards_[i];
    std::lock_guard lock(s.mu);
    std::free(s.slots);
    sub_bytes(std::size_t{s.capacity} * sizeof(Slot));
    s.slots = nullptr;
    s.capacity = 0;
    publish(s);
    s.size = 0;
    s.rung = 0;
  }
}

KeyedLimiter::Stats KeyedLimiter::stats() const noexcept {
  Stats st;
  for (uint32_t i = 0; i <= shard_mask_; ++i) {
    Shard& s = shards_[i];
    std::lock_guard lock(s.mu);
    st.keys += s.size;
    st.admitted += s.admitted;
    st.rejected += s.rejected;
    st.evictions_idle += s.evictions_idle;
    st.evictions_forced += s.evictions_forced;
    st.evictions_limited += s.evictions_limited;
    st.capacity_slots += s.capacity;
  }
  st.memory_bytes = bytes_.load(std::memory_order_relaxed);
  st.peak_memory_bytes = peak_bytes_.load(std::memory_order_relaxed);
  st.max_bytes = options_.max_bytes;
  st.max_keys = uint64_t{max_keys(rungs_[rung_count_ - 1])} * (shard_mask_ + 1);
  return st;
}

}  // namespace bulwark::limit
