#!/usr/bin/env bash
# `make test-image`: builds the real docker/Dockerfile with podman and drives
# the container through a build's life, a container restart and a stop, then
# docker/compose.yml and docker/compose.multi.yml (three nodes and a load
# balancer on shared volumes) through docker-compose.
#
# No Docker engine and no image registry are needed: podman runs as root with
# a configuration of its own under the work directory, and the base image
# `debian:bookworm-slim` is made with debootstrap from this machine's Debian
# mirror and imported under that name (once; later runs reuse it).
# The containers share the host's network namespace and listen on
# 127.0.0.1:<free port> only (compose.multi.yml: four free ports).
#
# Environment (all optional):
#   ARTIFACT_IMAGE_TEST_DIR   work dir: podman config, storage, base rootfs
#                             (default /var/tmp/artifact-image-test; kept between runs as a cache)
#   ARTIFACT_IMAGE_TEST_PORT  port on 127.0.0.1 (default: a free one)
#   ARTIFACT_DEBIAN_MIRROR    Debian mirror for debootstrap (default: the one apt uses here)
#   ARTIFACT_IMAGE_REBASE=1   make the base image again even if it exists
#   STORAGE_DRIVER            overlay (default) or vfs
#
# Needs (Debian packages): podman runc debootstrap docker-compose curl (uidmap,
# containernetworking-plugins and the rest come with podman).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
work=${ARTIFACT_IMAGE_TEST_DIR:-/var/tmp/artifact-image-test}
driver=${STORAGE_DRIVER:-overlay}
base_image=docker.io/library/debian:bookworm-slim
image=localhost/artifact-repository:test
prefix=artifact-image-test-$$
state=/var/lib/artifact-repository
t_start=$(date +%s)

say() { printf '\n== %s  (+%ss)\n' "$*" "$(($(date +%s) - t_start))"; }
fail() {
  if [[ -s ${scratch:-/nonexistent}/podman.err ]]; then
    echo "--- podman's stderr (last lines):" >&2
    tail -n 15 "$scratch/podman.err" >&2
  fi
  echo "test-image: FAIL: $*" >&2
  exit 1
}
ok() { echo "ok: $*"; }

# --- prerequisites -----------------------------------------------------------
[[ $(id -u) -eq 0 ]] || fail "needs root (podman with cgroupfs and runc, debootstrap)"
missing=()
for tool in podman runc debootstrap docker-compose curl cmp; do
  command -v "$tool" >/dev/null || missing+=("$tool")
