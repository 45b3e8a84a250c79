#!/usr/bin/env bash
# Starts nginx in the foreground on the configuration prepare-state.sh
# rendered into STATE_DIR; this process becomes nginx's master.
#
#   scripts/start-nginx.sh STATE_DIR
set -euo pipefail
state=${1:?usage: start-nginx.sh STATE_DIR}
exec nginx -p "$state" -c "$state/nginx/nginx.conf" -e "$state/logs/error.log" -g 'daemon off;'
