# shellcheck shell=bash disable=SC2154 # the caller's variables (see below)
# Faults of the GlusterFS volume under three running nodes. Sourced by
# tests/multinode/test_multinode.sh (MULTINODE_EXTRA, set by
# tests/gluster/test_gluster.sh) after its own scenarios, so its functions
# (issue, put, del, revoke, http, client_loop, violation, log, die, ...) and
# variables (addr, state, app_pid, tokens, artifacts, work, ...) are in scope;
# GL_WORK and GL_NS name the volume's storage hosts (tests/gluster/lib.sh).
#
#   e. host 2's brick is SIGKILLed while client loops run, then restarted:
#      no request fails meanwhile, the heal converges, the three bricks hold
#      the same files, a token issued during the outage is on every brick, a
#      token revoked during it is on none;
#   f. six builds of one new builder at once, issued from all three nodes
#      (all of them create the same directories on the volume), each uploaded,
#      deleted and revoked, ten times: every request answers as on one disk,
#      no split-brain, no EIO;
#   g. host 3's link is cut, then restored: nodes 1 and 2 serve again after
#      the ping-timeout; node 3 fails closed (never accepts a revoked token,
#      never issues); after the link returns node 3 serves again by itself,
#      with the same app process, and the revoke made meanwhile holds there;
#   h. the app's locks (open file description locks, one per token and per
#      build) exclude across the hosts' mounts: a lock held through host 1's
#      mount is refused through host 2's and waited for through host 3's.
#
# The checks end the run through die (so test_multinode.sh's cleanup runs)
# or record a violation.

# shellcheck source=tests/gluster/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

fault_figures=()

# converge WHAT LIMIT_S: the self-heal finishes, nothing is in split-brain and
# the three bricks list the same files; sets heal_s
converge() {
  local what=$1 limit=$2 start pending=unknown sb tree1 tree i
  start=$(now_s)
  while :; do
    pending=$(gl_heal_pending || true)
    [[ $pending == 0 ]] && break
    awk -v a="$start" -v b="$(now_s)" -v l="$limit" 'BEGIN { exit !(b - a < l) }' ||
      die "$what: the heal did not converge in $limit s ($pending entries pending)"
    sleep 0.5
  done
  heal_s=$(fdiff "$start" "$(now_s)")
  sb=$(gl_split_brain || true)
  [[ $sb == 0 ]] || die "$what: $sb entries in split-brain"
  tree1=$(gl_brick_tree 1)
  for i in 2 3; do
    tree=$(gl_brick_tree "$i")
    [[ $tree == "$tree1" ]] ||
      die "$what: brick $i differs from brick 1 after the heal: $(diff <(echo "$tree1") <(echo "$tree") | grep '^[<>]' | head -n 4 | tr '\n' ' ')"
  done
}

# on_bricks PATH: how many of the three bricks hold PATH (relative to the volume)
on_bricks() {
  local n=0 i
  for i in 1 2 3; do [[ -e $GL_WORK/gl$i/brick/$1 ]] && n=$((n + 1)); done
  echo "$n"
}

# --- e. a brick killed and restarted -----------------------------------------------
e_loops=4 e_seconds=16
deadline=$(( $(date +%s) + e_seconds ))
for l in $(seq "$e_loops"); do
  client_loop "e$l" mn/e/shared 3 60 "$deadline" 0 &
  loop_pids+=("$!")
done
issue 1 mn/e/before/1 600
[[ $ISSUE_CODE == 201 ]] || die "e: issue before the brick kill answered $ISSUE_CODE"
e_before_user=$ISSUE_USER
sleep 2
brick2=$(gl_brick_pid 2) || die "e: no pid file for host 2's brick"
kill -KILL "$brick2"
e_kill=$(now_s)
e_held=()
for k in 1 2 3; do
  issue "$k" "mn/e/held/$k" 600
  [[ $ISSUE_CODE == 201 ]] || die "e: issue on node $k with brick 2 down answered $ISSUE_CODE"
  e_held+=("$ISSUE_USER:$ISSUE_PASS")
  code=$(put $((k % 3 + 1)) "$ISSUE_USER" "$ISSUE_PASS" "$small" "mn/e/held/$k/f.bin")
  [[ $code == 201 ]] || die "e: upload via node $((k % 3 + 1)) with brick 2 down answered $code"
