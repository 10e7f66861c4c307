#!/usr/bin/env bash
# tests/dp/run_text_classifier_dp.sh MODE BINARY SAMPLE [MPIRUN] — the text classifier's data
# parallelism end to end, on the committed offline sample (10 epochs, a second or two each):
#   replicas     --replicas 2 (DataParallel, 2 threads) gives bitwise the test loss of one
#                process accumulating the same two halves (--accum 2): the replicas' gradients
#                are summed in replica order, the very additions of accumulation;
#   distributed  mpirun -np 2 ... --distributed (DistributedDataParallel over MPI) prints one
#                summary (rank 0's) and comes within 0.03 accuracy and 1e-3 relative test loss of
#                the single-process run (each rank takes every other sample of the shuffled
#                order, so the micro-batches differ from the single process's: not bitwise).
# Every run also has to beat the majority class by far (accuracy >= 0.85 on this sample).
set -u
mode=$1
binary=$2
sample=$3
mpirun=${4:-}
common=(--data "$sample" --epochs 10 --lr 1e-2 --threads 1 --json --quiet --out "")

field() {  # field NAME JSON -> the number
  grep -o "\"$1\":[-0-9.eE+]*" <<<"$2" | head -1 | cut -d: -f2
}
fail() { echo "FAIL: $*"; exit 1; }
run() {  # run LABEL COMMAND... -> the summary line in $summary
  local label=$1
  shift
  local out
  out=$("$@" 2>&1) || { echo "$out"; fail "$label exited non-zero"; }
  summary=$(grep '^{' <<<"$out")
  [ "$(grep -c '^{' <<<"$out")" -eq 1 ] || { echo "$out"; fail "$label: not exactly one summary"; }
  echo "$label: accuracy $(field test_accuracy "$summary"), loss $(field test_loss "$summary")"
  awk -v a="$(field test_accuracy "$summary")" 'BEGIN { exit !(a >= 0.85) }' ||
    fail "$label learned too little"
}

case "$mode" in
  replicas)
    run "accum 2" "$binary" "${common[@]}" --accum 2
    expected=$(field test_loss "$summary")
    run "replicas 2" "$binary" "${common[@]}" --replicas 2
    [ "$(field test_loss "$summary")" = "$expected" ] ||
      fail "--replicas 2 gave test loss $(field test_loss "$summary"), --accum 2 $expected"
    ;;
  distributed)
    run "1 process" "$binary" "${common[@]}"
    acc1=$(field test_accuracy "$summary")
    loss1=$(field test_loss "$summary")
    run "2 processes" "$mpirun" --allow-run-as-root --oversubscribe -np 2 "$binary" "${common[@]}" \
      --distributed
    acc2=$(field test_accuracy "$summary")
    loss2=$(field test_loss "$summary")
    awk -v a="$acc1" -v b="$acc2" -v l="$loss1" -v m="$loss2" 'BEGIN {
      d = a - b; if (d < 0) d = -d; e = (l - m) / l; if (e < 0) e = -e
      exit !(d <= 0.03 && e <= 1e-3) }' ||
      fail "2 processes: accuracy $acc2, loss $loss2; 1 process: $acc1, $loss1"
    ;;
  *) fail "unknown mode $mode" ;;
esac
echo "text classifier data-parallel test ($mode): passed"
