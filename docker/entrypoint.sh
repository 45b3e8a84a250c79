#!/usr/bin/env bash
# Container entrypoint of artifact-repository: nginx + artifact-token (under
# spawn-fcgi) in one container, with every file below ARTIFACT_STATE_DIR and
# the two volumes mounted at STATE/tokens and STATE/artifacts.
#
#   artifact-entrypoint            (or: artifact-entrypoint serve)  run both servers
#   artifact-entrypoint CMD ARGS   run CMD instead (e.g. bash, artifact-token --help)
#
# It runs as root for two things only; nothing of the product does:
#   - chown the volumes to the run user (a fresh volume, a bind mount or a
#     provisioned one may belong to anybody), done by scripts/prepare-state.sh,
#     and read secret files (compose bind-mounts them with the host's owner);
#   - start nginx's master, which opens the logs and renders nothing; its
#     workers run as www-data, and spawn-fcgi starts the app as www-data.
# The masters file is written as www-data (see below). `docker run --user`
# is not supported: the state directory must stay root-owned, or the app's
# user could redirect what root writes there at the next start.
#
# Environment (all optional):
#   ARTIFACT_STATE_DIR              state directory (image default /var/lib/artifact-repository)
#   ARTIFACT_LISTEN                 nginx listen address (image default 0.0.0.0:8080)
#   ARTIFACT_MASTERS_FILE           where the masters file is kept (default TOKENS/.masters,
#                                   i.e. on the tokens volume, so it survives a new container)
#   ARTIFACT_TOKENS_DIR, ARTIFACT_ARTIFACTS_DIR
#                                   the volumes (default STATE/tokens and STATE/artifacts)
#   ARTIFACT_MASTER_USER            master name for a new masters file (default master)
#   ARTIFACT_MASTER_USER_FILE       ... or read from this file (a secret)
#   ARTIFACT_MASTER_PASSWORD        master password for a new masters file
#   ARTIFACT_MASTER_PASSWORD_FILE   ... or read from this file (e.g. /run/secrets/master_password)
#                                   With neither, a random password is generated and printed once.
#                                   An existing masters file is never changed nor printed.
#   ARTIFACT_STOP_GRACE             seconds nginx may take to finish requests on stop (default 5)
#   and those of scripts/prepare-state.sh and scripts/start-app.sh
#   (ARTIFACT_SCOPE_DEPTH, ARTIFACT_MAX_UPLOAD, ARTIFACT_TOKEN_RATE, ARTIFACT_TOKEN_BURST,
#   ARTIFACT_RUN_USER, ARTIFACT_TRUSTED_PROXIES, ARTIFACT_BIN), and every ARTIFACT_* key of artifact-token's
#   configuration (e.g. ARTIFACT_PROCESSES, default 4).
set -euo pipefail

share=${ARTIFACT_SHARE_DIR:-/usr/share/artifact-repository}
state=${ARTIFACT_STATE_DIR:-/var/lib/artifact-repository}
export ARTIFACT_BIN=${ARTIFACT_BIN:-/usr/local/bin/artifact-token}
export ARTIFACT_LISTEN=${ARTIFACT_LISTEN:-0.0.0.0:8080}
grace=${ARTIFACT_STOP_GRACE:-5}

log() { echo "artifact-entrypoint: $*" >&2; }
fail() { log "$*"; exit 1; }

