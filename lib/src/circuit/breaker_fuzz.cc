// libFuzzer target: a CircuitBreaker driven by an arbitrary trace, checked against a reference
// model of the specification after every step.
//
// Input: options (13 bytes), then actions of two bytes (operation, argument): admit, admit a
// burst, success, failure, slow success, release, stale result, advance time, poll, and the
// operator actions (force_open, disable, metrics_only, reset).
//
// Invariants (violations abort via __builtin_trap):
//   - an open breaker never admits before open_until, and rejects with retry_after = open_until
//     - now; at or after open_until the next admission is a half-open probe;
//   - half-open never has more than half_open_probes permits outstanding, and admits exactly
//     while it has free slots;
//   - closed, disabled and metrics_only always admit; forced_open never does;
//   - state changes only through legal transitions, each event continues the previous one, and
//     the generation grows by exactly one per transition (never otherwise);
//   - a trip happens exactly when the model's window (last N calls, or last T seconds) says a
//     rule fires, and only on a failure or slow call; metrics_only reports instead of tripping;
//   - open durations grow by the multiplier up to the cap and return to open_duration;
//   - after poll(now) the breaker is neither open past open_until nor half-open with probes in
//     flight past half_open_max_wait;
//   - stats add up to the calls made.
#include <fuzzer/FuzzedDataProvider.h>

#include <cstdint>
#include <cstdio>
#include <deque>
#include <memory>
#include <vector>

#include "bulwark/circuit/circuit_breaker.h"
#include "bulwark/testing/manual_clock.h"

