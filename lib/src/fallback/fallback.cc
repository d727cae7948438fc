#include "bulwark/fallback/fallback.h"

namespace bulwark::fallback {

std::string_view to_string(FailureChoice c) noexcept {
  switch (c) {
    case FailureChoice::last_to_fail:
      return "last_to_fail";
    case FailureChoice::first_to_fail:
      return "first_to_fail";
    case FailureChoice::lowest_index:
      return "lowest_index";
  }
  return "unknown";
}

}  // namespace bulwark::fallback