done
code=$(revoke 3 "$e_before_user")
[[ $code == 204 ]] || die "e: revoke with brick 2 down answered $code"
sleep 3
gl_cli 1 volume start "$GL_VOL" force >/dev/null || die "e: volume start force refused"
gl_wait 30 "e: brick 2 back online" gl_bricks_online 1
e_back=$(fdiff "$e_kill" "$(now_s)")
wait_loops
[[ -s $violations ]] && die "e: $(wc -l <"$violations") invariant violations (first: $(head -n 1 "$violations"))"
converge e 120
for k in 1 2 3; do
  [[ $(on_bricks "tokens/mn/e/held/$k.htpasswd") == 3 ]] ||
    die "e: the token issued on node $k while brick 2 was down is on $(on_bricks "tokens/mn/e/held/$k.htpasswd") of 3 bricks after the heal"
  cmp -s "$GL_WORK/gl1/brick/tokens/mn/e/held/$k.htpasswd" "$GL_WORK/gl2/brick/tokens/mn/e/held/$k.htpasswd" ||
    die "e: brick 2's copy of mn/e/held/$k.htpasswd differs after the heal"
  cmp -s "$GL_WORK/gl1/brick/artifacts/mn/e/held/$k/f.bin" "$GL_WORK/gl2/brick/artifacts/mn/e/held/$k/f.bin" ||
    die "e: brick 2's copy of the upload mn/e/held/$k/f.bin differs after the heal"
done
[[ $(on_bricks tokens/mn/e/before/1.htpasswd) == 0 && $(on_bricks "tokens/.by-user/$e_before_user") == 0 ]] ||
  die "e: the token revoked while brick 2 was down is back on a brick after the heal (ghost)"
