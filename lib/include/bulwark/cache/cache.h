// Cache: a sharded, size-bounded, TTL cache with single-flight fills and stale-if-error.
//
// What it is
//   Cache<K, V> maps keys to immutable values held as std::shared_ptr<const V>. A reader gets
//   its own reference: reading never copies a value, and evicting, replacing or invalidating an
//   entry never frees a value some reader still holds. It is bounded by entry count AND by
//   bytes, expires entries after a TTL, and lets concurrent misses for one key share a single
//   fill ("single-flight"). When a fill fails (or the caller knows the upstream is down), an
//   expired entry can still be served for up to `stale_if_error` after it expired.
//   K must be copyable (the cache keeps its own copy) and hashable by Hash; V is never copied.
//
// Time
//   The cache never reads a clock: every operation takes `now` (use Clock::now(); tests use
//   testing::ManualClock). An entry written at `now` with TTL `ttl` is
//     fresh                   while now <  expires_at = now + ttl (saturating),
//     stale (servable on
//       error only)           while expires_at <= now < expires_at + stale_if_error,
//     dead                    from expires_at + stale_if_error on.
//   get() returns fresh entries only. An expired lookup counts an expiration (and a miss); the
//   entry is kept while it is stale (if room allows, see eviction) and removed when a lookup
//   finds it dead.
//
// Bounds and memory accounting
//   The cache is split into `shards` independent shards (a power of two); a key's shard is
//   chosen by its hash. max_entries and max_bytes are divided exactly among the shards (the
//   first `max % shards` shards get one more), so the totals never exceed the bounds. Each
//   entry is charged size(key, value) bytes, where `size` is the function given to the
//   constructor (default: DefaultSize, below), once, when it is written. The bookkeeping of
//   an entry (node with its reference count, ring links, index slot: about 150 bytes for
//   8-byte keys and values) is NOT charged; size max_bytes for the payload.
//   An entry larger than max_entry_bytes (default and upper limit: one shard's byte budget,
//   max_bytes / shards) is refused: put() returns false, stats().rejected counts it, and an
//   existing entry for the key is removed (it would otherwise serve data the caller has just
//   replaced).
//
// Recency (eviction order): CLOCK, also called second chance
//   Each shard keeps its entries in a circular queue in insertion order; the "hand" points at
//   the oldest. Inserting a key, or replacing its value, puts it at the newest end with its
//   reference mark cleared. A hit sets the entry's mark and does not move it (it writes one
//   byte into the entry, and only if the mark was clear). To make room the shard looks at the
//   hand:
//     - a marked, unexpired entry has its mark cleared and the hand moves past it (it is now
//       the newest; it survived one pass),
//     - anything else (unmarked, or expired: expired entries get no second chance) is evicted.
//   So an entry not read since it was inserted is evicted in insertion order (FIFO), an entry
//   read since the hand last passed it gets one more pass, and several hits count as one.
//   It differs from exact LRU in one way: entries marked during the same pass keep their
//   insertion order among themselves, not the order of their last hits. Eviction is per shard:
//   the globally least recent entry is not necessarily the one evicted.
//
// Single-flight
//   get_or_fill(key, now, fill) on a miss runs `fill` on the calling thread, outside every
//   lock, unless a fill for the key is already running: then it waits for that fill and gets
//   its outcome (the value, or the stale value / error described next). N concurrent misses
//   for one key run exactly one fill. stats().fills counts fills started, fill_waits the
//   callers that waited on another caller's fill. A fill must not wait for its own key (it
//   would wait for itself); it may use the cache otherwise, including invalidate(key).
//
// stale-if-error
//   If the fill fails (returns an error, e.g. errc::circuit_open from a pipeline whose breaker
//   is open, or throws), the caller and every waiter get the key's entry if it is still fresh
//   (written by a concurrent put) or stale (stats().stale_served counts each delivery,
//   Cached::stale is true); if it is dead or absent they get the fill's error (errc::call_failed
//   if the fill threw). When the caller already knows the upstream is unavailable, get_stale()
//   serves the same way without filling.
//
// Invalidation
//   invalidate(key) removes the entry and detaches any fill in flight for the key; clear() does
//   both for every key. A detached fill still hands its value to the callers that were
//   already waiting for it (they asked before the invalidation), but never inserts it, so a
//   value computed before an invalidation cannot reappear after it. A caller arriving after the
//   invalidation starts a new fill. put(key) detaches an in-flight fill the same way: the put
//   value is newer than whatever the fill started from.
//
// Thread-safety
//   Every member is safe to call from any thread. Each shard has one mutex, held for the
//   lookup (a hit: an index probe, a mark, a reference-count increment) or the linking of an
//   entry prepared beforehand; it is never held while a fill, the size function, a value's
//   construction or destruction, or a completion callback runs (removed entries are released
//   after the mutex). Statistics are per-shard counters written under the shard mutex and
//   read without it: stats() is exact once writers are quiescent, and each counter is
//   monotonic. The size function must not call back into the same cache. The cache must
//   outlive every FillLease and every Flight it handed out.
//   A reader's pointer keeps the value alive; for a value stored by value (put(key, V), a fill
//   returning V) it keeps the whole entry node alive, since the value lives inside it.
//
// Failure modes
//   No exceptions on the data path except from the caller's own code: a throwing fill
//   propagates to the caller that ran it (waiters get errc::call_failed or a stale value); a
//   throwing size function or value constructor propagates from put() with the cache
//   unchanged (from a fill: like a throwing fill). An allocation failure while growing a
//   shard's index propagates from the write that needed it; entries evicted to make room for
//   it stay evicted, nothing else changes. Invalid options throw std::invalid_argument from
//   the constructor.
//
// Example:
//   bulwark::cache::Cache<std::string, Profile> profiles(
//       {.max_entries = 100'000, .max_bytes = 256 << 20, .ttl = 30s, .stale_if_error = 5min});
//   bulwark::Result<bulwark::cache::Cached<Profile>> p = profiles.get_or_fill(
//       user_id, clock.now(), [&]() -> bulwark::Result<Profile> {
//         return pipeline.execute([&] { return backend.load_profile(user_id); });
//       });
//   if (p) render(**p, /*stale=*/p->stale); else fail(p.error());
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <ranges>
#include <stdexcept>
#include <stop_token>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#include "bulwark/core/clock.h"
#include "bulwark/core/error.h"
#include "bulwark/core/striped_counter.h"

