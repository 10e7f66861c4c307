#!/usr/bin/env bash
# scripts/fuzz.sh — runs every libFuzzer target of tests/fuzz for a fixed time and reports
# executions, coverage and findings per target. Fails (exit 1) when any target finds a crash, a
# sanitizer report, an uncaught non-minidl exception, a leak or a hang; each reproducer's path is
# printed (add it to tests/fuzz/regressions/<target>/ once fixed).
#
#   scripts/fuzz.sh BUILD_DIR [SECONDS]     BUILD_DIR configured with -DMINIDL_FUZZ=ON (clang) and
#                                           its target minidl_fuzzers built; SECONDS per target
#                                           (default MINIDL_FUZZ_SECONDS, else 60)
#
# Each target starts from its committed seed corpus (tests/fuzz/corpus/<target>/, read only) and
# writes the inputs it finds to BUILD_DIR/fuzz-work/<target>/corpus, a scratch folder emptied on
# every run. One process per target, one target at a time.
set -euo pipefail
cd "$(dirname "$0")/.."

build=${1:?usage: scripts/fuzz.sh BUILD_DIR [SECONDS]}
seconds=${2:-${MINIDL_FUZZ_SECONDS:-60}}
targets=(safetensors tsv jsonl json_lite tokenizer)
json_targets=" safetensors jsonl json_lite "

failed=()
printf '%-12s %12s %10s %8s %8s  %s\n' target executions exec/s cov corpus findings
for t in "${targets[@]}"; do
  bin="$build/tests/fuzz/fuzz_$t"
  [ -x "$bin" ] || { echo "fuzz.sh: $bin not built (cmake --build $build --target minidl_fuzzers)"; exit 2; }
  work="$build/fuzz-work/$t"
  rm -rf "$work"
  mkdir -p "$work/corpus" "$work/artifacts"
  dict=()
  if [[ $json_targets == *" $t "* ]]; then dict=(-dict=tests/fuzz/json.dict); fi
  rc=0
  ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
    "$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
      "${dict[@]}" -artifact_prefix="$work/artifacts/" "$work/corpus" "tests/fuzz/corpus/$t" \
      >"$work/log" 2>&1 || rc=$?
  final_stat() { sed -n "s/^stat::$1: *//p" "$work/log" | tail -1; }
  done_line=$(grep -E '^#[0-9]+[[:space:]]+(DONE|pulse|NEW|REDUCE|INITED)' "$work/log" | tail -1 || true)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$done_line")
  corp=$(sed -n 's/.* corp: \([0-9]*\).*/\1/p' <<<"$done_line")
  artifacts=$(find "$work/artifacts" -type f | sort)
  findings=$(grep -c . <<<"$artifacts" || true)
  if [ "$rc" -ne 0 ] && [ "$findings" -eq 0 ]; then findings="exit $rc"; fi
  printf '%-12s %12s %10s %8s %8s  %s\n' "$t" "$(final_stat number_of_executed_units)" \
    "$(final_stat average_exec_per_sec)" "${cov:-?}" "${corp:-?}" "$findings"
  if [ "$rc" -ne 0 ] || [ -n "$artifacts" ]; then
    failed+=("$t")
    grep -E 'ERROR: |fuzz finding|SUMMARY: |terminate called|what\(\)' "$work/log" | head -5 | sed 's/^/    /'
    for a in $artifacts; do echo "    reproducer: $a"; done
    echo "    log: $work/log"
  fi
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzzing: findings in ${failed[*]}"
  exit 1
fi
echo "fuzzing: no findings (${#targets[@]} targets x ${seconds} s)"
