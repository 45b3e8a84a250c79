#!/usr/bin/env bash
# Three artifact-repository nodes on one shared tokens + artifacts volume.
#
#   tests/multinode/test_multinode.sh ARTIFACT_TOKEN_BINARY
#
# Each node is its own nginx and its own `artifact-token serve` under
# spawn-fcgi, started with the shipped scripts (prepare-state.sh,
# start-app.sh, start-nginx.sh) inside a network namespace of its own. A hub
# namespace holds a bridge and is the only client: all test traffic is sent
# from inside it (`ip netns exec HUB curl ...`), to addresses in 192.0.2.0/24
# (TEST-NET-1, documentation only), so nothing can leave the machine. Where
# `ip netns add` is refused (no root, no CAP_SYS_ADMIN), the three nodes listen
# on three ports of 127.0.0.1 instead and the run says "FALLBACK: loopback"
# (MULTINODE_FORCE_LOOPBACK=1 forces that mode, to test it).
#
# Scenarios (issue 9):
#   a. issue on node 1, upload through node 2, download byte-identical through
#      node 3, revoke through node 3: the next upload is refused on every node;
#   b. concurrent issue/upload/revoke on a few shared scopes, each step on a
#      different random node: no lost, ghost or doubled tokens, no leftovers;
#   c. a ttl=5 token issued on node 1 is refused by every node within 1.5 s of
#      its expiry, without any revoke;
#   d. node 2's app is SIGKILLed while client loops run: the other nodes go on,
#      node 2's nginx keeps accepting uploads of live tokens, the app restarts,
#      and `artifact-token prune` leaves no orphan files.
# Exit status 0 only when every invariant held; figures are printed at the end.
#
# Environment, for running the same scenarios on a real shared filesystem
# (tests/gluster/test_gluster.sh does; unset, the three nodes share one local
# directory):
#   MULTINODE_TOKENS_DIRS, MULTINODE_ARTIFACTS_DIRS
#                 three absolute paths each, separated by spaces: node i's view
#                 of the tokens and artifacts volumes (e.g. node i's mount of
#                 one replicated volume). The test reads the volumes through
#                 node 1's. Network namespaces are then required (no fallback).
#   MULTINODE_C_TTL
#                 the ttl of scenario c's token (default 5): three uploads must
#                 fit in it before it expires, slower on a network filesystem
#   MULTINODE_D_TTL
#                 the ttl of scenario d's tokens (default 8): a loop's round
#                 (issue, upload, delete, revoke, three checks) must fit in it
#   MULTINODE_D_SECONDS
#                 how long scenario d's client loops start new rounds (default
#                 11): some must run while node 2's app is dead
#   MULTINODE_EXTRA
#                 a bash file sourced after scenario d, with the nodes running
#                 and this script's functions and variables in scope (more
#                 scenarios, e.g. faults of the shared filesystem).
set -euo pipefail

die() { echo "multinode: FAIL: $*" >&2; exit 1; }
log() { printf '[%6.2fs] %s\n' "$(elapsed)" "$*"; }

bin=${1:?usage: test_multinode.sh ARTIFACT_TOKEN_BINARY}
[[ -x $bin ]] || die "no executable artifact-token at $bin"
bin=$(readlink -f "$bin")
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
for tool in nginx spawn-fcgi htpasswd curl ip; do
  command -v "$tool" >/dev/null || die "$tool is not installed"
done

t0=$(date +%s.%N)
elapsed() { local now; now=$(date +%s.%N); awk -v a="$t0" -v b="$now" 'BEGIN { printf "%.2f", b - a }'; }
now_s() { date +%s.%N; }
# phase_done NAME: prints how long the phase that ends here took
phase_t0=$t0
phase_done() {
  local now
  now=$(now_s)
  printf 'phase %s: %s s\n' "$1" "$(awk -v a="$phase_t0" -v b="$now" 'BEGIN { printf "%.1f", b - a }')"
  phase_t0=$now
}
# fdiff A B: B - A in seconds, two decimals
fdiff() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }

# --- everything this run creates, undone by cleanup ------------------------
# the PID: unique among the runs on this machine, so parallel runs cannot
# collide on namespace names
id=$(printf '%x' $$)
work=""
namespaces=()      # created network namespaces (hub last)
hub_links=()       # veth ends created inside the hub
pids=()            # node processes (nginx masters, apps)
loop_pids=()       # client loops
mode=none

