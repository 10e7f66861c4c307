#!/usr/bin/env bash
# scripts/test.sh — installs what is missing, builds from scratch and runs the whole test suite.
#
#   1. Release build (CUDA backend compiled wherever nvcc is found; its GPU tests report
#      themselves as skipped without a GPU), warnings as errors; every CTest test, including the
#      installed-package consumer check.
#   2. A CPU-only build under AddressSanitizer + UndefinedBehaviorSanitizer (which also keeps the
#      no-CUDA path compiled and tested); the whole suite again.
# Build folders: build/ and build-asan/ (MINIDL_BUILD_DIR / MINIDL_ASAN_DIR override them).
# MINIDL_SKIP_ASAN=1 skips step 2 (for quick local iterations; CI runs both).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh

jobs=$(nproc)
build=${MINIDL_BUILD_DIR:-build}
asan=${MINIDL_ASAN_DIR:-build-asan}

step() { printf '\n== %s ==\n' "$*"; }

step "release build ($build)"
start=$(date +%s)
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DMINIDL_WERROR=ON >/dev/null
cmake --build "$build" -j"$jobs"
echo "build time: $(( $(date +%s) - start )) s"

step "test suite (release)"
ctest --test-dir "$build" --output-on-failure -j"$jobs" --timeout 900

if [ "${MINIDL_SKIP_ASAN:-0}" != "1" ]; then
  step "sanitizer build ($asan: CPU only, ASan + UBSan)"
  start=$(date +%s)
  cmake -S . -B "$asan" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMINIDL_CUDA=OFF -DMINIDL_SANITIZE=ON \
    -DMINIDL_WERROR=ON -DMINIDL_BUILD_BENCH=OFF >/dev/null
  cmake --build "$asan" -j"$jobs"
  echo "build time: $(( $(date +%s) - start )) s"

  step "test suite (ASan + UBSan)"
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1 \
    ctest --test-dir "$asan" --output-on-failure -j"$jobs" --timeout 1800
fi
