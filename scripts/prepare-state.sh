#!/usr/bin/env bash
# Lays out a self-contained state directory for nginx + artifact-token and
# renders their configuration into it. Used by `make run` and by the
# integration tests, so both run exactly the shipped nginx site.
#
#   scripts/prepare-state.sh STATE_DIR
#
# Environment (all optional):
#   ARTIFACT_BIN          artifact-token binary (default: build/artifact-token)
#   ARTIFACT_LISTEN       nginx listen address (default 127.0.0.1:8080)
#   ARTIFACT_RUN_USER     user of the app and nginx workers when run as root (default www-data)
#   ARTIFACT_SCOPE_DEPTH  scope depth (default 4)
#   ARTIFACT_MAX_UPLOAD   nginx client_max_body_size for uploads (default 10g)
#   ARTIFACT_TOKEN_RATE   limit_req rate on /token (default 20r/s)
#   ARTIFACT_TOKEN_BURST  limit_req burst on /token (default 40)
#   ARTIFACT_TRUSTED_PROXIES  load balancers (addresses or CIDRs, separated by
#                         spaces or commas) whose X-Forwarded-For nginx believes
#                         for the client address (default: none)
#   ARTIFACT_TOKENS_DIR, ARTIFACT_ARTIFACTS_DIR
#                         the two volumes, when they live outside the state
#                         directory (e.g. shared by several nodes); absolute paths
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
state=${1:?usage: prepare-state.sh STATE_DIR}
mkdir -p "$state"
state=$(cd "$state" && pwd)

bin=${ARTIFACT_BIN:-$here/build/artifact-token}
listen=${ARTIFACT_LISTEN:-127.0.0.1:8080}
depth=${ARTIFACT_SCOPE_DEPTH:-4}
max_upload=${ARTIFACT_MAX_UPLOAD:-10g}
rate=${ARTIFACT_TOKEN_RATE:-20r/s}
burst=${ARTIFACT_TOKEN_BURST:-40}
tokens=${ARTIFACT_TOKENS_DIR:-$state/tokens}
artifacts=${ARTIFACT_ARTIFACTS_DIR:-$state/artifacts}

fail() { echo "prepare-state: $*" >&2; exit 1; }
[[ -x $bin ]] || fail "no artifact-token binary at $bin (build first)"
[[ $listen =~ ^(\[[0-9a-fA-F:]+\]|[0-9.]+|localhost):[0-9]+$ ]] || fail "ARTIFACT_LISTEN must be host:port, got '$listen'"
[[ $max_upload =~ ^[0-9]+[kmgKMG]?$ ]] || fail "ARTIFACT_MAX_UPLOAD must be a size like 10g, got '$max_upload'"
[[ $rate =~ ^[0-9]+r/[sm]$ ]] || fail "ARTIFACT_TOKEN_RATE must be like 20r/s, got '$rate'"
[[ $burst =~ ^[0-9]+$ ]] || fail "ARTIFACT_TOKEN_BURST must be a number, got '$burst'"
proxies=()
IFS=$', \t' read -r -a listed <<<"${ARTIFACT_TRUSTED_PROXIES:-}"
for proxy in "${listed[@]}"; do
  [[ $proxy =~ ^[0-9a-fA-F.:]+(/[0-9]{1,3})?$ ]] ||
    fail "ARTIFACT_TRUSTED_PROXIES: '$proxy' is not an IP address or CIDR"
  proxies+=("$proxy")
done
for dir in "$tokens" "$artifacts"; do
  [[ $dir =~ ^/[A-Za-z0-9._/-]+$ ]] || fail "volume paths must be plain absolute paths, got '$dir'"
done

