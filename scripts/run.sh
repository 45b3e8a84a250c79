#!/usr/bin/env bash
# `make run`: nginx and artifact-token (under spawn-fcgi) in the foreground,
# with every file in one state directory. Ctrl-C or SIGTERM stops both.
#
# Environment (all optional):
#   ARTIFACT_LISTEN           host:port nginx listens on (default 127.0.0.1:8080)
#   ARTIFACT_STATE_DIR        state directory (default ./run)
#   ARTIFACT_MASTER_USER      master name (default master)
#   ARTIFACT_MASTER_PASSWORD  master password (default: a new random one each start)
#   ARTIFACT_BIN              artifact-token binary (default build/artifact-token)
#   and those of scripts/prepare-state.sh and scripts/start-app.sh
#   and every ARTIFACT_* key of artifact-token's configuration
#   (e.g. ARTIFACT_PROCESSES: serve processes on the socket, default 4).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export ARTIFACT_BIN=${ARTIFACT_BIN:-$here/build/artifact-token}
export ARTIFACT_LISTEN=${ARTIFACT_LISTEN:-127.0.0.1:8080}
state=${ARTIFACT_STATE_DIR:-$here/run}
master_user=${ARTIFACT_MASTER_USER:-master}

fail() { echo "run: $*" >&2; exit 1; }
for tool in spawn-fcgi nginx htpasswd curl; do
  command -v "$tool" >/dev/null || fail "$tool is missing: run 'make deps' (or make run, which installs it)"
done
[[ $master_user =~ ^[A-Za-z0-9_][A-Za-z0-9._-]{0,63}$ ]] || fail "ARTIFACT_MASTER_USER must match [A-Za-z0-9_][A-Za-z0-9._-]{0,63}"

# Another server on the port would answer our readiness check and make this
# run print a credential that does not work there.
if curl -s -o /dev/null --max-time 1 "http://$ARTIFACT_LISTEN/" 2>/dev/null; then
  fail "something already answers on http://$ARTIFACT_LISTEN (another make run?): stop it or set ARTIFACT_LISTEN"
fi

owner=$("$here/scripts/prepare-state.sh" "$state")
read -r _ run_group <<<"$owner"
state=$(cd "$state" && pwd)

# The master credential: given, or new for this start. htpasswd reads it from
# stdin so it never shows in the process list.
if [[ -n ${ARTIFACT_MASTER_PASSWORD:-} ]]; then
  master_password=$ARTIFACT_MASTER_PASSWORD
else
  master_password=$(head -c 24 /dev/urandom | base64 | tr '+/' '-_')
fi
masters=$state/masters
( umask 027 && touch "$masters" )
printf '%s\n' "$master_password" | htpasswd -iB "$masters" "$master_user" 2>/dev/null ||
  fail "htpasswd could not write $masters"
chmod 0640 "$masters"
[[ $(id -u) -eq 0 ]] && chown "root:$run_group" "$masters"

"$here/scripts/start-app.sh" "$state" &
app_pid=$!
# nginx starts once the app's socket exists: no 502 (and no error-log line)
# for a request that arrives in between. Bounded: 10 s.
for _ in $(seq 1 100); do
  [[ -S $state/run/token.sock ]] && break
  kill -0 "$app_pid" 2>/dev/null || break
  sleep 0.1
done
"$here/scripts/start-nginx.sh" "$state" &
nginx_pid=$!
# In the state directory itself, not in run/, which belongs to the run user:
# as root, never write through a path that user could replace by a link.
echo "$app_pid" >"$state/app.pid"
echo "$nginx_pid" >"$state/nginx-master.pid"

stopped=0
# shellcheck disable=SC2317  # reached through the traps below
stop() {
  [[ $stopped -eq 1 ]] && return
  stopped=1
  kill -TERM "$app_pid" "$nginx_pid" 2>/dev/null || true
  wait "$app_pid" 2>/dev/null || true
  wait "$nginx_pid" 2>/dev/null || true
  rm -f "$state/app.pid" "$state/nginx-master.pid"
}
trap 'stop; exit 0' INT TERM
trap stop EXIT

url="http://$ARTIFACT_LISTEN"
ready=0
for _ in $(seq 1 100); do
  kill -0 "$app_pid" 2>/dev/null || break
  kill -0 "$nginx_pid" 2>/dev/null || break
  if curl -fsS -o /dev/null --max-time 1 "$url/token/healthz" 2>/dev/null; then
    ready=1
    break
  fi
  sleep 0.1
done
if [[ $ready -ne 1 ]]; then
  tail -n 5 "$state/logs/error.log" >&2 2>/dev/null || true
  fail "nginx or artifact-token did not come up on $url (is the port taken?)"
fi

build=$(date +%s)
cat <<BANNER
artifact-repository is running on $url  (state in $state, nginx log in $state/logs)
master credential:  $master_user:$master_password

Try it (copy and paste):
  # the master issues a token for build $build, valid one hour
  curl -fsS -u '$master_user:$master_password' -d scope=demo/hello/linux-amd64/$build -d ttl=3600 '$url/token?format=netrc' >'$state/build.netrc'
  # the worker uploads with it
  curl -fsS --netrc-file '$state/build.netrc' -T README.md $url/demo/hello/linux-amd64/$build/README.md
  # anyone downloads and browses
  curl -fsS $url/demo/hello/linux-amd64/$build/README.md
  # the master revokes it at the end of the build: later uploads get 401/403
  curl -fsS -u '$master_user:$master_password' -X DELETE $url/token/\$(awk '{print \$4}' '$state/build.netrc')

Ctrl-C stops both servers.
BANNER

# Whichever server ends first ends the run.
set +e
wait -n "$app_pid" "$nginx_pid"
status=$?
set -e
echo "run: a server exited (status $status); stopping" >&2
exit 1
