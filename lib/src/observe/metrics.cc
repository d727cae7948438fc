#include "bulwark/observe/metrics.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>

namespace bulwark::observe {
namespace detail {

constinit thread_local ThreadCells* t_cells = nullptr;

namespace {

// Set once the calling thread's cells have been folded away at thread exit; later writes from
// that thread (e.g. from another thread_local's destructor) go straight to the folded totals.
constinit thread_local bool t_exited = false;

CellPage* new_page() {
  auto* p = new CellPage;
  for (auto& c : p->cells) c.store(0.0, std::memory_order_relaxed);
  return p;
}

// Process-wide registry of every thread's cells. Leaked on purpose: threads (including the
// main thread, whose thread_local destructors run before static destructors) and metrics with
// static storage duration may use it at any point of shutdown.
class CellStore {
 public:
  static CellStore& instance() {
    static CellStore* const store = new CellStore;
    return *store;
  }

  uint32_t allocate(uint32_t n) {
    std::lock_guard lock(mu_);
    // First fit among released ranges, then the end of the used space.
    for (auto it = free_.begin(); it != free_.end(); ++it) {
      if (it->second >= n) {
        const uint32_t first = it->first;
        const uint32_t left = it->second - n;
        free_.erase(it);
        if (left != 0) free_.emplace(first + n, left);
        return first;
      }
    }
    if (n > std::numeric_limits<uint32_t>::max() - high_water_) {
      throw std::length_error("bulwark metrics: cell space exhausted");
    }
    const uint32_t first = high_water_;
    high_water_ += n;
    return first;
  }

  void release(uint32_t first, uint32_t n) noexcept {
    std::lock_guard lock(mu_);
    // Zero every copy so that the next owner of these cells starts from 0. No thread writes
    // them any more (a metric is not recorded into while it is destroyed).
    for (ThreadCells* tc : threads_) zero(*tc, first, n);
    zero(retired_, first, n);
    auto [it, inserted] = free_.emplace(first, n);
    if (!inserted) return;  // cannot happen: ranges are released once
    // Coalesce with the neighbours so that large ranges (histograms) can be reused.
    if (auto next = std::next(it); next != free_.end() && it->first + it->second == next->first) {
      it->second += next->second;
      free_.erase(next);
    }
    if (it != free_.begin()) {
      auto prev = std::prev(it);
      if (prev->first + prev->second == it->first) {
        prev->second += it->second;
        free_.erase(it);
      }
    }
  }

  void read(uint32_t first, std::span<double> out) {
    std::fill(out.begin(), out.end(), 0.0);
    std::lock_guard lock(mu_);
    accumulate(retired_, first, out);
    for (const ThreadCells* tc : threads_) accumulate(*tc, first, out);
  }

  // Called by the owning thread.
  void add_slow(uint32_t slot, double v) {
    std::lock_guard lock(mu_);
    if (t_exited) {
      std::atomic<double>& c = cell(retired_, slot);
      c.store(c.load(std::memory_order_relaxed) + v, std::memory_order_relaxed);
      return;
    }
    ThreadCells* tc = t_cells;
    if (tc == nullptr) {
      tc = new ThreadCells;
      threads_.push_back(tc);
      t_cells = tc;
      reaper_.armed = true;  // constructs the thread_local: its destructor folds at exit
    }
    std::atomic<double>& c = cell(*tc, slot);
    c.store(c.load(std::memory_order_relaxed) + v, std::memory_order_relaxed);
  }

 private:
  // Folds the exiting thread's cells into retired_ and unregisters it.
  struct Reaper {
    bool armed = false;
    ~Reaper() {
      if (armed) CellStore::instance().thread_exit();
    }
  };
  static thread_local Reaper reaper_;

