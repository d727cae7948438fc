// EventQueue<Event>: listener registration and ordered delivery of state-change events, for
// the policies and monitors that report transitions (health, alerts, resources, shutdown).
//
// The owner push()es events while it holds its own state lock, so events are queued in the
// order the transitions happened, and calls deliver() after releasing that lock. deliver()
// calls every listener outside all locks, one event at a time and in order. If another thread
// is already delivering, deliver() returns at once and that thread delivers the new events too,
// so order is kept without holding a lock across listener calls. A listener may call back into
// the owner (even cause new events: they are delivered after it returns). Exceptions thrown by
// listeners are caught and ignored: a broken listener must not stop the component it watches.
//
// Thread-safety: every member is safe from any thread. Listeners cannot be removed; adding one
// copies the list (registration is rare, delivery is frequent).
#pragma once

#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

namespace bulwark {

template <class Event>
class EventQueue {
 public:
  using Listener = std::function<void(const Event&)>;

  void add_listener(Listener listener) {
    if (!listener) return;
    std::lock_guard lock(mu_);
    auto next = std::make_shared<std::vector<Listener>>(*listeners_);
    next->push_back(std::move(listener));
    listeners_ = std::move(next);
  }

  void push(Event event) {
    std::lock_guard lock(mu_);
    pending_.push_back(std::move(event));
  }

  bool has_pending() const {
    std::lock_guard lock(mu_);
    return !pending_.empty();
  }

  void deliver() noexcept {
    std::unique_lock lock(mu_);
    if (delivering_) return;  // the delivering thread will deliver ours too, in order
    delivering_ = true;
    while (!pending_.empty()) {
      Event event = std::move(pending_.front());
      pending_.pop_front();
      auto listeners = listeners_;
      lock.unlock();
      for (const Listener& l : *listeners) {
        try {
          l(event);
        } catch (...) {
          // Ignored by contract (see the file comment).
        }
      }
      lock.lock();
    }
    delivering_ = false;
  }

 private:
  mutable std::mutex mu_;
  bool delivering_ = false;
  std::deque<Event> pending_;
  std::shared_ptr<const std::vector<Listener>> listeners_ =
      std::make_shared<const std::vector<Listener>>();
};

}  // namespace bulwark