# As root, the app and nginx's workers run as one unprivileged user that owns
# the two volumes; otherwise everything runs as the caller.
user_line="# not started as root: workers run as the caller"
run_user=$(id -un)
run_group=$(id -gn)
if [[ $(id -u) -eq 0 ]]; then
  run_user=${ARTIFACT_RUN_USER:-www-data}
  id "$run_user" >/dev/null 2>&1 || fail "user $run_user does not exist (set ARTIFACT_RUN_USER)"
  run_group=$(id -gn "$run_user")
  user_line="user $run_user $run_group;"
fi

# Upload bodies land in a directory of this node's own below .incoming: two
# nginx on one artifacts volume numbering temp files in one directory removed
# each other's files (chmod()/unlink() of .incoming/NNN: ENOENT, PUT 500).
# The name is unique per host and state directory (containers of one image
# differ by host name, test nodes on one host by state directory).
node_id=$(uname -n)-$(printf '%s' "$state" | cksum | cut -d' ' -f1)
incoming=$artifacts/.incoming/$node_id
mkdir -p "$state"/{logs,run,nginx/{fastcgi,proxy,scgi,uwsgi}} "$tokens" "$incoming"
# chmod and chown follow symlinks: as root, a link planted by the run user
# (who owns these directories) would hand it whatever the link points to.
for path in "$tokens" "$artifacts" "$artifacts/.incoming" "$incoming" "$state/run" "$state"/nginx/{fastcgi,proxy,scgi,uwsgi}; do
  [[ -L $path ]] && fail "$path is a symlink: refusing to chmod or chown through it"
done
chmod 0755 "$state" "$artifacts" "$state/nginx" "$state/run"
chmod 0750 "$tokens"
chmod 0700 "$artifacts/.incoming" "$incoming"
if [[ $(id -u) -eq 0 ]]; then
  chown "$run_user:$run_group" "$tokens" "$artifacts" "$artifacts/.incoming" "$incoming" "$state/run" \
    "$state"/nginx/{fastcgi,proxy,scgi,uwsgi}
fi

cat >"$state/artifact-token.conf" <<CONF
# artifact-token configuration written by scripts/prepare-state.sh
tokens_dir = $tokens
artifacts_dir = $artifacts
masters_file = $state/masters
scope_depth = $depth
CONF

"$bin" nginx-map --config "$state/artifact-token.conf" >"$state/nginx/scope-map.conf"

{
  echo "# Written by scripts/prepare-state.sh from ARTIFACT_TRUSTED_PROXIES."
  if [[ ${#proxies[@]} -gt 0 ]]; then
    for proxy in "${proxies[@]}"; do echo "set_real_ip_from $proxy;"; done
    echo "real_ip_header X-Forwarded-For;"
  fi
} >"$state/nginx/real-ip.conf"

render() {
  sed -e "s|@MAP_FILE@|$state/nginx/scope-map.conf|g" \
      -e "s|@LISTEN@|$listen|g" \
      -e "s|@LISTEN_IPV6@|# one address: ARTIFACT_LISTEN|g" \
      -e "s|@ARTIFACTS_DIR@|$artifacts|g" \
      -e "s|@INCOMING_DIR@|$incoming|g" \
      -e "s|@SOCKET@|$state/run/token.sock|g" \
      -e "s|@MAX_UPLOAD@|$max_upload|g" \
      -e "s|@TOKEN_RATE@|$rate|g" \
      -e "s|@TOKEN_BURST@|$burst|g" \
      -e "s|@STATE_DIR@|$state|g" \
      -e "s|@ACCESS_LOG@|$state/logs/access.log|g" \
      -e "s|@REAL_IP_FILE@|$state/nginx/real-ip.conf|g" \
      -e "s|@USER_LINE@|$user_line|g" "$1"
}
render "$here/nginx/artifact-repository.conf.in" >"$state/nginx/artifact-repository.conf"
render "$here/nginx/standalone.conf.in" >"$state/nginx/nginx.conf"

nginx -t -q -p "$state" -c "$state/nginx/nginx.conf" -e "$state/logs/error.log" ||
  fail "nginx rejected the rendered configuration in $state/nginx"
echo "$run_user $run_group"
