# shellcheck shell=bash
# GlusterFS replica 3 across three network namespaces: setup, faults and
# teardown, shared by tests/gluster/test_gluster.sh (which builds and removes
# the volume) and tests/gluster/faults.sh (sourced by test_multinode.sh, which
# breaks it while the nodes run). Sourced, never run.
#
# Everything lives under GL_WORK; the namespaces are named GL_NS-hub and
# GL_NS-n1..3. Each storage host i runs its own glusterd (and through it its
# brick and self-heal daemon) in the network namespace GL_NS-ni and a private
# mount namespace where GL_WORK/gli/{lib,log,run} are /var/lib/glusterd,
# /var/log/glusterfs and /run (glusterd has no workdir option and hard-codes
# /var/run/glusterd.socket). A bridge br0 in GL_NS-hub joins the hosts on
# 198.51.100.0/24 (TEST-NET-2, documentation only): host i is 198.51.100.1i,
# its link is the veth pair sI (hub) <-> eth0 (host). Host i's FUSE mount,
# GL_WORK/mnti, is a glusterfs client process in GL_NS-ni and the host's
# mount namespace, so processes in other namespaces see it.
#
# Every wait is bounded in count and time; every process started here is
# recorded by PID in GL_WORK and ended by that PID only.

: "${GL_WORK:?GL_WORK must be set}" "${GL_NS:?GL_NS must be set}"
GL_VOL=repo
GL_PING_TIMEOUT=${GL_PING_TIMEOUT:-5}

gl_addr() { echo "198.51.100.1$1"; }
gl_ns() { echo "$GL_NS-n$1"; }
gl_hub() { echo "$GL_NS-hub"; }
gl_now() { date +%s.%N; }
gl_since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }
gl_log() { echo "gluster: $*"; }
gl_die() { echo "gluster: FAIL: $*" >&2; exit 1; }

# gl_pid_alive PID: true while PID runs and is not a zombie
gl_pid_alive() {
  [[ -n $1 && -e /proc/$1 ]] || return 1
  [[ $(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null) != Z ]]
}

# gl_cli I ARGS...: the gluster CLI of host I, in its glusterd's namespaces
gl_cli() {
  local i=$1; shift
  local pid
  pid=$(<"$GL_WORK/gl$i/glusterd.pid")
  gl_pid_alive "$pid" || { echo "glusterd of host $i (pid $pid) is not running" >&2; return 1; }
  timeout 30 nsenter -t "$pid" -m -n gluster --mode=script "$@"
}

# --- the network ---------------------------------------------------------------
gl_net_up() {
  local hub i
  hub=$(gl_hub)
  ip netns add "$hub" || gl_die "ip netns add $hub refused (root and CAP_SYS_ADMIN needed)"
  echo "$hub" >>"$GL_WORK/namespaces"
  ip -n "$hub" link set lo up
  ip -n "$hub" link add br0 type bridge
  ip -n "$hub" addr add 198.51.100.1/24 dev br0
  ip -n "$hub" link set br0 up
  for i in 1 2 3; do
    ip netns add "$(gl_ns "$i")" || gl_die "ip netns add $(gl_ns "$i") refused"
    gl_ns "$i" >>"$GL_WORK/namespaces"
    ip -n "$hub" link add "s$i" type veth peer name eth0 netns "$(gl_ns "$i")"
    ip -n "$hub" link set "s$i" master br0
    ip -n "$hub" link set "s$i" up
    ip -n "$(gl_ns "$i")" link set lo up
    ip -n "$(gl_ns "$i")" addr add "$(gl_addr "$i")/24" dev eth0
    ip -n "$(gl_ns "$i")" link set eth0 up
  done
  gl_net_check
}

# The namespaces and routes must be the ones built here before any traffic:
# no default route anywhere, each host reaches the others through eth0.
gl_net_check() {
  local listed ns i j hub
  hub=$(gl_hub)
  listed=$(ip netns list)
  for ns in "$hub" "$(gl_ns 1)" "$(gl_ns 2)" "$(gl_ns 3)"; do
    grep -qw -- "$ns" <<<"$listed" || gl_die "namespace $ns does not exist"
    [[ -z $(ip -n "$ns" route show default) ]] || gl_die "namespace $ns has a default route"
  done
  for i in 1 2 3; do
    for j in 1 2 3; do
      [[ $i == "$j" ]] && continue
      ip -n "$(gl_ns "$i")" route get "$(gl_addr "$j")" | grep -q 'dev eth0' ||
        gl_die "host $i has no route to $(gl_addr "$j") via eth0"
    done
  done
}

# gl_cut I / gl_restore I: take host I's link down / up (its hub end)
gl_cut() { ip -n "$(gl_hub)" link set "s$1" down; }
gl_restore() { ip -n "$(gl_hub)" link set "s$1" up; }

