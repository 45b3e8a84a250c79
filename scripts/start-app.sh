#!/usr/bin/env bash
# Starts `artifact-token serve` under `spawn-fcgi -n` on STATE_DIR/run/token.sock,
# in the foreground: this process becomes the app (or, with several
# processes, their supervisor), so its PID is the one to signal. As root, the
# app runs as the owner of STATE_DIR/tokens. Used by run.sh and the tests.
#
#   scripts/start-app.sh STATE_DIR
#
# Environment: ARTIFACT_BIN (default build/artifact-token),
# ARTIFACT_APP_PROCESSES (processes on the socket, 1..64, default 1),
# ARTIFACT_TOKENS_DIR (when the tokens volume is not STATE_DIR/tokens).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
state=${1:?usage: start-app.sh STATE_DIR}
bin=${ARTIFACT_BIN:-$here/build/artifact-token}
processes=${ARTIFACT_APP_PROCESSES:-1}
[[ $processes =~ ^[0-9]+$ && $processes -ge 1 && $processes -le 64 ]] ||
  { echo "start-app: ARTIFACT_APP_PROCESSES must be 1..64" >&2; exit 2; }

spawn_args=(-n -s "$state/run/token.sock" -M 0660)
if [[ $(id -u) -eq 0 ]]; then
  tokens=${ARTIFACT_TOKENS_DIR:-$state/tokens}
  user=$(stat -c %U "$tokens")
  group=$(stat -c %G "$tokens")
  spawn_args+=(-u "$user" -g "$group" -U "$user" -G "$group")
fi
app=("$bin" serve --config "$state/artifact-token.conf")
if [[ $processes -gt 1 ]]; then
  app=("$here/scripts/serve-workers.sh" "$processes" "${app[@]}")
fi
rm -f "$state/run/token.sock"
exec spawn-fcgi "${spawn_args[@]}" -- "${app[@]}"
