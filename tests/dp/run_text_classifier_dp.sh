#!/usr/bin/env bash
# tests/dp/run_text_classifier_dp.sh MODE BINARY SAMPLE [MPIRUN] — the text classifier's data
# parallelism end to end, on the committed offline sample (10 epochs, a second or two each):
#   replicas     --replicas 2 (DataParallel, 2 threads) gives bitwise the weights
#                (model.safetensors) and test loss of one process accumulating the same two halves
#                (--accum 2): the replicas' gradients are summed in replica order, the very
#                additions of accumulation. Also --replicas 3 against --accum 3, and both with
#                EMA, SWA, AMP (f16 and bf16) and clipping (3 epochs each). Not with an
#                adversarial trick: see docs/data_parallel.md section 3 for why;
#   distributed  mpirun -np 2 ... --distributed (DistributedDataParallel over MPI) prints one
#                summary (rank 0's) and comes within 0.03 accuracy and 1e-3 relative test loss of
#                the single-process run (each rank takes every other sample of the shuffled
#                order, so the micro-batches differ from the single process's: not bitwise);
#                and with a NaN loss on both ranks, --on-nonfinite stop and skip end alike.
# Every 10-epoch run also has to beat the majority class by far (accuracy >= 0.85 on this sample).
set -u
mode=$1
binary=$2
sample=$3
mpirun=${4:-}
common=(--data "$sample" --lr 1e-2 --threads 1 --json --quiet)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

field() {  # field NAME JSON -> the number
  grep -o "\"$1\":[-0-9.eE+]*" <<<"$2" | head -1 | cut -d: -f2
}
fail() { echo "FAIL: $*"; exit 1; }
min_accuracy=0.85  # for 10 epochs; 3 are too few to require it
run() {  # run LABEL COMMAND... -> the summary line in $summary
  local label=$1
  shift
  local out
  out=$("$@" 2>&1) || { echo "$out"; fail "$label exited non-zero"; }
  summary=$(grep '^{' <<<"$out")
  [ "$(grep -c '^{' <<<"$out")" -eq 1 ] || { echo "$out"; fail "$label: not exactly one summary"; }
  echo "$label: accuracy $(field test_accuracy "$summary"), loss $(field test_loss "$summary")"
  awk -v a="$(field test_accuracy "$summary")" -v m="$min_accuracy" 'BEGIN { exit !(a >= m) }' ||
    fail "$label learned too little"
}

case "$mode" in
  replicas)
    same_as_accum() { # same_as_accum N EPOCHS [FLAGS...]: --replicas N vs --accum N
      local n=$1 epochs=$2
      shift 2
      run "accum $n $*" "$binary" "${common[@]}" --epochs "$epochs" --out "$work/accum" \
        --accum "$n" "$@"
      expected=$(field test_loss "$summary")
      run "replicas $n $*" "$binary" "${common[@]}" --epochs "$epochs" --out "$work/replicas" \
        --replicas "$n" "$@"
      [ "$(field test_loss "$summary")" = "$expected" ] ||
        fail "--replicas $n $* gave test loss $(field test_loss "$summary"), --accum $n $expected"
      cmp -s "$work/accum/model.safetensors" "$work/replicas/model.safetensors" ||
        fail "--replicas $n $* and --accum $n $* wrote different weights"
    }
    same_as_accum 2 10
    min_accuracy=0
    same_as_accum 3 3
    same_as_accum 2 3 --ema 0.9 --swa-start 2 --amp f16 --clip 1
    same_as_accum 3 3 --ema 0.9 --ema-warmup --swa-start 2 --amp bf16
    ;;
  distributed)
    run "1 process" "$binary" "${common[@]}" --epochs 10 --out ""
    acc1=$(field test_accuracy "$summary")
    loss1=$(field test_loss "$summary")
    run "2 processes" "$mpirun" --allow-run-as-root --oversubscribe -np 2 "$binary" "${common[@]}" \
      --distributed --epochs 10 --out ""
    acc2=$(field test_accuracy "$summary")
    loss2=$(field test_loss "$summary")
    awk -v a="$acc1" -v b="$acc2" -v l="$loss1" -v m="$loss2" 'BEGIN {
      d = a - b; if (d < 0) d = -d; e = (l - m) / l; if (e < 0) e = -e
      exit !(d <= 0.03 && e <= 1e-3) }' ||
      fail "2 processes: accuracy $acc2, loss $loss2; 1 process: $acc1, $loss1"
    # A non-finite step under DDP: Adam at lr 1e38 overflows the weights in step 1, so step 2's
    # averaged loss is NaN on both ranks. stop: the run ends naming step 2, before its update.
    # skip: the ranks skip every later step alike (a rank out of step would hang the other until
    # the timeout) and rank 0, the writer, refuses to write the overflowed weights. (mpirun may
    # end the other rank before it prints, so one message is required, not two.)
    for policy in stop skip; do
      out=$(timeout 60 "$mpirun" --allow-run-as-root --oversubscribe -np 2 "$binary" \
        --data "$sample" --threads 1 --json --quiet --distributed --epochs 1 --lr 1e38 \
        --on-nonfinite $policy \
        --out "$work/nonfinite_$policy" 2>&1)
      rc=$?
      [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] || { echo "$out"; fail "--on-nonfinite $policy: exit $rc"; }
      if [ $policy = stop ]; then
        expected="non-finite loss (NaN) at epoch 1, global step 2"
      else
        expected="refusing to write it"
      fi
      grep -q -F "$expected" <<<"$out" || { echo "$out"; fail "--on-nonfinite $policy: no '$expected'"; }
      [ ! -e "$work/nonfinite_$policy/model.safetensors" ] || fail "$policy wrote a model"
      echo "2 processes, --on-nonfinite $policy: $expected"
    done
    ;;
  *) fail "unknown mode $mode" ;;
esac
echo "text classifier data-parallel test ($mode): passed"
