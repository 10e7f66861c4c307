#!/usr/bin/env bash
# tests/dp/run_mpi_fault.sh MPIRUN PROGRAM — the fault test around tests/dp/mpi_fault.cpp.
# Passes when the 2-rank job ends non-zero within 30 s and rank 0 reported the timed-out
# all_reduce (operation, rank, timeout); with the program's 2 s timeout it takes about 3 s.
# The job runs in its own session (setsid), so that whatever is left of it (the stopped rank) can
# be killed by process group at the end.
#
# The deadline is a polling loop here, not a background "sleep 30; kill" watchdog: such a
# watchdog's sleep inherits this script's stdout, and CTest waits for every writer of the pipe to
# close — every run then took the full 30 s however early the job ended.
set -u
mpirun=$1
program=$2
deadline_s=30
out=$(mktemp)
start=$(date +%s)
setsid "$mpirun" --allow-run-as-root --oversubscribe -np 2 "$program" 2 >"$out" 2>&1 </dev/null &
job=$!
for (( tick = 0; tick < deadline_s * 10; ++tick )); do
  kill -0 "$job" 2>/dev/null || break
  sleep 0.1
done
kill -KILL -- "-$job" 2>/dev/null  # hung past the deadline, or the stopped rank left behind
wait "$job"
rc=$?
elapsed=$(( $(date +%s) - start ))
cat "$out"
status=0
check() { if ! grep -q -- "$1" "$out"; then echo "FAIL: the output lacks \"$1\""; status=1; fi; }
check "CommError: all_reduce on rank 0 of 2 (mpi): timed out after 2 s"
check "waiting for the other rank(s) (1)"
if [ "$rc" -eq 0 ]; then echo "FAIL: the job exited 0"; status=1; fi
if [ "$elapsed" -ge "$deadline_s" ]; then echo "FAIL: the job took ${elapsed} s (hung)"; status=1; fi
echo "mpi fault test: job exit code $rc after ${elapsed} s"
rm -f "$out"
exit $status
