#!/usr/bin/env bash
# scripts/setup.sh — installs every build and test dependency from Debian's packages.
# Idempotent: does nothing (no apt-get at all) when everything is already there.
#   MINIDL_SETUP_EXTRA="python3-torch ..." adds packages (the benchmarks' PyTorch, for example);
#   the word "peers" in it stands for bench/compare_peers.sh's peers (fastText, scikit-learn,
#   libtorch), which nothing else needs: MINIDL_SETUP_EXTRA=peers scripts/setup.sh.
#   MINIDL_SETUP_FUZZ=1 adds clang and its libFuzzer runtime (scripts/test.sh's fuzzing step).
#   CI=true adds Debian's PyTorch (python3-torch), so that the tests comparing with PyTorch (the
#   models' interop tests, the fixture checks) run in CI and on a fresh machine instead of
#   reporting themselves skipped.
set -euo pipefail

packages=(
  build-essential cmake            # g++ 12, make, CMake >= 3.25
  libeigen3-dev                    # CPU kernels
  libopenblas-dev                  # CPU GEMM (MINIDL_GEMM_BACKEND=auto; Eigen's GEMM without it)
  doctest-dev                      # tests
  nlohmann-json3-dev               # safetensors headers, fixtures, run records
  libcli11-dev                     # command-line parsing of the examples
  libopenmpi-dev openmpi-bin       # MPI data parallelism
  clang-format                     # the committed style
  ca-certificates
)
peer_packages=(
  fasttext python3-sklearn libtorch-dev time  # bench/compare_peers.sh only
)
fuzz_packages=(
  clang libclang-rt-dev            # libFuzzer (libclang_rt.fuzzer), clang's ASan/UBSan runtimes
)
if [ "${MINIDL_SETUP_FUZZ:-0}" = "1" ]; then packages+=("${fuzz_packages[@]}"); fi
if [ "${CI:-}" = "true" ]; then packages+=(python3-torch); fi
for extra in ${MINIDL_SETUP_EXTRA:-}; do
  if [ "$extra" = "peers" ]; then packages+=("${peer_packages[@]}"); else packages+=("$extra"); fi
done

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "setup: installing ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