if [[ $# -gt 0 && $1 != serve ]]; then
  exec "$@"
fi

[[ $grace =~ ^[0-9]+$ ]] || fail "ARTIFACT_STOP_GRACE must be a number of seconds, got '$grace'"

# --- the state directory, the volumes' ownership and the rendered configs ---
# prepare-state.sh (as root) chmods and chowns artifacts/.incoming, a path
# inside a directory the run user owns: never let it follow a symlink there.
incoming=${ARTIFACT_ARTIFACTS_DIR:-$state/artifacts}/.incoming
if [[ -L $incoming ]]; then
  log "removing the symlink $incoming"
  rm -f "$incoming"
fi
owner=$("$share/scripts/prepare-state.sh" "$state")
read -r run_user run_group <<<"$owner"
state=$(cd "$state" && pwd)
# Our own pid files: in a root-owned directory, not in STATE/run (which the
# run user owns), so root never writes through a path the app controls.
piddir=/run/artifact-repository
mkdir -p "$piddir"

# --- the master credential -------------------------------------------------
# From VAR or VAR_FILE (not both); a secret file's trailing newline is dropped.
secret_value() {
  local var=$1 file_var=${1}_FILE
  local value=${!var:-} file=${!file_var:-}
  if [[ -n $value && -n $file ]]; then
    fail "set $var or $file_var, not both"
  fi
  if [[ -n $file ]]; then
    [[ -r $file ]] || fail "$file_var: cannot read $file"
    value=$(<"$file")
    value=${value%$'\r'}
  fi
  printf '%s' "$value"
}

masters=${ARTIFACT_MASTERS_FILE:-${ARTIFACT_TOKENS_DIR:-$state/tokens}/.masters}
if [[ -e $masters ]]; then
  # Never rewritten and never shown: an operator rotates a password with
  # `htpasswd -B` on this file (the app notices the change by itself).
  if [[ -n ${ARTIFACT_MASTER_PASSWORD:-}${ARTIFACT_MASTER_PASSWORD_FILE:-} ]]; then
    log "masters file $masters exists: using it, ARTIFACT_MASTER_PASSWORD(_FILE) is ignored"
  else
    log "using the existing masters file $masters"
  fi
  grep -q '^[^#[:space:]]' "$masters" 2>/dev/null || log "warning: $masters lists no master: every /token request will get 401"
else
  master_user=$(secret_value ARTIFACT_MASTER_USER)
  master_user=${master_user:-master}
  [[ $master_user =~ ^[A-Za-z0-9_][A-Za-z0-9._-]{0,63}$ ]] ||
    fail "the master name must match [A-Za-z0-9_][A-Za-z0-9._-]{0,63}"
  master_password=$(secret_value ARTIFACT_MASTER_PASSWORD)
  source="ARTIFACT_MASTER_PASSWORD${ARTIFACT_MASTER_PASSWORD_FILE:+_FILE}"
  generated=0
  if [[ -z $master_password ]]; then
    master_password=$(head -c 24 /dev/urandom | base64 | tr '+/' '-_')
    generated=1
  fi
  [[ $master_password != *$'\n'* ]] || fail "the master password must be one line"
  # Written by the run user, who owns the tokens volume anyway (so root
  # never writes into a directory the app can plant symlinks in), mode 0640;
  # written aside and hard-linked into place: complete or absent, and never
  # over a file another container created meanwhile on a shared volume.
  # The password goes through stdin, never the command line.
  as_run_user=()
  if [[ $(id -u) -eq 0 ]]; then
    as_run_user=(setpriv "--reuid=$run_user" "--regid=$run_group" --init-groups --)
  fi
  set +e
  # shellcheck disable=SC2016  # expanded by the inner bash
  printf '%s\n' "$master_password" | "${as_run_user[@]}" bash -c '
    set -eu
    umask 0137
    dir=$(dirname "$1")
    mkdir -p "$dir"
    tmp=$(mktemp "$dir/.masters.new.XXXXXX")
    trap "rm -f \"\$tmp\"" EXIT
    htpasswd -ciB "$tmp" "$2" 2>/dev/null
    chmod 0640 "$tmp"
    ln "$tmp" "$1" 2>/dev/null || { [ -e "$1" ] && exit 3; exit 1; }' _ "$masters" "$master_user"
  created=$?
  set -e
  case $created in
    0)
      if [[ $generated -eq 1 ]]; then
        # The one and only time this password is shown.
        echo "artifact-repository: generated master credential (shown once, keep it): $master_user:$master_password"
      else
        log "created $masters for master '$master_user' from $source"
      fi
      ;;
    3) log "$masters appeared meanwhile: using it" ;;
    *) fail "could not create $masters as $run_user" ;;
  esac
  unset master_password
fi
# The app reads STATE/masters (prepare-state.sh's configuration).
if [[ $masters != "$state/masters" ]]; then
  ln -sfn "$masters" "$state/masters"
fi

# --- both servers ------------------------------------------------------------
"$share/scripts/start-app.sh" "$state" &
app_pid=$!
# nginx starts once the app's socket exists (bounded: 10 s).
for _ in $(seq 1 100); do
  [[ -S $state/run/token.sock ]] && break
  kill -0 "$app_pid" 2>/dev/null || break
  sleep 0.1
done
kill -0 "$app_pid" 2>/dev/null || { wait "$app_pid" || true; fail "artifact-token did not start"; }
"$share/scripts/start-nginx.sh" "$state" &
nginx_pid=$!
echo "$app_pid" >"$piddir/app.pid"
echo "$nginx_pid" >"$piddir/nginx-master.pid"
log "nginx listening on $ARTIFACT_LISTEN (pid $nginx_pid), artifact-token pid $app_pid"

alive() { kill -0 "$1" 2>/dev/null; }

# Stop: nginx first, gracefully (SIGQUIT: no new connections, requests in
# flight finish) for at most ARTIFACT_STOP_GRACE seconds, then SIGTERM; the
# app last, so a /token request nginx is still finishing gets its answer.
# An upload cut short never shows up: nginx writes to .incoming and renames.
stop() {
  if alive "$nginx_pid"; then
    kill -QUIT "$nginx_pid" 2>/dev/null || true
    for _ in $(seq 1 $((grace * 10))); do
      alive "$nginx_pid" || break
      sleep 0.1
    done
    alive "$nginx_pid" && kill -TERM "$nginx_pid" 2>/dev/null
  fi
  kill -TERM "$app_pid" 2>/dev/null || true
  wait "$nginx_pid" 2>/dev/null || true
  wait "$app_pid" 2>/dev/null || true
  rm -f "$piddir/app.pid" "$piddir/nginx-master.pid"
}
# shellcheck disable=SC2317  # called by the traps below
on_signal() {
  log "received SIG$1, stopping nginx and artifact-token"
  trap '' TERM INT
  stop
  exit 0
}
trap 'on_signal TERM' TERM
trap 'on_signal INT' INT

# Whichever server ends first ends the container (the orchestrator restarts
# it); a trapped signal interrupts this wait and the trap exits instead.
set +e
wait -n "$app_pid" "$nginx_pid"
status=$?
set -e
trap '' TERM INT
if alive "$app_pid"; then what=nginx; else what=artifact-token; fi
log "$what exited (status $status); stopping the other"
stop
exit 1