done
[[ ${#missing[@]} -eq 0 ]] ||
  fail "missing ${missing[*]}: apt-get install podman runc debootstrap docker-compose curl (or add them to scripts/install-deps.sh)"
[[ $driver == overlay || $driver == vfs ]] || fail "STORAGE_DRIVER must be overlay or vfs"

mkdir -p "$work"/{storage,run,tmp}
work=$(cd "$work" && pwd)
cat >"$work/containers.conf" <<CONF
# written by docker/test-image.sh
[containers]
default_ulimits = []
netns = "host"
log_driver = "k8s-file"

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$work/run/events.log"
tmp_dir = "$work/tmp"
CONF
cat >"$work/storage.conf" <<CONF
# written by docker/test-image.sh
[storage]
driver = "$driver"
graphroot = "$work/storage"
runroot = "$work/run"
CONF
export CONTAINERS_CONF=$work/containers.conf CONTAINERS_STORAGE_CONF=$work/storage.conf
# podman must not read another registries/policy setup than the system's.
podman info --format '{{.Store.GraphDriverName}} {{.Host.OCIRuntime.Name}}' >/dev/null ||
  fail "podman does not run with $work/containers.conf"

# --- cleanup: only what this run created --------------------------------------
containers=()
volumes=()
secrets=()
service_pid=
cleanup() {
  local c v s
  if [[ -n $service_pid ]]; then
    kill "$service_pid" 2>/dev/null || true
    wait "$service_pid" 2>/dev/null || true
  fi
  # -v: with the anonymous volumes of the image's VOLUMEs (the lb mounts none)
  for c in "${containers[@]}"; do podman rm -f -v -t 0 "$c" >/dev/null 2>&1 || true; done
  for v in "${volumes[@]}"; do podman volume rm -f "$v" >/dev/null 2>&1 || true; done
  for s in "${secrets[@]}"; do podman secret rm "$s" >/dev/null 2>&1 || true; done
  rm -rf "$work/tmp/$prefix"
}
trap cleanup EXIT
mkdir -p "$work/tmp/$prefix"
scratch=$work/tmp/$prefix

# --- the base image: debootstrap + import, once --------------------------------
debian_mirror() { "$here/scripts/debian-mirror.sh" || fail "no Debian mirror: set ARTIFACT_DEBIAN_MIRROR"; }

if [[ ${ARTIFACT_IMAGE_REBASE:-0} == 1 ]] || ! podman image exists "$base_image"; then
  mirror=$(debian_mirror)
  say "making $base_image with debootstrap from $mirror"
  rootfs=$work/rootfs
  rm -rf "$rootfs"
  debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 ||
    { tail -n 20 "$work/debootstrap.log" >&2; fail "debootstrap failed (log: $work/debootstrap.log)"; }
  # The sources the real image has (bookworm, -updates, -security), on this mirror.
  rm -f "$rootfs/etc/apt/sources.list"
  cat >"$rootfs/etc/apt/sources.list.d/debian.sources" <<SOURCES
Types: deb
URIs: $mirror
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: ${mirror}-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb
  tar -C "$rootfs" --numeric-owner -c . | podman import --change 'CMD ["bash"]' - "$base_image" >/dev/null
  rm -rf "$rootfs"
  ok "imported $base_image"
else
  say "reusing $base_image (ARTIFACT_IMAGE_REBASE=1 makes it again)"
fi

# --- build the real Dockerfile ----------------------------------------------------
say "podman build -f docker/Dockerfile"
t0=$(date +%s)
podman build --pull=never --network=host --format docker --layers \
  -f "$here/docker/Dockerfile" --ignorefile "$here/docker/Dockerfile.dockerignore" \
  -t "$image" "$here" >"$work/build.log" 2>&1 ||
  { tail -n 30 "$work/build.log" >&2; fail "podman build failed (log: $work/build.log)"; }
ok "built $image in $(($(date +%s) - t0)) s (log: $work/build.log)"
healthcheck=$(podman image inspect -f '{{json .HealthCheck}}' "$image" 2>/dev/null || true)
[[ $healthcheck == *artifact-healthcheck* ]] || fail "the image has no HEALTHCHECK (got $healthcheck)"
ok "HEALTHCHECK in the image: $healthcheck"

# --- helpers --------------------------------------------------------------------
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# Below the kernel's ephemeral range: a port it may hand to an outgoing
# connection meanwhile (the lb's keepalive connections, curl) cannot be bound.
read -r ephemeral_low _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || ephemeral_low=60000
[[ $ephemeral_low =~ ^[0-9]+$ && $ephemeral_low -gt 21000 ]] || ephemeral_low=60000
pick_port() {  # [PORT...]: prints a free port on 127.0.0.1 that is none of these
  local candidate
  for _ in $(seq 1 50); do
    candidate=$((20000 + RANDOM % (ephemeral_low - 20000)))
    [[ " $* " == *" $candidate "* ]] && continue
    if port_free "$candidate"; then echo "$candidate"; return 0; fi
  done
  return 1
}
port=${ARTIFACT_IMAGE_TEST_PORT:-}
[[ -n $port ]] || port=$(pick_port) || true
if [[ -z $port ]] || ! port_free "$port"; then
  fail "no free port on 127.0.0.1 (or ARTIFACT_IMAGE_TEST_PORT is taken)"
fi
base=http://127.0.0.1:$port

run_container() {  # NAME TOKENS_VOLUME ARTIFACTS_VOLUME [podman run options...]
  local name=$1 tokens=$2 artifacts=$3
  shift 3
  containers+=("$name")
  # podman's stderr (complaints about healthcheck timers without systemd)
  # goes to a log that fail() shows.
  podman run -d --name "$name" --network host \
    -e "ARTIFACT_LISTEN=127.0.0.1:$port" \
    -v "$tokens:$state/tokens" -v "$artifacts:$state/artifacts" \
    "$@" "$image" >/dev/null 2>>"$scratch/podman.err"
}

running() { [[ $(podman container inspect -f '{{.State.Running}}' "$1" 2>/dev/null) == true ]]; }

wait_healthy() {  # NAME [BASE_URL]: bounded, 30 s
  local name=$1 url=${2:-$base} t0
  t0=$(date +%s%N)
  for _ in $(seq 1 300); do
    running "$name" || { podman logs "$name" >&2 || true; fail "$name exited before it answered"; }
    if curl -fsS -o /dev/null --max-time 1 "$url/token/healthz" 2>/dev/null; then
      ok "$name answers $url/token/healthz after $(( ($(date +%s%N) - t0) / 1000000 )) ms"
      return
    fi
    sleep 0.1
  done
  podman logs "$name" >&2 || true
  fail "$name did not answer $url/token/healthz within 30 s"
}

wait_exited() {  # NAME SECONDS: bounded
  local name=$1
  for _ in $(seq 1 $(($2 * 10))); do
    running "$name" || return 0
    sleep 0.1
  done
  return 1
}

status_of() { curl -s -o /dev/null -w '%{http_code}' --max-time 10 "$@"; }
expect() {  # WANT DESCRIPTION CURL_ARGS...
  local want=$1 what=$2 got
  shift 2
  got=$(status_of "$@")
  [[ $got == "$want" ]] || fail "$what: HTTP $got, expected $want"
  ok "$what: HTTP $got"
}

revoke() {  # MASTER USERNAME: 204, or 200/202 with the build's seal report
  local got
  got=$(status_of -u "$1" -X DELETE "$base/token/$2")
  [[ $got == 200 || $got == 202 || $got == 204 ]] || fail "DELETE /token/$2: HTTP $got, expected 200, 202 or 204"
  ok "DELETE /token/$2: HTTP $got"
}

issue() {  # MASTER SCOPE NETRC_FILE -> prints the token's username
  curl -fsS --max-time 10 -u "$1" -d "scope=$2" -d ttl=3600 "$base/token?format=netrc" >"$3" ||
    fail "issuing a token for $2 failed"
  awk '{for (i = 1; i < NF; i++) if ($i == "login") print $(i + 1)}' "$3"
}

head -c 1048576 /dev/urandom >"$scratch/one.bin"
head -c 65537 /dev/urandom >"$scratch/two.bin"
printf 'after the restart\n' >"$scratch/three.txt"

tokens_vol=$prefix-tokens
artifacts_vol=$prefix-artifacts
podman volume create "$tokens_vol" >/dev/null && volumes+=("$tokens_vol")
podman volume create "$artifacts_vol" >/dev/null && volumes+=("$artifacts_vol")

# --- first container: a generated master credential ------------------------------------
say "container 1 on $base (volumes $tokens_vol, $artifacts_vol)"
c1=$prefix-1
run_container "$c1" "$tokens_vol" "$artifacts_vol" -e ARTIFACT_MASTER_USER=ci
wait_healthy "$c1"
cred_line=$(podman logs "$c1" 2>&1 | grep 'generated master credential' || true)
[[ $(grep -c . <<<"$cred_line") -eq 1 ]] || fail "expected exactly one 'generated master credential' line, got: $cred_line"
master=${cred_line##* }
[[ $master == ci:?* ]] || fail "no ci:PASSWORD in '$cred_line'"
master_password=${master#ci:}
ok "master credential generated and printed once"
if podman healthcheck run "$c1" >/dev/null 2>&1; then
  ok "podman healthcheck run: healthy"
else
  fail "podman healthcheck run $c1 reported unhealthy"
fi
perms=$(podman exec "$c1" stat -c '%n %U:%G %a' "$state/tokens" "$state/tokens/.masters" "$state/artifacts")
grep -q "^$state/tokens www-data:www-data 750$" <<<"$perms" || fail "tokens volume ownership: $perms"
grep -q "^$state/tokens/.masters www-data:www-data 640$" <<<"$perms" || fail "masters file ownership: $perms"
grep -q "^$state/artifacts www-data:www-data 755$" <<<"$perms" || fail "artifacts volume ownership: $perms"
ok "volumes owned by www-data, masters file www-data 0640"
app_user=$(podman exec "$c1" sh -c "stat -c %U /proc/\$(cat /run/artifact-repository/app.pid)")
[[ $app_user == www-data ]] || fail "artifact-token runs as $app_user, not www-data"
ok "artifact-token runs as www-data"

say "issue -> upload -> download -> revoke -> upload refused"
expect 401 "POST /token with a wrong master password" -u ci:wrong -d scope=img/test/linux/0 "$base/token"
user_a=$(issue "$master" img/test/linux/1 "$scratch/a.netrc")
[[ -n $user_a ]] || fail "no login in the netrc answer: $(sed 's/password .*/password .../' "$scratch/a.netrc")"
ok "token $user_a issued for img/test/linux/1"
expect 201 "PUT one.bin with the token" --netrc-file "$scratch/a.netrc" -T "$scratch/one.bin" "$base/img/test/linux/1/one.bin"
curl -fsS --max-time 10 -o "$scratch/one.got" "$base/img/test/linux/1/one.bin" || fail "GET one.bin failed"
cmp -s "$scratch/one.bin" "$scratch/one.got" || fail "one.bin downloaded differs from the upload"
ok "one.bin downloaded byte-identical (anonymous GET)"
expect 403 "PUT into a sibling build with the token" --netrc-file "$scratch/a.netrc" -T "$scratch/two.bin" "$base/img/test/linux/9/two.bin"
revoke "$master" "$user_a"
code=$(status_of --netrc-file "$scratch/a.netrc" -T "$scratch/two.bin" "$base/img/test/linux/1/two.bin")
[[ $code == 401 || $code == 403 ]] || fail "PUT after revoke: HTTP $code, expected 401 or 403"
ok "PUT after revoke refused: HTTP $code"

say "a token that stays live across the restart"
user_b=$(issue "$master" img/test/linux/2 "$scratch/b.netrc")
expect 201 "PUT two.bin with live token $user_b" --netrc-file "$scratch/b.netrc" -T "$scratch/two.bin" "$base/img/test/linux/2/two.bin"

say "podman stop (SIGTERM) must stop both servers cleanly"
t0=$(date +%s%N)
podman stop -t 10 "$c1" >/dev/null 2>>"$scratch/podman.err"
stop_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
exit_code=$(podman container inspect -f '{{.State.ExitCode}}' "$c1")
[[ $exit_code == 0 ]] || { podman logs --tail 20 "$c1" >&2; fail "exit code $exit_code after SIGTERM, expected 0"; }
[[ $stop_ms -lt 5000 ]] || fail "podman stop took $stop_ms ms (SIGTERM not handled: killed after the timeout?)"
podman logs "$c1" 2>&1 | grep -q 'received SIGTERM' || fail "the entrypoint did not log the SIGTERM"
ok "stopped in $stop_ms ms, exit code 0"
port_free "$port" || fail "port $port still taken after the container stopped"
podman rm "$c1" >/dev/null 2>>"$scratch/podman.err"

# --- second container on the same volumes ---------------------------------------------
say "container 2 on the same volumes (a different ARTIFACT_MASTER_PASSWORD must be ignored)"
c2=$prefix-2
run_container "$c2" "$tokens_vol" "$artifacts_vol" -e ARTIFACT_MASTER_USER=ci -e ARTIFACT_MASTER_PASSWORD=not-the-password
wait_healthy "$c2"
logs2=$(podman logs "$c2" 2>&1)
if grep -q 'generated master credential' <<<"$logs2" || grep -qF -- "$master_password" <<<"$logs2"; then
  fail "the second container printed a master credential"
fi
grep -q 'using it, ARTIFACT_MASTER_PASSWORD(_FILE) is ignored' <<<"$logs2" || fail "no note that the given password was ignored"
ok "the existing master credential was neither changed nor printed"
for f in one.bin two.bin; do
  dir=1; [[ $f == two.bin ]] && dir=2
  curl -fsS --max-time 10 -o "$scratch/$f.got" "$base/img/test/linux/$dir/$f" || fail "GET $f after the restart failed"
  cmp -s "$scratch/$f" "$scratch/$f.got" || fail "$f differs after the restart"
done
ok "artifacts survived the new container, byte-identical"
expect 401 "master with the ignored new password" -u ci:not-the-password "$base/token/$user_b"
expect 200 "GET /token/$user_b with the original master credential" -u "$master" "$base/token/$user_b"
expect 201 "PUT three.txt with the token issued before the restart" --netrc-file "$scratch/b.netrc" -T "$scratch/three.txt" "$base/img/test/linux/2/three.txt"
revoke "$master" "$user_b"
expect 403 "PUT after that revoke" --netrc-file "$scratch/b.netrc" -T "$scratch/three.txt" "$base/img/test/linux/2/four.txt"

say "a server dying ends the container"
podman exec "$c2" sh -c "kill -KILL \$(cat /run/artifact-repository/app.pid)"
wait_exited "$c2" 10 || fail "$c2 still runs 10 s after artifact-token was killed"
exit_code=$(podman container inspect -f '{{.State.ExitCode}}' "$c2")
[[ $exit_code != 0 ]] || fail "$c2 exited 0 after its app died, expected non-zero"
podman logs "$c2" 2>&1 | grep -q 'artifact-token exited' || fail "the entrypoint did not say which server died"
ok "container exited with $exit_code when artifact-token died"
port_free "$port" || fail "port $port still taken: nginx survived"
ok "nginx was stopped with it"

# --- the master credential from a secret file, on fresh volumes -------------------------
say "container 3: master password from a secret (/run/secrets/master_password)"
secret=$prefix-master-password
printf 'from-a-secret-%s\n' "$$" | podman secret create "$secret" - >/dev/null && secrets+=("$secret")
tokens3=$prefix-tokens3
artifacts3=$prefix-artifacts3
podman volume create "$tokens3" >/dev/null && volumes+=("$tokens3")
podman volume create "$artifacts3" >/dev/null && volumes+=("$artifacts3")
c3=$prefix-3
run_container "$c3" "$tokens3" "$artifacts3" --secret "$secret,target=master_password" \
  -e ARTIFACT_MASTER_USER=buildbot -e ARTIFACT_MASTER_PASSWORD_FILE=/run/secrets/master_password
wait_healthy "$c3"
expect 200 "GET /token with the master password from the secret" -u "buildbot:from-a-secret-$$" "$base/token"
logs3=$(podman logs "$c3" 2>&1)
grep -q "from-a-secret-$$" <<<"$logs3" && fail "the secret's password shows in the logs"
grep -q "created .* for master 'buildbot' from ARTIFACT_MASTER_PASSWORD_FILE" <<<"$logs3" || fail "no note on where the credential came from"
ok "the password from the secret works and is not logged"
t0=$(date +%s%N)
podman kill -s INT "$c3" >/dev/null 2>>"$scratch/podman.err"
wait_exited "$c3" 10 || fail "$c3 still runs 10 s after SIGINT"
exit_code=$(podman container inspect -f '{{.State.ExitCode}}' "$c3")
[[ $exit_code == 0 ]] || fail "exit code $exit_code after SIGINT, expected 0"
ok "SIGINT stopped it in $(( ($(date +%s%N) - t0) / 1000000 )) ms, exit code 0"

say "refused configurations"
c4=$prefix-4
containers+=("$c4")
if podman run --name "$c4" --network host -e "ARTIFACT_LISTEN=127.0.0.1:$port" \
     -v "$prefix-tokens4:$state/tokens" -v "$prefix-artifacts4:$state/artifacts" \
     -e ARTIFACT_MASTER_PASSWORD=x -e ARTIFACT_MASTER_PASSWORD_FILE=/etc/hostname "$image" >"$scratch/c4.log" 2>&1 </dev/null; then
  fail "a container with both ARTIFACT_MASTER_PASSWORD and _FILE started"
fi
volumes+=("$prefix-tokens4" "$prefix-artifacts4")
grep -q 'not both' "$scratch/c4.log" || fail "no clear message for PASSWORD and PASSWORD_FILE: $(cat "$scratch/c4.log")"
ok "ARTIFACT_MASTER_PASSWORD together with ARTIFACT_MASTER_PASSWORD_FILE is refused"

# --- docker/compose.yml, through docker-compose and podman's Docker API ---------------------
say "docker/compose.yml: up, use, down, up again (volumes kept), down -v"
podman system service --time=0 "unix://$scratch/podman.sock" 2>>"$scratch/podman.err" &
service_pid=$!
for _ in $(seq 1 100); do
  [[ -S $scratch/podman.sock ]] && break
  kill -0 "$service_pid" 2>/dev/null || fail "podman system service did not start"
  sleep 0.1
done
[[ -S $scratch/podman.sock ]] || fail "podman system service made no socket in 10 s"
# The shipped file, but on the host's network on 127.0.0.1:$port (host
# networking excludes published ports) and on the image built above.
cdir=$scratch/compose
mkdir -p "$cdir"
sed -e '/^    ports:$/,+1d' "$here/docker/compose.yml" >"$cdir/compose.yml"
cat >"$cdir/override.yml" <<YAML
services:
  artifact-repository:
    network_mode: host
    image: $image
    environment:
      ARTIFACT_LISTEN: "127.0.0.1:$port"
YAML
( umask 077 && printf 'compose-secret-%s\n' "$$" >"$cdir/master_password" )
project=artimgtest$$
containers+=("${project}_artifact-repository_1")
volumes+=("${project}_tokens" "${project}_artifacts")
compose() {  # on $project with $cdir/compose.yml and $cdir/override.yml
  DOCKER_HOST=unix://$scratch/podman.sock timeout 120 docker-compose -p "$project" \
    -f "$cdir/compose.yml" -f "$cdir/override.yml" "$@" >>"$scratch/compose.log" 2>&1 ||
    { tail -n 20 "$scratch/compose.log" >&2; fail "docker-compose $* failed"; }
}
compose up -d --no-build
wait_healthy "${project}_artifact-repository_1"
master="master:compose-secret-$$"
user_c=$(issue "$master" img/compose/linux/1 "$scratch/c.netrc")
expect 201 "PUT one.bin with a token from the compose service" --netrc-file "$scratch/c.netrc" -T "$scratch/one.bin" "$base/img/compose/linux/1/one.bin"
compose down
compose up -d --no-build
wait_healthy "${project}_artifact-repository_1"
curl -fsS --max-time 10 -o "$scratch/one.compose" "$base/img/compose/linux/1/one.bin" || fail "GET after compose down/up failed"
cmp -s "$scratch/one.bin" "$scratch/one.compose" || fail "one.bin differs after compose down/up"
expect 200 "GET /token/$user_c after compose down/up" -u "$master" "$base/token/$user_c"
compose down -v
podman volume exists "${project}_tokens" && fail "compose down -v left the tokens volume"
ok "compose: secret, named volumes kept across down/up, removed by down -v"

# --- docker/compose.multi.yml: three nodes and a load balancer on shared volumes ----------
say "docker/compose.multi.yml: three nodes + lb, issue/upload/revoke through the lb"
# The shipped files on the host's network: each node on its own port of
# 127.0.0.1 (ARTIFACT_LISTEN), the lb on a fourth, lb.conf pointed at them.
node_ports=()
for n in 1 2 3; do
  node_ports[n]=$(pick_port "$port" "${node_ports[@]}") || fail "no free port for node$n"
done
lb_port=$(pick_port "$port" "${node_ports[@]}") || fail "no free port for the lb"
cdir=$scratch/compose-multi
mkdir -p "$cdir"
sed -e '/^    ports:$/,+1d' "$here/docker/compose.multi.yml" >"$cdir/compose.yml"
sed -e "s/server node1:8080 /server 127.0.0.1:${node_ports[1]} /" \
    -e "s/server node2:8080 /server 127.0.0.1:${node_ports[2]} /" \
    -e "s/server node3:8080 /server 127.0.0.1:${node_ports[3]} /" \
    -e "s/^        listen 8080;$/        listen 127.0.0.1:$lb_port;/" "$here/docker/lb.conf" >"$cdir/lb.conf"
[[ $(grep -c '127\.0\.0\.1:[0-9]' "$cdir/lb.conf") -eq 4 ]] ||
  fail "docker/lb.conf: expected 'server nodeN:8080 ...' x3 and 'listen 8080;' to adapt"
{
  echo "services:"
  for n in 1 2 3; do
    printf '  node%s:\n    network_mode: host\n    image: %s\n' "$n" "$image"
    printf '    environment:\n      ARTIFACT_LISTEN: "127.0.0.1:%s"\n' "${node_ports[n]}"
  done
  printf '  lb:\n    network_mode: host\n    image: %s\n' "$image"
  # for the image's health check, which asks /token/healthz on this address
  printf '    environment:\n      ARTIFACT_LISTEN: "127.0.0.1:%s"\n' "$lb_port"
} >"$cdir/override.yml"
( umask 077 && printf 'multi-secret-%s\n' "$$" >"$cdir/master_password" )
project=artimgmulti$$
for svc in node1 node2 node3 lb; do containers+=("${project}_${svc}_1"); done
volumes+=("${project}_tokens" "${project}_artifacts")
node_url() { echo "http://127.0.0.1:${node_ports[$1]}"; }
lb=http://127.0.0.1:$lb_port
base=$lb
master="master:multi-secret-$$"
compose up -d --no-build
for n in 1 2 3; do wait_healthy "${project}_node${n}_1" "$(node_url "$n")"; done
wait_healthy "${project}_lb_1" "$lb"

# All three nodes started at once on an empty tokens volume: exactly one wrote
# the masters file, the other two use it (the entrypoint hard-links it into place).
creators=0
for n in 1 2 3; do
  logs=$(podman logs "${project}_node${n}_1" 2>&1)
  if grep -q "created .* for master 'master' from ARTIFACT_MASTER_PASSWORD_FILE" <<<"$logs"; then
    creators=$((creators + 1))
    ok "node$n created the masters file"
  elif how=$(grep -o 'exists: using it\|appeared meanwhile: using it' <<<"$logs"); then
    ok "node$n uses the masters file another node wrote ($how)"
  else
    fail "node$n said nothing about the masters file: $(grep artifact-entrypoint <<<"$logs")"
  fi
  expect 200 "GET /token with the master credential on node$n" -u "$master" "$(node_url "$n")/token"
done
[[ $creators -eq 1 ]] || fail "$creators nodes created the masters file, expected exactly 1"
expect 403 "GET /token/metrics through the lb" "$lb/token/metrics"
expect 200 "GET /token/metrics on node1 from its loopback" "$(node_url 1)/token/metrics"

user_m=$(issue "$master" img/multi/linux/1 "$scratch/m.netrc")
[[ -n $user_m ]] || fail "no login in the netrc answer issued through the lb"
ok "token $user_m issued through the lb"
for n in 1 2 3; do
  expect 200 "GET /token/$user_m on node$n" -u "$master" "$(node_url "$n")/token/$user_m"
done
files=()
for i in 1 2 3 4 5 6; do
  head -c $((i * 100003)) /dev/urandom >"$scratch/multi$i.bin"
  files+=("multi$i.bin")
  expect 201 "PUT multi$i.bin through the lb" --netrc-file "$scratch/m.netrc" -T "$scratch/multi$i.bin" "$lb/img/multi/linux/1/multi$i.bin"
done
# Round robin: every node wrote some of them (each node logs its PUTs).
spread=()
for n in 1 2 3; do
  puts=$(podman logs "${project}_node${n}_1" 2>/dev/null | grep -c '"PUT /img/multi/linux/1/multi[0-9]*\.bin" status=201' || true)
  [[ $puts -ge 1 ]] || fail "node$n took none of the uploads through the lb"
  spread+=("node$n:$puts")
done
ok "uploads spread over the nodes: ${spread[*]}"
for n in 1 2 3; do
  for f in "${files[@]}"; do
    curl -fsS --max-time 10 -o "$scratch/$f.node$n" "$(node_url "$n")/img/multi/linux/1/$f" || fail "GET $f from node$n failed"
    cmp -s "$scratch/$f" "$scratch/$f.node$n" || fail "$f from node$n differs from the upload"
  done
done
ok "all ${#files[@]} files downloaded byte-identical from each of the 3 nodes"

say "compose.multi: node2 stopped: the lb goes on; revoke while it is down"
podman stop -t 10 "${project}_node2_1" >/dev/null 2>>"$scratch/podman.err"
port_free "${node_ports[2]}" || fail "node2's port still taken after podman stop"
for i in 1 2 3 4 5 6; do
  expect 200 "GET /token/healthz through the lb with node2 down ($i)" "$lb/token/healthz"
done
printf 'node2 is down\n' >"$scratch/multi7.txt"
for i in 1 2 3; do
  expect 201 "PUT multi7-$i.txt through the lb with node2 down" --netrc-file "$scratch/m.netrc" -T "$scratch/multi7.txt" "$lb/img/multi/linux/1/multi7-$i.txt"
done
revoke "$master" "$user_m"
compose start node2
wait_healthy "${project}_node2_1" "$(node_url 2)"
for n in 1 2 3; do
  code=$(status_of --netrc-file "$scratch/m.netrc" -T "$scratch/multi7.txt" "$(node_url "$n")/img/multi/linux/1/after-revoke.txt")
  [[ $code == 401 || $code == 403 ]] || fail "PUT on node$n after the revoke through the lb: HTTP $code, expected 401 or 403"
  ok "PUT on node$n after the revoke refused: HTTP $code"
done
code=$(status_of --netrc-file "$scratch/m.netrc" -T "$scratch/multi7.txt" "$lb/img/multi/linux/1/after-revoke.txt")
[[ $code == 401 || $code == 403 ]] || fail "PUT through the lb after the revoke: HTTP $code, expected 401 or 403"
ok "PUT through the lb after the revoke refused: HTTP $code"
compose down -v
for v in "${project}_tokens" "${project}_artifacts"; do
  podman volume exists "$v" && fail "compose down -v left the volume $v"
done
for p in "${node_ports[@]}" "$lb_port"; do
  port_free "$p" || fail "port $p still taken after compose down"
done
ok "compose.multi: three nodes and the lb on shared volumes, removed by down -v"

say "PASS: docker image test ($(($(date +%s) - t_start)) s)"
