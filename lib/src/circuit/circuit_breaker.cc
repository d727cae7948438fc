#include "bulwark/circuit/circuit_breaker.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <utility>

namespace bulwark::circuit {

namespace {

// word_ layout: state in the low 8 bits, generation above. Generations start at 1, so a
// default-constructed Permit (generation 0) never matches.
constexpr uint64_t pack(State s, uint64_t generation) noexcept {
  return (generation << 8) | static_cast<uint8_t>(s);
}
constexpr State state_of(uint64_t word) noexcept { return static_cast<State>(word & 0xff); }
constexpr uint64_t generation_of(uint64_t word) noexcept { return word >> 8; }

// A stamped counter: stamp in the high 32 bits, a signed 32-bit count in the low 32 bits.
// A word whose stamp is not the reader's reads as zero, which is how windows are "cleared"
// without touching them: a new generation (or a new second) simply uses new stamps.
constexpr uint64_t stamped(uint32_t stamp, int32_t count) noexcept {
  return (static_cast<uint64_t>(stamp) << 32) | static_cast<uint32_t>(count);
}
constexpr uint32_t stamp_of(uint64_t w) noexcept { return static_cast<uint32_t>(w >> 32); }
constexpr int32_t count_of(uint64_t w) noexcept {
  return static_cast<int32_t>(static_cast<uint32_t>(w));
}

// Adds `delta` to the count carried under `stamp`. A word carrying another stamp is replaced
// (its count belongs to an expired window), unless its stamp is newer than ours by at most
// `newer_bound`: then this update belongs to a window that has already been superseded and is
// dropped. Returns the new count, or -1 if the update was dropped.
int32_t add_stamped(std::atomic<uint64_t>& word, uint32_t stamp, int32_t delta,
                    uint32_t newer_bound) noexcept {
  uint64_t old = word.load(std::memory_order_relaxed);
  for (;;) {
    const uint32_t ahead = stamp_of(old) - stamp;  // modular: how far the word's stamp is ahead
    int32_t count = 0;
    if (ahead == 0) {
      count = count_of(old);
    } else if (ahead <= newer_bound) {
      return -1;
    }
    const int32_t next = count + delta;
    if (word.compare_exchange_weak(old, stamped(stamp, next), std::memory_order_relaxed,
                                   std::memory_order_relaxed)) {
      return next;
    }
  }
}

int64_t read_stamped(const std::atomic<uint64_t>& word, uint32_t stamp) noexcept {
  const uint64_t w = word.load(std::memory_order_relaxed);
  return stamp_of(w) == stamp ? count_of(w) : 0;
}

// Generation-stamped words compare generations modulo 2^32: "newer" means ahead by less than
// 2^31 transitions.
constexpr uint32_t kNewerGeneration = 0x7fffffff;

constexpr int64_t kNanosPerSecond = 1'000'000'000;

// Slot bits of the count window ring: generation << 8 | these.
constexpr uint64_t kSlotUsed = 1;
constexpr uint64_t kSlotFailure = 2;
constexpr uint64_t kSlotSlow = 4;

Admission admitted(State s, Permit p) noexcept {
  Admission a;
  a.allowed = true;
  a.permit = p;
  a.state = s;
  return a;
}

Admission rejection(State s, Duration retry_after, errc reason) noexcept {
  Admission a;
  a.state = s;
  a.retry_after = retry_after;
  a.reason = reason;
  return a;
}

std::invalid_argument bad_option(const char* field, const char* what) {
  return std::invalid_argument(std::string("BreakerOptions.") + field + ": " + what);
}

}  // namespace

std::string_view to_string(State s) noexcept {
  switch (s) {
    case State::closed:
      return "closed";
    case State::open:
      return "open";
    case State::half_open:
      return "half_open";
    case State::disabled:
      return "disabled";
    case State::forced_open:
      return "forced_open";
    case State::metrics_only:
      return "metrics_only";
  }
  return "unknown";
}

void validate(const BreakerOptions& o) {
  if (o.window_type != WindowType::count && o.window_type != WindowType::time) {
    throw bad_option("window_type", "must be WindowType::count or WindowType::time");
  }
  const uint32_t max_window = o.window_type == WindowType::count ? kMaxCountWindow : kMaxTimeWindow;
  if (o.window_size < 1 || o.window_size > max_window) {
    throw bad_option("window_size", o.window_type == WindowType::count
                                        ? "must be in 1..1000000 calls for a count window"
                                        : "must be in 1..3600 seconds for a time window");
  }
  if (o.min_calls < 1) throw bad_option("min_calls", "must be >= 1");
  if (o.window_type == WindowType::count && o.min_calls > o.window_size) {
    throw bad_option("min_calls", "must be <= window_size for a count window");
  }
  // Written as !(x > 0) so that NaN is rejected too.
  if (!(o.failure_rate > 0.0)) {
    throw bad_option("failure_rate", "must be > 0 (a fraction; > 1 disables the rule)");
  }
  if (!(o.slow_call_duration > Duration::zero())) {
    throw bad_option("slow_call_duration", "must be > 0 (Duration::max() disables)");
  }
  if (!(o.slow_call_rate > 0.0)) {
    throw bad_option("slow_call_rate", "must be > 0 (a fraction; > 1 disables the rule)");
  }
  if (!(o.open_duration > Duration::zero())) throw bad_option("open_duration", "must be > 0");
  if (!(o.open_multiplier >= 1.0) || !std::isfinite(o.open_multiplier)) {
    throw bad_option("open_multiplier", "must be finite and >= 1");
  }
  if (o.max_open_duration < o.open_duration) {
    throw bad_option("max_open_duration", "must be >= open_duration");
  }
  if (o.half_open_probes < 1) throw bad_option("half_open_probes", "must be >= 1");
  if (o.success_threshold < 1 || o.success_threshold > o.half_open_probes) {
    throw bad_option("success_threshold", "must be in 1..half_open_probes");
  }
  if (!(o.half_open_max_wait > Duration::zero())) {
    throw bad_option("half_open_max_wait", "must be > 0");
  }
}

// ---------------------------------------------------------------------------------------------
// Window: the calls, failures and slow calls the rate rules look at, plus the run of
// consecutive failures. Lock-free; every word is stamped with (part of) the generation that
// wrote it, so a transition "clears" the window by changing the generation and nothing else.

class CircuitBreaker::Window {
 public:
  explicit Window(const BreakerOptions& o)
      : type_(o.window_type),
        size_(o.window_size),
        // Stamps of consecutive generations are this far apart, more than two windows, so that
        // no bucket of an earlier generation can carry a stamp that a current reader expects.
        generation_stride_(3 * o.window_size),
        newer_bound_(5 * o.window_size) {
    if (type_ == WindowType::count) {
      slots_ = std::make_unique<std::atomic<uint64_t>[]>(size_);
      for (uint32_t i = 0; i < size_; ++i) slots_[i].store(0, std::memory_order_relaxed);
    } else {
      buckets_ = std::make_unique<Bucket[]>(size_);
    }
  }

