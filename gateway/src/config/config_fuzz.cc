// Fuzzes the config loader: any input must either load or fail with a ConfigError whose every
// diagnostic names the file and says what is wrong. Anything else (a crash, a different
// exception, an empty message) is a bug.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "config/config.h"

namespace {
std::optional<std::string> no_env(const std::string& name) {
  if (name == "SET") return std::string("127.0.0.1:9001");
  return std::nullopt;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    (void)bulwark::gateway::config::parse(text, "fuzz.yaml", no_env);
  } catch (const bulwark::gateway::config::ConfigError& e) {
    if (e.diagnostics().empty()) std::abort();
    for (const auto& d : e.diagnostics()) {
      if (d.file != "fuzz.yaml" || d.message.empty() || d.line < 0 || d.column < 0) std::abort();
    }
  }
  return 0;
}