namespace bulwark::cache {

struct CacheOptions {
  // Upper bound on the number of entries, fresh and expired, over all shards. >= 1.
  std::size_t max_entries = 10'000;
  // Upper bound on the charged bytes of all entries (see "memory accounting"). >= 1.
  std::size_t max_bytes = std::size_t{64} << 20;
  // Largest single entry accepted, in charged bytes. 0 (default) or anything larger means one
  // shard's byte budget, max_bytes / shards (rounded down).
  std::size_t max_entry_bytes = 0;
  // Number of independent shards (each with its own mutex and budget). >= 1. Rounded down to a
  // power of two, to at most max_entries (so that every shard can hold an entry) and to at
  // most 65536. More shards mean less lock contention, smaller per-shard budgets (the largest
  // entry is max_bytes / shards) and a coarser (per-shard) eviction order.
  std::size_t shards = 16;
  // Time to live of an entry written by put() or a fill without a per-call TTL. > 0.
  // Duration::max() means "never expires".
  Duration ttl = std::chrono::seconds(60);
  // How long after its expiry an entry may still be served when a fill fails (or through
  // get_stale()). >= 0; 0 disables stale serving, and expired entries are dropped when found.
  Duration stale_if_error = Duration::zero();

  // Throws std::invalid_argument("CacheOptions.<field>: ...") on the first invalid field.
  void validate() const;
};

// Counters since construction (monotonic) and two gauges (entries, bytes).
// Every lookup (get, get_stale, get_or_fill) counts exactly one hit or one miss.
struct CacheStats {
  uint64_t hits = 0;             // lookups that found a fresh entry
  uint64_t misses = 0;           // lookups that did not (absent, expired)
  uint64_t expirations = 0;      // misses that found the entry expired (subset of misses)
  uint64_t stale_served = 0;     // deliveries of an expired value (get_stale, failed fills)
  uint64_t fills = 0;            // fills started by get_or_fill / begin_fill
  uint64_t fill_failures = 0;    // fills that ended in an error (returned, thrown, abandoned)
  uint64_t fill_waits = 0;       // callers that waited for another caller's fill
  uint64_t inserts = 0;          // entries added for a key that had none
  uint64_t updates = 0;          // values replaced for a key that had an entry
  uint64_t rejected = 0;         // values not stored: larger than max_entry_bytes, or ttl <= 0
  uint64_t evictions = 0;        // entries removed to make room (fresh or expired)
  uint64_t invalidations = 0;    // entries removed by invalidate(), clear() or a rejected put
  uint64_t expired_removed = 0;  // dead entries removed when a lookup found them
  uint64_t entries = 0;          // current entries (gauge)
  uint64_t bytes = 0;            // current charged bytes (gauge)
  // Invariant (quiescent): inserts == entries + evictions + invalidations + expired_removed.
};

// A value as handed out by the cache.
template <class V>
struct Cached {
  std::shared_ptr<const V> value;  // never null in a successful Result
  bool stale = false;              // true if served expired under stale-if-error
  TimePoint expires_at{};          // when the entry expired / will expire

  explicit operator bool() const noexcept { return value != nullptr; }
  const V& operator*() const noexcept { return *value; }
  const V* operator->() const noexcept { return value.get(); }
};

// The default size function: size(key) + size(value), where size(x) is
//   sizeof(T) + x.size() * sizeof(element)   for owning contiguous containers (std::string,
//                                            std::vector<int>, ...: a contiguous sized range
//                                            that is not trivially copyable),
//   sizeof(T)                                for everything else.
// Elements' own heap memory (std::vector<std::string>) and node-based containers are not
// seen; pass your own size function for such values.
struct DefaultSize {
  template <class T>
  static std::size_t of(const T& x) noexcept {
    if constexpr (std::ranges::contiguous_range<const T> && std::ranges::sized_range<const T> &&
                  !std::is_trivially_copyable_v<T>) {
      return sizeof(T) + static_cast<std::size_t>(std::ranges::size(x)) *
                             sizeof(std::ranges::range_value_t<const T>);
    } else {
      return sizeof(T);
    }
  }
  template <class K, class V>
  std::size_t operator()(const K& key, const V& value) const noexcept {
    return of(key) + of(value);
  }
};

template <class K, class V, class Hash, class KeyEqual>
class Cache;

// One fill in flight, shared by the caller that runs it and the callers waiting for it.
// Obtained from Cache::begin_fill (FillStart::follow); get_or_fill uses it internally.
template <class V>
class Flight {
 public:
  using Outcome = Result<Cached<V>>;

