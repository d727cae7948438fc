// Test helper: runs `promtool check metrics` (Debian package "prometheus") on an exposition.
#pragma once

#include <gtest/gtest.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <string>

namespace bulwark::observe::test {

struct PromtoolResult {
  bool found = false;  // promtool is installed
  int exit_code = -1;
  std::string output;  // stdout + stderr: parse errors and lint problems
};

inline PromtoolResult run_promtool(const std::string& exposition) {
  PromtoolResult r;
  if (std::system("command -v promtool >/dev/null 2>&1") != 0) return r;
  r.found = true;
  const char* dir = getenv("TMPDIR");
  std::string path =
      std::string(dir != nullptr && *dir != '\0' ? dir : "/tmp") + "/bulwark_metrics_XXXXXX";
  const int fd = mkstemp(path.data());
  if (fd < 0) {
    r.output = "mkstemp failed";
    return r;
  }
  FILE* f = fdopen(fd, "w");
  fwrite(exposition.data(), 1, exposition.size(), f);
  fclose(f);
  const std::string cmd = "promtool check metrics < '" + path + "' 2>&1";
  if (FILE* p = popen(cmd.c_str(), "r")) {
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.output.append(buf, n);
    const int status = pclose(p);
    r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }
  unlink(path.c_str());
  return r;
}

// Asserts that promtool accepts the exposition with no parse error and no lint complaint.
inline void expect_promtool_clean(const std::string& exposition) {
  const PromtoolResult r = run_promtool(exposition);
  ASSERT_TRUE(r.found) << "promtool not found on PATH: install the Debian package 'prometheus' "
                          "(scripts/install-deps.sh does) to validate the exposition format";
  EXPECT_EQ(r.exit_code, 0) << r.output << "\n--- exposition ---\n" << exposition;
  EXPECT_EQ(r.output, "") << "--- exposition ---\n" << exposition;
}

}  // namespace bulwark::observe::test
