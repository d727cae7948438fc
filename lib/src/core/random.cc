#include "bulwark/core/random.h"

#include <random>

namespace bulwark {

Random Random::from_entropy() {
  std::random_device rd;
  const uint64_t seed = (static_cast<uint64_t>(rd()) << 32) ^ rd();
  return Random(seed);
}

Random& thread_random() noexcept {
  thread_local Random rng = Random::from_entropy();
  return rng;
}

}  // namespace bulwark
