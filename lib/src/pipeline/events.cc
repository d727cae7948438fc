#include "bulwark/pipeline/events.h"

namespace bulwark {

void forward_transitions(circuit::CircuitBreaker& breaker, EventListener& listener) {
  breaker.add_listener(
      [&listener](const circuit::TransitionEvent& e) { listener.on_breaker_transition(e); });
}

}  // namespace bulwark
