#!/usr/bin/env bash
# `make test-systemd`: the host install for real. Boots a Debian 12 root
# file system with systemd as PID 1 (systemd-nspawn --boot, its own network
# namespace), installs the built .deb with apt, follows docs/install.md's host
# install block verbatim, and drives the real flow through nginx on the
# container's port 80: issue for a new and an existing build directory,
# MKCOL/PUT, revoke and seal, latest, healthz, metrics, a 5xx logged at error
# priority under the identifier artifact-token, SIGKILL of the main process
# (systemd restarts it, tokens survive), prune and retention started by their
# timers, the hardening score inside the booted system, an upgrade in place
# (tokens, artifacts and masters kept, the service restarted), and remove and
# purge failing closed (tokens refused, no dangling site link).
#
#   tests/deploy/test_systemd.sh DEB
#
# Environment (optional):
#   ARTIFACT_SYSTEMD_TEST_DIR  work dir (default /var/tmp/artifact-systemd-test): the base
#                              root file system and apt's archive cache, kept between runs
#   ARTIFACT_SYSTEMD_REBASE=1  make the base root file system again
#   ARTIFACT_DEBIAN_MIRROR     Debian mirror for debootstrap and apt
#
# Needs root, systemd-nspawn (systemd-container), debootstrap, curl, python3.
# All HTTP traffic is sent from inside the container's network namespace
# (nsenter --net), to its own loopback.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
deb=${1:?usage: test_systemd.sh DEB}
deb=$(cd "$(dirname "$deb")" && pwd)/$(basename "$deb")
work=${ARTIFACT_SYSTEMD_TEST_DIR:-/var/tmp/artifact-systemd-test}
t_start=$(date +%s)
machine=artrepo-$$

say() { printf '\n== %s  (+%ss)\n' "$*" "$(($(date +%s) - t_start))"; }
fail() {
  echo "test-systemd: FAIL: $*" >&2
  if [[ -n ${leader:-} ]] && [[ -d /proc/$leader ]]; then
    echo "--- journal of artifact-token (last lines):" >&2
    nsenter -t "$leader" -a journalctl -u artifact-token.service --no-pager -n 30 >&2 || true
    echo "--- failed units:" >&2
    nsenter -t "$leader" -a systemctl --failed --no-pager >&2 || true
    local unit
    for unit in $(nsenter -t "$leader" -a systemctl list-units --failed --plain --no-legend --no-pager 2>/dev/null | awk '{print $1}'); do
      echo "--- journal of $unit:" >&2
      nsenter -t "$leader" -a journalctl -u "$unit" --no-pager -n 10 >&2 || true
    done
    # Again, last: CI shows the tail of the output.
    echo "test-systemd: FAIL: $*" >&2
  fi
  exit 1
}
ok() { echo "ok: $*"; }

[[ $(id -u) -eq 0 ]] || fail "needs root (debootstrap, mount, systemd-nspawn)"
for tool in systemd-nspawn debootstrap nsenter curl python3 dpkg-deb; do
  command -v "$tool" >/dev/null || fail "missing $tool: scripts/install-deps.sh systemd installs what this needs"
done
[[ -f $deb ]] || fail "no package at $deb (make deb builds it)"

mkdir -p "$work/apt-archives/partial" "$work/runs"
base=$work/base

# --- the base root file system: debootstrap once, reused ----------------------
# Only what a Debian 12 host has before the operator starts: systemd, dbus,
# apt. Everything the package needs comes through apt from its Depends.
if [[ ${ARTIFACT_SYSTEMD_REBASE:-0} == 1 ]] || [[ ! -e $base/.complete ]]; then
  mirror=$("$here/scripts/debian-mirror.sh")
  say "making the base root file system with debootstrap from $mirror"
  rm -rf "$base"
  debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus,ca-certificates \
    bookworm "$base" "$mirror" >"$work/debootstrap.log" 2>&1 ||
    { tail -n 20 "$work/debootstrap.log" >&2; fail "debootstrap failed (log: $work/debootstrap.log)"; }
  echo "deb $mirror bookworm main" >"$base/etc/apt/sources.list"
  chroot "$base" apt-get update -qq >/dev/null || fail "apt-get update in the base failed"
  # A container boots faster without these, and has no console to get.
  chroot "$base" systemctl mask systemd-networkd-wait-online.service console-getty.service >/dev/null 2>&1 || true
  touch "$base/.complete"