for k in 1 2 3; do
  u=${e_held[k - 1]%%:*} p=${e_held[k - 1]#*:}
  code=$(put 2 "$u" "$p" "$small" "mn/e/held/$k/g.bin")
  [[ $code == 201 ]] || die "e: upload via node 2 after the heal with the token issued during the outage answered $code"
  for f in f.bin g.bin; do
    code=$(del 1 "$u" "$p" "mn/e/held/$k/$f")
    [[ $code == 204 ]] || die "e: delete of mn/e/held/$k/$f answered $code"
  done
  code=$(revoke 3 "$u")
  [[ $code == 204 ]] || die "e: revoke of a token issued during the outage answered $code"
done
no_leftovers e
e_issued=$(sum issued e) e_revokes=$(sum revokes e)
log "e: host 2's brick SIGKILLed and restarted ${e_back} s later while $e_loops loops ran ($e_issued issued, $e_revokes revoked, no failed request); heal converged ${heal_s} s after the restart; bricks identical; token issued during the outage on 3 of 3 bricks, token revoked during it on none"
fault_figures+=("brick kill: back after ${e_back} s, heal converged in ${heal_s} s, $e_issued issued / $e_revokes revoked meanwhile, 0 failures")
phase_done "e (brick killed and restarted)"

# --- f. concurrent issues on one new builder from all nodes ---------------------------
f_rounds=10 f_builds=6
f_ok=0
# f_build R K: issue build K of round R on one node, upload through the next,
# delete and revoke through the third; prints the four statuses
f_build() {
  local r=$1 k=$2 scope=mn/f$1/linux/$2 c_u=- c_d=- c_r=-
  issue $(( (k - 1) % 3 + 1 )) "$scope" 600
  if [[ $ISSUE_CODE == 201 ]]; then
    c_u=$(put $(( k % 3 + 1 )) "$ISSUE_USER" "$ISSUE_PASS" "$small" "$scope/f.bin")
    c_d=$(del $(( (k + 1) % 3 + 1 )) "$ISSUE_USER" "$ISSUE_PASS" "$scope/f.bin")
    c_r=$(revoke $(( (k + 1) % 3 + 1 )) "$ISSUE_USER")
  fi
  echo "$ISSUE_CODE $c_u $c_d $c_r"
}
for r in $(seq "$f_rounds"); do
  f_pids=()
  for k in $(seq "$f_builds"); do
    f_build "$r" "$k" >"$work/tmp/f$r.$k" &
    f_pids+=("$!")
  done
  for pid in "${f_pids[@]}"; do wait "$pid" || true; done
  for k in $(seq "$f_builds"); do
    read -r c_i c_u c_d c_r <"$work/tmp/f$r.$k"
    if [[ "$c_i $c_u $c_d $c_r" == "201 201 204 204" ]]; then
      f_ok=$((f_ok + 1))
    else
      violation "f: round $r, build mn/f$r/linux/$k: issue on node $(( (k - 1) % 3 + 1 )) $c_i, upload $c_u, delete $c_d, revoke $c_r (expected 201 201 204 204)"
    fi
  done
done
f_eio=$(cat "${state[1]}/logs/app.log" "${state[2]}/logs/app.log" "${state[3]}/logs/app.log" | grep -c 'Input/output error' || true)
f_gfid=$(cat "$GL_WORK"/gl*/log/mnt.log | grep -c -i -E 'gfid mismatch|split-brain' || true)
[[ -s $violations ]] && die "f: $(wc -l <"$violations") invariant violations (first: $(head -n 1 "$violations")); EIO in app logs: $f_eio, gfid mismatch/split-brain lines in the mount logs: $f_gfid"
converge f 120
no_leftovers f
log "f: $f_rounds rounds of $f_builds builds at once (issue, upload, delete, revoke) from 3 nodes on one new builder: $f_ok of $((f_rounds * f_builds)) all answered as expected; no split-brain (gfid mismatch lines in the mount logs, healed: $f_gfid); EIO in the app logs: $f_eio"
[[ $f_eio == 0 ]] || die "f: the apps logged $f_eio Input/output errors"
fault_figures+=("concurrent issues on one builder: $f_ok/$((f_rounds * f_builds)) 201, split-brain 0, EIO 0, gfid-mismatch log lines $f_gfid")
phase_done "f (concurrent issues on one builder)"

# --- g. host 3's link cut and restored ------------------------------------------------
issue 1 mn/g/live/1 600
[[ $ISSUE_CODE == 201 ]] || die "g: issue answered $ISSUE_CODE"
g_live_u=$ISSUE_USER g_live_p=$ISSUE_PASS
code=$(put 3 "$g_live_u" "$g_live_p" "$small" mn/g/live/1/f.bin)
[[ $code == 201 ]] || die "g: upload via node 3 before the cut answered $code"
issue 1 mn/g/revoked/1 600
[[ $ISSUE_CODE == 201 ]] || die "g: issue answered $ISSUE_CODE"
g_rev_u=$ISSUE_USER g_rev_p=$ISSUE_PASS
g_app3=${app_pid[3]}
gl_cut 3
g_cut=$(now_s)
# The healthy side: the first issue that completes after the cut. One probe,
# asked again (on the two nodes in turn) with the same request_id until it
# answers: an attempt whose client gave up (curl's 10 s) and that completed
# on the server later is that same token, so a retry replaces it.
g_try=0 g_timeouts=0 g_healthy=""
while awk -v a="$g_cut" -v b="$(now_s)" -v l=$((GL_PING_TIMEOUT + 60)) 'BEGIN { exit !(b - a < l) }'; do
  g_try=$((g_try + 1))
  issue $(( g_try % 2 + 1 )) mn/g/probe/1 120 probe-1
  case $ISSUE_CODE in
    201) g_healthy=$(fdiff "$g_cut" "$(now_s)")
         code=$(revoke $(( g_try % 2 + 1 )) "$ISSUE_USER")
         [[ $code == 204 ]] || violation "g: revoke of the probe token on node $(( g_try % 2 + 1 )) answered $code"
         break ;;
    000) g_timeouts=$((g_timeouts + 1)) ;;   # curl gave up after 10 s
    *) sleep 0.5 ;;
  esac
