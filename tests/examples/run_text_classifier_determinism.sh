#!/usr/bin/env bash
# tests/examples/run_text_classifier_determinism.sh BINARY SAMPLE WORKDIR — the same seed gives
# bitwise the same weights: for each trick family (baseline; FGM + EMA + SWA + bf16 + accumulation
# + clipping; PGD; FreeLB + f16; AWP), three separate processes of the same run on the committed
# sample — --threads 2, --threads 2 again, --threads 1 — must write byte-identical
# model.safetensors (separate processes: other addresses, other thread timings). And the seed
# matters: seed 1 must give other weights (else the comparison could not fail).
set -u
binary=$1
sample=$2
work=$3
rm -rf "$work"
mkdir -p "$work"

fail() {
  echo "FAIL: $*"
  exit 1
}
train() { # train OUT FLAGS...
  local out=$1
  shift
  "$binary" --data "$sample" --epochs 3 --lr 1e-2 --quiet --out "$work/$out" "$@" \
    >/dev/null 2>"$work/err" || fail "$out: exited non-zero: $(cat "$work/err")"
}

configs=("baseline|"
  "fgm+ema+swa+bf16+accum+clip|--fgm 0.5 --ema 0.9 --ema-warmup --swa-start 2 --amp bf16 --accum 2 --clip 1"
  "pgd|--pgd"
  "freelb+f16|--freelb --amp f16"
  "awp|--awp")
for entry in "${configs[@]}"; do
  name=${entry%%|*}
  read -r -a flags <<<"${entry#*|}"
  train a --threads 2 "${flags[@]}"
  train b --threads 2 "${flags[@]}"
  train c --threads 1 "${flags[@]}"
  cmp -s "$work/a/model.safetensors" "$work/b/model.safetensors" ||
    fail "$name: two runs with the same seed wrote different weights"
  cmp -s "$work/a/model.safetensors" "$work/c/model.safetensors" ||
    fail "$name: --threads 1 and --threads 2 wrote different weights"
  echo "$name: the same seed twice and --threads 1 vs 2: bitwise the same model.safetensors"
done
train d --threads 2 --seed 1
train a --threads 2
cmp -s "$work/a/model.safetensors" "$work/d/model.safetensors" &&
  fail "seed 0 and seed 1 wrote the same weights"
rm -rf "$work"
echo "determinism test: passed"
