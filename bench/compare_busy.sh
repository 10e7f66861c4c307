#!/usr/bin/env bash
# bench/compare_busy.sh — the example's step on a busy machine, minidl beside PyTorch, one command.
#
#   bench/compare_busy.sh [--loads 0,1,2] [--rounds N] [--epochs E] [--threads T] [--build DIR]
#                         [--out DIR]
#
# Laptops and shared CI boxes run other work beside training. For each load L (default 0, 1 and
# 2), L busy processes (each a shell loop spinning on one core, at the same priority) run during
# the measurement; under that load each round runs, one after the other:
#   minidl   examples/text_classifier --threads T (default 2)
#   auto     examples/text_classifier --threads 0 (the pool's own choice of thread count)
#   pytorch  bench/torch_text_classifier.py --threads T
# on the SpamAssassin random split, batch 32, E epochs (default 1), and records each run's step
# time (training seconds / optimizer steps). The summary (--out, default out/bench_busy:
# summary.md, runs.jsonl) gives each program's median step per load and its ratio to the same
# program at load 0. Target: with one competing process, minidl's step is at most 2.5x its idle
# step.
#
# Needs what bench/compare_pytorch.sh needs (Debian's PyTorch, the corpus); builds text_classifier
# in --build (default build-bench) when it is not there.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

LOADS="0,1,2"
RUNS=3
EPOCHS=1
THREADS=2
BUILD=build-bench
OUT=out/bench_busy
PY=${PYTHON:-/usr/bin/python3}
DATA=.cache/datasets/spam-assassin/data

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --loads) LOADS="$2"; shift 2 ;;
    --rounds) RUNS="$2"; shift 2 ;;
    --epochs) EPOCHS="$2"; shift 2 ;;
    --threads) THREADS="$2"; shift 2 ;;
    --build) BUILD="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "compare_busy.sh: unknown argument $1" >&2; usage >&2; exit 2 ;;
  esac
done

"$PY" -c "import torch" 2>/dev/null || {
  echo "compare_busy.sh: $PY cannot import torch (scripts/setup.sh installs python3-torch)" >&2
  exit 1
}
[[ -d $DATA ]] || { echo "compare_busy.sh: no corpus in $DATA (scripts/fetch_data.sh)" >&2; exit 1; }

if [[ ! -f "$BUILD/CMakeCache.txt" ]]; then
  cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DMINIDL_CUDA=OFF -DMINIDL_BUILD_TESTS=OFF \
    >"$OUT.build.log" 2>&1
fi
cmake --build "$BUILD" -j"$(nproc)" --target text_classifier >>"$OUT.build.log" 2>&1 || {
  echo "compare_busy.sh: build failed, see $OUT.build.log" >&2
  exit 1
}
CLF="$BUILD/examples/text_classifier/text_classifier"
[[ -x $CLF ]] || CLF="$BUILD/examples/text_classifier"

mkdir -p "$OUT"
RECORDS="$OUT/runs.jsonl"
: >"$RECORDS"
TMP="$(mktemp -d)"
BUSY=()
stop_busy() {
  for pid in "${BUSY[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${BUSY[@]}"; do wait "$pid" 2>/dev/null || true; done
  BUSY=()
}
trap 'stop_busy; rm -rf "$TMP"' EXIT

# record PROGRAM LOAD ROUND CMD... : runs CMD, appends its step time to the records
record() {
  local program="$1" load="$2" round="$3"
  shift 3
  "$@" >"$TMP/out.json" 2>"$TMP/err.txt" || {
    echo "compare_busy.sh: $program at load $load failed:" >&2
    tail -20 "$TMP/err.txt" >&2
    exit 1
  }
  "$PY" - "$program" "$load" "$round" "$TMP/out.json" >>"$RECORDS" <<'EOF'
import json, sys
program, load, rnd, path = sys.argv[1:]
rec = json.loads([l for l in open(path) if l.strip().startswith("{")][-1])
print(json.dumps({"program": program, "load": int(load), "round": int(rnd),
                  "step_ms": rec["step_ms"], "threads": rec.get("threads"),
                  "load1": float(open("/proc/loadavg").read().split()[0])}))
print(f"  load {load} {program} round {rnd}: step {rec['step_ms']:.2f} ms"
      f" (threads {rec.get('threads')})", file=sys.stderr)
EOF
}

{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo "cpu: $(lscpu | sed -n 's/^Model name: *//p') x $(nproc)"
  echo "command: bench/compare_busy.sh --loads $LOADS --rounds $RUNS --epochs $EPOCHS --threads $THREADS"
} >"$OUT/machine.txt"

IFS=',' read -ra LOAD_LIST <<<"$LOADS"
for load in "${LOAD_LIST[@]}"; do
  echo "== load $load: $load busy process(es), $RUNS rounds" >&2
  for ((k = 0; k < load; ++k)); do
    bash -c 'while :; do :; done' &
    BUSY+=($!)
  done
  sleep 1  # let the scheduler see them
  common=(--data "$DATA" --epochs "$EPOCHS" --batch 32 --json)
  for ((r = 1; r <= RUNS; ++r)); do
    record minidl "$load" "$r" "$CLF" "${common[@]}" --threads "$THREADS" --quiet \
      --out "$TMP/run"
    record auto "$load" "$r" "$CLF" "${common[@]}" --threads 0 --quiet --out "$TMP/run"
    record pytorch "$load" "$r" "$PY" bench/torch_text_classifier.py "${common[@]}" \
      --threads "$THREADS"
  done
  stop_busy
done

"$PY" - "$OUT" "$THREADS" <<'EOF'
import json, os, statistics, sys
out, threads = sys.argv[1], sys.argv[2]
recs = [json.loads(l) for l in open(os.path.join(out, "runs.jsonl"))]
med = {}
for r in recs:
    med.setdefault((r["program"], r["load"]), []).append(r["step_ms"])
med = {k: statistics.median(v) for k, v in med.items()}
loads = sorted({r["load"] for r in recs})
programs = [("minidl", f"minidl --threads {threads}"), ("auto", "minidl --threads 0"),
            ("pytorch", f"PyTorch --threads {threads}")]
lines = [open(os.path.join(out, "machine.txt")).read().strip(), "",
         "| program | " + " | ".join(f"load {l}: step ms (x idle)" for l in loads) + " |",
         "|---" * (len(loads) + 1) + "|"]
for key, name in programs:
    cells = []
    for l in loads:
        v, idle = med.get((key, l)), med.get((key, 0))
        cells.append("–" if v is None else
                     f"{v:.2f}" + (f" ({v / idle:.2f}x)" if idle and l != 0 else ""))
    lines.append(f"| {name} | " + " | ".join(cells) + " |")
lines.append("")
lines.append("PyTorch / minidl at each load: " + ", ".join(
    f"load {l}: {med[('pytorch', l)] / med[('minidl', l)]:.1f}x" for l in loads
    if ('pytorch', l) in med and ('minidl', l) in med))
if ("minidl", 1) in med and ("minidl", 0) in med:
    x = med[("minidl", 1)] / med[("minidl", 0)]
    lines.append(f"Target, one competing process: minidl's step <= 2.5x idle: {x:.2f}x, "
                 + ("met" if x <= 2.5 else "NOT met"))
text = "\n".join(lines) + "\n"
open(os.path.join(out, "summary.md"), "w").write(text)
print(text)
EOF