done
[[ -n $g_healthy ]] || die "g: nodes 1 and 2 issued nothing in $((GL_PING_TIMEOUT + 60)) s after host 3's link was cut"
code=$(revoke 2 "$g_rev_u")
[[ $code == 204 ]] || die "g: revoke on node 2 with host 3 cut off answered $code"
g_cycles=0
for n in 1 2 3 4 5 6; do
  a=$(( n % 2 + 1 )) b=$(( (n + 1) % 2 + 1 ))
  issue "$a" "mn/g/healthy/$n" 120
  [[ $ISSUE_CODE == 201 ]] || { violation "g: issue on node $a with host 3 cut off answered $ISSUE_CODE"; continue; }
  code=$(put "$b" "$ISSUE_USER" "$ISSUE_PASS" "$small" "mn/g/healthy/$n/f.bin")
  [[ $code == 201 ]] || violation "g: upload via node $b with host 3 cut off answered $code"
  code=$(del "$a" "$ISSUE_USER" "$ISSUE_PASS" "mn/g/healthy/$n/f.bin")
  [[ $code == 204 ]] || violation "g: delete via node $a with host 3 cut off answered $code"
  code=$(revoke "$b" "$ISSUE_USER")
  [[ $code == 204 ]] || violation "g: revoke on node $b with host 3 cut off answered $code"
  g_cycles=$((g_cycles + 1))
done
# The cut-off node, once its client has given up on the other two bricks.
until awk -v a="$g_cut" -v b="$(now_s)" -v l=$((GL_PING_TIMEOUT + 2)) 'BEGIN { exit !(b - a >= l) }'; do sleep 0.2; done
g_cut_revoked=$(put 3 "$g_rev_u" "$g_rev_p" "$small" mn/g/revoked/1/f.bin)
[[ $g_cut_revoked =~ ^(2..)$ ]] && violation "g: node 3 (cut off) accepted ($g_cut_revoked) a token revoked on node 2"
g_cut_live=$(put 3 "$g_live_u" "$g_live_p" "$small" mn/g/live/1/g.bin)
[[ $g_cut_live =~ ^(2..)$ ]] && violation "g: node 3 (cut off, no quorum) stored an upload ($g_cut_live)"
issue 3 mn/g/cut/1 120
g_cut_issue=$ISSUE_CODE
[[ $g_cut_issue == 201 ]] && violation "g: node 3 (cut off, no quorum) issued a token"
g_cut_health=$(http /dev/null "http://${addr[3]}/token/healthz")
[[ $g_cut_health == 200 ]] && violation "g: node 3 (cut off, no quorum) answered 200 on /token/healthz"
# The link returns: node 3 serves again by itself.
gl_restore 3
g_restore=$(now_s)
g_back=""
while awk -v a="$g_restore" -v b="$(now_s)" -v l=90 'BEGIN { exit !(b - a < l) }'; do
  if [[ $(http /dev/null "http://${addr[3]}/token/healthz") == 200 ]]; then
    issue 3 mn/g/back/1 120
    if [[ $ISSUE_CODE == 201 ]]; then g_back=$(fdiff "$g_restore" "$(now_s)"); break; fi
  fi
  sleep 0.5
done
[[ -n $g_back ]] || die "g: node 3 did not issue again within 90 s after its link returned"
g_back_u=$ISSUE_USER
kill -0 "$g_app3" 2>/dev/null || die "g: node 3's app (pid $g_app3) is gone: it did not survive the cut"
[[ ${app_pid[3]} == "$g_app3" ]] || die "g: node 3's app was restarted"
code=$(put 3 "$g_rev_u" "$g_rev_p" "$small" mn/g/revoked/1/f.bin)
[[ $code == 403 || $code == 401 ]] || violation "g: after the link returned, node 3 answered $code (not 403) to a token revoked during the cut"
code=$(put 3 "$g_live_u" "$g_live_p" "$small" mn/g/live/1/g.bin)
[[ $code == 201 || $code == 204 ]] || violation "g: after the link returned, node 3 answered $code to an upload of a live token"
[[ -s $violations ]] && die "g: $(wc -l <"$violations") invariant violations (first: $(head -n 1 "$violations"))"
converge g 120
[[ $(on_bricks tokens/mn/g/revoked/1.htpasswd) == 0 ]] || die "g: the token revoked during the cut is back on a brick after the heal"
for f in f.bin g.bin; do
  code=$(del 1 "$g_live_u" "$g_live_p" "mn/g/live/1/$f")
  [[ $code == 204 ]] || die "g: delete of mn/g/live/1/$f answered $code"
done
for u in "$g_live_u" "$g_back_u"; do
  code=$(revoke 1 "$u")
  [[ $code == 204 ]] || die "g: revoke of $u answered $code"