  void record(uint64_t generation, bool failure, bool slow, TimePoint now) noexcept {
    if (type_ == WindowType::count) {
      record_count(generation, failure, slow);
    } else {
      record_time(generation, failure, slow, now);
    }
  }

  // Updates the run of consecutive failures; returns its length after this result.
  uint32_t note_consecutive(uint64_t generation, bool failure) noexcept {
    const uint32_t g = static_cast<uint32_t>(generation);
    if (failure) {
      const int32_t n = add_stamped(consecutive_, g, 1, kNewerGeneration);
      return n < 0 ? 0 : static_cast<uint32_t>(n);
    }
    // A success ends the run. Only write when there is a run to end, so that the common case
    // (success after success) leaves the cache line shared.
    uint64_t old = consecutive_.load(std::memory_order_relaxed);
    while (stamp_of(old) == g && count_of(old) != 0) {
      if (consecutive_.compare_exchange_weak(old, stamped(g, 0), std::memory_order_relaxed,
                                             std::memory_order_relaxed)) {
        break;
      }
    }
    return 0;
  }

  WindowSnapshot snapshot(uint64_t generation, TimePoint now) const noexcept {
    int64_t calls = 0;
    int64_t failures = 0;
    int64_t slow = 0;
    if (type_ == WindowType::count) {
      const uint32_t g = static_cast<uint32_t>(generation);
      calls = read_stamped(calls_, g);
      failures = read_stamped(failures_, g);
      slow = read_stamped(slow_, g);
    } else {
      const uint64_t sec = second_of(now);
      // Seconds before the clock's epoch never held a result.
      const uint64_t seconds = std::min<uint64_t>(size_, sec + 1);
      for (uint64_t k = 0; k < seconds; ++k) {
        const uint64_t s = sec - k;
        const Bucket& b = buckets_[s % size_];
        const uint32_t st = time_stamp(s, generation);
        calls += read_stamped(b.calls, st);
        failures += read_stamped(b.failures, st);
        slow += read_stamped(b.slow, st);
      }
    }
    // Counters are updated by deltas that may land out of order under concurrency; clamp the
    // transient values into the possible range.
    const auto clamp = [](int64_t v, int64_t hi) {
      return static_cast<uint32_t>(std::clamp<int64_t>(v, 0, hi));
    };
    const int64_t max_calls = type_ == WindowType::count ? size_ : UINT32_MAX;
    WindowSnapshot out;
    out.calls = clamp(calls, max_calls);
    out.failures = clamp(failures, out.calls);
    out.slow_calls = clamp(slow, out.calls);
    return out;
  }