else
  say "reusing the base root file system in $base (ARTIFACT_SYSTEMD_REBASE=1 makes it again)"
fi

# --- this run: an overlay on the base, so the base stays clean ----------------
run=$work/runs/$$
mkdir -p "$run"/{upper,work,root}
mount -t overlay overlay -o "lowerdir=$base,upperdir=$run/upper,workdir=$run/work" "$run/root" ||
  fail "cannot mount an overlay on $base"
root=$run/root
nspawn_pid=
leader=
cleanup() {
  set +e
  if [[ -n $leader ]] && [[ -d /proc/$leader ]]; then
    nsenter -t "$leader" -a systemctl poweroff >/dev/null 2>&1
  fi
  if [[ -n $nspawn_pid ]]; then
    for _ in $(seq 1 100); do kill -0 "$nspawn_pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$nspawn_pid" 2>/dev/null && kill -KILL "$nspawn_pid"
    wait "$nspawn_pid" 2>/dev/null
  fi
  umount "$root" 2>/dev/null || umount -l "$root"
  rm -rf "$run"
}
trap cleanup EXIT

# The packages and the upgrade: the built .deb, and the same files as a
# newer version (only the version differs), to upgrade in place.
version=$(dpkg-deb -f "$deb" Version)
mkdir -p "$root/root/pkg" "$run/repack"
cp "$deb" "$root/root/pkg/"
dpkg-deb -R "$deb" "$run/repack/tree"
sed -i -E "s/^Version: .*/Version: ${version}+upgrade1/" "$run/repack/tree/DEBIAN/control"
dpkg-deb -b --root-owner-group "$run/repack/tree" "$root/root/pkg/upgrade.deb" >/dev/null
deb_in=/root/pkg/$(basename "$deb")

# apt downloads what the package depends on while the container still has
# the host's network (nspawn without --boot shares it); the booted system has
# none, and installs from this cache, so apt resolves the real Depends.
say "apt: fetching the package's dependencies into the cache"
systemd-nspawn -q -D "$root" --register=no --keep-unit -M "$machine-dl" \
  --bind="$work/apt-archives:/var/cache/apt/archives" \
  apt-get install -y -qq --download-only "$deb_in" >"$run/apt-download.log" 2>&1 ||
  { tail -n 20 "$run/apt-download.log" >&2; fail "apt-get --download-only failed"; }

# --- boot --------------------------------------------------------------------
say "booting Debian 12 with systemd-nspawn --boot"
setsid systemd-nspawn -q -D "$root" --boot --register=no --keep-unit --private-network \
  --bind="$work/apt-archives:/var/cache/apt/archives" -M "$machine" --console=passive \
  >"$run/nspawn.log" 2>&1 &