  void thread_exit() noexcept {
    std::lock_guard lock(mu_);
    ThreadCells* tc = t_cells;
    t_cells = nullptr;
    t_exited = true;
    if (tc == nullptr) return;
    for (uint32_t p = 0; p < tc->page_count; ++p) {
      CellPage* page = tc->pages[p];
      if (page == nullptr) continue;
      for (uint32_t i = 0; i < kPageCells; ++i) {
        const double v = page->cells[i].load(std::memory_order_relaxed);
        if (v == 0.0) continue;
        // Allocation here may throw only on memory exhaustion; losing the folded counts is
        // then the lesser evil compared with terminating in a thread exit.
        try {
          std::atomic<double>& r = cell(retired_, (p << kPageBits) | i);
          r.store(r.load(std::memory_order_relaxed) + v, std::memory_order_relaxed);
        } catch (...) {
        }
      }
      delete page;
    }
    delete[] tc->pages;
    threads_.erase(std::find(threads_.begin(), threads_.end(), tc));
    delete tc;
  }

  // Requires mu_. The copy of `slot` in `tc`, allocating its page (and growing the page table)
  // if needed.
  static std::atomic<double>& cell(ThreadCells& tc, uint32_t slot) {
    const uint32_t page = slot >> kPageBits;
    if (page >= tc.page_count) {
      const uint32_t count =
          std::max<uint32_t>(page + 1, std::max<uint32_t>(16, tc.page_count * 2));
      auto** pages = new CellPage*[count];
      std::copy_n(tc.pages, tc.page_count, pages);
      std::fill(pages + tc.page_count, pages + count, nullptr);
      CellPage** old = tc.pages;
      tc.pages = pages;
      tc.page_count = count;
      delete[] old;
    }
    if (tc.pages[page] == nullptr) tc.pages[page] = new_page();
    return tc.pages[page]->cells[slot & (kPageCells - 1)];
  }

  static void zero(ThreadCells& tc, uint32_t first, uint32_t n) noexcept {
    for (uint64_t s = first; s < uint64_t{first} + n; ++s) {
      const uint32_t page = static_cast<uint32_t>(s >> kPageBits);
      if (page >= tc.page_count) return;
      if (CellPage* p = tc.pages[page])
        p->cells[s & (kPageCells - 1)].store(0.0, std::memory_order_relaxed);
    }
  }

  static void accumulate(const ThreadCells& tc, uint32_t first, std::span<double> out) {
    uint64_t s = first;
    const uint64_t end = s + out.size();
    while (s < end) {
      const uint32_t page = static_cast<uint32_t>(s >> kPageBits);
      if (page >= tc.page_count) return;
      const uint64_t page_end = std::min<uint64_t>(end, (uint64_t{page} + 1) << kPageBits);
      if (const CellPage* p = tc.pages[page]) {
        for (uint64_t i = s; i < page_end; ++i) {
          out[i - first] += p->cells[i & (kPageCells - 1)].load(std::memory_order_relaxed);
        }
      }
      s = page_end;
    }
  }

