#!/usr/bin/env bash
# HEALTHCHECK of the artifact-repository image: GET /token/healthz through
# nginx (so both nginx and the app, and the writable token store, are
# checked) on the address nginx listens on (ARTIFACT_LISTEN); a wildcard
# address is reached through loopback.
set -euo pipefail
listen=${ARTIFACT_LISTEN:-0.0.0.0:8080}
host=${listen%:*}
port=${listen##*:}
case $host in
  0.0.0.0 | '') host=127.0.0.1 ;;
  '[::]') host='[::1]' ;;
esac
exec curl -fsS -o /dev/null --max-time 4 "http://$host:$port/token/healthz"