cleanup() {
  local rc=$?
  set +e
  trap - EXIT INT TERM
  local pid
  for pid in "${loop_pids[@]}" "${pids[@]}"; do
    [[ -n $pid ]] && kill -TERM "$pid" 2>/dev/null
  done
  for _ in $(seq 50); do
    local alive=0
    for pid in "${loop_pids[@]}" "${pids[@]}"; do
      [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null && alive=1
    done
    [[ $alive -eq 0 ]] && break
    sleep 0.1
  done
  for pid in "${loop_pids[@]}" "${pids[@]}"; do
    [[ -n $pid ]] && kill -KILL "$pid" 2>/dev/null
  done
  wait 2>/dev/null
  if [[ $mode == netns && ${#namespaces[@]} -gt 0 ]]; then
    local hub_ns=${namespaces[-1]} link
    for link in "${hub_links[@]}"; do ip -n "$hub_ns" link del "$link" 2>/dev/null; done
    local ns
    for ns in "${namespaces[@]}"; do ip netns del "$ns" 2>/dev/null; done
  fi
  if [[ -n $work && -d $work ]]; then
    if [[ $rc -ne 0 ]]; then
      local f
      for f in "$work"/node*/logs/error.log "$work"/node*/logs/app.log "$work"/curl.err; do
        [[ -s $f ]] || continue
        echo "---- tail of ${f#"$work"/}" >&2
        tail -n 15 "$f" >&2
      done
    fi
    rm -rf "$work"
  fi
  if [[ $rc -eq 0 ]]; then echo "multinode: PASS"; else echo "multinode: FAIL (exit $rc)" >&2; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

work=$(mktemp -d /tmp/multinode.XXXXXX)
chmod 0755 "$work"   # the nginx workers and the app (www-data) traverse it
mkdir -p "$work/tmp" "$work/stats"
tokens=$work/shared/tokens
artifacts=$work/shared/artifacts
mkdir -p "$work/shared"
chmod 0755 "$work/shared"
# node i's view of the two volumes: the shared local directory, or the paths given
node_tokens=("" "$tokens" "$tokens" "$tokens")
node_artifacts=("" "$artifacts" "$artifacts" "$artifacts")
if [[ -n ${MULTINODE_TOKENS_DIRS:-} || -n ${MULTINODE_ARTIFACTS_DIRS:-} ]]; then
  read -r -a given <<<"${MULTINODE_TOKENS_DIRS:-}"
  [[ ${#given[@]} -eq 3 ]] || die "MULTINODE_TOKENS_DIRS must name three directories"
  node_tokens=("" "${given[@]}")
  read -r -a given <<<"${MULTINODE_ARTIFACTS_DIRS:-}"
  [[ ${#given[@]} -eq 3 ]] || die "MULTINODE_ARTIFACTS_DIRS must name three directories"
  node_artifacts=("" "${given[@]}")
  for i in 1 2 3; do
    [[ ${node_tokens[i]} == /* && ${node_artifacts[i]} == /* ]] || die "the volume paths must be absolute"
    mkdir -p "${node_tokens[i]}" "${node_artifacts[i]}"
  done
  tokens=${node_tokens[1]} artifacts=${node_artifacts[1]}
  [[ ${MULTINODE_FORCE_LOOPBACK:-0} != 1 ]] || die "MULTINODE_FORCE_LOOPBACK=1 with volumes given per node"
  require_netns=1
fi
violations=$work/violations
: >"$violations"
# violation TEXT: recorded by any client loop; the run fails at the end.
violation() { printf '%s\n' "$*" >>"$violations"; echo "multinode: VIOLATION: $*" >&2; }

# --- the network: hub namespace with a bridge, one namespace per node --------
ns_hub=mn$id-hub
ns_node=("" "mn$id-n1" "mn$id-n2" "mn$id-n3")
addr=("" "" "" "")
client=()

if [[ ${MULTINODE_FORCE_LOOPBACK:-0} != 1 ]] && ip netns add "$ns_hub" 2>/dev/null; then
  mode=netns
  namespaces=("$ns_hub")   # the hub stays last: cleanup deletes its veths first
  ip -n "$ns_hub" link set lo up
  ip -n "$ns_hub" link add br0 type bridge
  ip -n "$ns_hub" addr add 192.0.2.1/24 dev br0
  ip -n "$ns_hub" link set br0 up
  for i in 1 2 3; do
    ip netns add "${ns_node[i]}"
    namespaces=("${ns_node[i]}" "${namespaces[@]}")
    ip -n "$ns_hub" link add "h$i" type veth peer name eth0 netns "${ns_node[i]}"
    hub_links+=("h$i")
    ip -n "$ns_hub" link set "h$i" master br0
    ip -n "$ns_hub" link set "h$i" up
    ip -n "${ns_node[i]}" link set lo up
    ip -n "${ns_node[i]}" addr add "192.0.2.1$i/24" dev eth0
    ip -n "${ns_node[i]}" link set eth0 up
    addr[i]=192.0.2.1$i:8080
  done
  client=(ip netns exec "$ns_hub")

  # Before any traffic: the namespaces and routes must be what we built, and
  # nothing may have a default route out of the test network.
  listed=$(ip netns list)
  for ns in "${namespaces[@]}"; do
    grep -qw -- "$ns" <<<"$listed" || die "namespace $ns does not exist after creation"
  done
  [[ -z $(ip -n "$ns_hub" route show default) ]] || die "hub namespace has a default route"
  for i in 1 2 3; do
    ip -n "$ns_hub" route get "192.0.2.1$i" | grep -q 'dev br0' ||
      die "hub has no route to 192.0.2.1$i via br0"
    ip -n "${ns_node[i]}" route get 192.0.2.1 | grep -q 'dev eth0' ||
      die "node $i has no route to the hub via eth0"
    [[ -z $(ip -n "${ns_node[i]}" route show default) ]] || die "node $i has a default route"
  done
  log "network: namespaces $ns_hub (client, bridge 192.0.2.1) + ${ns_node[*]:1} (192.0.2.11-13:8080)"
else
  [[ -z ${require_netns:-} ]] || die "ip netns add $ns_hub refused: per-node volumes need network namespaces"
  mode=loopback
  echo "FALLBACK: loopback (ip netns add refused or MULTINODE_FORCE_LOOPBACK=1: three nodes on 127.0.0.1 ports, no network isolation)"
  base=$((20000 + RANDOM % 20000))
  for i in 1 2 3; do addr[i]=127.0.0.1:$((base + i)); done
fi

# in_node I CMD...: runs CMD in node I's namespace (exec, so $! is CMD's pid)
in_node() {
  local i=$1; shift
  if [[ $mode == netns ]]; then exec ip netns exec "${ns_node[i]}" "$@"; else exec "$@"; fi
}

# --- the nodes ---------------------------------------------------------------
master_pw=$(head -c 18 /dev/urandom | base64 | tr '+/' '-_')
printf 'user = "ci:%s"\n' "$master_pw" >"$work/master.curlrc"
chmod 0600 "$work/master.curlrc"
state=("" "$work/node1" "$work/node2" "$work/node3")
app_pid=("" "" "" "")

export ARTIFACT_BIN=$bin
export ARTIFACT_TOKEN_RATE=100000r/s ARTIFACT_TOKEN_BURST=100000

for i in 1 2 3; do
  # in the node's namespace: `nginx -t` binds the node's address
  (ARTIFACT_TOKENS_DIR=${node_tokens[i]} ARTIFACT_ARTIFACTS_DIR=${node_artifacts[i]} \
   ARTIFACT_LISTEN=${addr[i]} in_node "$i" "$repo/scripts/prepare-state.sh" "${state[i]}") >"$work/tmp/prepare$i.out" ||
    die "prepare-state.sh failed for node $i"
  read -r _ run_group <"$work/tmp/prepare$i.out"
  touch "${state[i]}/masters"
  chmod 0640 "${state[i]}/masters"
  [[ $(id -u) -eq 0 ]] && chown "root:$run_group" "${state[i]}/masters"
  printf '%s\n' "$master_pw" | htpasswd -iB "${state[i]}/masters" ci 2>/dev/null
done

# http OUT CURL_ARGS...: prints the status code (000 when no answer); the
# request is sent from the hub namespace.
http() {
  local out=$1 code; shift
  code=$("${client[@]}" curl -sS --max-time 10 -o "$out" -w '%{http_code}' "$@" 2>>"$work/curl.err") || true
  printf '%s' "${code:-000}"
}

start_app() {
  local i=$1 sock=${state[$1]}/run/token.sock
  rm -f "$sock"
  (ARTIFACT_TOKENS_DIR=${node_tokens[i]} ARTIFACT_ARTIFACTS_DIR=${node_artifacts[i]} \
   in_node "$i" "$repo/scripts/start-app.sh" "${state[i]}") >>"${state[i]}/logs/app.log" 2>&1 &
  app_pid[i]=$!
  pids+=("$!")
  for _ in $(seq 100); do
    [[ -S $sock ]] && return 0
    kill -0 "${app_pid[i]}" 2>/dev/null || die "node $i: the app exited at start (see its app.log)"
    sleep 0.1
  done
  die "node $i: no app socket after 10 s"
}

wait_healthy() {
  local i=$1 code=000
  for _ in $(seq 100); do
    code=$(http /dev/null "http://${addr[i]}/token/healthz")
    [[ $code == 200 ]] && return 0
    sleep 0.1
  done
  die "node $i: GET /token/healthz answered $code, not 200, for 10 s"
}

for i in 1 2 3; do
  start_app "$i"
  (in_node "$i" "$repo/scripts/start-nginx.sh" "${state[i]}") >>"${state[i]}/logs/nginx.out" 2>&1 &
  pids+=("$!")
done
for i in 1 2 3; do wait_healthy "$i"; done
log "three nodes healthy (mode: $mode)"
phase_done "nodes up"

# --- client operations -------------------------------------------------------
# issue NODE SCOPE TTL [REQUEST_ID]: sets ISSUE_CODE, ISSUE_USER, ISSUE_PASS
issue() {
  local body extra=""
  [[ -n ${4-} ]] && extra=", \"request_id\": \"$4\""
  body=$(mktemp "$work/tmp/issue.XXXXXX")
  ISSUE_CODE=$(http "$body" -K "$work/master.curlrc" -H 'Content-Type: application/json' \
    --data "{\"scope\": \"$2\", \"ttl\": $3$extra}" "http://${addr[$1]}/token")
  ISSUE_USER="" ISSUE_PASS=""
  local json
  json=$(<"$body")
  rm -f "$body"
  if [[ $ISSUE_CODE == 201 ]]; then
    [[ $json =~ \"username\":\ *\"([^\"]+)\" ]] && ISSUE_USER=${BASH_REMATCH[1]}
    [[ $json =~ \"password\":\ *\"([^\"]+)\" ]] && ISSUE_PASS=${BASH_REMATCH[1]}
    if [[ -z $ISSUE_USER || -z $ISSUE_PASS ]]; then
      violation "issue on node $1 answered 201 without username/password: $json"
      ISSUE_CODE=bad
    fi
  fi
}
# revoke NODE USER [QUERY]: prints the status code. The token lifecycle is
# under test here, so by default without sealing the build (?seal=false: a
# plain 204 where the app seals builds on revoke; ignored where it does not).
revoke() { http /dev/null -K "$work/master.curlrc" -X DELETE "http://${addr[$1]}/token/$2${3-?seal=false}"; }
# put NODE USER PASS FILE PATH: prints the status code of a WebDAV PUT
put() { http /dev/null -u "$2:$3" -T "$4" "http://${addr[$1]}/$5"; }
# del NODE USER PASS PATH: prints the status code of a WebDAV DELETE
del() { http /dev/null -u "$2:$3" -X DELETE "http://${addr[$1]}/$4"; }

payload=$work/payload.bin
head -c 262144 /dev/urandom >"$payload"
small=$work/small.bin
head -c 1024 /dev/urandom >"$small"

# --- metrics: only from loopback ---------------------------------------------
# The shipped site allows /token/metrics from 127.0.0.1 and ::1 only; the hub
# namespace is another host as far as each node's nginx can tell.
if [[ $mode == netns ]]; then
  code=$(http /dev/null "http://${addr[1]}/token/metrics")
  [[ $code == 403 ]] || die "/token/metrics from another host answered $code, expected 403"
  log "metrics: 403 from the hub namespace"
fi

# --- a. issue on 1, upload via 2, download via 3, revoke via 3 ---------------
scope=mn/a/linux/1
issue 1 "$scope" 600
[[ $ISSUE_CODE == 201 ]] || die "a: issue on node 1 answered $ISSUE_CODE"
user=$ISSUE_USER pass=$ISSUE_PASS
code=$(put 2 "$user" "$pass" "$payload" "$scope/payload.bin")
[[ $code == 201 ]] || die "a: upload through node 2 answered $code, not 201"
code=$(http "$work/tmp/download.bin" "http://${addr[3]}/$scope/payload.bin")
[[ $code == 200 ]] || die "a: download through node 3 answered $code"
cmp -s "$payload" "$work/tmp/download.bin" || die "a: the download through node 3 differs from the upload"
code=$(revoke 3 "$user" "")   # what a master sends: the app's default
[[ $code =~ ^(200|202|204)$ ]] || die "a: revoke through node 3 answered $code, not 204 (or 200/202 when sealing)"
for i in 1 2 3; do
  code=$(put "$i" "$user" "$pass" "$small" "$scope/after-revoke.bin")
  [[ $code == 403 ]] || die "a: upload through node $i after the revoke answered $code, not 403"
done
code=$(revoke 1 "$user")
[[ $code == 404 ]] || die "a: a second revoke (node 1) answered $code, not 404"
log "a: issue@1 upload@2 download@3 (byte-identical) revoke@3; refused on all three nodes"
phase_done a

# --- client loops (b and d) --------------------------------------------------
# client_loop NAME SCOPE_PREFIX NSCOPES TTL DEADLINE TOLERATE_DOWN
# Each iteration: issue on a random node, upload via another, delete the file
# (so the scope stays unpublished and can be issued again), revoke via the
# third (sometimes racing a second revoke on another node), then check that
# the revoked token is refused by every node.
client_loop() {
  local name=$1 prefix=$2 nscopes=$3 ttl=$4 deadline=$5 tolerate=$6
  local issued=0 conflicts=0 revokes=0 revoke404=0 uploads=0 down=0 races=0 iters=0
  local up_after_kill=0 issued_down=0 revoked_down=0
  local n_i n_u n_r s scope code line c1 c2 f
  f=$work/tmp/$name.bin
  head -c 512 /dev/urandom >"$f"
  while (( $(date +%s) < deadline && iters < 400 )); do
    iters=$((iters + 1))
    s=$((RANDOM % nscopes + 1))
    scope=$prefix/$s
    n_i=$((RANDOM % 3 + 1))
    n_u=$(( (n_i + RANDOM % 2) % 3 + 1 ))
    n_r=$(( 6 - n_i - n_u ))
    issue "$n_i" "$scope" "$ttl"
    case $ISSUE_CODE in
      201) issued=$((issued + 1))
        if node2_down; then issued_down=$((issued_down + 1)); fi ;;
      409) conflicts=$((conflicts + 1)); sleep 0.0$((RANDOM % 5)); continue ;;
      502|503|504|000)
        if [[ $tolerate == 1 ]]; then down=$((down + 1)); continue; fi
        violation "$name: issue on node $n_i answered $ISSUE_CODE"; continue ;;
      *) violation "$name: issue of $scope on node $n_i answered $ISSUE_CODE"; continue ;;
    esac
    local u=$ISSUE_USER p=$ISSUE_PASS
    # While we hold the scope, its file is ours alone: exactly one line, ours.
    if [[ -f $tokens/$scope.htpasswd ]]; then
      local lines
      lines=$(wc -l <"$tokens/$scope.htpasswd")
      line=$(head -n 1 "$tokens/$scope.htpasswd")
      [[ $lines -eq 1 ]] || violation "$name: $scope.htpasswd has $lines lines while $u holds it"
      [[ ${line%%:*} == "$u" ]] || violation "$name: $scope.htpasswd names ${line%%:*}, not the holder $u"
    else
      violation "$name: $scope.htpasswd missing right after $u was issued (lost token)"
    fi
    code=$(put "$n_u" "$u" "$p" "$f" "$scope/f.bin")
    case $code in
      201|204) uploads=$((uploads + 1))
        if [[ $n_u == 2 ]] && node2_down; then up_after_kill=$((up_after_kill + 1)); fi ;;
      401) violation "$name: upload of live token $u via node $n_u got 401: another token holds $scope (doubled)" ;;
      403) violation "$name: upload of live token $u via node $n_u got 403: token lost" ;;
      *) violation "$name: upload of $u via node $n_u answered $code" ;;
    esac
    code=$(del "$n_r" "$u" "$p" "$scope/f.bin")
    [[ $code == 204 || $code == 404 ]] || violation "$name: delete of $scope/f.bin via node $n_r answered $code"
    if (( RANDOM % 3 == 0 )); then
      # two revokes racing on two nodes: exactly one may succeed
      revoke "$n_r" "$u" >"$work/tmp/$name.r1" &
      local rp=$!
      c2=$(revoke "$n_i" "$u")
      wait "$rp" || true
      c1=$(<"$work/tmp/$name.r1")
      races=$((races + 1))
      if [[ "$c1 $c2" == "204 404" || "$c1 $c2" == "404 204" ]]; then
        revokes=$((revokes + 1))
      elif [[ $tolerate == 1 && "$c1 $c2" =~ (50[234]|000) ]]; then
        # one side was the dead node; the token must still be gone exactly once
        if [[ $c1 == 204 || $c2 == 204 ]]; then
          revokes=$((revokes + 1))
        else
          code=$(revoke_somewhere "$u")
          case $code in
            204) revokes=$((revokes + 1)) ;;
            404) revoke404=$((revoke404 + 1)) ;;
            *) violation "$name: concurrent revoke of $u: $c1/$c2, retry $code" ;;
          esac
        fi
      else
        violation "$name: concurrent revokes of $u on nodes $n_r/$n_i answered $c1/$c2, not one 204 and one 404"
      fi
    else
      code=$(revoke "$n_r" "$u")
      if [[ $tolerate == 1 && $code =~ ^(50[234]|000)$ ]]; then
        down=$((down + 1))
        code=$(revoke_somewhere "$u")
      fi
      case $code in
        204) revokes=$((revokes + 1)) ;;
        404) if [[ $tolerate == 1 ]]; then revoke404=$((revoke404 + 1))
             else violation "$name: revoke of live token $u via node $n_r answered 404 (lost)"; fi ;;
        *) violation "$name: revoke of $u via node $n_r answered $code" ;;
      esac
    fi
    if node2_down; then revoked_down=$((revoked_down + 1)); fi
    # No ghost: the revoked token is refused on every node at once.
    local k
    for k in 1 2 3; do
      code=$(put "$k" "$u" "$p" "$f" "$scope/ghost.bin")
      case $code in
        401|403) ;;
        *) violation "$name: revoked token $u still accepted (or $code) by node $k" ;;
      esac
    done
  done
  printf 'iters=%d issued=%d conflicts=%d revokes=%d revoke404=%d uploads=%d down=%d races=%d up_after_kill=%d issued_down=%d revoked_down=%d\n' \
    "$iters" "$issued" "$conflicts" "$revokes" "$revoke404" "$uploads" "$down" "$races" "$up_after_kill" \
    "$issued_down" "$revoked_down" \
    >"$work/stats/$name"
}
# node2_down: between the kill of node 2's app and its restart
node2_down() { [[ -e $work/killed && ! -e $work/restarted ]]; }
# revoke_somewhere USER: revoke via the first node whose app answers
revoke_somewhere() {
  local k code=000
  for k in 1 3 2; do
    code=$(revoke "$k" "$1")
    [[ $code =~ ^(50[234]|000)$ ]] || break
  done
  printf '%s' "$code"
}

# sum KEY PREFIX: total of KEY over the stats files of loops named PREFIX*
sum() {
  local total=0 f v
  for f in "$work/stats/$2"*; do
    v=$(tr ' ' '\n' <"$f" | awk -F= -v k="$1" '$1 == k { print $2 }')
    total=$((total + v))
  done
  echo "$total"
}

# no_leftovers WHAT: no temp files, no scope files, no records, no files in
# scopes but the stamp a build gets when it is opened (.created) and the
# record its seal writes (.build.json)
leftovers() { find "$tokens" \( -name '.tmp-*' -o -name '*.htpasswd' -o -path "$tokens/.by-user/*" \) -print; }
no_leftovers() {
  local left
  left=$(leftovers)
  [[ -z $left ]] || die "$1: files left in the tokens volume: $(head -n 5 <<<"$left" | tr '\n' ' ')"
  left=$(find "$artifacts" -type f ! -name .created ! -name .build.json ! -path "$artifacts/mn/a/*" ! -path "$artifacts/mn/c/*" -print)
  [[ -z $left ]] || die "$1: files left in the artifacts volume: $(head -n 5 <<<"$left" | tr '\n' ' ')"
}

wait_loops() {
  local pid
  for pid in "${loop_pids[@]}"; do wait "$pid" || die "a client loop failed (exit $?)"; done
  loop_pids=()
}

# --- b. concurrent issue/revoke on the same few scopes ----------------------
b_loops=6 b_seconds=12
deadline=$(( $(date +%s) + b_seconds ))
for l in $(seq "$b_loops"); do
  client_loop "b$l" mn/b/shared 3 60 "$deadline" 0 &
  loop_pids+=("$!")
done
wait_loops
[[ -s $violations ]] && die "b: $(wc -l <"$violations") invariant violations (first: $(head -n 1 "$violations"))"
b_issued=$(sum issued b) b_conflicts=$(sum conflicts b) b_revokes=$(sum revokes b)
b_races=$(sum races b) b_uploads=$(sum uploads b)
[[ $b_issued -gt 0 && $b_conflicts -gt 0 ]] || die "b: no contention (issued $b_issued, conflicts $b_conflicts)"
[[ $b_issued -eq $b_revokes ]] || die "b: $b_issued tokens issued but $b_revokes revoked"
no_leftovers b
log "b: $b_loops loops x ${b_seconds}s on 3 scopes: $b_issued issued (201), $b_conflicts conflicts (409), $b_revokes revoked (204, $b_races racing pairs), $b_uploads uploads; no leftovers"
phase_done b

# --- c. expiry on every node, no revoke --------------------------------------
c_ttl=${MULTINODE_C_TTL:-5}
[[ $c_ttl =~ ^[1-9][0-9]?$ ]] || die "MULTINODE_C_TTL must be 1..99 seconds"
scope=mn/c/linux/1
issue 1 "$scope" "$c_ttl"
[[ $ISSUE_CODE == 201 ]] || die "c: issue on node 1 answered $ISSUE_CODE"
user=$ISSUE_USER pass=$ISSUE_PASS
line=$(<"$tokens/$scope.htpasswd")
[[ $line =~ expires=([0-9]+) ]] || die "c: no expires= in $scope.htpasswd"
expires=${BASH_REMATCH[1]}
for i in 1 2 3; do
  code=$(put "$i" "$user" "$pass" "$small" "$scope/f.bin")
  [[ $code == 201 || $code == 204 ]] || die "c: the fresh ttl=$c_ttl token was refused ($code) by node $i"
done
poll_end=$((expires + 5))
# c_poll NODE: uploads through NODE until it refuses; prints when the refused
# request was sent and when its answer came, "late" past poll_end, or
# "status CODE". One poller per node, in parallel: a slow answer from one
# node does not delay the others.
c_poll() {
  local t code
  while :; do
    t=$(now_s)
    code=$(put "$1" "$user" "$pass" "$small" "$scope/f$1.bin")
    case $code in
      201|204) (( $(date +%s) <= poll_end )) || { echo late; return; }; sleep 0.05 ;;
      401|403) echo "$t $(now_s)"; return ;;
      *) echo "status $code"; return ;;
    esac
  done
}
c_pids=()
for i in 1 2 3; do
  c_poll "$i" >"$work/tmp/c$i" &
  c_pids+=("$!")
done
for pid in "${c_pids[@]}"; do wait "$pid" || true; done
refused=("" "" "" "")
for i in 1 2 3; do
  refused[i]=$(<"$work/tmp/c$i")
  [[ ${refused[i]} != late ]] || die "c: node $i still accepted the token 5 s after its expiry"
  [[ ${refused[i]} != status* ]] || die "c: node $i answered ${refused[i]#status } while polling"
done
# The latency counts from the expiry to the sending of the first refused
# request (the one before it was accepted); a refusal answered before the
# expiry would be an early one.
lat=("" "" "" "")
for i in 1 2 3; do
  read -r sent answered <<<"${refused[i]}"
  lat[i]=$(fdiff "$expires" "$sent")
  awk -v l="${lat[i]}" 'BEGIN { exit !(l <= 1.5) }' ||
    die "c: node $i refused the token ${lat[i]} s after its expiry (> 1.5 s)"
  early=$(fdiff "$expires" "$answered")
  awk -v l="$early" 'BEGIN { exit !(l >= -0.2) }' ||
    die "c: node $i refused the token $early s before its expiry"
done
log "c: ttl=$c_ttl token issued on node 1 refused after expiry by node 1 in ${lat[1]} s, node 2 in ${lat[2]} s, node 3 in ${lat[3]} s"
phase_done c

# --- d. node 2's app killed mid-operation ------------------------------------
d_loops=6 d_ttl=${MULTINODE_D_TTL:-8} d_seconds=${MULTINODE_D_SECONDS:-11}
[[ $d_ttl =~ ^[1-9][0-9]?$ ]] || die "MULTINODE_D_TTL must be 1..99 seconds"
[[ $d_seconds =~ ^[1-9][0-9]?$ ]] || die "MULTINODE_D_SECONDS must be 1..99 seconds"
d_start=$(date +%s)
deadline=$((d_start + d_seconds))
for l in $(seq "$d_loops"); do
  client_loop "d$l" mn/d/shared 4 "$d_ttl" "$deadline" 1 &
  loop_pids+=("$!")
done
# A token issued by node 2 just before its app dies: who expires it?
issue 2 mn/d/orphan/1 4
[[ $ISSUE_CODE == 201 ]] || die "d: issue on node 2 answered $ISSUE_CODE"
orph_user=$ISSUE_USER orph_pass=$ISSUE_PASS
[[ $(<"$tokens/mn/d/orphan/1.htpasswd") =~ expires=([0-9]+) ]] || die "d: no expires= in the orphan's file"
orph_expires=${BASH_REMATCH[1]}
sleep 2
# The kill lands in the middle of a burst of issues sent to node 2.
burst_pids=()
for k in 1 2 3 4 5 6; do
  ( issue 2 "mn/d/burst/$k" "$d_ttl"; echo "$ISSUE_CODE $ISSUE_USER" >"$work/tmp/burst$k" ) &
  burst_pids+=("$!")
done
# kill as soon as node 2's app has answered the first of them
for _ in $(seq 400); do
  grep -q 'scopes=mn/d/burst/' "${state[2]}/logs/app.log" && break
  sleep 0.005
done
kill -KILL "${app_pid[2]}"
wait "${app_pid[2]}" 2>/dev/null || true
touch "$work/killed"
kill_time=$(date +%s)
for pid in "${burst_pids[@]}"; do wait "$pid" || true; done
burst_ok=0 burst_cut=0
# The completed ones are revoked at once, side by side: one after the other,
# under the load of the loops, the last could find its token already expired
# (404: no live token) before its turn.
revoke_pids=()
for k in 1 2 3 4 5 6; do
  read -r code user <"$work/tmp/burst$k"
  if [[ $code == 201 ]]; then
    burst_ok=$((burst_ok + 1))
    ( echo "$(revoke 1 "$user") $user" >"$work/tmp/burst-revoke$k" ) &
    revoke_pids+=("$!")
  else
    [[ $code =~ ^(50[234]|000)$ ]] || die "d: an issue cut by the kill answered $code"
    burst_cut=$((burst_cut + 1))
  fi
done
for pid in "${revoke_pids[@]}"; do wait "$pid" || true; done
for k in 1 2 3 4 5 6; do
  [[ -f $work/tmp/burst-revoke$k ]] || continue
  read -r code user <"$work/tmp/burst-revoke$k"
  [[ $code == 204 ]] || die "d: revoke (node 1) of $user, issued by node 2 just before the kill, answered $code"
done
log "d: node 2's app (pid ${app_pid[2]}) SIGKILLed while $d_loops loops run and 6 issues were in flight to it ($burst_ok answered 201 and were revoked via node 1, $burst_cut cut: 5xx)"
code=$(http /dev/null "http://${addr[2]}/token/healthz")
[[ $code =~ ^50[234]$ ]] || die "d: node 2's /token/healthz answered $code with its app dead, not 502/503/504"
# Node 2's nginx serves uploads for a live token without its app.
issue 1 mn/d/live/1 60
[[ $ISSUE_CODE == 201 ]] || die "d: issue on node 1 with node 2 down answered $ISSUE_CODE"
code=$(put 2 "$ISSUE_USER" "$ISSUE_PASS" "$small" mn/d/live/1/f.bin)
[[ $code == 201 ]] || die "d: upload through node 2 (app dead) answered $code, not 201"
code=$(del 2 "$ISSUE_USER" "$ISSUE_PASS" mn/d/live/1/f.bin)
[[ $code == 204 ]] || die "d: delete through node 2 (app dead) answered $code"
code=$(revoke 3 "$ISSUE_USER")
[[ $code == 204 ]] || die "d: revoke through node 3 with node 2 down answered $code"
code=$(put 2 "$ISSUE_USER" "$ISSUE_PASS" "$small" mn/d/live/1/f.bin)
[[ $code == 403 ]] || die "d: node 2 (app dead) accepted ($code) a token revoked through node 3"
# The token node 2 issued has expired meanwhile; only node 2 knew its expiry.
sleep_until=$((orph_expires + 2))
while (( $(date +%s) < sleep_until )); do sleep 0.1; done
code=$(put 1 "$orph_user" "$orph_pass" "$small" mn/d/orphan/1/f.bin)
orphan_status="refused ($code) by node 1 2 s after its expiry"
if [[ $code == 201 || $code == 204 ]]; then
  orphan_status="STILL ACCEPTED by node 1 2 s after its expiry (its issuer's app is dead; the other apps sweep every 60 s)"
  code=$(del 1 "$orph_user" "$orph_pass" mn/d/orphan/1/f.bin)
fi
log "d: token issued by node 2 before the kill: $orphan_status"
sleep 1
start_app 2
wait_healthy 2
touch "$work/restarted"
log "d: node 2's app restarted $(( $(date +%s) - kill_time )) s after the kill"
wait_loops
[[ -s $violations ]] && die "d: $(wc -l <"$violations") invariant violations (first: $(head -n 1 "$violations"))"
d_issued=$(sum issued d) d_conflicts=$(sum conflicts d) d_revokes=$(sum revokes d)
d_down=$(sum down d) d_404=$(sum revoke404 d) d_up2=$(sum up_after_kill d)
d_issued_down=$(sum issued_down d) d_revoked_down=$(sum revoked_down d)
[[ $d_issued -eq $((d_revokes + d_404)) ]] || die "d: $d_issued issued, $d_revokes + $d_404 revoked"
[[ $d_issued_down -gt 0 && $d_revoked_down -gt 0 ]] ||
  die "d: while node 2's app was dead the other nodes issued $d_issued_down and revoked $d_revoked_down tokens"
[[ $d_down -gt 0 ]] || die "d: no request reached node 2's dead app: the kill was not exercised"
# Leftovers of the kill (a token issued while the app died, a temp file) are
# harmless once expired; prune removes them.
leftover_until=$((kill_time + d_ttl + 1))
while (( $(date +%s) < leftover_until )); do sleep 0.2; done
before=$(leftovers | grep -c . || true)
prune_out=$("$bin" prune --config "${state[1]}/artifact-token.conf" --stale-after 1) ||
  die "d: artifact-token prune failed"
pruned=$(grep -vc '^nothing to prune' <<<"$prune_out" || true)
no_leftovers d
log "d: $d_issued issued, $d_conflicts conflicts, $d_revokes revoked; while node 2's app was dead: nodes 1+3 issued $d_issued_down and revoked $d_revoked_down, node 2 answered $d_down /token requests with 5xx and took $d_up2 uploads; prune removed $pruned of $before file(s) left"
phase_done d

# --- more scenarios, e.g. faults of a real shared filesystem -------------------
if [[ -n ${MULTINODE_EXTRA:-} ]]; then
  [[ -f $MULTINODE_EXTRA ]] || die "MULTINODE_EXTRA: no file $MULTINODE_EXTRA"
  # shellcheck disable=SC1090 # chosen by the caller
  source "$MULTINODE_EXTRA"
fi

# --- figures -------------------------------------------------------------------
total_issued=$((b_issued + d_issued + 4 + burst_ok))
cat <<EOF

multinode figures (mode: $mode, $(elapsed) s)
  tokens issued (201)          : $total_issued   (b: $b_issued, d loops: $d_issued, d burst: $burst_ok, single tokens of a, c, d: 4)
  conflicts (409)              : $((b_conflicts + d_conflicts))   (b: $b_conflicts, d: $d_conflicts)
  revokes (204)                : $((b_revokes + d_revokes + 2 + burst_ok))   (racing revoke pairs in b: $b_races, exactly one 204 each)
  kill survived                : yes; with node 2's app dead nodes 1+3 issued $d_issued_down and revoked $d_revoked_down tokens,
                                 node 2's nginx took $d_up2 loop uploads (+1 checked) and answered $d_down /token calls with 5xx;
                                 $d_404 revokes found the token already gone after a 5xx
  expiry latency (ttl=$c_ttl, node 1 issued): node1 ${lat[1]} s, node2 ${lat[2]} s, node3 ${lat[3]} s
  token of the killed node     : $orphan_status
  issues cut by the kill       : $burst_cut of 6 in flight ($burst_ok completed with 201)
  prune after the kill         : $before leftover file(s) after the ttl, prune removed $pruned: $(tr '\n' ';' <<<"$prune_out")
EOF