  // Blocks until the fill completes and returns its outcome (the value, a stale value, or the
  // error). With a stop token: gives up with errc::cancelled once a stop is requested (the fill
  // itself goes on for the others).
  Outcome wait() { return wait(std::stop_token{}); }
  Outcome wait(std::stop_token stop) {
    std::unique_lock lock(mu_);
    cv_.wait(lock, stop, [&] { return outcome_.has_value(); });
    if (!outcome_) return make_error_code(errc::cancelled);
    return deliver(*outcome_);
  }

  // Calls fn(outcome) exactly once when the fill completes: on the completing thread, with no
  // lock held, or right here if it already has. fn must not throw.
  void on_complete(std::function<void(const Outcome&)> fn) {
    std::unique_lock lock(mu_);
    if (!outcome_) {
      callbacks_.push_back(std::move(fn));
      return;
    }
    Outcome copy = deliver(*outcome_);
    lock.unlock();
    fn(copy);
  }

  bool done() const {
    std::lock_guard lock(mu_);
    return outcome_.has_value();
  }

  explicit Flight(StripedCounter* stale_served) : stale_served_(stale_served) {}

 private:
  template <class, class, class, class>
  friend class Cache;

  // Counts a stale delivery; every caller that is handed a stale value counts once.
  Outcome deliver(const Outcome& o) {
    if (o && o->stale) stale_served_->add();
    return o;
  }

  void publish(Outcome outcome) {
    std::vector<std::function<void(const Outcome&)>> callbacks;
    {
      std::lock_guard lock(mu_);
      outcome_ = std::move(outcome);
      callbacks.swap(callbacks_);
    }
    cv_.notify_all();
    for (auto& fn : callbacks) fn(deliver(*outcome_));  // outcome_ is immutable from here on
  }

  mutable std::mutex mu_;
  std::condition_variable_any cv_;
  std::optional<Outcome> outcome_;
  std::vector<std::function<void(const Outcome&)>> callbacks_;
  StripedCounter* stale_served_;
  // Guarded by the owning shard's mutex: once detached (completed, invalidated, superseded by
  // a put) the flight is no longer findable and its value is not inserted.
  bool detached_ = false;
};

// Per-call options of get_or_fill / begin_fill.
struct FillOptions {
  // TTL of the filled value; default CacheOptions::ttl. <= 0: returned, not stored.
  std::optional<Duration> ttl;
  // A caller waiting for another caller's fill gives up with errc::cancelled when a stop is
  // requested. (The caller that runs the fill is cancelled through its own fill function.)
  std::stop_token stop;
};

template <class K, class V, class Hash = std::hash<K>, class KeyEqual = std::equal_to<K>>
class Cache {
  struct Node;
  using NodePtr = std::shared_ptr<Node>;

 public:
  using key_type = K;
  using value_type = V;
  using SizeFn = std::function<std::size_t(const K&, const V&)>;
  using Outcome = Result<Cached<V>>;

  // Throws std::invalid_argument if `options` is invalid or `size` is empty.
  explicit Cache(CacheOptions options = {}, SizeFn size = DefaultSize{}, Hash hash = Hash{},
                 KeyEqual equal = KeyEqual{})
      : options_(std::move(options)),
        size_(std::move(size)),
        hash_(std::move(hash)),
        equal_(std::move(equal)) {
    options_.validate();
    if (!size_) throw std::invalid_argument("Cache: size function is empty");
    std::size_t shards = 1;
    // At most 2^16: the shard is picked from the top 16 bits of the hash.
    while (shards * 2 <= options_.shards && shards * 2 <= options_.max_entries &&
           shards < (std::size_t{1} << 16)) {
      shards *= 2;
    }
    shard_mask_ = shards - 1;
    shards_ = std::make_unique<Shard[]>(shards);
    for (std::size_t i = 0; i < shards; ++i) {
      shards_[i].entry_budget = options_.max_entries / shards + (i < options_.max_entries % shards);
      shards_[i].byte_budget = options_.max_bytes / shards + (i < options_.max_bytes % shards);
    }
    max_entry_bytes_ = options_.max_bytes / shards;
    if (options_.max_entry_bytes != 0 && options_.max_entry_bytes < max_entry_bytes_) {
      max_entry_bytes_ = options_.max_entry_bytes;
    }
  }

  ~Cache() {
    for (std::size_t i = 0; i <= shard_mask_; ++i) {
      Graveyard grave;
      shards_[i].release_all(grave);
    }
  }

