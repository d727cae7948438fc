// Metric primitives: Counter, Gauge and Histogram, recorded on hot paths without a lock.
//
// These are the values behind a Registry (registry.h); they can also be used on their own,
// e.g. as members of a policy, and read with value() / snapshot().
//
// How recording stays cheap. Counters and histograms do not share one memory word between
// threads. Every metric owns a range of "cells"; every thread that records gets its own private
// copy of each cell, held in 4 KiB pages that the thread allocates the first time it writes
// into them. Recording is a plain load + add + store on the calling thread's copy (relaxed
// atomics, no read-modify-write instruction, no lock, no cache line shared with another
// thread). Reading (value(), snapshot(), a scrape) sums the copies of all live threads plus
// the folded totals of threads that have exited, under one process-wide lock that recording
// never takes except on the slow path: a thread's first write into a page it has not touched
// yet (one allocation per thread per 512 cells), and writes made while the thread is exiting.
//
// Gauges are a single atomic double (set() must be able to overwrite the whole value, which
// per-thread copies cannot do); add() is a compare-and-swap loop on it.
//
// Accuracy: counters and histograms are exact (no sampling, no decay). Values are doubles, so
// integer counts are exact up to 2^53. A read taken while other threads record sees each cell
// either before or after a concurrent write, so a histogram's count and sum can be one sample
// apart; reads taken after the writers have finished (e.g. joined) are exact.
//
// Histograms: a log-linear layout like HdrHistogram. Between `min` and `max` (rounded outward
// to powers of two) each power of two is split into 2^precision_bits equal-width sub-buckets;
// with the default 7 bits a bucket is at most 1/128 (0.78 %) of its lower edge wide, so a
// percentile estimated by linear interpolation inside its bucket is within 0.78 % of a value
// that was really recorded near that rank. Values below `min` go into one underflow bucket
// [0, min), values at or above `max` into one overflow bucket (percentiles that land there are
// clamped to `max`). The Prometheus `le` bounds (`buckets`) are additional exact split points
// of that layout, so the exported bucket counts are exact counts of samples <= le, not
// interpolations. Memory: (2^precision_bits * octaves + bounds + 3) cells of 8 bytes per
// histogram per recording thread, allocated page by page as values land in them; the default
// layout (2^-20 s .. 2^12 s, 7 bits) is 4115 cells, about 32 KiB if every page is touched and
// typically 8-16 KiB for latencies that span two or three decades.
//
// Thread-safety: every member of Counter, Gauge and Histogram is safe from any thread.
// A metric must not be recorded into while (or after) it is being destroyed; destroying it
// returns its cells, zeroed, for reuse by later metrics.
//
// Failure modes: recording never throws and never blocks on another recorder. If the
// allocation of a thread's cell page fails, the process terminates (std::bad_alloc in a
// noexcept function), as for any other allocation failure on a hot path.
//
// Example:
//   bulwark::observe::Counter requests;
//   bulwark::observe::Histogram latency;         // seconds, default latency layout
//   requests.inc();
//   latency.observe(std::chrono::milliseconds(12));
//   double p99 = latency.snapshot().percentile(0.99);
#pragma once

#include <atomic>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "bulwark/core/clock.h"