namespace {

using namespace std::chrono_literals;
using bulwark::Duration;
using bulwark::TimePoint;
using bulwark::circuit::Admission;
using bulwark::circuit::BreakerOptions;
using bulwark::circuit::CircuitBreaker;
using bulwark::circuit::Permit;
using bulwark::circuit::State;
using bulwark::circuit::TransitionEvent;
using bulwark::circuit::WindowType;

#define CHECK(cond)                                                          \
  do {                                                                       \
    if (!(cond)) {                                                           \
      std::fprintf(stderr, "breaker_fuzz: %s (line %d)\n", #cond, __LINE__); \
      __builtin_trap();                                                      \
    }                                                                        \
  } while (0)

constexpr int64_t kNanosPerSecond = 1'000'000'000;

BreakerOptions read_options(FuzzedDataProvider& in) {
  BreakerOptions o;
  o.window_type = in.ConsumeBool() ? WindowType::time : WindowType::count;
  o.window_size = o.window_type == WindowType::count ? in.ConsumeIntegralInRange<uint32_t>(1, 16)
                                                     : in.ConsumeIntegralInRange<uint32_t>(1, 8);
  o.min_calls = o.window_type == WindowType::count
                    ? in.ConsumeIntegralInRange<uint32_t>(1, o.window_size)
                    : in.ConsumeIntegralInRange<uint32_t>(1, 20);
  o.failure_rate = in.ConsumeIntegralInRange<int>(1, 11) / 10.0;  // 1.1 disables the rule
  const int slow_ms = in.ConsumeIntegralInRange<int>(0, 50);
  o.slow_call_duration = slow_ms == 0 ? Duration::max() : Duration(slow_ms * 1'000'000LL);
  o.slow_call_rate = in.ConsumeIntegralInRange<int>(1, 11) / 10.0;
  o.consecutive_failures = in.ConsumeIntegralInRange<uint32_t>(0, 5);
  o.open_duration = Duration(in.ConsumeIntegralInRange<int64_t>(1, 100) * 1'000'000);
  o.open_multiplier = 1.0 + in.ConsumeIntegralInRange<int>(0, 4) * 0.5;
  o.max_open_duration = o.open_duration * in.ConsumeIntegralInRange<int64_t>(1, 8);
  o.half_open_probes = in.ConsumeIntegralInRange<uint32_t>(1, 4);
  o.success_threshold = in.ConsumeIntegralInRange<uint32_t>(1, o.half_open_probes);
  o.half_open_max_wait = Duration(in.ConsumeIntegralInRange<int64_t>(1, 200) * 1'000'000);
  return o;
}

bool legal(State from, State to, std::string_view cause) {
  using bulwark::circuit::kCauseConsecutiveFailures;
  using bulwark::circuit::kCauseFailureRate;
  using bulwark::circuit::kCauseSlowCallRate;
  namespace c = bulwark::circuit;
  if (cause == c::kCauseReset) return to == State::closed;
  if (cause == c::kCauseForcedOpen) return to == State::forced_open && from != to;
  if (cause == c::kCauseDisabled) return to == State::disabled && from != to;
  if (cause == c::kCauseMetricsOnly) return to == State::metrics_only && from != to;
  if (cause == kCauseFailureRate || cause == kCauseSlowCallRate ||
      cause == kCauseConsecutiveFailures) {
    return from == State::closed && to == State::open;
  }
  if (cause == c::kCauseOpenElapsed) return from == State::open && to == State::half_open;
  if (cause == c::kCauseProbeFailure || cause == c::kCauseProbeSlow ||
      cause == c::kCauseHalfOpenTimeout) {
    return from == State::half_open && to == State::open;
  }
  if (cause == c::kCauseProbesSucceeded) return from == State::half_open && to == State::closed;
  return false;
}

struct Held {
  Permit permit;
};

class Harness {
 public:
  explicit Harness(const BreakerOptions& o)
      : o_(o), breaker_("fuzz", o, clock_), last_generation_(breaker_.generation()) {
    breaker_.add_listener([this](const TransitionEvent& e) { on_event(e); });
    open_duration_ = o_.open_duration;
  }

  void step(uint8_t op, uint8_t arg) {
    switch (op % 12) {
      case 0:
      case 1:
        admit();
        break;
      case 2:
        for (int i = 0; i < arg % 6; ++i) admit();
        break;
      case 3:
      case 4:
        finish(arg, Result::success);
        break;
      case 5:
      case 6:
        finish(arg, Result::failure);
        break;
      case 7:
        finish(arg, Result::slow_success);
        break;
      case 8:
        release(arg);
        break;
      case 9:
        advance(arg);
        break;
      case 10:
        poll();
        break;
      case 11:
        operate(arg);
        break;
    }
    check_always();
  }

  void finish_all() {
    while (!held_.empty()) release(0);
    const auto s = breaker_.stats();
    CHECK(s.successes + s.failures + s.dropped_stale + s.released == resolved_);
    CHECK(s.rejected == rejected_);
    CHECK(s.transitions == transitions_);
  }

 private:
  enum class Result { success, failure, slow_success };

  TimePoint now() const { return clock_.now(); }
  bool slow_tracking() const { return o_.slow_call_duration != Duration::max(); }

  // --- reference model of the window ---
  struct Rec {
    bool failure;
    bool slow;
    int64_t second;
  };

  bool model_fires(TimePoint at) const {
    uint64_t calls = 0, failures = 0, slow = 0;
    if (o_.window_type == WindowType::count) {
      const size_t first = recs_.size() > o_.window_size ? recs_.size() - o_.window_size : 0;
      for (size_t i = first; i < recs_.size(); ++i) {
        ++calls;
        failures += recs_[i].failure;
        slow += recs_[i].slow;
      }
    } else {
      const int64_t sec = at.time_since_epoch().count() / kNanosPerSecond;
      for (const Rec& r : recs_) {
        if (r.second > sec - static_cast<int64_t>(o_.window_size) && r.second <= sec) {
          ++calls;
          failures += r.failure;
          slow += r.slow;
        }
      }
    }
    if (calls >= o_.min_calls && calls > 0) {
      const double n = static_cast<double>(calls);
      if (o_.failure_rate <= 1.0 && static_cast<double>(failures) / n >= o_.failure_rate) {
        return true;
      }
      if (slow_tracking() && o_.slow_call_rate <= 1.0 &&
          static_cast<double>(slow) / n >= o_.slow_call_rate) {
        return true;
      }
    }
    return o_.consecutive_failures != 0 && run_ >= o_.consecutive_failures;
  }

  void reset_model() {
    recs_.clear();
    run_ = 0;
    latched_ = false;
    probes_slots_ = 0;
    probes_in_flight_ = 0;
    probe_successes_ = 0;
  }

  // --- listener ---
  void on_event(const TransitionEvent& e) {
    CHECK(e.breaker == "fuzz");
    ++events_in_call_;
    if (e.cause == bulwark::circuit::kCauseThresholdExceeded) {
      CHECK(e.from == State::metrics_only && e.to == State::metrics_only);
      CHECK(last_to_ == State::metrics_only);
      CHECK(e.generation == last_generation_);
      ++threshold_events_;
      return;
    }
    CHECK(legal(e.from, e.to, e.cause));
    CHECK(e.from == last_to_);
    CHECK(e.generation == last_generation_ + 1);
    CHECK(e.at == now());
    ++transitions_;
    last_to_ = e.to;
    last_generation_ = e.generation;
    reset_model();
    // Open duration: base from closed, grown from half-open, base again after any other state.
    if (e.to == State::open) {
      if (e.from == State::half_open) {
        const double grown = static_cast<double>(open_duration_.count()) * o_.open_multiplier;
        open_duration_ = grown >= static_cast<double>(o_.max_open_duration.count())
                             ? o_.max_open_duration
                             : Duration(static_cast<Duration::rep>(grown));
      } else {
        open_duration_ = o_.open_duration;
      }
      CHECK(open_duration_ >= o_.open_duration && open_duration_ <= o_.max_open_duration);
      CHECK(breaker_.open_until() == e.at + open_duration_);
    } else if (e.to != State::half_open) {
      open_duration_ = o_.open_duration;
    }
    // A listener may call back into the breaker.
    CHECK(breaker_.generation() >= e.generation);
  }

  // --- actions ---
  void admit() {
    const State before = breaker_.state();
    const TimePoint t = now();
    const TimePoint until = breaker_.open_until();
    const uint32_t slots_before = probes_slots_;
    const bool timed_out = before == State::half_open && probes_in_flight_ > 0 &&
                           t >= probes_waiting_since_ + o_.half_open_max_wait;
    events_in_call_ = 0;
    const Admission a = breaker_.try_acquire(t);
    if (!a.allowed) {
      ++rejected_;
      CHECK(a.reason == bulwark::errc::circuit_open || a.reason == bulwark::errc::half_open_full);
    }
    switch (before) {
      case State::closed:
      case State::disabled:
      case State::metrics_only:
        CHECK(a.allowed && !a.permit.probe && a.state == before);
        CHECK(events_in_call_ == 0);
        break;
      case State::forced_open:
        CHECK(!a.allowed && a.reason == bulwark::errc::circuit_open);
        CHECK(a.retry_after == Duration::zero());
        break;
      case State::open:
        if (t < until) {
          CHECK(!a.allowed && a.state == State::open);
          CHECK(a.reason == bulwark::errc::circuit_open && a.retry_after == until - t);
        } else {
          CHECK(a.allowed && a.permit.probe && a.state == State::half_open);
        }
        break;
      case State::half_open:
        if (timed_out) {
          CHECK(!a.allowed && a.state == State::open && breaker_.state() == State::open);
          CHECK(a.retry_after == open_duration_);
        } else {
          CHECK(a.allowed == (slots_before < o_.half_open_probes));
          if (!a.allowed) {
            CHECK(a.reason == bulwark::errc::half_open_full);
            CHECK(a.retry_after == Duration::zero());
          }
        }
        break;
    }
    if (!a.allowed) return;
    CHECK(a.permit.generation == breaker_.generation());
    CHECK(a.permit.start == t);
    if (a.permit.probe) {
      ++probes_slots_;
      if (probes_in_flight_++ == 0) probes_waiting_since_ = t;
      CHECK(probes_in_flight_ <= o_.half_open_probes);
    }
    held_.push_back({a.permit});
  }

  void finish(uint8_t arg, Result r) {
    if (held_.empty()) {
      // A result for a permit never issued: always dropped.
      const auto before = breaker_.stats().dropped_stale;
      breaker_.on_failure(Permit{}, now());
      ++resolved_;
      CHECK(breaker_.stats().dropped_stale == before + 1);
      return;
    }
    const size_t k = arg % held_.size();
    const Permit p = held_[k].permit;
    held_.erase(held_.begin() + static_cast<std::ptrdiff_t>(k));
    if (r == Result::slow_success) clock_.advance(Duration((arg % 64) * 1'000'000LL));
    const TimePoint t = now();
    const bool failure = r == Result::failure;
    const bool slow = slow_tracking() && t - p.start > o_.slow_call_duration;
    const State before = breaker_.state();
    const bool current = p.generation == breaker_.generation();
    const auto stale_before = breaker_.stats().dropped_stale;
    const uint64_t threshold_before = threshold_events_;
    events_in_call_ = 0;

    // Model update happens before the call, as the breaker records before it evaluates.
    bool expect_fire = false;
    if (current && (before == State::closed || before == State::metrics_only)) {
      recs_.push_back({failure, slow, t.time_since_epoch().count() / kNanosPerSecond});
      run_ = failure ? run_ + 1 : 0;
      expect_fire = (failure || slow) && model_fires(t);
    }
    if (current && before == State::half_open && probes_in_flight_ > 0) --probes_in_flight_;
    const bool latched_before = latched_;
    const uint32_t successes_before = probe_successes_;

    if (failure) {
      breaker_.on_failure(p, t);
    } else {
      breaker_.on_success(p, t);
    }
    ++resolved_;

    if (!current) {
      CHECK(breaker_.stats().dropped_stale == stale_before + 1);
      CHECK(breaker_.state() == before && events_in_call_ == 0);
      return;
    }
    CHECK(breaker_.stats().dropped_stale == stale_before);
    switch (before) {
      case State::closed:
        CHECK(breaker_.state() == (expect_fire ? State::open : State::closed));
        break;
      case State::metrics_only:
        CHECK(breaker_.state() == State::metrics_only);
        if (failure || slow) {
          const bool emitted = threshold_events_ == threshold_before + 1;
          CHECK(emitted == (expect_fire && !latched_before));
          CHECK(threshold_events_ <= threshold_before + 1);
          latched_ = expect_fire;
        } else {
          CHECK(threshold_events_ == threshold_before);
        }
        break;
      case State::half_open:
        if (failure || slow) {
          CHECK(breaker_.state() == State::open);
        } else if (successes_before + 1 >= o_.success_threshold) {
          CHECK(breaker_.state() == State::closed);
        } else {
          CHECK(breaker_.state() == State::half_open);
          probe_successes_ = successes_before + 1;
        }
        break;
      case State::disabled:
        CHECK(breaker_.state() == State::disabled && events_in_call_ == 0);
        break;
      case State::open:
      case State::forced_open:
        CHECK(false && "a current permit in a state that issues none");
        break;
    }
  }

  void release(uint8_t arg) {
    if (held_.empty()) return;
    const size_t k = arg % held_.size();
    const Permit p = held_[k].permit;
    held_.erase(held_.begin() + static_cast<std::ptrdiff_t>(k));
    const State before = breaker_.state();
    events_in_call_ = 0;
    if (p.probe && p.generation == breaker_.generation() && before == State::half_open) {
      --probes_slots_;
      --probes_in_flight_;
    }
    breaker_.release(p);
    ++resolved_;
    CHECK(breaker_.state() == before && events_in_call_ == 0);
  }

  void advance(uint8_t arg) {
    // Mostly milliseconds; sometimes whole seconds so that time windows roll over.
    const int64_t ms = arg < 200 ? arg % 40 : (arg - 199) * 1000LL;
    clock_.advance(Duration(ms * 1'000'000));
  }

  void poll() {
    const TimePoint t = now();
    breaker_.poll(t);
    const State s = breaker_.state();
    if (s == State::open) CHECK(t < breaker_.open_until());
    if (s == State::half_open && probes_in_flight_ > 0) {
      CHECK(t < probes_waiting_since_ + o_.half_open_max_wait);
    }
  }

  void operate(uint8_t arg) {
    const State before = breaker_.state();
    const uint64_t g = breaker_.generation();
    State want = State::closed;
    switch (arg % 4) {
      case 0:
        breaker_.force_open();
        want = State::forced_open;
        break;
      case 1:
        breaker_.disable();
        want = State::disabled;
        break;
      case 2:
        breaker_.metrics_only();
        want = State::metrics_only;
        break;
      case 3:
        breaker_.reset();
        want = State::closed;
        break;
    }
    CHECK(breaker_.state() == want);
    const bool noop = before == want && want != State::closed;
    CHECK(breaker_.generation() == (noop ? g : g + 1));
  }

  void check_always() {
    CHECK(breaker_.state() == last_to_);
    CHECK(breaker_.generation() == last_generation_);
    CHECK(probes_in_flight_ <= o_.half_open_probes);
    CHECK(probes_slots_ <= o_.half_open_probes);
    if (last_to_ != State::half_open) CHECK(probes_in_flight_ == 0);
    const auto w = breaker_.window(now());
    CHECK(w.failures <= w.calls && w.slow_calls <= w.calls);
    if (o_.window_type == WindowType::count) CHECK(w.calls <= o_.window_size);
    if (last_to_ == State::disabled) CHECK(w.calls == 0);
  }

  bulwark::testing::ManualClock clock_;
  const BreakerOptions o_;
  CircuitBreaker breaker_;
  std::vector<Held> held_;

  State last_to_ = State::closed;
  uint64_t last_generation_;
  uint64_t transitions_ = 0;
  uint64_t threshold_events_ = 0;
  int events_in_call_ = 0;
  uint64_t resolved_ = 0;
  uint64_t rejected_ = 0;
  Duration open_duration_{};

  std::deque<Rec> recs_;
  uint32_t run_ = 0;
  bool latched_ = false;
  uint32_t probes_slots_ = 0;
  uint32_t probes_in_flight_ = 0;
  uint32_t probe_successes_ = 0;
  TimePoint probes_waiting_since_{};
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider in(data, size);
  const BreakerOptions options = read_options(in);
  bulwark::circuit::validate(options);  // the generator only makes valid options
  Harness h(options);
  while (in.remaining_bytes() >= 2) {
    const uint8_t op = in.ConsumeIntegral<uint8_t>();
    const uint8_t arg = in.ConsumeIntegral<uint8_t>();
    h.step(op, arg);
  }
  h.finish_all();
  return 0;
}
