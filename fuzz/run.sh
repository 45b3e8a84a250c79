#!/usr/bin/env bash
# Runs one libFuzzer harness for a bounded time from the seed corpus (read
# only: new inputs go to a temp dir) and prints how many inputs it executed.
# Exit status is the fuzzer's: non-zero when it found a crash, a leak or an
# abort() from the harness's own checks.
#
#   fuzz/run.sh FUZZER CORPUS_DIR SECONDS
set -euo pipefail
fuzzer=${1:?usage: run.sh FUZZER CORPUS_DIR SECONDS}
corpus=${2:?}
seconds=${3:?}
[[ $seconds =~ ^[0-9]+$ ]] || { echo "fuzz/run.sh: SECONDS must be a number" >&2; exit 2; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
log=$work/fuzz.log
status=0
"$fuzzer" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
  -artifact_prefix="$work/" "$work" "$corpus" >"$log" 2>&1 || status=$?
runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo 0)
echo "FIGURE fuzz $(basename "$fuzzer"): $runs executions in ${seconds}s, exit $status"
if [[ $status -ne 0 ]]; then
  tail -n 40 "$log"
  for crash in "$work"/crash-* "$work"/leak-* "$work"/timeout-*; do
    [[ -e $crash ]] && { echo "reproducer (base64):"; base64 -w0 "$crash"; echo; }
  done
fi
exit "$status"