 private:
  struct Bucket {
    std::atomic<uint64_t> calls{0};
    std::atomic<uint64_t> failures{0};
    std::atomic<uint64_t> slow{0};
  };

  static uint64_t second_of(TimePoint now) noexcept {
    const int64_t ns = now.time_since_epoch().count();
    return ns <= 0 ? 0 : static_cast<uint64_t>(ns / kNanosPerSecond);
  }
  uint32_t time_stamp(uint64_t second, uint64_t generation) const noexcept {
    return static_cast<uint32_t>(second) +
           static_cast<uint32_t>(generation) * generation_stride_;  // modulo 2^32
  }

  // Count window: the ring position comes from one fetch_add; the slot is swapped by CAS so
  // that a result of an old generation never overwrites a newer generation's entry. The running
  // counters change only when the slot's content changes.
  void record_count(uint64_t generation, bool failure, bool slow) noexcept {
    const uint32_t g = static_cast<uint32_t>(generation);
    if (!failure && !slow && read_stamped(calls_, g) == size_ && read_stamped(failures_, g) == 0 &&
        read_stamped(slow_, g) == 0) {
      // A full window of fast successes: one more fast success evicts a fast success, so the
      // window's content does not change and neither does which entry is the oldest one that
      // matters. Skipping the ring keeps the steady state free of shared writes (the counters
      // are only read), which is what lets many threads record without contending.
      return;
    }
    const uint64_t index = next_.fetch_add(1, std::memory_order_relaxed) % size_;
    const uint64_t value =
        (generation << 8) | kSlotUsed | (failure ? kSlotFailure : 0) | (slow ? kSlotSlow : 0);
    std::atomic<uint64_t>& slot = slots_[index];
    uint64_t old = slot.load(std::memory_order_relaxed);
    // Same generation, same outcome: nothing changes; leave the cache line shared.
    if (old == value) return;
    do {
      if ((old >> 8) > generation) return;  // a newer generation owns the slot
    } while (!slot.compare_exchange_weak(old, value, std::memory_order_relaxed,
                                         std::memory_order_relaxed));
    // An entry of an earlier generation is an empty slot for this one.
    const bool replaced = (old >> 8) == generation;
    if (!replaced) add_stamped(calls_, g, 1, kNewerGeneration);
    const int32_t d_fail =
        static_cast<int32_t>(failure) - static_cast<int32_t>(replaced && (old & kSlotFailure));
    const int32_t d_slow =
        static_cast<int32_t>(slow) - static_cast<int32_t>(replaced && (old & kSlotSlow));
    if (d_fail != 0) add_stamped(failures_, g, d_fail, kNewerGeneration);
    if (d_slow != 0) add_stamped(slow_, g, d_slow, kNewerGeneration);
  }