nspawn_pid=$!
# The container's init: the process named systemd whose PID in its own
# namespace is 1 and that descends from our nspawn.
for _ in $(seq 1 100); do
  for pid in $(pgrep -x systemd); do
    if grep -qE '^NSpid:.*[[:space:]]1$' "/proc/$pid/status" 2>/dev/null; then
      p=$pid
      while [[ $p -gt 1 ]]; do
        [[ $p == "$nspawn_pid" ]] && { leader=$pid; break 2; }
        p=$(awk '/^PPid:/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 1)
      done
    fi
  done
  kill -0 "$nspawn_pid" 2>/dev/null || { cat "$run/nspawn.log" >&2; fail "systemd-nspawn exited"; }
  sleep 0.1
done
[[ -n $leader ]] || fail "no init process of the container after 10 s"
inside() { nsenter -t "$leader" -a "$@"; }
# Writes stdin to a file inside the booted system (its /run is its own tmpfs).
# shellcheck disable=SC2016  # expanded by the inner sh
put_inside() { inside sh -c 'mkdir -p "${1%/*}" && cat >"$1"' sh "$1"; }
state=$(inside timeout 60 systemctl is-system-running --wait 2>/dev/null || true)
[[ $state == running ]] || fail "the container is '$state' after boot, not running"
ok "booted to running (init pid $leader)"

# The container's own network namespace, with its own loopback only.
[[ -e /proc/$leader/ns/net ]] || fail "the container has no network namespace"
[[ $(readlink "/proc/$leader/ns/net") != $(readlink /proc/self/ns/net) ]] ||
  fail "the container shares the host's network namespace; refusing to send traffic"
http() { nsenter -t "$leader" -n curl -sS --max-time 10 "$@"; }

# --- install, as docs/install.md says -------------------------------------------
say "installing $(basename "$deb") with apt and following docs/install.md"
inside apt-get install -y -qq "$deb_in" >"$run/apt-install.log" 2>&1 ||
  { tail -n 20 "$run/apt-install.log" >&2; fail "apt-get install of the package failed"; }
for unit in artifact-token.service artifact-token-prune.timer artifact-token-retention.timer; do
  [[ $(inside systemctl is-enabled "$unit") == enabled ]] || fail "$unit is not enabled by the package"
  [[ $(inside systemctl is-active "$unit") == active ]] || fail "$unit is not active after the install"
done
ok "the package enabled and started the service and both timers"
[[ $(inside stat -c '%a %U:%G' /etc/artifact-repository/masters) == "640 root:artifact-token" ]] ||
  fail "masters file is $(inside stat -c '%a %U:%G' /etc/artifact-repository/masters), not 640 root:artifact-token"
[[ $(inside stat -c '%a' /var/lib/artifact-repository/tokens) == 750 ]] || fail "tokens volume is not 0750"
[[ -L $root/etc/nginx/sites-enabled/artifact-repository ]] && fail "the package enabled the nginx site itself"
ok "masters file 0640 root:artifact-token, tokens volume 0750, site left for the operator"

# docs/install.md's block between the host-install markers, verbatim: `sudo` is
# dropped (we are root), and htpasswd reads the password from stdin (-i)
# instead of asking twice on a terminal. `apt install ./...deb` was done above.
master_pass=systemd-test-$$-$RANDOM
# shellcheck disable=SC2016  # backquotes of the Markdown fence, not a command
block=$(sed -n '/<!-- host-install:begin -->/,/<!-- host-install:end -->/p' "$here/docs/install.md" |
  sed -n '/^```sh$/,/^```$/p' | sed '1d;$d')
[[ -n $block ]] || fail "docs/install.md has no host-install block between its markers"
while IFS= read -r line; do
  cmd=${line%%#*}
  cmd=${cmd%"${cmd##*[![:space:]]}"}
  [[ -z $cmd ]] && continue
  cmd=${cmd#sudo }
  case $cmd in
    "make deb" | "apt install "*) continue ;;  # built by make deb, installed above
  esac
  echo "+ $cmd"
  if [[ $cmd == htpasswd\ -B* ]]; then
    printf '%s\n' "$master_pass" | inside sh -c "htpasswd -i${cmd#htpasswd -}" >/dev/null 2>&1 ||
      fail "docs/install.md step failed: $cmd"
  else
    out=$(inside sh -c "$cmd" 2>&1) || { echo "$out" >&2; fail "docs/install.md step failed: $cmd"; }
    [[ -n $out ]] && echo "$out" | tail -n 3
  fi
done <<<"$block"
ok "docs/install.md host install block followed ($(grep -c . <<<"$block") lines)"

# --- the flow ---------------------------------------------------------------------
say "issue, upload, revoke and seal through nginx on port 80"
base_url=http://127.0.0.1
json() { python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }
issue() {  # scope [ttl] -> the JSON answer; fails unless 201
  local out
  out=$(http -w '\n%{http_code}' -u "ci:$master_pass" -H 'Content-Type: application/json' \
    -d "{\"scope\": \"$1\", \"ttl\": ${2:-600}}" "$base_url/token")
  [[ ${out##*$'\n'} == 201 ]] || fail "issue $1 answered ${out##*$'\n'}: ${out%$'\n'*}"
  echo "${out%$'\n'*}"
}
code() { http -o /dev/null -w '%{http_code}' "$@"; }
# Waits (5 s at most, while the service starts) until healthz answers STATUS;
# the caller asserts the status after.
wait_healthz() {
  for _ in $(seq 1 50); do
    [[ $(code "$base_url/token/healthz") == "$1" ]] && return 0
    sleep 0.1
  done
}
# journald reads the service's output stream asynchronously, so a line written
# a moment ago may not be in the journal yet (CI once queried it too early).
# Waits (5 s at most) until a line matching PATTERN is; fails otherwise.
wait_journal() {  # PATTERN JOURNALCTL-ARGS...
  local pattern=$1; shift
  for _ in $(seq 1 50); do
    inside journalctl "$@" --no-pager -q | grep -q -- "$pattern" && return 0
    sleep 0.1
  done
  return 1
}

[[ $(code "$base_url/token/healthz") == 200 ]] || fail "healthz is not 200 after the install"
[[ $(code -g "http://[::1]/token/healthz") == 200 ]] || fail "the site does not answer on IPv6 ([::1]:80)"
t1=$(issue dpkg/proj/amd64/1)
u1=$(json username <<<"$t1"); p1=$(json password <<<"$t1")
[[ $(inside stat -c '%a %G' /var/lib/artifact-repository/artifacts/dpkg/proj/amd64/1) == "2775 www-data" ]] ||
  fail "build directory is $(inside stat -c '%a %G' /var/lib/artifact-repository/artifacts/dpkg/proj/amd64/1)"
ok "issued for a new build; its directory is 2775 www-data (setgid inherited, not asked for)"
# A build directory an operator made beforehand (restored from a backup, say).
inside install -d -o artifact-token -g www-data -m 2775 /var/lib/artifact-repository/artifacts/dpkg/proj/amd64/3
t3=$(issue dpkg/proj/amd64/3)
u3=$(json username <<<"$t3"); p3=$(json password <<<"$t3")
ok "issued for an existing, empty build directory"

head -c 100000 /dev/urandom >"$run/pkg.bin"
[[ $(code -u "$u1:$p1" -X MKCOL "$base_url/dpkg/proj/amd64/1/deb/") == 201 ]] || fail "MKCOL refused"
# The service makes every directory of a build, so its seal can freeze them.
[[ $(inside stat -c '%U' /var/lib/artifact-repository/artifacts/dpkg/proj/amd64/1/deb) == artifact-token ]] ||
  fail "MKCOL made a directory owned by $(inside stat -c '%U' /var/lib/artifact-repository/artifacts/dpkg/proj/amd64/1/deb)"
[[ $(code -u "$u1:$p1" -T "$run/pkg.bin" "$base_url/dpkg/proj/amd64/1/deb/pkg.bin") == 201 ]] || fail "PUT refused"
http -o "$run/pkg.got" "$base_url/dpkg/proj/amd64/1/deb/pkg.bin"
cmp -s "$run/pkg.bin" "$run/pkg.got" || fail "downloaded file differs"
c=$(code -u "$u1:$p1" -T "$run/pkg.bin" "$base_url/dpkg/proj/amd64/3/pkg.bin")
[[ $c == 401 && ! -e $root/var/lib/artifact-repository/artifacts/dpkg/proj/amd64/3/pkg.bin ]] ||
  fail "build 1's token writing into build 3 answered $c"
ok "MKCOL + PUT with the token, byte-identical download, other build refused"
# Upload bodies go to a directory of this host's own on the artifacts volume:
# hosts that share the volume must not share nginx's temp-file counter.
incoming=$(inside readlink -f /var/lib/artifact-repository/incoming)
[[ $incoming == /var/lib/artifact-repository/artifacts/.incoming/$(inside cat /etc/machine-id) ]] ||
  fail "the site's upload directory is $incoming, not .incoming/<machine id>"
[[ $(inside stat -c '%U %a' "$incoming") == "www-data 700" ]] ||
  fail "$incoming is $(inside stat -c '%U %a' "$incoming"), not www-data 700"
grep -q 'client_body_temp_path /var/lib/artifact-repository/incoming;' \
  "$root/etc/nginx/sites-available/artifact-repository" || fail "the site does not put upload bodies in incoming/"
ok "upload bodies in this host's own $incoming"

# SIGKILL of the service's main process: systemd restarts it, tokens survive.
say "SIGKILL of the service's main process"
old_pid=$(inside systemctl show -p MainPID --value artifact-token.service)
inside systemctl kill -s KILL --kill-who=main artifact-token.service
new_pid=$old_pid
for _ in $(seq 1 100); do
  new_pid=$(inside systemctl show -p MainPID --value artifact-token.service)
  [[ $new_pid != "$old_pid" && $new_pid != 0 && $(inside systemctl is-active artifact-token.service) == active ]] && break
  sleep 0.1
done
[[ $new_pid != "$old_pid" && $new_pid != 0 ]] || fail "artifact-token.service was not restarted within 10 s"
wait_healthz 200
[[ $(code -u "$u3:$p3" -T "$run/pkg.bin" "$base_url/dpkg/proj/amd64/3/pkg.bin") == 201 ]] ||
  fail "a token issued before the kill stopped working"
ok "restarted (pid $old_pid -> $new_pid), the token issued before still uploads"

say "revoke, seal, latest"
out=$(http -w '\n%{http_code}' -u "ci:$master_pass" -X DELETE "$base_url/token/$u1?result=success")
[[ ${out##*$'\n'} == 200 ]] || fail "revoke answered ${out##*$'\n'}: ${out%$'\n'*}"
[[ $(json files <<<"${out%$'\n'*}") == 1 ]] || fail "seal summary does not count 1 file: ${out%$'\n'*}"
[[ $(code -u "$u1:$p1" -T "$run/pkg.bin" "$base_url/dpkg/proj/amd64/1/deb/again.bin") == 403 ]] ||
  fail "the revoked token still uploads"
http "$base_url/dpkg/proj/amd64/1/SHA256SUMS" | grep -q ' deb/pkg.bin$' || fail "SHA256SUMS does not list deb/pkg.bin"
# Frozen: nginx's user (www-data) can no longer add, replace or remove an
# entry anywhere in the build, which is what makes an upload in flight fail.
for d in /var/lib/artifact-repository/artifacts/dpkg/proj/amd64/1 /var/lib/artifact-repository/artifacts/dpkg/proj/amd64/1/deb; do
  [[ $(inside stat -c '%a' "$d") == 555 ]] || fail "$d is $(inside stat -c '%a' "$d") after the seal, not 555"
  inside setpriv --reuid=www-data --regid=www-data --clear-groups touch "$d/late" 2>/dev/null &&
    fail "www-data can still create a file in the sealed $d"
done
out=$(http -w '\n%{http_code}' -u "ci:$master_pass" -X DELETE "$base_url/token/$u3?result=success")
[[ ${out##*$'\n'} == 200 ]] || fail "revoke of build 3 answered ${out##*$'\n'}"
loc=$(http -o /dev/null -w '%{http_code} %{redirect_url}' "$base_url/dpkg/proj/amd64/latest/pkg.bin")
[[ $loc == "302 "*"/dpkg/proj/amd64/3/pkg.bin" ]] || fail "latest answered '$loc', not a redirect to build 3"
ok "revoked and sealed (SHA256SUMS lists the file, directories 555), the token refused after, latest -> build 3"

metrics=$(http "$base_url/token/metrics")
# The counters started again with the restart above: the revokes came after.
grep -qE '^artifact_tokens_revoked_total 2$' <<<"$metrics" || fail "metrics do not count the 2 revokes: $(grep revoked <<<"$metrics")"
grep -qE '^artifact_seals_total 2$' <<<"$metrics" || fail "metrics do not count the 2 seals"
ok "metrics from loopback count the revokes and seals since the restart"

# --- the audit log ------------------------------------------------------------------
log=/var/log/artifact-repository/access.log
inside grep -q "user=$u1 \"PUT /dpkg/proj/amd64/1/deb/pkg.bin\" status=201" "$log" || fail "the audit log misses the PUT"
inside setpriv --reuid=nobody --regid=nogroup --clear-groups cat "$log" >/dev/null 2>&1 &&
  fail "the audit log is readable by an unprivileged user"
ok "the audit log names the token user and is not world-readable ($(inside stat -c '%a %U:%G' "${log%/*}"))"

# --- a service that cannot create builds is not healthy, and says so --------------
say "healthz and the journal when build directories cannot be made"
# The umask of the old unit (0027) made the app chmod its directories, which
# RestrictSUIDSGID= refuses: the same failure the e3c3b5a unit had.
printf '[Service]\nUMask=0027\n' | put_inside /run/systemd/system/artifact-token.service.d/umask.conf
inside systemctl daemon-reload
inside systemctl restart artifact-token.service
since=$(inside date '+%Y-%m-%d %H:%M:%S')
wait_healthz 503
out=$(http -w '\n%{http_code}' "$base_url/token/healthz")
[[ ${out##*$'\n'} == 503 ]] || fail "healthz answered ${out##*$'\n'} for a service that cannot create builds"
grep -q 'artifacts volume' <<<"${out%$'\n'*}" || fail "the 503 does not say what failed: ${out%$'\n'*}"
grep -q '/var/lib' <<<"${out%$'\n'*}" && fail "the 503 leaks a path: ${out%$'\n'*}"
t5=$(http -w '\n%{http_code}' -u "ci:$master_pass" -H 'Content-Type: application/json' \
  -d '{"scope": "dpkg/proj/amd64/5"}' "$base_url/token")
[[ ${t5##*$'\n'} == 503 ]] || fail "issue answered ${t5##*$'\n'} for a service that cannot create builds"
wait_journal 'issue master=ci outcome=503' -t artifact-token -p warning --since "$since" ||
  fail "the issue's 503 is not in the journal at warning priority under artifact-token"
ok "healthz 503 '$(json message <<<"${out%$'\n'*}")', the cause in journalctl -p warning -t artifact-token"
inside rm -r /run/systemd/system/artifact-token.service.d
inside systemctl daemon-reload
inside systemctl restart artifact-token.service
wait_healthz 200
[[ $(code "$base_url/token/healthz") == 200 ]] || fail "healthz not 200 again after the shipped unit is back"

# --- the timers start prune and retention ------------------------------------------
say "prune and retention started by their timers"
[[ $(inside systemctl show -p TimersCalendar --value artifact-token-retention.timer) == *"OnCalendar=daily"* ||
   $(inside systemctl show -p TimersCalendar --value artifact-token-retention.timer) == *"00:00:00"* ]] ||
  fail "the retention timer is not daily"
# Builds of another builder: 1 and 2 sealed, retention keeps the newest one.
for b in 1 2; do
  t=$(issue "dpkg/proj/arm64/$b")
  u=$(json username <<<"$t"); p=$(json password <<<"$t")
  [[ $(code -u "$u:$p" -T "$run/pkg.bin" "$base_url/dpkg/proj/arm64/$b/pkg.bin") == 201 ]] || fail "PUT to arm64/$b"
  [[ $(code -u "ci:$master_pass" -X DELETE "$base_url/token/$u?result=success") == 200 ]] || fail "revoke arm64/$b"
done
echo 'retention = dpkg/proj/arm64/:keep=1' >>"$root/etc/artifact-repository/artifact-token.conf"
# Each timer also elapses 1 s after it is started again (a drop-in in /run;
# without the random delay, which applies to every trigger): the shipped
# calendar is unchanged, the units started are the shipped ones.
for timer in artifact-token-prune.timer artifact-token-retention.timer; do
  printf '[Timer]\nOnActiveSec=1s\nAccuracySec=100ms\nRandomizedDelaySec=0\n' | put_inside "/run/systemd/system/$timer.d/soon.conf"
done
inside systemctl daemon-reload
inside systemctl restart artifact-token-prune.timer artifact-token-retention.timer
for svc in artifact-token-prune.service artifact-token-retention.service; do
  ran=
  for _ in $(seq 1 150); do
    if [[ $(inside systemctl show -p ExecMainExitTimestampMonotonic --value "$svc") != 0 ]]; then ran=1; break; fi
    sleep 0.1
  done
  [[ -n $ran ]] || fail "$svc did not run from its timer within 15 s"
  [[ $(inside systemctl show -p Result --value "$svc") == success ]] || fail "$svc failed: $(inside journalctl -u "$svc" -n 5 --no-pager)"
done
[[ -d $root/var/lib/artifact-repository/artifacts/dpkg/proj/arm64/1 ]] && fail "retention did not remove arm64/1"
[[ -d $root/var/lib/artifact-repository/artifacts/dpkg/proj/arm64/2 ]] || fail "retention removed the newest build"
# The shipped timers again for the rest: with the drop-ins, the upgrade's
# restart of the timers would start both services once more, a second later.
inside rm -r /run/systemd/system/artifact-token-prune.timer.d /run/systemd/system/artifact-token-retention.timer.d
inside systemctl daemon-reload
ok "prune and retention ran from their timers under the hardened units; retention removed arm64/1, kept arm64/2"

# --- the hardening, measured in the booted system ------------------------------------
score=$(inside systemd-analyze security artifact-token.service 2>/dev/null | sed -n -E 's/.*Overall exposure level for [^:]*: ([0-9.]+).*/\1/p')
[[ -n $score ]] || fail "systemd-analyze security gave no score"
python3 -c "import sys; sys.exit(0 if float('$score') <= 2.5 else 1)" || fail "hardening score $score is above 2.5"
ok "systemd-analyze security inside the booted system: $score"

# The service's own view: it writes the two volumes and nothing shared.
main_pid=$(inside systemctl show -p MainPID --value artifact-token.service)
as_service() { inside nsenter -t "$main_pid" -m -S "$(inside id -u artifact-token)" -G "$(inside getent group www-data | cut -d: -f3)" "$@"; }
as_service touch /var/lib/artifact-repository/tokens/.probe-$$ || fail "the service user cannot write its tokens volume (control)"
inside rm -f "/var/lib/artifact-repository/tokens/.probe-$$"
for dir in /run/lock /dev/shm /tmp /var/tmp /etc /var/lib/artifact-repository; do
  if as_service touch "$dir/.probe-$$" 2>/dev/null; then
    as_service rm -f "$dir/.probe-$$"
    [[ $dir == /tmp || $dir == /var/tmp ]] || fail "the service can write $dir"
  fi
done
ok "inside the service's mount namespace its user writes the tokens volume, not /run/lock, /dev/shm, /etc"

# --- upgrade in place ----------------------------------------------------------------
say "upgrade in place to ${version}+upgrade1"
t7=$(issue dpkg/proj/amd64/7 3600)
u7=$(json username <<<"$t7"); p7=$(json password <<<"$t7")
masters_sum=$(inside sha256sum /etc/artifact-repository/masters)
old_pid=$(inside systemctl show -p MainPID --value artifact-token.service)
inside apt-get install -y -qq /root/pkg/upgrade.deb >"$run/apt-upgrade.log" 2>&1 ||
  { tail -n 20 "$run/apt-upgrade.log" >&2; fail "the upgrade failed"; }
# shellcheck disable=SC2016  # dpkg-query's format, not a shell variable
[[ $(inside dpkg-query -W -f '${Version}' artifact-repository) == "${version}+upgrade1" ]] || fail "not upgraded"
new_pid=$(inside systemctl show -p MainPID --value artifact-token.service)
[[ $new_pid != "$old_pid" && $(inside systemctl is-active artifact-token.service) == active ]] ||
  fail "the upgrade did not restart the service (pid $old_pid -> $new_pid)"
[[ $(inside sha256sum /etc/artifact-repository/masters) == "$masters_sum" ]] || fail "the upgrade changed the masters file"
wait_healthz 200
[[ $(code -u "$u7:$p7" -T "$run/pkg.bin" "$base_url/dpkg/proj/amd64/7/pkg.bin") == 201 ]] ||
  fail "a token issued before the upgrade stopped working"
http "$base_url/dpkg/proj/amd64/1/deb/pkg.bin" -o "$run/pkg.got"
cmp -s "$run/pkg.bin" "$run/pkg.got" || fail "an artifact changed across the upgrade"
ok "upgraded: service restarted (pid $old_pid -> $new_pid), masters, tokens and artifacts kept"

# --- remove and purge fail closed ----------------------------------------------------
say "apt remove while prune and retention run, then apt purge"
t8=$(issue dpkg/proj/amd64/8 3600)
u8=$(json username <<<"$t8"); p8=$(json password <<<"$t8")
# A run a timer started just before the remove, held in flight for 5 s by a
# drop-in (the shipped command runs after it): the remove must let it end,
# not pull its unit from under it (CI saw both fail with result 'resources').
hold=5
for svc in artifact-token-prune.service artifact-token-retention.service; do
  printf '[Service]\nExecStartPre=/bin/sleep %s\n' "$hold" | put_inside "/run/systemd/system/$svc.d/hold.conf"
done
inside systemctl daemon-reload
inside systemctl start --no-block artifact-token-prune.service artifact-token-retention.service
for svc in artifact-token-prune.service artifact-token-retention.service; do
  for _ in $(seq 1 50); do
    [[ $(inside systemctl show -p ActiveState --value "$svc") == activating ]] && break
    sleep 0.1
  done
  [[ $(inside systemctl show -p ActiveState --value "$svc") == activating ]] || fail "$svc is not running before the remove"
done
remove_start=$(date +%s%N)
inside apt-get remove -y -qq artifact-repository >"$run/apt-remove.log" 2>&1 ||
  { tail -n 20 "$run/apt-remove.log" >&2; fail "apt-get remove failed"; }
remove_ms=$((($(date +%s%N) - remove_start) / 1000000))
inside rm -r /run/systemd/system/artifact-token-prune.service.d /run/systemd/system/artifact-token-retention.service.d
inside systemctl daemon-reload
failed=$(inside systemctl list-units --failed --plain --no-legend --no-pager | wc -l)
[[ $failed -eq 0 ]] || fail "$failed failed units after apt remove with prune and retention running"
running=$(inside systemctl list-units --all --plain --no-legend --no-pager 'artifact-token*' | awk '$3 != "inactive"')
[[ -z $running ]] || fail "units of the package left after apt remove: $running"
for svc in artifact-token-prune.service artifact-token-retention.service; do
  inside journalctl -u "$svc" --no-pager -o cat | tail -n 1 | grep -q '^Finished' ||
    fail "the held $svc run did not finish: $(inside journalctl -u "$svc" --no-pager -o cat | tail -n 3)"
done
ok "apt remove let the prune and retention runs in flight finish (${remove_ms} ms, hold ${hold} s): no failed unit, none left"
c=$(code -u "$u8:$p8" -T "$run/pkg.bin" "$base_url/dpkg/proj/amd64/8/pkg.bin")
[[ $c == 403 ]] || fail "after apt remove a live token's upload answered $c, not 403 (nothing can revoke it any more)"
[[ $(code "$base_url/dpkg/proj/amd64/1/deb/pkg.bin") == 200 ]] || fail "after apt remove, downloads stopped"
inside apt-get purge -y -qq artifact-repository >"$run/apt-purge.log" 2>&1 ||
  { tail -n 20 "$run/apt-purge.log" >&2; fail "apt-get purge failed"; }
[[ -e $root/etc/nginx/sites-enabled/artifact-repository || -L $root/etc/nginx/sites-enabled/artifact-repository ]] &&
  fail "apt purge left the link to the removed site in sites-enabled"
inside nginx -t -q || fail "nginx -t fails after apt purge"
inside systemctl is-active --quiet nginx.service || fail "nginx is not running after apt purge"
# postrm reloaded nginx (invoke-rc.d): no site is left, so nothing listens on
# port 80 (without the reload the old site would still answer, 502).
c=$(code "$base_url/token/healthz" 2>/dev/null) || true
[[ $c == 000 ]] || fail "port 80 answers $c after apt purge: postrm did not reload nginx"
[[ -d $root/var/lib/artifact-repository/artifacts/dpkg/proj/amd64/1 ]] || fail "apt purge removed the artifacts"
ok "remove: live tokens refused (403), downloads go on; purge: site link gone, nginx -t ok, artifacts kept"

failed=$(inside systemctl list-units --failed --plain --no-legend --no-pager | wc -l)
[[ $failed -eq 0 ]] || { inside systemctl --failed --no-pager; fail "$failed failed units"; }
ok "no failed units"
echo "test-systemd: PASS in $(($(date +%s) - t_start)) s"