namespace bulwark::observe {

// ------------------------------------------------------------------------------------------
// Per-thread cell store (implementation detail, exposed only because recording is inline).
namespace detail {

inline constexpr uint32_t kPageBits = 9;
inline constexpr uint32_t kPageCells = 1u << kPageBits;  // 512 cells = 4 KiB

struct CellPage {
  std::atomic<double> cells[kPageCells];
};

// One thread's private copies of every cell. `pages` is read by its owner without a lock; it
// is only replaced (grown) by the owner while holding the store's lock, and other threads read
// it only under that lock.
struct ThreadCells {
  CellPage** pages = nullptr;
  uint32_t page_count = 0;
};

// The calling thread's cells; nullptr until its first write (and again after it exits).
extern constinit thread_local ThreadCells* t_cells;

// First write into an untouched page, first write of a thread, or write during thread exit.
void add_slow(uint32_t slot, double v) noexcept;

// Adds v to the calling thread's copy of cell `slot`. Only this thread writes this copy, so
// a load and a store (not a fetch_add) are enough; readers load it atomically.
inline void add(uint32_t slot, double v) noexcept {
  ThreadCells* tc = t_cells;
  const uint32_t page = slot >> kPageBits;
  if (tc != nullptr && page < tc->page_count) [[likely]] {
    CellPage* p = tc->pages[page];
    if (p != nullptr) [[likely]] {
      std::atomic<double>& c = p->cells[slot & (kPageCells - 1)];
      c.store(c.load(std::memory_order_relaxed) + v, std::memory_order_relaxed);
      return;
    }
  }
  add_slow(slot, v);
}

// Reserves `n` consecutive zeroed cells; returns the first. std::length_error when the cell
// space (2^32 cells) is exhausted.
uint32_t allocate_cells(uint32_t n);
// Zeroes the cells in every thread's copy and makes them available again.
void release_cells(uint32_t first, uint32_t n) noexcept;
// out[i] = sum over all threads (live and exited) of cell first + i, for i < out.size().
void read_cells(uint32_t first, std::span<double> out);

class HistogramLayout;

}  // namespace detail

// ------------------------------------------------------------------------------------------

// Monotonically increasing value (requests served, bytes sent, errors).
class Counter {
 public:
  Counter();
  ~Counter();
  Counter(const Counter&) = delete;
  Counter& operator=(const Counter&) = delete;

  // Adds v (default 1). Negative and NaN increments are ignored: a counter never goes down.
  void inc(double v = 1.0) noexcept {
    if (v > 0) detail::add(cell_, v);
  }
  // Sum of all increments so far.
  double value() const;

 private:
  uint32_t cell_;
};

// Value that goes up and down (queue depth, in-flight calls, temperature).
class alignas(64) Gauge {
 public:
  Gauge() = default;
  Gauge(const Gauge&) = delete;
  Gauge& operator=(const Gauge&) = delete;

  void set(double v) noexcept { value_.store(v, std::memory_order_relaxed); }
  void add(double v) noexcept {
    double cur = value_.load(std::memory_order_relaxed);
    while (!value_.compare_exchange_weak(cur, cur + v, std::memory_order_relaxed)) {
    }
  }
  void inc() noexcept { add(1.0); }
  void dec() noexcept { add(-1.0); }
  double value() const noexcept { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0.0};
};

// Prometheus `le` bounds, in seconds, for request latencies from sub-millisecond to a minute.
std::vector<double> default_latency_buckets();
// start, start + width, ... (count bounds). std::invalid_argument unless count >= 1, width > 0.
std::vector<double> linear_buckets(double start, double width, size_t count);
// start, start * factor, ... (count bounds). std::invalid_argument unless count >= 1,
// start > 0 and factor > 1.
std::vector<double> exponential_buckets(double start, double factor, size_t count);

struct HistogramOptions {
  // Upper bounds of the exported Prometheus buckets (`le`), strictly increasing and finite;
  // `+Inf` is implicit. May be empty (then only +Inf, _sum and _count are exported).
  std::vector<double> buckets = default_latency_buckets();
  // Range of the fine layout used for percentiles; values outside it are still counted (in the
  // underflow/overflow bucket) and summed. 0 < min < max, both finite; rounded outward to
  // powers of two. The default, 2^-20 .. 2^12, is about 1 us .. 68 min when recording seconds.
  double min = 0x1p-20;
  double max = 0x1p12;
  // Sub-buckets per power of two = 2^precision_bits; bucket width <= 2^-precision_bits of its
  // lower edge. 1..10. The layout may have at most 65536 fine buckets.
  int precision_bits = 7;
};

// A consistent-enough copy of a histogram (see the accuracy note above), cheap to query.
class HistogramSnapshot {
 public:
  HistogramSnapshot() = default;

  uint64_t count() const noexcept { return count_; }
  double sum() const noexcept { return sum_; }
  // Estimated q-quantile, q in [0, 1] (clamped): linear interpolation inside the fine bucket
  // that holds rank q * count. NaN when the histogram is empty.
  double percentile(double q) const noexcept;
  // The Prometheus `le` bounds (without +Inf).
  std::span<const double> bounds() const noexcept;
  // Samples <= bounds()[i], for each bound (cumulative, as Prometheus buckets).
  std::vector<uint64_t> cumulative_counts() const;

