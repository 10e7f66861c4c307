#!/usr/bin/env bash
# scripts/test.sh — installs what is missing, builds from scratch and runs the whole test suite.
#
#   1. Release build (CUDA backend compiled wherever nvcc is found; its GPU tests report
#      themselves as skipped without a GPU), warnings as errors; every CTest test, including the
#      installed-package consumer check; then scripts/gpu_check.sh --dry-run, so that the GPU
#      machine's procedure is exercised on every run.
#   2. A CPU-only build under AddressSanitizer + UndefinedBehaviorSanitizer (which also keeps the
#      no-CUDA path compiled and tested); the whole suite again.
#   3. A CPU-only build under ThreadSanitizer of the data-parallel tests alone (replica threads,
#      the in-process communicator, DDP's communication thread): the library and
#      minidl_dp_tests only, without MPI.
#   4. Fuzzing: a clang build of the parsers' libFuzzer targets (tests/fuzz; ASan + UBSan), each
#      run for MINIDL_FUZZ_SECONDS (default 60) from its seed corpus (scripts/fuzz.sh); a crash
#      fails the script and prints the reproducer's path. clang and libFuzzer are installed for
#      this step only.
# Build folders: build/, build-asan/, build-tsan/ and build-fuzz/ (MINIDL_BUILD_DIR /
# MINIDL_ASAN_DIR / MINIDL_TSAN_DIR / MINIDL_FUZZ_DIR override them). MINIDL_SKIP_ASAN=1 /
# MINIDL_SKIP_TSAN=1 / MINIDL_SKIP_FUZZ=1 skip step 2 / 3 / 4 (for quick local iterations; CI runs
# all four).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh

jobs=$(nproc)
build=${MINIDL_BUILD_DIR:-build}
asan=${MINIDL_ASAN_DIR:-build-asan}
tsan=${MINIDL_TSAN_DIR:-build-tsan}
fuzz=${MINIDL_FUZZ_DIR:-build-fuzz}

step() { printf '\n== %s ==\n' "$*"; }

step "release build ($build)"
start=$(date +%s)
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DMINIDL_WERROR=ON >/dev/null
cmake --build "$build" -j"$jobs"
echo "build time: $(( $(date +%s) - start )) s"

step "test suite (release)"
ctest --test-dir "$build" --output-on-failure -j"$jobs" --timeout 900

step "GPU check, dry run (what would travel to a GPU machine and what would run there)"
OUT="$build/gpu_check_dry" scripts/gpu_check.sh --dry-run

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

if [ "${MINIDL_SKIP_FUZZ:-0}" != "1" ]; then
  step "fuzzing ($fuzz: clang, libFuzzer + ASan + UBSan, the parsers)"
  MINIDL_SETUP_FUZZ=1 scripts/setup.sh
  start=$(date +%s)
  # Debug at -O0 with line tables: the parsers are built at -O1 (tests/fuzz/CMakeLists.txt), the
  # rest of the library, hardly run by the fuzz inputs, as fast to compile as it gets. Warnings
  # are not errors here: clang warns where g++ (the -Werror builds above) does not.
  cmake -S . -B "$fuzz" -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG=-gline-tables-only \
    -DCMAKE_CXX_COMPILER=clang++ -DMINIDL_FUZZ=ON -DMINIDL_NATIVE=OFF \
    -DMINIDL_CUDA=OFF -DMINIDL_MPI=OFF -DMINIDL_BUILD_TESTS=OFF -DMINIDL_BUILD_BENCH=OFF \
    -DMINIDL_BUILD_EXAMPLES=OFF -DMINIDL_WERROR=OFF >/dev/null
  cmake --build "$fuzz" -j"$jobs" --target minidl_fuzzers
  echo "build time: $(( $(date +%s) - start )) s"
  start=$(date +%s)
  scripts/fuzz.sh "$fuzz" "${MINIDL_FUZZ_SECONDS:-60}"
  echo "fuzzing time: $(( $(date +%s) - start )) s"
fi