  Cache(const Cache&) = delete;
  Cache& operator=(const Cache&) = delete;

  const CacheOptions& options() const noexcept { return options_; }
  std::size_t shard_count() const noexcept { return shard_mask_ + 1; }
  // The effective largest entry, in charged bytes.
  std::size_t max_entry_bytes() const noexcept { return max_entry_bytes_; }

  // ---- Lookups ---------------------------------------------------------------------------

  // The fresh value for `key`, or null (absent or expired). A hit marks the entry as used.
  std::shared_ptr<const V> get(const K& key, TimePoint now) {
    const uint64_t h = hash_of(key);
    Shard& s = shard_for(h);
    s.prefetch(h);
    Graveyard grave;
    std::lock_guard lock(s.mu);
    Node* n = s.find(h, key, equal_);
    if (n != nullptr && now < n->expires_at) {
      if (!n->referenced) n->referenced = true;  // no store when set: hot entries stay clean
      bump(s.hits);
      return n->share(n->self);
    }
    s.count_miss(n, now, options_.stale_if_error, grave);
    return nullptr;
  }

  // For callers that know the upstream is unavailable (breaker open): the fresh value
  // (stale == false, a hit), else the expired value within its stale-if-error window
  // (stale == true, a miss counted in stale_served), else an empty Cached (a miss).
  Cached<V> get_stale(const K& key, TimePoint now) {
    const uint64_t h = hash_of(key);
    Shard& s = shard_for(h);
    s.prefetch(h);
    Graveyard grave;
    std::lock_guard lock(s.mu);
    Node* n = s.find(h, key, equal_);
    if (n != nullptr && now < n->expires_at) {
      if (!n->referenced) n->referenced = true;
      bump(s.hits);
      return {n->share(n->self), false, n->expires_at};
    }
    Cached<V> out;
    if (n != nullptr && now < stale_end(n)) {
      out = {n->share(n->self), true, n->expires_at};
      stale_served_.add();
    }
    s.count_miss(n, now, options_.stale_if_error, grave);
    return out;
  }

  // ---- Writes ----------------------------------------------------------------------------

  // Stores `value` for `key` with `ttl` (default options().ttl), replacing any entry, evicting
  // as needed. Returns false (and removes any entry for the key) if the value is larger than
  // max_entry_bytes() or ttl <= 0. Detaches an in-flight fill for the key (see Invalidation).
  // The by-value overload stores the value inside the entry's own allocation (one allocation,
  // and a hit touches one fewer cache line); the shared_ptr overload keeps the caller's
  // pointer (no copy). A null pointer is treated like invalidate(key) and returns false.
  bool put(const K& key, std::shared_ptr<const V> value, TimePoint now,
           std::optional<Duration> ttl = {}) {
    return put_prepared(key, std::move(value), now, ttl);
  }
  bool put(const K& key, V value, TimePoint now, std::optional<Duration> ttl = {}) {
    return put_prepared(key, std::move(value), now, ttl);
  }

  // Removes the entry for `key` and detaches an in-flight fill for it. Returns true if an
  // entry was removed.
  bool invalidate(const K& key) {
    const uint64_t h = hash_of(key);
    Shard& s = shard_for(h);
    Graveyard grave;
    std::lock_guard lock(s.mu);
    s.detach_flight(key);
    Node* n = s.find(h, key, equal_);
    if (n == nullptr) return false;
    s.remove(n, grave);
    bump(s.invalidations);
    return true;
  }

  // Removes every entry and detaches every in-flight fill (shard by shard: a put racing with
  // clear() may survive it).
  void clear() {
    for (std::size_t i = 0; i <= shard_mask_; ++i) {
      Shard& s = shards_[i];
      Graveyard grave;
      std::lock_guard lock(s.mu);
      for (auto& [k, f] : s.flights) f->detached_ = true;
      s.flights.clear();
      add(s.invalidations, s.count);
      s.release_all(grave);
    }
  }

  // ---- Single-flight ---------------------------------------------------------------------

  // The right to complete one fill. Move-only. Destroying it without complete() completes the
  // fill with errc::cancelled, so the waiters never hang on an abandoned fill.
  class FillLease {
   public:
    FillLease(FillLease&& o) noexcept
        : cache_(std::exchange(o.cache_, nullptr)),
          key_(std::move(o.key_)),
          hash_(o.hash_),
          flight_(std::move(o.flight_)),
          begun_(o.begun_),
          ttl_(o.ttl_) {}
    FillLease& operator=(FillLease&&) = delete;
    FillLease(const FillLease&) = delete;
    ~FillLease() {
      if (cache_ != nullptr) {
        cache_->finish_fill(*this, make_error_code(errc::cancelled), begun_, false);
      }
    }

    // Ends the fill with its result, in any shape get_or_fill accepts from a fill function or
    // an error_code: stores the value (unless the fill was detached, or the value is refused)
    // or applies stale-if-error to the error, wakes every waiter with the outcome and returns
    // it. `now` is the completion time: stale windows are judged then and the stored value's
    // TTL counts from it. Call at most once.
    template <class R>
    Outcome complete(R&& filled, TimePoint now) {
      Cache* c = std::exchange(cache_, nullptr);
      Result<NodePtr> prepared = make_error_code(errc::call_failed);
      try {
        prepared = c->prepare(key_, hash_, std::forward<R>(filled));
      } catch (...) {
        c->finish_fill(*this, make_error_code(errc::call_failed), now, false);
        throw;
      }
      return c->finish_fill(*this, std::move(prepared), now, true);
    }

