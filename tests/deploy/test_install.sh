#!/usr/bin/env bash
# `make install` into a DESTDIR, then checks what a Debian host would get:
# the files and their modes, `systemd-analyze verify` silent on every unit,
# `systemd-analyze security` at or below 2.5 for each service, and
# `nginx -t` on the installed site.
#
#   tests/deploy/test_install.sh BUILD_DIR
set -euo pipefail

build=${1:?usage: test_install.sh BUILD_DIR}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/root
fail() { echo "FAIL: $*" >&2; exit 1; }

DESTDIR=$root cmake --install "$build" >"$work/install.log" || { cat "$work/install.log"; fail "cmake --install"; }

expect() {  # path mode
  [[ -e $root$1 ]] || fail "$1 was not installed (configure the build with -DCMAKE_INSTALL_PREFIX=/usr)"
  local mode
  mode=$(stat -c %a "$root$1")
  [[ $mode == "$2" ]] || fail "$1 has mode $mode, expected $2"
}
expect /usr/bin/artifact-token 755
expect /usr/lib/systemd/system/artifact-token.service 644
expect /usr/lib/systemd/system/artifact-token-prune.service 644
expect /usr/lib/systemd/system/artifact-token-prune.timer 644
expect /usr/lib/systemd/system/artifact-token-retention.service 644
expect /usr/lib/systemd/system/artifact-token-retention.timer 644
expect /usr/lib/sysusers.d/artifact-repository.conf 644
expect /usr/lib/tmpfiles.d/artifact-repository.conf 644
expect /etc/artifact-repository/artifact-token.conf 644
expect /etc/nginx/sites-available/artifact-repository 644
expect /etc/nginx/artifact-repository/scope-map.conf 644
expect /etc/nginx/artifact-repository/real-ip.conf 644
expect /usr/share/man/man1/artifact-token.1 644
echo "ok: files installed"

# The manual page renders without a warning and names every command the
# binary lists.
page=$(LC_ALL=C.UTF-8 MANWIDTH=100 man --warnings -l "$root/usr/share/man/man1/artifact-token.1" 2>"$work/man.err") ||
  fail "man cannot render artifact-token.1: $(cat "$work/man.err")"
[[ ! -s $work/man.err ]] || fail "artifact-token.1 renders with warnings: $(cat "$work/man.err")"
for cmd in $("$root/usr/bin/artifact-token" --help | awk '/^Commands:/ { on = 1; next } on && /^  [a-z]/ { print $1 }'); do
  grep -qx "   $cmd" <<<"$page" || fail "artifact-token.1 has no section for the command $cmd"
done
echo "ok: artifact-token(1) renders and covers every command"

# systemd-analyze needs the ExecStart= binaries and systemd's own units
# under --root: add the host's, as a Debian host with spawn-fcgi has them.
cp /usr/bin/spawn-fcgi "$root/usr/bin/"
cp -rn /usr/lib/systemd/system/. "$root/usr/lib/systemd/system/"
units=("$root"/usr/lib/systemd/system/artifact-token*)
# verify prints problems (unknown keys, missing binaries) yet exits 0: any output fails.
out=$(systemd-analyze verify --root="$root" "${units[@]}" 2>&1) || fail "systemd-analyze verify: $out"
[[ -z $out ]] || fail "systemd-analyze verify: $out"
echo "ok: systemd-analyze verify is silent on ${#units[@]} units"

for service in artifact-token.service artifact-token-prune.service artifact-token-retention.service; do
  out=$(systemd-analyze security --offline=true --root="$root" --threshold=25 \
    "$root/usr/lib/systemd/system/$service" 2>&1) || { echo "$out" | tail -n 30; fail "$service scores above 2.5"; }
  echo "ok: $service $(echo "$out" | grep -o 'Overall exposure level.*')"
done

# nginx -t on the installed site, its absolute paths moved under the root.
site=$work/site.conf
sed -e "s|/etc/nginx/artifact-repository|$root/etc/nginx/artifact-repository|g" \
    -e "s|/var/lib/artifact-repository|$root/var/lib/artifact-repository|g" \
    -e "s|/var/log/artifact-repository|$root/var/log/artifact-repository|g" \
    "$root/etc/nginx/sites-available/artifact-repository" >"$site"
mkdir -p "$root/var/lib/artifact-repository/incoming" "$root/var/log/artifact-repository" "$work/logs"
# Debian's nginx.conf loads the dav_ext module (PROPFIND) through
# /etc/nginx/modules-enabled; its line there is relative to nginx's prefix.
cat >"$work/nginx.conf" <<CONF
load_module /usr/lib/nginx/modules/ngx_http_dav_ext_module.so;
pid $work/nginx.pid;
error_log $work/logs/error.log;
events {}
http {
    include /etc/nginx/mime.types;
    client_body_temp_path $work/body;
    fastcgi_temp_path $work/fastcgi;
    proxy_temp_path $work/proxy;
    scgi_temp_path $work/scgi;
    uwsgi_temp_path $work/uwsgi;
    include $site;
}
CONF
nginx -t -q -p "$work" -c "$work/nginx.conf" -e "$work/logs/error.log" || fail "nginx -t on the installed site"
echo "ok: nginx -t accepts the installed site"
