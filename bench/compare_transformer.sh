#!/usr/bin/env bash
# bench/compare_transformer.sh — text_classifier --model transformer against the same spec in
# PyTorch (bench/torch_transformer_classifier.py), side by side, one command.
#
#   bench/compare_transformer.sh [--data DIR] [--epochs E] [--rounds N] [--threads T]
#                                [--build DIR] [--out DIR] [-- extra text_classifier flags]
#
# Each round runs minidl's example then PyTorch's script, one after the other (A B A B), on the
# same split, order, model, optimizer and schedule, E epochs (default 1) at T threads (default 2),
# and records each one's JSON line: step time (mean over the run; PyTorch's leaves out its first
# 3 steps, which makes its figure the kinder one), peak RSS of the process (evaluation included)
# and test accuracy. The summary prints the medians and the ratios against the targets
# (throughput >= 1.5x, goal 3x; peak RSS <= 0.5x) into --out (default out/bench_transformer).
# Needs Debian's PyTorch (apt-get install -y python3-torch) and the corpus
# (scripts/fetch_data.sh). Extra flags after `--` go to both sides (e.g. -- --fgm 1).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

DATA=.cache/datasets/spam-assassin/data
EPOCHS=1
ROUNDS=1
THREADS=2
BUILD=build
OUT=out/bench_transformer
PY=${PYTHON:-/usr/bin/python3}
EXTRA=()
while [ $# -gt 0 ]; do
  case "$1" in
    --data) DATA=$2; shift 2 ;;
    --epochs) EPOCHS=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --threads) THREADS=$2; shift 2 ;;
    --build) BUILD=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --) shift; EXTRA=("$@"); break ;;
    *) echo "compare_transformer.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

[ -x "$BUILD/examples/text_classifier" ] || {
  cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DMINIDL_CUDA=OFF >/dev/null
  cmake --build "$BUILD" --target text_classifier -j"$(nproc)"
}
mkdir -p "$OUT"
: > "$OUT/runs.jsonl"
for round in $(seq 1 "$ROUNDS"); do
  echo "round $round: minidl" >&2
  "$BUILD/examples/text_classifier" --model transformer --data "$DATA" --epochs "$EPOCHS" \
    --threads "$THREADS" --quiet --json --out "$OUT/minidl" "${EXTRA[@]}" |
    "$PY" -c 'import json,sys; d=json.loads(sys.stdin.read().splitlines()[-1]); d["side"]="minidl"; print(json.dumps(d))' \
    >> "$OUT/runs.jsonl"
  echo "round $round: PyTorch" >&2
  "$PY" bench/torch_transformer_classifier.py --data "$DATA" --epochs "$EPOCHS" \
    --threads "$THREADS" --json "${EXTRA[@]}" |
    "$PY" -c 'import json,sys; d=json.loads(sys.stdin.read().splitlines()[-1]); d["side"]="pytorch"; print(json.dumps(d))' \
    >> "$OUT/runs.jsonl"
done

"$PY" - "$OUT" <<'EOF'
import json, statistics, sys
out = sys.argv[1]
runs = [json.loads(l) for l in open(out + "/runs.jsonl")]
def med(side, key):
    return statistics.median(r[key] for r in runs if r["side"] == side and r.get(key) is not None)
m_step, t_step = med("minidl", "step_ms"), med("pytorch", "step_ms")
m_rss, t_rss = med("minidl", "peak_rss_mb"), med("pytorch", "peak_rss_mb")
m_acc, t_acc = med("minidl", "test_accuracy"), med("pytorch", "test_accuracy")
rounds = sum(r["side"] == "minidl" for r in runs)
lines = [
    "| row | minidl | PyTorch | ratio | target |",
    "|---|---|---|---|---|",
    "| step (ms, batch 32, max-len 128) | %.1f | %.1f | %.2fx throughput | >= 1.5x (goal 3x): %s |"
    % (m_step, t_step, t_step / m_step, "met" if t_step / m_step >= 1.5 else "NOT met"),
    "| peak RSS (MB, evaluation included) | %.1f | %.1f | %.2fx | <= 0.5x: %s |"
    % (m_rss, t_rss, m_rss / t_rss, "met" if m_rss / t_rss <= 0.5 else "NOT met"),
    "| test accuracy | %.4f | %.4f | | the same spec |" % (m_acc, t_acc),
]
text = "medians of %d round(s)\n\n" % rounds + "\n".join(lines) + "\n"
open(out + "/summary.md", "w").write(text)
print(text)
EOF
