#!/usr/bin/env bash
# bench/compare_pytorch.sh — minidl against PyTorch on this machine, side by side, one command.
#
#   bench/compare_pytorch.sh [--runs N] [--configs b32,b128,fgm,pgd,awp,ema,amp,long] [--no-micro]
#                            [--no-train] [--quick] [--threads T] [--epochs E] [--build DIR]
#                            [--out DIR]
#
# 1. Builds text_classifier and bench_kernels (Release, CPU only) in --build (default
#    build-bench) unless they are there already (cmake's own up-to-date check).
# 2. Training: for each config, N rounds (default 3); each round runs minidl's
#    examples/text_classifier and bench/torch_text_classifier.py (the same spec in PyTorch) one
#    after the other, A B A B, so slow phases of a shared machine hit both alike. Every run is
#    under /usr/bin/time -v (peak RSS from the outside) and records the 1-minute load average.
#      b32   the default spec: SpamAssassin random split, batch 32, 5 epochs (--epochs E: E,
#            for every config but long; the step figures stay comparable), --threads T (2)
#      b128  batch 128                   fgm   --fgm 1 (FGM on the embedding, seed style)
#      pgd   --pgd (K 3, eps 1, alpha 0.3) awp   --awp (adv_lr 1, adv_eps 0.01, "weight")
#      ema   --ema 0.999                 amp   --amp bf16 (PyTorch: bf16 autocast on the CPU)
#      long  10 epochs, also PyTorch with torch.set_flush_denormal(True): per-epoch times show
#            whether subnormal Adam moments slow later epochs (not in the default list: add it)
# 3. Micro-benchmarks: bench_kernels (GEMM, peak, triad, Adam, per-op overhead, example step)
#    and bench/torch_micro.py (the same sections in PyTorch), 1 and 2 threads; then both
#    sections "denormal" (Adam's step time as its moments go subnormal) at --threads.
# 4. bench/compare_summary.py: medians and ratios -> --out (default out/bench): summary.md,
#    summary.json, and the raw records (runs.jsonl, bench_kernels.json, torch_micro.json,
#    denormal_*.json).
#
# Needs Debian's PyTorch with OpenBLAS: apt-get install -y python3-torch libopenblas0-pthread
# (scripts/setup.sh). The corpus: scripts/fetch_data.sh (.cache/datasets/spam-assassin).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

RUNS=3
CONFIGS="b32,b128,fgm,ema,amp"
THREADS=2
EPOCHS=
BUILD=build-bench
OUT=out/bench
MICRO=1
TRAIN=1
QUICK=0
PY=${PYTHON:-/usr/bin/python3}
DATA=.cache/datasets/spam-assassin/data

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --runs) RUNS="$2"; shift 2 ;;
    --configs) CONFIGS="$2"; shift 2 ;;
    --threads) THREADS="$2"; shift 2 ;;
    --epochs) EPOCHS="$2"; shift 2 ;;
    --build) BUILD="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    --no-micro) MICRO=0; shift ;;
    --no-train) TRAIN=0; shift ;;
    --quick) QUICK=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "compare_pytorch.sh: unknown argument $1" >&2; usage >&2; exit 2 ;;
  esac
done

if ! "$PY" -c "import torch" 2>/dev/null; then
  echo "compare_pytorch.sh: $PY cannot import torch;" \
       "apt-get install -y python3-torch libopenblas0-pthread (scripts/setup.sh)" >&2
  exit 1
fi
if [[ $TRAIN == 1 && ! -d "$DATA" ]]; then
  echo "compare_pytorch.sh: no corpus at $DATA (scripts/fetch_data.sh)" >&2
  exit 1
fi

# ---- build ---------------------------------------------------------------------------------
mkdir -p "$(dirname "$OUT")"
if [[ ! -f "$BUILD/CMakeCache.txt" ]]; then
  cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DMINIDL_CUDA=OFF -DMINIDL_BUILD_TESTS=OFF \
    >/dev/null
fi
targets=()
[[ $TRAIN == 1 ]] && targets+=(text_classifier)
[[ $MICRO == 1 ]] && targets+=(bench_kernels)
if [[ ${#targets[@]} -gt 0 ]] &&
   ! cmake --build "$BUILD" -j"$(nproc)" --target "${targets[@]}" >"$OUT.build.log" 2>&1; then
  tail -30 "$OUT.build.log" >&2
  echo "compare_pytorch.sh: the build failed (log: $OUT.build.log)" >&2
  exit 1
fi
CLF="$BUILD/examples/text_classifier/text_classifier"
[[ -x $CLF ]] || CLF="$BUILD/examples/text_classifier"
[[ -f $CLF && -x $CLF ]] || { echo "compare_pytorch.sh: no text_classifier in $BUILD" >&2; exit 1; }
KERNELS="$BUILD/bench/bench_kernels"

mkdir -p "$OUT"
RECORDS="$OUT/runs.jsonl"
: >"$RECORDS"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (with local changes)')"
  echo "cpu: $(lscpu | sed -n 's/^Model name: *//p') x $(nproc)"
  echo "memory: $(free -m | awk '/^Mem:/ {print $2 " MiB"}')"
  echo "torch: $("$PY" -c 'import torch; print(torch.__version__)')"
  echo "command: bench/compare_pytorch.sh --runs $RUNS --configs $CONFIGS --threads $THREADS${EPOCHS:+ --epochs $EPOCHS}"
} >"$OUT/machine.txt"

# flags_for CONFIG -> the training flags both programs take for it
flags_for() {
  case "$1" in
    b32) echo "--batch 32" ;;
    b128) echo "--batch 128" ;;
    fgm) echo "--batch 32 --fgm 1" ;;
    pgd) echo "--batch 32 --pgd" ;;
    awp) echo "--batch 32 --awp" ;;
    ema) echo "--batch 32 --ema 0.999" ;;
    amp) echo "--batch 32 --amp bf16" ;;
    long) echo "--batch 32 --epochs 10" ;;
    *) echo "compare_pytorch.sh: unknown config $1" >&2; exit 2 ;;
  esac
}