  void record_time(uint64_t generation, bool failure, bool slow, TimePoint now) noexcept {
    const uint64_t sec = second_of(now);
    Bucket& b = buckets_[sec % size_];
    const uint32_t st = time_stamp(sec, generation);
    add_stamped(b.calls, st, 1, newer_bound_);
    if (failure) add_stamped(b.failures, st, 1, newer_bound_);
    if (slow) add_stamped(b.slow, st, 1, newer_bound_);
  }

  const WindowType type_;
  const uint32_t size_;
  const uint32_t generation_stride_;
  const uint32_t newer_bound_;
  std::unique_ptr<std::atomic<uint64_t>[]> slots_;  // count window
  std::unique_ptr<Bucket[]> buckets_;               // time window

  // Written by every recorded result (count window).
  alignas(64) std::atomic<uint64_t> next_{0};
  // Written only when a result changes what the window holds; generation-stamped.
  alignas(64) std::atomic<uint64_t> calls_{0};
  std::atomic<uint64_t> failures_{0};
  std::atomic<uint64_t> slow_{0};
  std::atomic<uint64_t> consecutive_{0};
};

// ---------------------------------------------------------------------------------------------

CircuitBreaker::CircuitBreaker(std::string name, BreakerOptions options, Clock& clock)
    : name_(std::move(name)),
      options_((validate(options), options)),
      clock_(clock),
      slow_tracking_(options_.slow_call_duration != Duration::max()),
      word_(pack(State::closed, 1)),
      window_(std::make_unique<Window>(options_)),
      open_duration_now_(options_.open_duration) {}

CircuitBreaker::~CircuitBreaker() = default;

const std::string& CircuitBreaker::name() const noexcept { return name_; }
const BreakerOptions& CircuitBreaker::options() const noexcept { return options_; }

State CircuitBreaker::state() const noexcept {
  return state_of(word_.load(std::memory_order_acquire));
}
uint64_t CircuitBreaker::generation() const noexcept {
  return generation_of(word_.load(std::memory_order_acquire));
}
TimePoint CircuitBreaker::open_until() const noexcept {
  return TimePoint(Duration(open_until_ns_.load(std::memory_order_acquire)));
}
Duration CircuitBreaker::current_open_duration() const noexcept {
  std::lock_guard lock(mu_);
  return open_duration_now_;
}
WindowSnapshot CircuitBreaker::window(TimePoint now) const noexcept {
  return window_->snapshot(generation(), now);
}

BreakerStats CircuitBreaker::stats() const noexcept {
  return {successes_.value(), failures_.value(),      slow_calls_.value(),
          rejected_.value(),  dropped_stale_.value(), released_.value(),
          ignored_.value(),   transitions_.value(),   state()};
}

// --- admission -------------------------------------------------------------------------------

Admission CircuitBreaker::try_acquire() { return try_acquire(clock_.now()); }

Admission CircuitBreaker::try_acquire(TimePoint now) noexcept {
  const uint64_t w = word_.load(std::memory_order_acquire);
  const State s = state_of(w);
  switch (s) {
    case State::closed:
    case State::disabled:
    case State::metrics_only:
      return admitted(s, Permit{generation_of(w), now, false});
    case State::forced_open:
      rejected_.add();
      return rejection(s, Duration::zero(), errc::circuit_open);
    case State::open: {
      const TimePoint until = open_until();
      if (now < until) {
        rejected_.add();
        return rejection(s, until - now, errc::circuit_open);
      }
      break;  // open_until reached: the locked path moves to half-open
    }
    case State::half_open:
      break;
  }
  return admit_slow(now);
}

Admission CircuitBreaker::admit_slow(TimePoint now) noexcept {
  Admission a;
  bool events = false;
  {
    std::lock_guard lock(mu_);
    poll_locked(now);
    const uint64_t w = word_.load(std::memory_order_relaxed);
    a.state = state_of(w);
    switch (a.state) {
      case State::closed:
      case State::disabled:
      case State::metrics_only:
        a.allowed = true;
        a.permit = {generation_of(w), now, false};
        break;
      case State::forced_open:
        a.reason = errc::circuit_open;
        break;
      case State::open:
        a.reason = errc::circuit_open;
        a.retry_after = std::max(open_until() - now, Duration::zero());
        break;
      case State::half_open:
        if (probes_admitted_ < options_.half_open_probes) {
          ++probes_admitted_;
          if (probes_in_flight_++ == 0) probes_waiting_since_ = now;
          a.allowed = true;
          a.permit = {generation_of(w), now, true};
        } else {
          // Unknown: depends on when the probes in flight report back.
          a.reason = errc::half_open_full;
        }
        break;
    }
    events = !pending_.empty();
  }
  if (!a.allowed) rejected_.add();
  if (events) deliver_events();
  return a;
}

void CircuitBreaker::poll(TimePoint now) {
  bool events = false;
  {
    std::lock_guard lock(mu_);
    poll_locked(now);
    events = !pending_.empty();
  }
  if (events) deliver_events();
}

void CircuitBreaker::poll_locked(TimePoint now) {
  State s = state_of(word_.load(std::memory_order_relaxed));
  if (s == State::open && now >= open_until()) {
    transition_locked(State::half_open, now, kCauseOpenElapsed);
    s = State::half_open;
  }
  if (s == State::half_open && probes_in_flight_ > 0 &&
      now >= saturating_add(probes_waiting_since_, options_.half_open_max_wait)) {
    reopen_locked(now, kCauseHalfOpenTimeout);
  }
}

// --- results ---------------------------------------------------------------------------------

void CircuitBreaker::on_success(const Permit& p, TimePoint now) noexcept {
  record_result(p, false, now);
}
void CircuitBreaker::on_failure(const Permit& p, TimePoint now) noexcept {
  record_result(p, true, now);
}
void CircuitBreaker::record(const Permit& p, Outcome o, TimePoint now) noexcept {
  record_result(p, is_breaker_failure(o), now);
}

void CircuitBreaker::record_result(const Permit& p, bool failure, TimePoint now) noexcept {
  const uint64_t w = word_.load(std::memory_order_acquire);
  if (generation_of(w) != p.generation) {
    dropped_stale_.add();
    return;
  }
  const bool is_slow = slow(p, now);
  const State s = state_of(w);
  switch (s) {
    case State::closed:
    case State::metrics_only:
      break;
    case State::half_open:
      record_half_open(p, failure, is_slow, now);
      return;
    case State::disabled:
      (failure ? failures_ : successes_).add();
      if (is_slow) slow_calls_.add();
      return;
    case State::open:
    case State::forced_open:
      // These states issue no permits, so a permit of their generation was not issued by
      // this breaker; treat it like a stale one.
      dropped_stale_.add();
      return;
  }
  (failure ? failures_ : successes_).add();
  if (is_slow) slow_calls_.add();
  window_->record(p.generation, failure, is_slow, now);
  const uint32_t run =
      options_.consecutive_failures != 0 ? window_->note_consecutive(p.generation, failure) : 0;
  // A fast success cannot raise a rate: skip the evaluation on the common path.
  if (!failure && !is_slow) return;
  const std::string_view cause = evaluate(p.generation, run, now);
  if (!cause.empty()) {
    // In metrics_only, once the event is out, further firings have nothing to do: skip the lock.
    if (s == State::closed || !threshold_latched_.load(std::memory_order_relaxed)) {
      on_rule_fired(p, cause, now);
    }
  } else if (s == State::metrics_only && threshold_latched_.load(std::memory_order_relaxed)) {
    threshold_latched_.store(false, std::memory_order_relaxed);
  }
}

std::string_view CircuitBreaker::evaluate(uint64_t generation, uint32_t run,
                                          TimePoint now) const noexcept {
  const bool failure_rule = options_.failure_rate <= 1.0;
  const bool slow_rule = slow_tracking_ && options_.slow_call_rate <= 1.0;
  if (failure_rule || slow_rule) {
    const WindowSnapshot w = window_->snapshot(generation, now);
    if (w.calls >= options_.min_calls) {
      // Division, not failures >= rate * calls: a/b is correctly rounded, so 3/10 compares
      // equal to the literal 0.3, while 0.3 * 10 rounds above 3.
      const double calls = static_cast<double>(w.calls);
      if (failure_rule && static_cast<double>(w.failures) / calls >= options_.failure_rate) {
        return kCauseFailureRate;
      }
      if (slow_rule && static_cast<double>(w.slow_calls) / calls >= options_.slow_call_rate) {
        return kCauseSlowCallRate;
      }
    }
  }
  if (options_.consecutive_failures != 0 && run >= options_.consecutive_failures) {
    return kCauseConsecutiveFailures;
  }
  return {};
}

void CircuitBreaker::on_rule_fired(const Permit& p, std::string_view cause,
                                   TimePoint now) noexcept {
  bool events = false;
  {
    std::lock_guard lock(mu_);
    const uint64_t w = word_.load(std::memory_order_relaxed);
    // Another result may have tripped the breaker (or an operator changed it) meanwhile.
    if (generation_of(w) != p.generation) return;
    if (state_of(w) == State::closed) {
      transition_locked(State::open, now, cause);
    } else if (state_of(w) == State::metrics_only &&
               !threshold_latched_.exchange(true, std::memory_order_relaxed)) {
      pending_.push_back({State::metrics_only, State::metrics_only, now, generation_of(w),
                          kCauseThresholdExceeded});
    }
    events = !pending_.empty();
  }
  if (events) deliver_events();
}

void CircuitBreaker::record_half_open(const Permit& p, bool failure, bool is_slow,
                                      TimePoint now) noexcept {
  bool events = false;
  {
    std::lock_guard lock(mu_);
    const uint64_t w = word_.load(std::memory_order_relaxed);
    if (generation_of(w) != p.generation || state_of(w) != State::half_open) {
      dropped_stale_.add();
      return;
    }
    (failure ? failures_ : successes_).add();
    if (is_slow) slow_calls_.add();
    if (probes_in_flight_ > 0) --probes_in_flight_;
    if (failure) {
      reopen_locked(now, kCauseProbeFailure);
    } else if (is_slow) {
      reopen_locked(now, kCauseProbeSlow);
    } else if (++probe_successes_ >= options_.success_threshold) {
      transition_locked(State::closed, now, kCauseProbesSucceeded);
    }
    events = !pending_.empty();
  }
  if (events) deliver_events();
}

void CircuitBreaker::release(const Permit& p) noexcept {
  released_.add();
  free_probe(p);
}

void CircuitBreaker::ignore(const Permit& p) noexcept {
  ignored_.add();
  free_probe(p);
}

void CircuitBreaker::free_probe(const Permit& p) noexcept {
  if (!p.probe) return;
  std::lock_guard lock(mu_);
  const uint64_t w = word_.load(std::memory_order_relaxed);
  if (generation_of(w) != p.generation || state_of(w) != State::half_open) return;
  if (probes_admitted_ > 0) --probes_admitted_;
  if (probes_in_flight_ > 0) --probes_in_flight_;
}

// --- transitions -----------------------------------------------------------------------------

void CircuitBreaker::transition_locked(State to, TimePoint at, std::string_view cause) {
  const uint64_t w = word_.load(std::memory_order_relaxed);
  const uint64_t next_generation = generation_of(w) + 1;
  switch (to) {
    case State::open:
      open_until_ns_.store(saturating_add(at, open_duration_now_).time_since_epoch().count(),
                           std::memory_order_relaxed);
      break;
    case State::half_open:
      probes_admitted_ = 0;
      probes_in_flight_ = 0;
      probe_successes_ = 0;
      break;
    case State::metrics_only:
      threshold_latched_.store(false, std::memory_order_relaxed);
      break;
    default:
      break;
  }
  // Growth of the open duration spans one open/half-open episode only.
  if (to != State::open && to != State::half_open) open_duration_now_ = options_.open_duration;
  // Release: a reader that sees the new word also sees open_until_ns_ and the window's new
  // (empty) generation.
  word_.store(pack(to, next_generation), std::memory_order_release);
  transitions_.add();
  pending_.push_back({state_of(w), to, at, next_generation, cause});
}

void CircuitBreaker::reopen_locked(TimePoint at, std::string_view cause) {
  const double grown = static_cast<double>(open_duration_now_.count()) * options_.open_multiplier;
  open_duration_now_ = grown >= static_cast<double>(options_.max_open_duration.count())
                           ? options_.max_open_duration
                           : Duration(static_cast<Duration::rep>(grown));
  transition_locked(State::open, at, cause);
}

void CircuitBreaker::set_state(State to, std::string_view cause) {
  {
    std::lock_guard lock(mu_);
    // reset() from closed still goes through a transition: it clears the window.
    if (state() == to && to != State::closed) return;
    transition_locked(to, clock_.now(), cause);
  }
  deliver_events();
}

void CircuitBreaker::force_open() { set_state(State::forced_open, kCauseForcedOpen); }
void CircuitBreaker::disable() { set_state(State::disabled, kCauseDisabled); }
void CircuitBreaker::metrics_only() { set_state(State::metrics_only, kCauseMetricsOnly); }
void CircuitBreaker::reset() { set_state(State::closed, kCauseReset); }

// --- listeners -------------------------------------------------------------------------------

void CircuitBreaker::add_listener(Listener l) {
  std::lock_guard lock(mu_);
  auto next = listeners_ ? std::make_shared<std::vector<Listener>>(*listeners_)
                         : std::make_shared<std::vector<Listener>>();
  next->push_back(std::move(l));
  listeners_ = std::move(next);
}

void CircuitBreaker::deliver_events() noexcept {
  std::unique_lock lock(mu_);
  // One deliverer at a time keeps events in transition order. A listener that re-enters the
  // breaker finds delivering_ set and returns at once; the events it caused are delivered by
  // this loop after it returns, so nothing deadlocks and nothing is lost.
  if (delivering_) return;
  delivering_ = true;
  while (!pending_.empty()) {
    const PendingEvent ev = pending_.front();
    pending_.pop_front();
    const std::shared_ptr<const std::vector<Listener>> listeners = listeners_;
    lock.unlock();
    if (listeners) {
      const TransitionEvent event{name_, ev.from, ev.to, ev.at, ev.generation, ev.cause};
      for (const Listener& l : *listeners) {
        try {
          l(event);
        } catch (...) {
          // A failing listener must not break the breaker or starve the other listeners.
        }
      }
    }
    lock.lock();
  }
  delivering_ = false;
}

}  // namespace bulwark::circuit
