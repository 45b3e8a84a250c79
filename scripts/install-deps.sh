#!/usr/bin/env bash
# Installs the Debian packages artifact-repository needs, when any is
# missing: with apt-get as root, through sudo otherwise.
#
#   scripts/install-deps.sh [run|test|image|deb|systemd|gluster]
#
#   run    build and run (make build, make run, make install): the default
#   test   also what the tests and benchmarks use (make test, make bench)
#   image  also podman and debootstrap (make test-image)
#   deb    what building the Debian package needs (make deb)
#   systemd also what booting it needs (make test-systemd)
#   gluster also GlusterFS server and client, FUSE and attr (make test-gluster)
set -euo pipefail

set_name=${1:-run}
packages=(
  cmake g++ make pkg-config
  libfcgi-dev libpoco-dev libssl-dev libcrypt-dev catch2
  spawn-fcgi apache2-utils curl ca-certificates
  libnginx-mod-http-dav-ext
)
case $set_name in
  run) ;;
  test | image)
    packages+=(clang libclang-rt-14-dev shellcheck systemd buildbot buildbot-worker iproute2 wrk strace)
    # The WebDAV clients the tests drive: litmus, rclone (and rclone mount: fuse3), cadaver, wget.
    packages+=(litmus rclone cadaver wget fuse3)
    # The build browser's tests: headless Chromium, driven over the DevTools
    # protocol from Debian's python3 (tests/integration/browser.py).
    packages+=(chromium python3 python3-websocket)
    # The manual page is rendered by the install test (man --warnings).
    packages+=(man-db)
    # podman (runc: crun fails on hybrid cgroup hosts), debootstrap for the
    # base image, docker-compose for the compose files.
    [[ $set_name == image ]] && packages+=(podman runc debootstrap docker-compose uidmap containernetworking-plugins)
    ;;
  deb | systemd)
    packages+=(debhelper dpkg-dev lintian)
    [[ $set_name == systemd ]] && packages+=(systemd-container debootstrap python3)
    ;;
  gluster)
    # glusterd and the brick/self-heal processes, the FUSE client, getfattr
    packages+=(iproute2 util-linux glusterfs-server glusterfs-client fuse3 attr)
    ;;
  *) echo "install-deps: unknown set '$set_name' (run, test, image, deb, systemd or gluster)" >&2; exit 2 ;;
esac

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
# Any Debian nginx flavour with the WebDAV module will do; nginx-light is the smallest.
if ! nginx -V 2>&1 | grep -q -- '--with-http_dav_module'; then
  missing+=(nginx-light)
fi
[[ ${#missing[@]} -eq 0 ]] && exit 0

echo "install-deps: installing ${missing[*]}" >&2
sudo=()
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || { echo "install-deps: need root or sudo to install ${missing[*]}" >&2; exit 1; }
  sudo=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
