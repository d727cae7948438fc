#!/usr/bin/env bash
# Builds and runs the whole test suite. usage: scripts/test.sh [all|release|asan|tsan|fuzz]
#   release  unit tests, examples and the find_package consumer (Release build)
#   asan     the unit tests under AddressSanitizer + UndefinedBehaviorSanitizer
#   tsan     the unit tests under ThreadSanitizer
#   fuzz     every libFuzzer target for a bounded time (FUZZ_SECONDS, default 30) on its corpus
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-all}
jobs=$(nproc)
fuzz_seconds=${FUZZ_SECONDS:-30}

run_preset() {
  local preset=$1
  echo "=== [$preset] configure + build"
  cmake --preset "$preset" >/dev/null
  cmake --build --preset "$preset" -j "$jobs"
  echo "=== [$preset] ctest"
  ctest --preset "$preset" -j "$jobs" --timeout 300
}

run_fuzz() {
  echo "=== [fuzz] configure + build"
  cmake --preset fuzz >/dev/null
  cmake --build --preset fuzz -j "$jobs"
  local found=0
  for bin in build/fuzz/fuzz/fuzz_*; do
    [ -x "$bin" ] || continue
    found=1
    local name=${bin##*/fuzz_}
    local corpus=fuzz/$name/corpus
    local scratch
    scratch=$(mktemp -d)
    echo "=== [fuzz] $name for ${fuzz_seconds}s"
    # New inputs go to a scratch dir so the checked-in corpus stays small and reviewed.
    "$bin" -max_total_time="$fuzz_seconds" -timeout=10 -rss_limit_mb=2048 \
      -artifact_prefix="$scratch/" "$scratch" "$corpus" 2>&1 | tail -n 3
    rm -rf "$scratch"
  done
  [ "$found" = 1 ] || { echo "no fuzz targets built"; exit 1; }
}

case "$what" in
  release|asan|tsan) run_preset "$what" ;;
  fuzz) run_fuzz ;;
  all)
    run_preset release
    run_preset asan
    run_preset tsan
    run_fuzz
    echo "=== all test stages passed"
    ;;
  *) echo "usage: $0 [all|release|asan|tsan|fuzz]" >&2; exit 2 ;;
esac
