// bulwark: the gateway's command line.
//
//   bulwark --config FILE [--ready-file PATH]   run
//   bulwark --check-config --config FILE         validate: exit 0 ("configuration ok: FILE")
//                                                or 1 (one diagnostic per line on stderr);
//                                                security warnings ("FILE: warning: path:
//                                                message", config/warnings.h) go to stderr
//                                                and do not change the exit code
//   bulwark --version
#include <csignal>
#include <cstdio>
#include <cstring>
#include <exception>
#include <iostream>
#include <string>
#include <string_view>

#include "config/config.h"
#include "config/warnings.h"
#include "proxy/gateway.h"

namespace {

constexpr std::string_view kUsage =
    "usage: bulwark --config FILE [--ready-file PATH]\n"
    "       bulwark --check-config --config FILE\n"
    "       bulwark --version\n";

int usage_error(const std::string& message) {
  std::cerr << "bulwark: " << message << "\n" << kUsage;
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::string config_path;
  std::string ready_file;
  bool check_only = false;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    auto value = [&](std::string& out) {
      if (i + 1 >= argc) return false;
      out = argv[++i];
      return true;
    };
    if (arg == "--version") {
      std::cout << "bulwark " << BULWARK_VERSION << "\n";
      return 0;
    }
    if (arg == "--help" || arg == "-h") {
      std::cout << kUsage;
      return 0;
    }
    if (arg == "--check-config" || arg == "-t") {
      check_only = true;
    } else if (arg == "--config" || arg == "-c") {
      if (!value(config_path)) return usage_error("--config needs a file");
    } else if (arg.starts_with("--config=")) {
      config_path = std::string(arg.substr(9));
    } else if (arg == "--ready-file") {
      if (!value(ready_file)) return usage_error("--ready-file needs a path");
    } else {
      return usage_error("unknown argument '" + std::string(arg) + "'");
    }
  }
  if (config_path.empty()) return usage_error("--config FILE is required");
  // Sockets send with MSG_NOSIGNAL; an access log written to a pipe whose reader left must
  // not kill the process either.
  std::signal(SIGPIPE, SIG_IGN);

  bulwark::gateway::config::Config config;
  try {
    config = bulwark::gateway::config::load_file(config_path);
  } catch (const bulwark::gateway::config::ConfigError& e) {
    for (const auto& d : e.diagnostics()) std::cerr << d.text() << "\n";
    std::cerr << "configuration invalid: " << config_path << " (" << e.diagnostics().size()
              << (e.diagnostics().size() == 1 ? " error)\n" : " errors)\n");
    return 1;
  }
  if (check_only) {
    // Running, the gateway logs the same warnings.
    for (const auto& w : bulwark::gateway::config::warnings(config)) {
      std::cerr << w.text(config_path) << "\n";
    }
    std::cout << "configuration ok: " << config_path << "\n";
    return 0;
  }
  try {
    bulwark::gateway::proxy::Gateway gateway({.config_path = config_path, .ready_file = ready_file},
                                             std::move(config));
    return gateway.run();
  } catch (const std::exception& e) {
    std::cerr << "bulwark: cannot start: " << e.what() << "\n";
    return 1;
  }
}