  // The samples recorded between `earlier` (a snapshot of the same histogram, taken before)
  // and this one: a windowed distribution, e.g. the p99 of the last minute. Per-bucket counts
  // that went down (a torn read) count as 0. Against a snapshot of another layout (or an empty
  // one) it is a copy of this one.
  HistogramSnapshot since(const HistogramSnapshot& earlier) const;
  // Adds `other`'s samples to these (a distribution across series of one family, which share a
  // layout). A snapshot of another layout is ignored; an empty one takes other's layout.
  void merge(const HistogramSnapshot& other);

 private:
  friend class Histogram;
  std::shared_ptr<const detail::HistogramLayout> layout_;
  std::vector<uint64_t> slots_;  // per fine slot (see detail::HistogramLayout)
  uint64_t count_ = 0;
  double sum_ = 0;
};

// Distribution of observed values (latencies in seconds, sizes in bytes).
class Histogram {
 public:
  // Throws std::invalid_argument when `options` break a constraint documented above.
  explicit Histogram(const HistogramOptions& options = {});
  // Shares a validated layout (a Registry family builds one for all its series).
  explicit Histogram(std::shared_ptr<const detail::HistogramLayout> layout);
  ~Histogram();
  Histogram(const Histogram&) = delete;
  Histogram& operator=(const Histogram&) = delete;

  // Records one sample. NaN is ignored; +/-inf are counted in the overflow/underflow bucket.
  void observe(double v) noexcept {
    uint32_t fine;
    if (v >= min_) [[likely]] {
      fine = v < max_ ? static_cast<uint32_t>((std::bit_cast<uint64_t>(v) >> shift_) - offset_)
                      : overflow_;
    } else {
      if (std::isnan(v)) return;
      fine = 0;
    }
    uint32_t slot = slot_of_[fine];
    const uint32_t splits = slot_of_[fine + 1] - slot - 1;  // `le` bounds inside this bucket
    if (splits != 0) [[unlikely]] {
      // Bounds of fine bucket `fine` start at index slot - fine (one extra slot per bound
      // before it). The sample goes past every bound it exceeds: le semantics are "<=".
      const double* b = bounds_ + (slot - fine);
      uint32_t past = 0;
      while (past < splits && v > b[past]) ++past;
      slot += past;
    }
    detail::add(first_cell_ + slot, 1.0);
    detail::add(sum_cell_, v);
  }
  // Records a duration in seconds (for histograms whose unit is seconds).
  void observe(Duration d) noexcept { observe(std::chrono::duration<double>(d).count()); }

  HistogramSnapshot snapshot() const;
  const std::shared_ptr<const detail::HistogramLayout>& layout() const noexcept { return layout_; }

 private:
  std::shared_ptr<const detail::HistogramLayout> layout_;
  // Copies of the layout's hot fields, so observe() touches only this object and the table.
  const uint32_t* slot_of_;
  const double* bounds_;
  double min_;
  double max_;
  uint64_t offset_;
  uint32_t shift_;
  uint32_t overflow_;
  uint32_t first_cell_;
  uint32_t sum_cell_;
};

namespace detail {

// The fine layout of a histogram. Fine bucket 0 is underflow (-inf, min), 1..log_buckets are
// the log-linear buckets [lo, hi) and log_buckets + 1 is overflow [max, +inf]. Each `le` bound
// b splits the fine bucket that contains it into [.., b] and (b, ..), so the histogram has
// fine buckets + bounds "slots", and slot_of[f] is the first slot of fine bucket f
// (slot_of has fine buckets + 1 entries; the last is the total slot count).
class HistogramLayout {
 public:
  explicit HistogramLayout(const HistogramOptions& options);

  uint32_t slots() const noexcept { return slot_of.back(); }
  // Fine bucket of v (v not NaN).
  uint32_t fine_of(double v) const noexcept;

  std::vector<double> bounds;  // `le` bounds
  std::vector<uint32_t> slot_of;
  std::vector<uint32_t> bound_slot;  // slot whose upper edge is bounds[i]
  std::vector<double> slot_lo;       // value range of each slot, for interpolation
  std::vector<double> slot_hi;
  double min = 0;
  double max = 0;
  uint64_t offset = 0;
  uint32_t shift = 0;
  uint32_t log_buckets = 0;
  uint32_t overflow = 0;  // fine index of the overflow bucket
};

}  // namespace detail
}  // namespace bulwark::observe
