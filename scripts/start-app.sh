#!/usr/bin/env bash
# Starts `artifact-token serve` under `spawn-fcgi -n` on STATE_DIR/run/token.sock,
# in the foreground: this process becomes the app (with several processes,
# their supervisor), so its PID is the one to signal. As root, the app runs
# as the owner of STATE_DIR/tokens. Used by run.sh and the tests.
#
#   scripts/start-app.sh STATE_DIR
#
# Environment: ARTIFACT_BIN (default build/artifact-token),
# ARTIFACT_TOKENS_DIR (when the tokens volume is not STATE_DIR/tokens), and
# the app's own, e.g. ARTIFACT_PROCESSES (serve processes on the socket).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
state=${1:?usage: start-app.sh STATE_DIR}
bin=${ARTIFACT_BIN:-$here/build/artifact-token}

spawn_args=(-n -s "$state/run/token.sock" -M 0660)
if [[ $(id -u) -eq 0 ]]; then
  tokens=${ARTIFACT_TOKENS_DIR:-$state/tokens}
  user=$(stat -c %U "$tokens")
  group=$(stat -c %G "$tokens")
  spawn_args+=(-u "$user" -g "$group" -U "$user" -G "$group")
fi
rm -f "$state/run/token.sock"
exec spawn-fcgi "${spawn_args[@]}" -- "$bin" serve --config "$state/artifact-token.conf"
