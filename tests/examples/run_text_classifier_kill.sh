#!/usr/bin/env bash
# tests/examples/run_text_classifier_kill.sh BINARY SAMPLE WORKDIR — crash safety of training.
#
# For each of two configurations (every piece of resumable state: Adam, EMA with warm-up, SWA and
# SWALR, the f16 loss scaler, accumulation, clipping, FGM; then bf16 and FreeLB on 2 replicas,
# each with its own generator),
# one uninterrupted run gives the reference model.safetensors. A second run of the same
# configuration is SIGKILLed again and again, each time resumed (--resume) from whatever survived,
# until it finishes; its model.safetensors must be bitwise the reference's. The kills:
#   step:N          TEXTCLF_KILL_AT (examples/text_classifier/kill_points.h): the process kills
#                   itself before its (N+1)-th step — mid-epoch, just after an epoch's checkpoint,
#                   before the first step (N = 0)
#   save:K:header   in its K-th write (checkpoint or model.safetensors), the temporary file holding
#                   the header only
#   save:K:flushed  the K-th write complete and flushed, not yet renamed
#   after:S         `timeout -s KILL S`: a kill from outside after S seconds, landing wherever the
#                   process is (reading data, training, writing)
# The last kills land in the first and a later write of model.safetensors itself. Each kill must
# happen where the schedule says (exit status 137): a kill point that was never reached fails the
# test rather than testing nothing. A run without a checkpoint yet starts afresh, as a user would.
# Also checked: a resumed run removes the temporary files the killed writers left.
# Prints the number of kills survived. About 6,000 steps' worth of runs: ~15 s on 2 cores.
set -u
binary=$1
sample=$2
work=$3
epochs=12 # 192 training documents, batch 32: 6 steps per epoch
steps_per_epoch=6

fail() {
  echo "FAIL: $*"
  exit 1
}

# Epochs the checkpoint in $1 has completed (its safetensors header's metadata), 0 without one.
epochs_done() {
  local f=$1/checkpoint.safetensors
  [ -f "$f" ] || {
    echo 0
    return
  }
  head -c 65536 "$f" | grep -a -o '"position.epoch":"[0-9]*"' | grep -o '[0-9]*' | head -1
}

total_kills=0
run_config() { # run_config NAME FLAGS...
  local name=$1
  shift
  local flags=(--data "$sample" --epochs $epochs --lr 1e-2 --threads 1 --quiet "$@")
  local ref=$work/$name/reference out=$work/$name/killed
  rm -rf "$work/$name"
  mkdir -p "$work/$name"
  "$binary" "${flags[@]}" --out "$ref" >/dev/null 2>"$work/$name/reference.err" ||
    fail "$name: the uninterrupted run failed: $(cat "$work/$name/reference.err")"

  # Each entry kills one process. The counts are per process; the schedule is checked against
  # the work left (a kill point past the end of the run would not be reached).
  local schedule=(step:0 save:1:header step:3 save:1:flushed step:6 save:2:header after:0.15
    step:1 save:2:flushed step:13 after:0.05 save:1:header step:8 after:0.3 save:3:flushed
    step:5 model:header model:flushed)
  local kills=0 temps_seen=0 entry
  for entry in "${schedule[@]}"; do
    local done left left_steps
    done=$(epochs_done "$out")
    left=$((epochs - done))
    left_steps=$((left * steps_per_epoch))
    # model:STAGE: the write of model.safetensors, the (left + 1)-th write of a resumed run.
    case "$entry" in
      model:*) entry=save:$((left + 1)):${entry#model:} ;;
    esac
    local expect_kill=1
    case "$entry" in
      step:*) [ "${entry#step:}" -lt "$left_steps" ] || expect_kill=0 ;;
      save:*)
        local k=${entry#save:}
        k=${k%%:*}
        [ "$k" -le $((left + 1)) ] || expect_kill=0
        ;;
      after:*) expect_kill=0 ;; # wherever it lands, or nowhere if the run ends first
    esac
    local cmd=("$binary" "${flags[@]}" --out "$out")
    [ -f "$out/checkpoint.safetensors" ] && cmd=("$binary" --resume "$out" --threads 1 --quiet)
    local rc err=$work/$name/last.err
    # In a subshell whose stderr is dropped, so that the shell's "Killed" notice goes there (the
    # `exit` keeps bash from replacing the subshell by the program).
    case "$entry" in
      after:*)
        (
          timeout -s KILL "${entry#after:}" "${cmd[@]}" >/dev/null 2>"$err"
          exit $?
        ) 2>/dev/null
        ;;
      *)
        (
          TEXTCLF_KILL_AT=$entry "${cmd[@]}" >/dev/null 2>"$err"
          exit $?
        ) 2>/dev/null
        ;;
    esac
    rc=$?
    if [ "$rc" -eq 137 ]; then
      kills=$((kills + 1))
    elif [ "$rc" -ne 0 ]; then
      fail "$name: after $kills kills, the run with $entry exited $rc: $(cat "$err")"
    elif [ "$expect_kill" -eq 1 ]; then
      fail "$name: $entry with $done of $epochs epochs done: the run was not killed"
    fi
    temps_seen=$((temps_seen + $(find "$out" -name '*.tmp.*' 2>/dev/null | wc -l)))
    echo "$name: $entry -> exit $rc, $(epochs_done "$out") of $epochs epochs checkpointed"
  done
  # The last resume, uninterrupted.
  "$binary" --resume "$out" --threads 1 --quiet >/dev/null 2>"$work/$name/last.err" ||
    fail "$name: the final resume failed: $(cat "$work/$name/last.err")"
  [ -z "$(find "$out" -name '*.tmp.*')" ] || fail "$name: temporary files left: $(ls "$out")"
  cmp "$ref/model.safetensors" "$out/model.safetensors" ||
    fail "$name: after $kills kills the final model.safetensors differs from the uninterrupted run's"
  echo "$name: $kills kills survived ($temps_seen abandoned temporary files seen and removed)," \
    "model.safetensors bitwise the uninterrupted run's"
  total_kills=$((total_kills + kills))
  rm -rf "$work/$name"
}

run_config fgm_ema_swa_f16 --fgm 0.5 --ema 0.9 --ema-warmup --swa-start 8 --swa-lr 5e-3 \
  --amp f16 --accum 2 --clip 1
run_config freelb_bf16_replicas --freelb --amp bf16 --ema 0.99 --replicas 2
echo "kill test: passed, $total_kills kills survived"
