#include "bulwark/testing/gate_stage.h"

namespace bulwark::testing {

class GateStage::Waiter final : public bulwark::Waiter {
 public:
  enum class Fate { pending, granted, refused, withdrawn };

  explicit Waiter(const GateStage& gate) : gate_(gate) {}

  void start(std::function<void(bool)> ready) override {
    {
      std::lock_guard lock(gate_.mu_);
      ready_ = std::move(ready);
      gate_.waiting_.push_back(self_.lock());
      gate_.started++;
    }
    gate_.cv_.notify_all();
  }
  bool cancel() noexcept override {
    std::lock_guard lock(gate_.mu_);
    if (fate_ != Fate::pending) return false;
    fate_ = Fate::withdrawn;
    std::erase_if(gate_.waiting_, [this](const auto& w) { return w.get() == this; });
    gate_.cancelled++;
    return true;
  }
  Fate fate() const {
    std::lock_guard lock(gate_.mu_);
    return fate_;
  }

 private:
  friend class GateStage;
  const GateStage& gate_;
  std::weak_ptr<Waiter> self_;
  std::function<void(bool)> ready_;
  Fate fate_ = Fate::pending;  // guarded by gate_.mu_
};

class GateStage::Run final : public StageRun {
 public:
  explicit Run(const GateStage& gate) : gate_(gate) {}
  Step enter(CallContext&, TimePoint now) override {
    if (!waiter_) {
      waiter_ = std::make_shared<Waiter>(gate_);
      waiter_->self_ = waiter_;
      return Step::wait(waiter_, Deadline::after(now, gate_.max_wait_));
    }
    switch (waiter_->fate()) {
      case Waiter::Fate::granted:
        gate_.passed++;
        return Step::proceed();
      case Waiter::Fate::refused:
        return Step::finish(AttemptResult::from_policy(errc::rejected, Outcome::final_failure));
      case Waiter::Fate::pending:
      case Waiter::Fate::withdrawn:
        break;
    }
    return Step::finish(AttemptResult::from_policy(errc::wait_timeout, Outcome::final_failure));
  }
  Step leave(CallContext&, AttemptResult r, TimePoint) override { return Step::finish(r); }
  void abandon() noexcept override { gate_.abandoned++; }

 private:
  const GateStage& gate_;
  std::shared_ptr<Waiter> waiter_;
};

bool GateStage::open_next(bool grant) {
  std::shared_ptr<Waiter> w;
  {
    std::lock_guard lock(mu_);
    if (waiting_.empty()) return false;
    w = waiting_.front();
    waiting_.pop_front();
    w->fate_ = grant ? Waiter::Fate::granted : Waiter::Fate::refused;
  }
  w->ready_(grant);  // outside the lock, as a real permit source would
  return true;
}

bool GateStage::wait_for_waiters(std::size_t n, Duration timeout) {
  std::unique_lock lock(mu_);
  return cv_.wait_for(lock, timeout, [&] { return waiting_.size() >= n; });
}

std::unique_ptr<StageRun> GateStage::start() const { return std::make_unique<Run>(*this); }
std::size_t GateStage::run_size() const noexcept { return sizeof(Run); }
std::size_t GateStage::run_align() const noexcept { return alignof(Run); }
StageRun* GateStage::start_in(void* storage) const { return emplace_run<Run>(storage, *this); }

}  // namespace bulwark::testing