# --- glusterd, the volume, the mounts -------------------------------------------
gl_start_glusterd() {
  local i=$1 d=$GL_WORK/gl$1 pid
  mkdir -p "$d"/{lib,log,run,brick}
  # the package's option groups (volume set group ...), not its hook scripts
  [[ -d /var/lib/glusterd/groups ]] && cp -r /var/lib/glusterd/groups "$d/lib/"
  # Geo-replication is not used, but glusterd's start runs its python helper
  # gsyncd a dozen times when it is installed (about 50 s on a loaded 2-core
  # machine). In glusterd's private mount namespace it is replaced by a script
  # whose interpreter does not exist: exec fails with ENOENT, which glusterd
  # takes for "geo-replication not installed".
  local hide_gsyncd="" gsyncd
  for gsyncd in /usr/lib/*/glusterfs/gsyncd /usr/libexec/glusterfs/gsyncd; do
    [[ -f $gsyncd ]] && hide_gsyncd="mount --bind '$GL_WORK/no-gsyncd' '$gsyncd' && " && break
  done
  printf '#!/nonexistent/gsyncd-not-used\n' >"$GL_WORK/no-gsyncd"
  chmod 0755 "$GL_WORK/no-gsyncd"
  nsenter --net="/run/netns/$(gl_ns "$i")" unshare -m --propagation private sh -c \
    "mount --bind '$d/lib' /var/lib/glusterd && mount --bind '$d/log' /var/log/glusterfs &&
     mount --bind '$d/run' /run && $hide_gsyncd exec glusterd -N" >"$d/glusterd.out" 2>&1 &
  pid=$!
  echo "$pid" >"$d/glusterd.pid"
}

# gl_wait TIMEOUT_S WHAT CMD...: runs CMD every 0.2 s until it succeeds
gl_wait() {
  local limit=$1 what=$2 start n
  shift 2
  start=$(date +%s)
  for ((n = 0; n < limit * 5; n++)); do
    "$@" >/dev/null 2>&1 && return 0
    (( $(date +%s) - start < limit )) || break
    sleep 0.2
  done
  gl_die "$what: not within ${limit} s"
}

gl_peers_connected() {
  local out
  out=$(gl_cli 1 pool list) || return 1
  [[ $(grep -c 'Connected' <<<"$out") -eq 3 ]]
}

gl_bricks_online() {
  local i=${1:-1} out
  out=$(gl_cli "$i" volume status "$GL_VOL" detail) || return 1
  [[ $(grep -cE '^Online +: Y' <<<"$out") -eq 3 ]]
}

gl_volume_up() {
  local i
  printf '%s\n' "$GL_WORK/mnt1" "$GL_WORK/mnt2" "$GL_WORK/mnt3" >"$GL_WORK/mounts"
  for i in 1 2 3; do gl_start_glusterd "$i"; done
  for i in 1 2 3; do gl_wait 20 "glusterd of host $i answering" gl_cli "$i" pool list; done
  gl_cli 1 peer probe "$(gl_addr 2)" >/dev/null
  gl_cli 1 peer probe "$(gl_addr 3)" >/dev/null
  gl_wait 30 "three peers connected" gl_peers_connected
  # bricks on the root filesystem need force
  gl_cli 1 volume create "$GL_VOL" replica 3 \
    "$(gl_addr 1):$GL_WORK/gl1/brick" "$(gl_addr 2):$GL_WORK/gl2/brick" "$(gl_addr 3):$GL_WORK/gl3/brick" \
    force >/dev/null
  # A short ping-timeout: a cut-off server is given up after 5 s instead of 42.
  # No stat-prefetch (md-cache): a replaced or unlinked file would otherwise
  # stay visible on the other mounts for about a second. Favourite child by
  # majority: a gfid split-brain of a directory made at once on several mounts
  # heals by itself instead of answering EIO until an administrator acts.
  # Heal-timeout 5: the self-heal daemon's crawl every 5 s, not 10 minutes.
  gl_cli 1 volume set "$GL_VOL" network.ping-timeout "$GL_PING_TIMEOUT" \
    performance.stat-prefetch off cluster.favorite-child-policy majority \
    cluster.heal-timeout 5 >/dev/null || gl_die "volume set refused"
  gl_cli 1 volume start "$GL_VOL" >/dev/null
  gl_wait 30 "three bricks online" gl_bricks_online 1
  local waits=()
  for i in 1 2 3; do gl_mount "$i" & waits+=("$!"); done
  wait "${waits[@]}" || true   # (a bare wait would wait for the glusterds too)
  for i in 1 2 3; do mountpoint -q "$GL_WORK/mnt$i" || gl_die "host $i's FUSE mount is missing"; done
}

# gl_mount I: host I's FUSE mount, with no kernel caching of entries,
# negative lookups or attributes (a revoked token's file must vanish at once)
gl_mount() {
  local i=$1 m=$GL_WORK/mnt$1 d=$GL_WORK/gl$1
  mkdir -p "$m"
  nsenter --net="/run/netns/$(gl_ns "$i")" glusterfs \
    --volfile-server="$(gl_addr "$i")" --volfile-server="$(gl_addr $((i % 3 + 1)))" --volfile-id="$GL_VOL" \
    --entry-timeout=0 --negative-timeout=0 --attribute-timeout=0 \
    --log-file="$d/log/mnt.log" --pid-file="$d/mnt.pid" "$m" ||
    gl_die "glusterfs client of host $i failed (see $d/log/mnt.log)"
  gl_wait 20 "FUSE mount of host $i" mountpoint -q "$m"
}

# gl_brick_pid I: PID of host I's brick process (glusterfsd)
gl_brick_pid() {
  local f
  for f in "$GL_WORK/gl$1/run/gluster/vols/$GL_VOL"/*.pid; do
    [[ -f $f ]] && cat "$f" && return 0
  done
  return 1
}

# gl_heal_pending: number of entries waiting for heal on all bricks (from host 1)
gl_heal_pending() {
  local out
  out=$(gl_cli 1 volume heal "$GL_VOL" info) || { echo unknown; return 1; }
  awk '/^Number of entries:/ { if ($4 ~ /^[0-9]+$/) n += $4; else bad = 1 } END { if (bad) print "unknown"; else print n + 0 }' <<<"$out"
}
gl_healed() { [[ $(gl_heal_pending) == 0 ]]; }
gl_split_brain() {
  gl_cli 1 volume heal "$GL_VOL" info split-brain |
    awk '/^Number of entries in split-brain:/ { if ($6 ~ /^[0-9]+$/) n += $6; else bad = 1 } END { if (bad) print "unknown"; else print n + 0 }'
}

# gl_brick_tree I: a listing of brick I (names, types, sizes, content hashes of
# files), without gluster's own .glusterfs directory: identical bricks list
# identically
gl_brick_tree() {
  local b=$GL_WORK/gl$1/brick
  (cd "$b" && find . -path ./.glusterfs -prune -o ! -name . -printf '%y %p %s\n' | sort)
}

# --- teardown ---------------------------------------------------------------------
# Mounts, then the glusterds (before their bricks: they would restart the
# self-heal daemon), then bricks and self-heal daemons by their pid files,
# then the namespaces. Safe to call at any stage, and twice.
gl_pid_stop() {
  local pid n
  for pid in "$@"; do [[ -n $pid ]] && kill -TERM "$pid" 2>/dev/null; done
  for ((n = 0; n < 50; n++)); do
    local alive=0
    for pid in "$@"; do gl_pid_alive "$pid" && alive=1; done
    [[ $alive == 0 ]] && return 0
    sleep 0.1
  done
  for pid in "$@"; do gl_pid_alive "$pid" && kill -KILL "$pid" 2>/dev/null; done
  return 0
}

# gl_ours PID I: true when PID runs in host I's network namespace (a pid
# file's PID may have been reused by an unrelated process after its end)
gl_ours() {
  local mine theirs
  mine=$(stat -L -c %i "/run/netns/$(gl_ns "$2")" 2>/dev/null) || return 1
  theirs=$(stat -L -c %i "/proc/$1/ns/net" 2>/dev/null) || return 1
  [[ $mine == "$theirs" ]]
}

gl_teardown() {
  local m i pid pids=() f ns
  if [[ -f $GL_WORK/mounts ]]; then
    while read -r m; do
      mountpoint -q "$m" 2>/dev/null || continue
      umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null
    done <"$GL_WORK/mounts"
  fi
  for i in 1 2 3; do
    for f in "$GL_WORK/gl$i/mnt.pid" "$GL_WORK/gl$i/glusterd.pid"; do
      [[ -f $f ]] && pid=$(<"$f") && gl_ours "$pid" "$i" && pids+=("$pid")
    done
  done
  gl_pid_stop "${pids[@]}"
  pids=()
  for i in 1 2 3; do
    [[ -d $GL_WORK/gl$i/run/gluster ]] || continue
    while read -r f; do
      pid=$(<"$f")
      gl_ours "$pid" "$i" && pids+=("$pid")
    done < <(find "$GL_WORK/gl$i/run/gluster" -name '*.pid' -type f)
  done
  gl_pid_stop "${pids[@]}"
  if [[ -f $GL_WORK/namespaces ]]; then
    # hosts first, the hub (holding the other veth ends) last
    tac "$GL_WORK/namespaces" | while read -r ns; do ip netns del "$ns" 2>/dev/null; done
    rm -f "$GL_WORK/namespaces"
  fi
}

# gl_still_mounted: true when any mount of ours is still there (then GL_WORK
# must not be removed: rm -rf would walk into the volume)
gl_still_mounted() {
  local m
  [[ -f $GL_WORK/mounts ]] || return 1
  while read -r m; do mountpoint -q "$m" 2>/dev/null && return 0; done <"$GL_WORK/mounts"
  return 1
}
