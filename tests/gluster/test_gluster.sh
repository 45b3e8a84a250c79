#!/usr/bin/env bash
# Three artifact-repository nodes on a real GlusterFS replica-3 volume: the
# multi-node scenarios of tests/multinode, then faults of the volume.
#
#   tests/gluster/test_gluster.sh ARTIFACT_TOKEN_BINARY      (root; make test-gluster)
#
# Builds, in network namespaces named after this run's PID, three storage
# hosts on 198.51.100.0/24 (tests/gluster/lib.sh: one glusterd each, a brick
# each, a replica-3 volume with a 5 s network.ping-timeout, stat-prefetch off
# and favorite-child-policy majority, one FUSE mount per host with zero
# entry/negative/attribute timeouts). Then runs tests/multinode/test_multinode.sh
# with node i's tokens and artifacts on host i's mount, and with
# tests/gluster/faults.sh as its extra scenarios (a brick killed and restarted,
# concurrent issues on one builder from all nodes, a host's link cut and
# restored). Removes everything it made, also on failure. Prints each phase's
# duration and the total.
set -euo pipefail

die() { echo "test-gluster: FAIL: $*" >&2; exit 1; }

bin=${1:?usage: test_gluster.sh ARTIFACT_TOKEN_BINARY}
[[ -x $bin ]] || die "no executable artifact-token at $bin"
bin=$(readlink -f "$bin")
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
[[ $(id -u) -eq 0 ]] || die "needs root (network and mount namespaces, glusterd, FUSE)"
for tool in glusterd gluster glusterfs nsenter unshare ip mountpoint getfattr; do
  command -v "$tool" >/dev/null || die "$tool is not installed (scripts/install-deps.sh gluster)"
done
[[ -c /dev/fuse ]] || die "no /dev/fuse"

t0=$(date +%s.%N)
phase_t0=$t0
phase_done() {
  local now
  now=$(date +%s.%N)
  printf 'phase %s: %s s\n' "$1" "$(awk -v a="$phase_t0" -v b="$now" 'BEGIN { printf "%.1f", b - a }')"
  phase_t0=$now
}

work=$(mktemp -d /tmp/test-gluster.XXXXXX)
chmod 0755 "$work"   # the nginx workers and the apps (www-data) traverse it
GL_NS=gl$(printf '%x' $$)   # the PID: parallel runs cannot collide
export GL_WORK=$work/gl GL_NS
mkdir -p "$GL_WORK"
# shellcheck source=tests/gluster/lib.sh
source "$here/lib.sh"

cleanup() {
  local rc=$?
  set +e
  trap - EXIT INT TERM
  phase_t0=$(date +%s.%N)
  gl_teardown
  if gl_still_mounted; then
    echo "test-gluster: a mount under $GL_WORK is still there; $work left in place" >&2
    rc=1
  else
    if [[ $rc -ne 0 ]]; then
      local f
      for f in "$GL_WORK"/gl*/log/mnt.log "$GL_WORK"/gl*/log/glustershd.log; do
        [[ -s $f ]] || continue
        echo "---- errors in ${f#"$work"/}" >&2
        grep -E '\] (E|C) \[' "$f" | grep -v fuse_mnt_umount | tail -n 8 >&2
      done
    fi
    rm -rf "$work"
  fi
  phase_done teardown
  echo "test-gluster: total $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s"
  if [[ $rc -eq 0 ]]; then echo "test-gluster: PASS"; else echo "test-gluster: FAIL (exit $rc)" >&2; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

gl_net_up
gl_volume_up
phase_done "gluster setup (3 glusterd, replica-3 volume, 3 FUSE mounts)"

# The volume as the nodes will use it: a name made on one mount is seen on
# the others, and so is its removal (no entry or negative caching).
m1=$GL_WORK/mnt1 m2=$GL_WORK/mnt2 m3=$GL_WORK/mnt3
echo probe >"$m1/probe"
[[ $(<"$m2/probe") == probe && $(<"$m3/probe") == probe ]] || die "a file written on mount 1 is not read back on 2 and 3"
rm "$m2/probe"
[[ ! -e $m1/probe && ! -e $m3/probe ]] || die "a file removed on mount 2 is still seen on 1 or 3"

MULTINODE_TOKENS_DIRS="$m1/tokens $m2/tokens $m3/tokens" \
MULTINODE_ARTIFACTS_DIRS="$m1/artifacts $m2/artifacts $m3/artifacts" \
MULTINODE_EXTRA=$here/faults.sh \
MULTINODE_C_TTL=5 MULTINODE_D_TTL=20 MULTINODE_D_SECONDS=25 \
  "$repo/tests/multinode/test_multinode.sh" "$bin"
phase_done "nodes on the volume (multinode scenarios and faults)"