    // True until complete() is called (or the lease is moved from).
    bool pending() const noexcept { return cache_ != nullptr; }
    const K& key() const noexcept { return key_; }
    const std::shared_ptr<Flight<V>>& flight() const noexcept { return flight_; }

   private:
    friend class Cache;
    FillLease(Cache* c, K key, uint64_t h, std::shared_ptr<Flight<V>> f, TimePoint begun,
              Duration ttl)
        : cache_(c),
          key_(std::move(key)),
          hash_(h),
          flight_(std::move(f)),
          begun_(begun),
          ttl_(ttl) {}

    Cache* cache_;
    K key_;
    uint64_t hash_;
    std::shared_ptr<Flight<V>> flight_;
    TimePoint begun_;
    Duration ttl_;
  };

  // What begin_fill found. Exactly one of the three is set.
  struct FillStart {
    Cached<V> hit;                      // a fresh value: nothing else to do
    std::optional<FillLease> lead;      // run the fill, then lead->complete(...)
    std::shared_ptr<Flight<V>> follow;  // another caller is filling: wait on it
  };

  // The building block of get_or_fill for callers that must not block (e.g. coroutines):
  // a lookup that on a miss either makes the caller the filler (lead) or joins the fill in
  // flight (follow). Counts like get_or_fill.
  FillStart begin_fill(const K& key, TimePoint now, const FillOptions& fo = {}) {
    const uint64_t h = hash_of(key);
    Shard& s = shard_for(h);
    s.prefetch(h);
    FillStart out;
    Graveyard grave;
    std::lock_guard lock(s.mu);
    Node* n = s.find(h, key, equal_);
    if (n != nullptr && now < n->expires_at) {
      if (!n->referenced) n->referenced = true;
      bump(s.hits);
      out.hit = {n->share(n->self), false, n->expires_at};
      return out;
    }
    s.count_miss(n, now, options_.stale_if_error, grave);
    if (!s.flights.empty()) {
      if (auto it = s.flights.find(key); it != s.flights.end()) {
        bump(s.fill_waits);
        out.follow = it->second;
        return out;
      }
    }
    auto flight = std::make_shared<Flight<V>>(&stale_served_);
    s.flights.emplace(key, flight);
    bump(s.fills);
    out.lead.emplace(
        FillLease(this, key, h, std::move(flight), now, fo.ttl.value_or(options_.ttl)));
    return out;
  }

  // The fresh value for `key`; on a miss, the outcome of exactly one fill shared by all
  // concurrent callers for the key (see Single-flight and stale-if-error above).
  // `fill` is called with no arguments and returns Result<V>, Result<std::shared_ptr<const
  // V>>, V or std::shared_ptr<const V> (a null pointer is a failure: errc::call_failed). The
  // stored value's TTL counts from `now`.
  template <class F>
  Outcome get_or_fill(const K& key, TimePoint now, F&& fill, const FillOptions& fo = {}) {
    if (Cached<V> hit = try_hit(key, now)) return hit;  // a hit needs no single-flight state
    FillStart start = begin_fill(key, now, fo);
    if (start.hit) return std::move(start.hit);
    if (start.follow) return start.follow->wait(fo.stop);
    FillLease& lease = *start.lead;
    try {
      return lease.complete(std::forward<F>(fill)(), now);
    } catch (...) {
      // The fill threw (complete() already finished the flight if it was what threw).
      if (lease.cache_ != nullptr) {
        std::exchange(lease.cache_, nullptr)
            ->finish_fill(lease, make_error_code(errc::call_failed), now, false);
      }
      throw;
    }
  }

  // ---- Introspection ---------------------------------------------------------------------

  CacheStats stats() const {
    CacheStats out;
    const auto r = [](const std::atomic<uint64_t>& a) { return a.load(std::memory_order_relaxed); };
    for (std::size_t i = 0; i <= shard_mask_; ++i) {
      const Shard& c = shards_[i];
      out.hits += r(c.hits);
      out.misses += r(c.misses);
      out.expirations += r(c.expirations);
      out.fills += r(c.fills);
      out.fill_failures += r(c.fill_failures);
      out.fill_waits += r(c.fill_waits);
      out.inserts += r(c.inserts);
      out.updates += r(c.updates);
      out.rejected += r(c.rejected);
      out.evictions += r(c.evictions);
      out.invalidations += r(c.invalidations);
      out.expired_removed += r(c.expired_removed);
      out.entries += r(c.entries_gauge);
      out.bytes += r(c.bytes_gauge);
    }
    out.stale_served = stale_served_.value();
    return out;
  }

  // Current number of entries (fresh and expired).
  std::size_t size() const { return static_cast<std::size_t>(stats().entries); }