  std::mutex mu_;
  std::vector<ThreadCells*> threads_;
  ThreadCells retired_;
  std::map<uint32_t, uint32_t> free_;  // first -> length of released ranges
  uint32_t high_water_ = 0;
};

thread_local CellStore::Reaper CellStore::reaper_;

}  // namespace

void add_slow(uint32_t slot, double v) noexcept { CellStore::instance().add_slow(slot, v); }

uint32_t allocate_cells(uint32_t n) { return CellStore::instance().allocate(n); }

void release_cells(uint32_t first, uint32_t n) noexcept { CellStore::instance().release(first, n); }

void read_cells(uint32_t first, std::span<double> out) { CellStore::instance().read(first, out); }

// --- histogram layout ---------------------------------------------------------------------

namespace {

[[noreturn]] void invalid(const std::string& what) {
  throw std::invalid_argument("HistogramOptions." + what);
}

double floor_pow2(double v) { return std::ldexp(1.0, std::ilogb(v)); }
double ceil_pow2(double v) {
  const double f = floor_pow2(v);
  return f == v ? f : f * 2;
}

}  // namespace

HistogramLayout::HistogramLayout(const HistogramOptions& o) {
  if (!(o.min > 0) || !std::isfinite(o.min)) invalid("min: must be finite and > 0");
  if (!(o.max > o.min) || !std::isfinite(o.max)) invalid("max: must be finite and > min");
  if (o.precision_bits < 1 || o.precision_bits > 10) invalid("precision_bits: must be 1..10");
  for (size_t i = 0; i < o.buckets.size(); ++i) {
    if (!std::isfinite(o.buckets[i])) invalid("buckets: bounds must be finite");
    if (i > 0 && !(o.buckets[i] > o.buckets[i - 1])) {
      invalid("buckets: bounds must be strictly increasing");
    }
  }
  min = floor_pow2(o.min);
  max = ceil_pow2(o.max);
  if (!std::isfinite(max)) invalid("max: too large");
  shift = 52 - static_cast<uint32_t>(o.precision_bits);
  const uint64_t min_key = std::bit_cast<uint64_t>(min) >> shift;
  const uint64_t max_key = std::bit_cast<uint64_t>(max) >> shift;
  if (max_key - min_key > 65536) {
    invalid("precision_bits: min..max with this precision needs more than 65536 buckets");
  }
  offset = min_key - 1;  // fine index 1 is [min, ..)
  log_buckets = static_cast<uint32_t>(max_key - min_key);
  overflow = log_buckets + 1;
  bounds = o.buckets;

  const uint32_t fine = log_buckets + 2;
  // Each bound adds one slot to the fine bucket that contains it.
  std::vector<uint32_t> extra(fine, 0);
  for (double b : bounds) ++extra[fine_of(b)];
  slot_of.resize(fine + 1);
  slot_of[0] = 0;
  for (uint32_t f = 0; f < fine; ++f) slot_of[f + 1] = slot_of[f] + 1 + extra[f];

  auto fine_lo = [&](uint32_t f) {
    if (f == 0) return 0.0;
    if (f == overflow) return max;
    return std::bit_cast<double>((f + offset) << shift);
  };
  auto fine_hi = [&](uint32_t f) {
    if (f == 0) return min;
    if (f == overflow) return max;  // unknown: percentiles in the overflow clamp to max
    return std::bit_cast<double>((f + 1 + offset) << shift);
  };
  const uint32_t total = slot_of.back();
  slot_lo.resize(total);
  slot_hi.resize(total);
  bound_slot.resize(bounds.size());
  size_t g = 0;  // next bound
  for (uint32_t f = 0; f < fine; ++f) {
    double lo = fine_lo(f);
    const double hi = fine_hi(f);
    uint32_t s = slot_of[f];
    for (uint32_t k = 0; k < extra[f]; ++k, ++g, ++s) {
      // Slot [lo, b]; the overflow bucket has no upper edge, so clamp to keep lo <= hi.
      const double b = bounds[g];
      slot_lo[s] = std::min(lo, b);
      slot_hi[s] = b;
      bound_slot[g] = s;
      lo = b;
    }
    slot_lo[s] = lo;
    slot_hi[s] = std::max(lo, hi);
  }
}

uint32_t HistogramLayout::fine_of(double v) const noexcept {
  if (!(v >= min)) return 0;
  if (!(v < max)) return overflow;
  return static_cast<uint32_t>((std::bit_cast<uint64_t>(v) >> shift) - offset);
}

}  // namespace detail

// --- bucket helpers -----------------------------------------------------------------------

std::vector<double> default_latency_buckets() {
  return {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
}

std::vector<double> linear_buckets(double start, double width, size_t count) {
  if (count == 0 || !(width > 0) || !std::isfinite(start) || !std::isfinite(width)) {
    throw std::invalid_argument("linear_buckets: need count >= 1 and finite width > 0");
  }
  std::vector<double> out(count);
  for (size_t i = 0; i < count; ++i) out[i] = start + width * static_cast<double>(i);
  return out;
}

std::vector<double> exponential_buckets(double start, double factor, size_t count) {
  if (count == 0 || !(start > 0) || !(factor > 1) || !std::isfinite(start) ||
      !std::isfinite(factor)) {
    throw std::invalid_argument("exponential_buckets: need count >= 1, start > 0, factor > 1");
  }
  std::vector<double> out(count);
  double v = start;
  for (size_t i = 0; i < count; ++i, v *= factor) out[i] = v;
  return out;
}

// --- Counter ------------------------------------------------------------------------------

Counter::Counter() : cell_(detail::allocate_cells(1)) {}
Counter::~Counter() { detail::release_cells(cell_, 1); }

double Counter::value() const {
  double v = 0;
  detail::read_cells(cell_, {&v, 1});
  return v;
}

// --- Histogram ----------------------------------------------------------------------------

Histogram::Histogram(const HistogramOptions& options)
    : Histogram(std::make_shared<const detail::HistogramLayout>(options)) {}

Histogram::Histogram(std::shared_ptr<const detail::HistogramLayout> layout)
    : layout_(std::move(layout)),
      slot_of_(layout_->slot_of.data()),
      bounds_(layout_->bounds.data()),
      min_(layout_->min),
      max_(layout_->max),
      offset_(layout_->offset),
      shift_(layout_->shift),
      overflow_(layout_->overflow),
      first_cell_(detail::allocate_cells(layout_->slots() + 1)),
      sum_cell_(first_cell_ + layout_->slots()) {}

Histogram::~Histogram() { detail::release_cells(first_cell_, layout_->slots() + 1); }

HistogramSnapshot Histogram::snapshot() const {
  const uint32_t n = layout_->slots();
  std::vector<double> cells(n + 1);
  detail::read_cells(first_cell_, cells);
  HistogramSnapshot s;
  s.layout_ = layout_;
  s.slots_.resize(n);
  uint64_t count = 0;
  for (uint32_t i = 0; i < n; ++i) {
    s.slots_[i] = static_cast<uint64_t>(cells[i]);
    count += s.slots_[i];
  }
  s.count_ = count;
  s.sum_ = cells[n];
  return s;
}

// --- HistogramSnapshot --------------------------------------------------------------------

double HistogramSnapshot::percentile(double q) const noexcept {
  if (count_ == 0 || !layout_) return std::numeric_limits<double>::quiet_NaN();
  if (!(q >= 0)) q = 0;  // also NaN
  if (q > 1) q = 1;
  const double rank = q * static_cast<double>(count_);
  double before = 0;  // samples in slots before the current one
  const size_t n = slots_.size();
  for (size_t s = 0; s < n; ++s) {
    const uint64_t c = slots_[s];
    if (c == 0) continue;
    const double through = before + static_cast<double>(c);
    if (through >= rank) {
      const double frac = std::clamp((rank - before) / static_cast<double>(c), 0.0, 1.0);
      const double lo = layout_->slot_lo[s];
      const double hi = layout_->slot_hi[s];
      return lo + (hi - lo) * frac;
    }
    before = through;
  }
  return layout_->slot_hi[n - 1];  // unreachable: through == count_ at the last non-empty slot
}

HistogramSnapshot HistogramSnapshot::since(const HistogramSnapshot& earlier) const {
  HistogramSnapshot out = *this;
  if (!layout_ || earlier.layout_ != layout_) return out;
  out.count_ = 0;
  for (size_t i = 0; i < out.slots_.size(); ++i) {
    out.slots_[i] = slots_[i] >= earlier.slots_[i] ? slots_[i] - earlier.slots_[i] : 0;
    out.count_ += out.slots_[i];
  }
  out.sum_ = std::max(0.0, sum_ - earlier.sum_);
  return out;
}

void HistogramSnapshot::merge(const HistogramSnapshot& other) {
  if (!other.layout_) return;
  if (!layout_) {
    *this = other;
    return;
  }
  if (other.layout_ != layout_) return;
  for (size_t i = 0; i < slots_.size(); ++i) slots_[i] += other.slots_[i];
  count_ += other.count_;
  sum_ += other.sum_;
}

std::span<const double> HistogramSnapshot::bounds() const noexcept {
  if (!layout_) return {};
  return layout_->bounds;
}

std::vector<uint64_t> HistogramSnapshot::cumulative_counts() const {
  std::vector<uint64_t> out;
  if (!layout_) return out;
  out.reserve(layout_->bounds.size());
  uint64_t cum = 0;
  size_t s = 0;
  for (uint32_t last : layout_->bound_slot) {
    for (; s <= last; ++s) cum += slots_[s];
    out.push_back(cum);
  }
  return out;
}

}  // namespace bulwark::observe
