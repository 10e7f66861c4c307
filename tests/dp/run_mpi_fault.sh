#!/usr/bin/env bash
# tests/dp/run_mpi_fault.sh MPIRUN PROGRAM — the fault test around tests/dp/mpi_fault.cpp.
# Passes when the 2-rank job ends non-zero within 30 s and rank 0 reported the timed-out
# all_reduce (operation, rank, timeout). The job runs in its own session; whatever is left of it
# (the stopped rank) is killed by process group at the end.
set -u
mpirun=$1
program=$2
out=$(mktemp)
start=$(date +%s)
setsid "$mpirun" --allow-run-as-root --oversubscribe -np 2 "$program" 2 >"$out" 2>&1 &
job=$!
# Bounded: after 30 s the whole session is killed.
( sleep 30; kill -KILL -- "-$job" 2>/dev/null ) &
watchdog=$!
wait "$job"
rc=$?
elapsed=$(( $(date +%s) - start ))
kill "$watchdog" 2>/dev/null
kill -KILL -- "-$job" 2>/dev/null
cat "$out"
status=0
check() { if ! grep -q -- "$1" "$out"; then echo "FAIL: the output lacks \"$1\""; status=1; fi; }
check "CommError: all_reduce on rank 0 of 2 (mpi): timed out after 2 s"
check "waiting for the other rank(s) (1)"
if [ "$rc" -eq 0 ]; then echo "FAIL: the job exited 0"; status=1; fi
if [ "$elapsed" -ge 30 ]; then echo "FAIL: the job took ${elapsed} s (hung)"; status=1; fi
echo "mpi fault test: job exit code $rc after ${elapsed} s"
rm -f "$out"
exit $status
