#!/usr/bin/env bash
# scripts/test.sh — installs what is missing, builds from scratch and runs the whole test suite.
#
#   1. Release build (CUDA backend compiled wherever nvcc is found; its GPU tests report
#      themselves as skipped without a GPU), warnings as errors; every CTest test, including the
#      installed-package consumer check.
#   2. A CPU-only build under AddressSanitizer + UndefinedBehaviorSanitizer (which also keeps the
#      no-CUDA path compiled and tested); the whole suite again.
#   3. A CPU-only build under ThreadSanitizer of the data-parallel tests alone (replica threads,
#      the in-process communicator, DDP's communication thread): the library and
#      minidl_dp_tests only, without MPI.
# Build folders: build/, build-asan/ and build-tsan/ (MINIDL_BUILD_DIR / MINIDL_ASAN_DIR /
# MINIDL_TSAN_DIR override them). MINIDL_SKIP_ASAN=1 / MINIDL_SKIP_TSAN=1 skip step 2 / 3 (for
# quick local iterations; CI runs all three).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh

jobs=$(nproc)
build=${MINIDL_BUILD_DIR:-build}
asan=${MINIDL_ASAN_DIR:-build-asan}
tsan=${MINIDL_TSAN_DIR:-build-tsan}

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

if [ "${MINIDL_SKIP_TSAN:-0}" != "1" ]; then
  step "ThreadSanitizer build ($tsan: CPU only, the data-parallel tests)"
  start=$(date +%s)
  cmake -S . -B "$tsan" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMINIDL_CUDA=OFF -DMINIDL_MPI=OFF \
    -DMINIDL_SANITIZE_THREAD=ON -DMINIDL_WERROR=ON -DMINIDL_BUILD_BENCH=OFF >/dev/null
  cmake --build "$tsan" -j"$jobs" --target minidl_dp_tests
  echo "build time: $(( $(date +%s) - start )) s"

  step "data-parallel tests (ThreadSanitizer)"
  start=$(date +%s)
  TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" "$tsan/tests/minidl_dp_tests"
  echo "test time: $(( $(date +%s) - start )) s"
fi