done
# A probe attempt whose client gave up may have completed on the server; the
# retry with its request_id took that token over, and its revoke ended it:
# no live token nobody knows may hold the probe's scope.
body=$work/tmp/g.list
code=$(http "$body" -K "$work/master.curlrc" "http://${addr[1]}/token")
[[ $code == 200 ]] || die "g: GET /token answered $code"
g_orphans=$(grep -o '"mn/g/probe/[0-9]*"' "$body" | sort -u | wc -l || true)
[[ $g_orphans == 0 ]] || die "g: the probe's scope still has a live token after its revoke: an issue whose client gave up left an orphan"
log "g: host 3's link cut: nodes 1+2 issued again ${g_healthy} s after the cut ($g_timeouts attempt(s) timed out at the client before and were retried with the same request_id; orphans left: $g_orphans), then $g_cycles full cycles; node 3 cut off: revoked token $g_cut_revoked, live token $g_cut_live, issue $g_cut_issue, healthz $g_cut_health; link restored: node 3 issued again ${g_back} s later with the same app process; heal ${heal_s} s"
fault_figures+=("link cut: healthy side back after ${g_healthy} s (ping-timeout ${GL_PING_TIMEOUT} s), cut node: revoked token $g_cut_revoked / live token upload $g_cut_live / issue $g_cut_issue / healthz $g_cut_health, back ${g_back} s after the link, heal ${heal_s} s")
phase_done "g (link cut and restored)"

# --- h. the app's locks hold across the hosts' mounts ------------------------------------
# Every operation on a token, and the seal of a build, holds an OFD lock
# (fcgi/disk.cc); on a shared volume those locks are what serialises nodes.
h_probe=$(dirname "${BASH_SOURCE[0]}")/lockprobe.py
h_dir=$work/tmp/h
mkdir -p "$h_dir"
h_file=lock-probe.$$
/usr/bin/python3 "$h_probe" hold "$GL_WORK/mnt1/$h_file" "$h_dir/held" "$h_dir/release" &
h_holder=$!
h_t=$(now_s)
until [[ -e $h_dir/held ]]; do
  kill -0 "$h_holder" 2>/dev/null || die "h: the lock holder on host 1's mount failed"
  awk -v a="$h_t" -v b="$(now_s)" 'BEGIN { exit !(b - a < 10) }' || die "h: no lock through host 1's mount within 10 s"
  sleep 0.05
done
h_rc=0
/usr/bin/python3 "$h_probe" try "$GL_WORK/mnt2/$h_file" || h_rc=$?
[[ $h_rc == 3 ]] || die "h: host 2 took a lock that host 1 holds (lockprobe exit $h_rc, 3 = refused)"
/usr/bin/python3 "$h_probe" wait "$GL_WORK/mnt3/$h_file" "$h_dir/got" &
h_waiter=$!
# The waiter must still be waiting a second later: host 1 has not let go.
h_t=$(now_s)
until ! awk -v a="$h_t" -v b="$(now_s)" 'BEGIN { exit !(b - a < 1) }'; do
  [[ -e $h_dir/got ]] && die "h: host 3 got a lock that host 1 holds"
  sleep 0.1
done
h_release=$(now_s)
touch "$h_dir/release"
wait "$h_holder" || die "h: the lock holder on host 1's mount failed"
wait "$h_waiter" || die "h: the waiter on host 3's mount failed"
[[ -e $h_dir/got ]] || die "h: host 3's waiter ended without the lock"
h_handover=$(fdiff "$h_release" "$(now_s)")
h_rc=0
/usr/bin/python3 "$h_probe" try "$GL_WORK/mnt2/$h_file" || h_rc=$?
[[ $h_rc == 0 ]] || die "h: host 2 could not take the lock once it was free (lockprobe exit $h_rc)"
rm -f "$GL_WORK/mnt1/$h_file"
log "h: an OFD lock held through host 1's mount was refused through host 2's and waited for through host 3's, which got it ${h_handover} s after the release"
fault_figures+=("locks across mounts: refused on another host while held, handed over ${h_handover} s after the release")
phase_done "h (locks across the hosts' mounts)"

# --- no app process died of a signal (SIGBUS from a mapped file on the volume) ---------
for i in 1 2 3; do
  if grep -E 'killed by signal (7|11|6)' "${state[i]}/logs/app.log"; then
    die "node $i: an app process died of a signal (above)"
  fi
done
printf 'gluster fault figures:\n'
printf '  %s\n' "${fault_figures[@]}"
