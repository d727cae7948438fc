// FunctionRef<R(Args...)>: a non-owning, non-allocating reference to a callable.
//
// Used for "next" continuations inside the pipeline, where the callee never outlives the call.
// The referenced callable must outlive the FunctionRef (bind it to a named object or use it
// within one full-expression).
#pragma once

#include <functional>
#include <memory>
#include <type_traits>
#include <utility>

namespace bulwark {

template <class Sig>
class FunctionRef;

template <class R, class... Args>
class FunctionRef<R(Args...)> {
 public:
  template <class F>
  requires(!std::is_same_v<std::remove_cvref_t<F>, FunctionRef> &&
           std::is_invocable_r_v<R, F&, Args...>) FunctionRef(F&& f)
  noexcept  // NOLINT(google-explicit-constructor): implicit by design
      : obj_(const_cast<void*>(static_cast<const void*>(std::addressof(f)))),
        call_([](void* obj, Args... args) -> R {
          return std::invoke(*static_cast<std::remove_reference_t<F>*>(obj),
                             std::forward<Args>(args)...);
        }) {}

  R operator()(Args... args) const { return call_(obj_, std::forward<Args>(args)...); }

 private:
  void* obj_;
  R (*call_)(void*, Args...);
};

}  // namespace bulwark