 private:
  // One entry. Allocated with std::make_shared, so its reference count sits right before it;
  // the cache's own reference is `self` while the entry is linked. A value stored by value
  // lives in `payload` and readers get an aliasing pointer into the node: a hit then touches
  // the index slot and this one allocation only, and a reader keeps the node (not just the
  // value) alive until it lets go.
  struct Node {
    Node(const K& k, uint64_t h) : key(k), hash(h) {}

    // Hot fields first: a hit on a value stored by value reads key, expires_at, referenced,
    // by_value and self, which with the reference count before them span 56 bytes.
    K key;
    TimePoint expires_at{};
    bool referenced = false;
    bool by_value = false;              // the value is `payload`, not `external`
    NodePtr self;                       // the cache's reference, while linked
    std::shared_ptr<const V> external;  // the value, when handed in as a shared_ptr
    uint64_t hash;
    std::size_t bytes = 0;
    Node* prev = nullptr;  // CLOCK ring, circular; `next` also chains a Graveyard
    Node* next = nullptr;
    std::optional<V> payload;  // the value, when handed in by value

    // A reference that keeps the value alive: the external pointer, or `owner` (a reference
    // to this node) aliased to the payload.
    std::shared_ptr<const V> share(const NodePtr& owner) const {
      if (!by_value) return external;
      return std::shared_ptr<const V>(owner, &*payload);
    }
  };

  // Nodes taken out under a shard mutex are dropped after it is released (declare the
  // Graveyard before the lock), so that V's destructor never runs under the mutex.
  class Graveyard {
   public:
    Graveyard() = default;
    Graveyard(const Graveyard&) = delete;
    Graveyard& operator=(const Graveyard&) = delete;
    ~Graveyard() {
      while (head_ != nullptr) {
        Node* n = head_;
        head_ = n->next;
        NodePtr last = std::move(n->self);  // frees n unless a reader still holds it
      }
    }
    void bury(Node* n) noexcept {
      n->next = head_;
      head_ = n;
    }

   private:
    Node* head_ = nullptr;
  };

