#!/usr/bin/env bash
# Runs N copies of a FastCGI app on the listening socket it inherits as fd 0,
# as `spawn-fcgi -F N` does, but in the foreground: their stderr (the app's
# log) is kept, SIGTERM/SIGINT/SIGHUP reach every copy, and it exits as soon
# as any copy exits. Started by spawn-fcgi -n (see scripts/run.sh).
#
#   serve-workers.sh N COMMAND [ARGS...]
set -euo pipefail

n=${1:?usage: serve-workers.sh N COMMAND [ARGS...]}
shift
[[ $n =~ ^[0-9]+$ && $n -ge 1 && $n -le 64 ]] || { echo "serve-workers: N must be 1..64" >&2; exit 2; }

exec 3<&0  # background jobs would otherwise get /dev/null as stdin
pids=()
for ((i = 0; i < n; i++)); do
  "$@" <&3 &
  pids+=("$!")
done
exec 3<&-

stop() {
  kill -TERM "${pids[@]}" 2>/dev/null || true
  wait "${pids[@]}" 2>/dev/null || true
}
trap 'stop; exit 0' TERM INT HUP

set +e
wait -n "${pids[@]}"
status=$?
set -e
stop
exit "$status"