# run_one CONFIG VARIANT ROUND CMD... : runs CMD under /usr/bin/time -v, appends one record
run_one() {
  local config="$1" variant="$2" round="$3"
  shift 3
  local load
  load="$(cut -d' ' -f1 /proc/loadavg)"
  local t0 t1
  t0="$(date +%s.%N)"
  /usr/bin/time -v -o "$TMP/time.txt" "$@" >"$TMP/out.json" 2>"$TMP/err.txt" || {
    echo "compare_pytorch.sh: $config/$variant failed:" >&2
    tail -20 "$TMP/err.txt" >&2
    exit 1
  }
  t1="$(date +%s.%N)"
  local rss_kb
  rss_kb="$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$TMP/time.txt")"
  "$PY" - "$config" "$variant" "$round" "$load" "$t0" "$t1" "$rss_kb" "$TMP/out.json" \
    >>"$RECORDS" <<'EOF'
import json, sys
config, variant, rnd, load, t0, t1, rss_kb, path = sys.argv[1:]
lines = [l for l in open(path) if l.strip().startswith("{")]
rec = json.loads(lines[-1])
out = {"config": config, "variant": variant, "round": int(rnd), "load1": float(load),
       "wall_s": float(t1) - float(t0), "time_v_rss_mb": int(rss_kb) / 1024.0, "result": rec}
print(json.dumps(out))
print(f"  {config} {variant} round {rnd}: {rec['train_samples_per_s']:.0f} samples/s, "
      f"step {rec['step_ms']:.2f} ms, peak RSS {out['time_v_rss_mb']:.0f} MB, load {load}",
      file=sys.stderr)
EOF
}

# ---- training, A B A B -----------------------------------------------------------------------
if [[ $TRAIN == 1 ]]; then
  IFS=',' read -ra CFGS <<<"$CONFIGS"
  for config in "${CFGS[@]}"; do
    flags="$(flags_for "$config")"
    [[ -n $EPOCHS && $config != long ]] && flags="$flags --epochs $EPOCHS"
    echo "== $config: $flags --threads $THREADS ($RUNS rounds)" >&2
    for ((r = 1; r <= RUNS; ++r)); do
      # shellcheck disable=SC2086  # flags is a word list on purpose
      run_one "$config" minidl "$r" "$CLF" $flags --threads "$THREADS" --json --quiet \
        --data "$DATA" --out "$TMP/minidl_run"
      # shellcheck disable=SC2086
      run_one "$config" pytorch "$r" "$PY" bench/torch_text_classifier.py $flags \
        --threads "$THREADS" --data "$DATA" --json
      if [[ $config == long ]]; then
        # shellcheck disable=SC2086
        run_one "$config" pytorch_ftz "$r" "$PY" bench/torch_text_classifier.py $flags \
          --threads "$THREADS" --data "$DATA" --json --flush-denormal
      fi
    done
  done
fi

# ---- micro-benchmarks ------------------------------------------------------------------------
if [[ $MICRO == 1 ]]; then
  q=()
  [[ $QUICK == 1 ]] && q=(--quick)
  echo "== micro-benchmarks: bench_kernels, torch_micro.py (load $(cut -d' ' -f1 /proc/loadavg))" >&2
  # OpenBLAS's workers spin for a while after a call (THREAD_TIMEOUT, ~2^28 cycles by default);
  # after bench_kernels' direct 2-thread sgemm that spinning would take a core from the minidl
  # GEMM timed next. 2^4 cycles: they sleep at once (their wake-up is negligible at n >= 256).
  OPENBLAS_THREAD_TIMEOUT=4 "$KERNELS" --threads 1,2 "${q[@]}" --json "$OUT/bench_kernels.json"
  "$PY" bench/torch_micro.py --threads 1,2 "${q[@]}" --json "$OUT/torch_micro.json"
  # Denormals: 1000 zero-gradient Adam steps each, at the training thread count.
  "$KERNELS" --threads "$THREADS" --only denormal --json "$OUT/denormal_minidl.json"
  "$PY" bench/torch_micro.py --threads "$THREADS" --only denormal --json "$OUT/denormal_torch.json"
fi

"$PY" bench/compare_summary.py --out "$OUT"