  static void bump(std::atomic<uint64_t>& a) noexcept { add(a, 1); }
  static void add(std::atomic<uint64_t>& a, uint64_t n) noexcept {
    a.store(a.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }

  // Open-addressing index (linear probing, backward-shift deletion, load factor <= 1/2) from
  // the mixed hash to the node; the hash is stored in the slot so that probes past other keys
  // rarely touch their nodes.
  struct Slot {
    uint64_t hash;
    Node* node;
  };

  // Counters (std::atomic<uint64_t>) are written only under the shard mutex, with a plain
  // load + store (no read-modify-write cost), and read by stats() without it. Fields are
  // grouped by cache line: a hit touches lines 0 and 1, a write lines 0 to 2.
  struct alignas(64) Shard {
    // Line 0: every operation.
    std::mutex mu;
    std::atomic<uint64_t> hits{0}, misses{0};
    // Line 1: the index and the ring.
    alignas(64) std::unique_ptr<Slot[]> slots;
    std::size_t slot_mask = 0;  // capacity - 1; capacity 0 while slots is null
    // Copies of slots.get() and slot_mask readable without the mutex, only to prefetch a
    // lookup's slot while the mutex is being acquired. A stale or mismatched pair prefetches
    // the wrong line, which is harmless (a prefetch never faults).
    std::atomic<uintptr_t> slots_hint{0};
    std::atomic<std::size_t> mask_hint{0};
    Node* hand = nullptr;  // oldest entry of the ring; null when empty
    std::size_t count = 0;
    std::size_t bytes = 0;
    std::size_t entry_budget = 0;
    // Line 2: the accounting of writes.
    alignas(64) std::size_t byte_budget = 0;
    std::atomic<uint64_t> entries_gauge{0}, bytes_gauge{0}, inserts{0}, updates{0}, evictions{0},
        rejected{0}, invalidations{0};
    // Rarer events, and the fills in flight.
    alignas(64) std::atomic<uint64_t> expirations{0}, expired_removed{0}, fills{0},
        fill_failures{0}, fill_waits{0};
    std::unordered_map<K, std::shared_ptr<Flight<V>>, Hash, KeyEqual> flights;

    void prefetch(uint64_t h) const noexcept {
      const uintptr_t base = slots_hint.load(std::memory_order_relaxed);
      if (base == 0) return;
      const std::size_t i = h & mask_hint.load(std::memory_order_relaxed);
      __builtin_prefetch(reinterpret_cast<const void*>(base + i * sizeof(Slot)));
    }

    Node* find(uint64_t h, const K& key, const KeyEqual& eq) const {
      if (!slots) return nullptr;
      for (std::size_t i = h & slot_mask;; i = (i + 1) & slot_mask) {
        const Slot& sl = slots[i];
        if (sl.node == nullptr) return nullptr;
        if (sl.hash == h && eq(sl.node->key, key)) return sl.node;
      }
    }

    // Keeps count <= capacity / 2 after every insertion, so re-inserting a node that was just
    // taken out never grows (never throws).
    void index_insert(Node* n) {
      if (!slots || (count + 1) * 2 > slot_mask + 1) grow();
      std::size_t i = n->hash & slot_mask;
      while (slots[i].node != nullptr) i = (i + 1) & slot_mask;
      slots[i] = {n->hash, n};
    }

    void grow() {
      const std::size_t cap = slots ? (slot_mask + 1) * 2 : 16;
      auto fresh = std::make_unique<Slot[]>(cap);  // value-initialised: all empty
      const std::size_t mask = cap - 1;
      for (std::size_t i = 0; slots && i <= slot_mask; ++i) {
        if (slots[i].node == nullptr) continue;
        std::size_t j = slots[i].hash & mask;
        while (fresh[j].node != nullptr) j = (j + 1) & mask;
        fresh[j] = slots[i];
      }
      slots = std::move(fresh);
      slot_mask = mask;
      slots_hint.store(reinterpret_cast<uintptr_t>(slots.get()), std::memory_order_relaxed);
      mask_hint.store(slot_mask, std::memory_order_relaxed);
    }

    void index_erase(Node* n) {
      std::size_t i = n->hash & slot_mask;
      while (slots[i].node != n) i = (i + 1) & slot_mask;
      // Backward shift: pull later members of the probe run into the hole when the hole lies
      // on their path from their home slot, so lookups never need tombstones.
      for (std::size_t j = (i + 1) & slot_mask;; j = (j + 1) & slot_mask) {
        if (slots[j].node == nullptr) break;
        const std::size_t home = slots[j].hash & slot_mask;
        if (((j - home) & slot_mask) >= ((j - i) & slot_mask)) {
          slots[i] = slots[j];
          i = j;
        }
      }
      slots[i] = {0, nullptr};
    }

    void ring_push_newest(Node* n) {
      if (hand == nullptr) {
        n->prev = n->next = n;
        hand = n;
        return;
      }
      Node* newest = hand->prev;
      n->prev = newest;
      n->next = hand;
      newest->next = n;
      hand->prev = n;
    }

    void ring_unlink(Node* n) {
      if (n->next == n) {
        hand = nullptr;
      } else {
        if (hand == n) hand = n->next;
        n->prev->next = n->next;
        n->next->prev = n->prev;
      }
      n->prev = n->next = nullptr;
    }

    void publish_sizes() {
      entries_gauge.store(count, std::memory_order_relaxed);
      bytes_gauge.store(bytes, std::memory_order_relaxed);
    }

    // Takes `n` out of the ring, the index and the accounting, and hands it to `grave`.
    void remove(Node* n, Graveyard& grave) {
      ring_unlink(n);
      index_erase(n);
      --count;
      bytes -= n->bytes;
      publish_sizes();
      grave.bury(n);
    }

    // Links `node` as the newest entry. Throws only if the index must grow and cannot.
    void link(NodePtr node) {
      Node* n = node.get();
      index_insert(n);
      ring_push_newest(n);
      ++count;
      bytes += n->bytes;
      publish_sizes();
      n->self = std::move(node);
    }

    // CLOCK: evicts until one more entry of `incoming` bytes fits.
    void make_room(std::size_t incoming, TimePoint now, Graveyard& grave) {
      while (hand != nullptr && (count + 1 > entry_budget || bytes + incoming > byte_budget)) {
        Node* n = hand;
        if (n->referenced && now < n->expires_at) {
          n->referenced = false;
          hand = n->next;
          continue;
        }
        remove(n, grave);
        bump(evictions);
      }
      // The hand is this shard's next victim: warm the whole node now (it spans two cache
      // lines and only the one holding its links was touched), so that the next eviction here
      // does not stall on it.
      if (hand != nullptr) {
        __builtin_prefetch(hand);
        __builtin_prefetch(reinterpret_cast<const char*>(hand) + 64);
      }
    }

    void count_miss(Node* n, TimePoint now, Duration stale_if_error, Graveyard& grave) {
      bump(misses);
      if (n == nullptr) return;
      bump(expirations);
      if (now >= saturating_add(n->expires_at, stale_if_error)) {
        remove(n, grave);
        bump(expired_removed);
      }
    }

    void detach_flight(const K& key) {
      if (flights.empty()) return;
      if (auto it = flights.find(key); it != flights.end()) {
        it->second->detached_ = true;
        flights.erase(it);
      }
    }

    void release_all(Graveyard& grave) {
      while (hand != nullptr) {
        Node* n = hand;
        ring_unlink(n);
        grave.bury(n);
      }
      slots.reset();
      slot_mask = 0;
      slots_hint.store(0, std::memory_order_relaxed);
      count = bytes = 0;
      publish_sizes();
    }
  };

  template <class T>
  struct IsResult : std::false_type {};
  template <class T>
  struct IsResult<boost::system::result<T, boost::system::error_code>> : std::true_type {};

  // Turns whatever a fill produced into a node ready to link (or an error), outside any lock:
  // the allocation, the value's construction and the size function all run here.
  template <class R>
  Result<NodePtr> prepare(const K& key, uint64_t h, R&& r) const {
    using T = std::remove_cvref_t<R>;
    if constexpr (std::is_same_v<T, boost::system::error_code>) {
      return r;
    } else if constexpr (IsResult<T>::value) {
      if (!r) return r.error();
      return prepare(key, h, std::move(*r));
    } else if constexpr (std::is_same_v<T, std::shared_ptr<const V>> ||
                         std::is_same_v<T, std::shared_ptr<V>>) {
      if (!r) return make_error_code(errc::call_failed);
      auto node = std::make_shared<Node>(key, h);
      node->external = std::forward<R>(r);
      node->bytes = size_(key, *node->external);
      return node;
    } else {
      static_assert(std::is_constructible_v<V, R&&>,
                    "a fill must produce Result<V>, Result<shared_ptr<const V>>, V, "
                    "shared_ptr<const V> or an error_code");
      auto node = std::make_shared<Node>(key, h);
      node->payload.emplace(std::forward<R>(r));
      node->by_value = true;
      node->bytes = size_(key, *node->payload);
      return node;
    }
  }

  static uint64_t mix(uint64_t x) noexcept {
    // A 64-bit finaliser (xor-shift / multiply): std::hash of integers is often the identity,
    // and both the shard (high bits) and the slot (low bits) need well-spread bits.
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
  }
  uint64_t hash_of(const K& key) const { return mix(static_cast<uint64_t>(hash_(key))); }
  Shard& shard_for(uint64_t h) const noexcept {
    return shards_[static_cast<std::size_t>(h >> 48) & shard_mask_];
  }
  TimePoint stale_end(const Node* n) const noexcept {
    return saturating_add(n->expires_at, options_.stale_if_error);
  }

  // The hit path of get_or_fill: counts a hit, or nothing (begin_fill then counts the miss).
  Cached<V> try_hit(const K& key, TimePoint now) {
    const uint64_t h = hash_of(key);
    Shard& s = shard_for(h);
    s.prefetch(h);
    std::lock_guard lock(s.mu);
    Node* n = s.find(h, key, equal_);
    if (n == nullptr || now >= n->expires_at) return {};
    if (!n->referenced) n->referenced = true;
    bump(s.hits);
    return {n->share(n->self), false, n->expires_at};
  }

  template <class T>
  bool put_prepared(const K& key, T&& value, TimePoint now, std::optional<Duration> ttl) {
    const uint64_t h = hash_of(key);
    shard_for(h).prefetch(h);  // the allocation below overlaps the miss
    Result<NodePtr> node = prepare(key, h, std::forward<T>(value));
    if (!node) {  // a null pointer
      invalidate(key);
      return false;
    }
    Shard& s = shard_for(h);
    Graveyard grave;
    std::lock_guard lock(s.mu);
    s.detach_flight(key);
    return insert_locked(s, std::move(*node), now, ttl.value_or(options_.ttl), grave);
  }

  // Under s.mu. Stores or refuses `node`; the caller has detached any flight for the key.
  bool insert_locked(Shard& s, NodePtr node, TimePoint now, Duration ttl, Graveyard& grave) {
    Node* old = s.find(node->hash, node->key, equal_);
    if (node->bytes > max_entry_bytes_ || ttl <= Duration::zero()) {
      bump(s.rejected);
      if (old != nullptr) {
        s.remove(old, grave);
        bump(s.invalidations);
      }
      return false;
    }
    // A replaced entry is taken out first, so make_room neither counts nor evicts it. The new
    // node is linked as the newest, unmarked; readers of the old value keep the old node.
    if (old != nullptr) s.remove(old, grave);
    s.make_room(node->bytes, now, grave);
    node->expires_at = saturating_add(now, ttl);
    node->referenced = false;
    s.link(std::move(node));  // can throw only for a new key (index growth)
    bump(old != nullptr ? s.updates : s.inserts);
    return true;
  }

  Outcome finish_fill(FillLease& lease, Result<NodePtr> prepared, TimePoint now,
                      bool leader_receives) {
    Flight<V>& flight = *lease.flight_;
    Shard& s = shard_for(lease.hash_);
    std::optional<Outcome> out;
    {
      Graveyard grave;
      std::lock_guard lock(s.mu);
      const bool current = !flight.detached_;
      if (current) {
        flight.detached_ = true;
        s.flights.erase(lease.key_);
      }
      if (prepared) {
        const NodePtr& node = *prepared;
        if (current) insert_locked(s, node, now, lease.ttl_, grave);
        out.emplace(Cached<V>{node->share(node), false, saturating_add(now, lease.ttl_)});
      } else {
        bump(s.fill_failures);
        Node* n = s.find(lease.hash_, lease.key_, equal_);
        if (n != nullptr && now < n->expires_at) {
          out.emplace(Cached<V>{n->share(n->self), false, n->expires_at});
        } else if (n != nullptr && now < stale_end(n)) {
          out.emplace(Cached<V>{n->share(n->self), true, n->expires_at});
        } else {
          out.emplace(prepared.error());
        }
      }
    }
    flight.publish(*out);
    if (leader_receives) return flight.deliver(*out);
    return *out;
  }

  CacheOptions options_;
  SizeFn size_;
  Hash hash_;
  KeyEqual equal_;
  std::size_t shard_mask_ = 0;
  std::size_t max_entry_bytes_ = 0;
  std::unique_ptr<Shard[]> shards_;
  StripedCounter stale_served_;
};

}  // namespace bulwark::cache
