#!/usr/bin/env bash
# The documentation, kept true (CTest: docs):
#  - README's Quick start names real make targets, and `make run` is started
#    the way make starts it (the last line of `make -n run`) on a free
#    loopback port with a state directory of its own;
#  - every shell block of README's "How a build uses it" runs verbatim, in one
#    shell, against it (only the port and the master password replaced), and
#    the build it describes is there afterwards: uploaded, sealed, latest;
#  - Ctrl-C (SIGINT to the run's process group, as a terminal sends it) stops
#    both servers and the run exits 0;
#  - every relative link in README.md and docs/*.md leads to an existing file
#    and, with a #fragment, to an existing heading.
#
# Usage: doc_test.sh BUILD_DIR   (the build directory that holds artifact-token)
set -euo pipefail

src=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
build=$(cd "${1:?usage: doc_test.sh BUILD_DIR}" && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/artifact-doc-test.XXXXXX")
chmod 0755 "$work"  # as root, the servers run as ARTIFACT_RUN_USER and must reach the state
run_pid=
fail() { echo "doc_test: FAIL: $*" >&2; exit 1; }
ok() { echo "doc_test: ok: $*"; }
# shellcheck disable=SC2317  # reached through the trap
cleanup() {
  if [[ -n $run_pid ]] && kill -0 "$run_pid" 2>/dev/null; then
    kill -TERM -- "-$run_pid" 2>/dev/null || true
    wait "$run_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# --- links ------------------------------------------------------------------
python3 - "$src" <<'PY'
import os, re, sys
src = sys.argv[1]

def slugs(path):
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to '-'."""
    seen, out = {}, set()
    text = re.sub(r'^```.*?^```', '', open(path).read(), flags=re.S | re.M)
    for title in re.findall(r'^#{1,6} +(.+?) *#*$', text, flags=re.M):
        slug = re.sub(r'[^\w\- ]', '', title.strip().lower()).replace(' ', '-')
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f'{slug}-{n}')
    return out

pages = ['README.md'] + sorted('docs/' + f for f in os.listdir(os.path.join(src, 'docs')) if f.endswith('.md'))
bad, checked = [], 0
for page in pages:
    text = open(os.path.join(src, page)).read()
    text = re.sub(r'^```.*?^```', '', text, flags=re.S | re.M)   # code blocks
    text = re.sub(r'`[^`\n]*`', '', text)                          # inline code
    for target in re.findall(r'\]\(([^)\s]+)\)', text):
        if re.match(r'[a-z]+:', target):
            continue  # http:, https:, mailto:, file:
        checked += 1
        path, _, fragment = target.partition('#')
        resolved = os.path.normpath(os.path.join(src, os.path.dirname(page), path)) if path else os.path.join(src, page)
        rel = os.path.relpath(resolved, src)
        if not os.path.exists(resolved):
            bad.append(f'{page}: {target}: no such file {rel}')
        elif fragment and resolved.endswith('.md') and fragment not in slugs(resolved):
            bad.append(f'{page}: {target}: no heading #{fragment} in {rel}')
for b in bad:
    print('doc_test: FAIL: broken link ' + b, file=sys.stderr)
if bad:
    sys.exit(1)
print(f'doc_test: ok: {checked} relative links in {len(pages)} pages resolve')
PY

# --- the README's blocks ----------------------------------------------------
# The fenced sh blocks of one README section, each ending in a blank line.
section_blocks() {
  awk -v want="## $1" '
    /^## / { inside = ($0 == want) }
    inside && /^```sh$/ { fence = 1; next }
    inside && fence && /^```$/ { fence = 0; print ""; next }
    inside && fence { print }' "$src/README.md"
}

quick=$(section_blocks "Quick start")
[[ -n $quick ]] || fail "README has no sh block in its Quick start"
commands=$(sed -e 's/#.*//' -e 's/[[:space:]]*$//' -e '/^$/d' <<<"$quick")
[[ $commands == $'make run\nmake test' ]] || fail "README's Quick start is not 'make run' and 'make test': $commands"

cd "$src"
run_cmd=$(make -s -n run BUILD_DIR="$build" | tail -n 1)
[[ $run_cmd == "ARTIFACT_BIN=$build/artifact-token scripts/run.sh" ]] ||
  fail "the last line of 'make -n run' is not the run script: $run_cmd"
make -s -n test BUILD_DIR="$build" >/dev/null || fail "'make test' is not a target"

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
password=doc-test-$RANDOM$RANDOM
# Job control: the run gets a process group of its own, as in a terminal, and
# does not inherit an ignored SIGINT (what a background job without it gets).
set -m
ARTIFACT_LISTEN=127.0.0.1:$port ARTIFACT_STATE_DIR=$work/state ARTIFACT_MASTER_PASSWORD=$password \
  bash -c "$run_cmd" >"$work/run.log" 2>&1 &
run_pid=$!
set +m
for _ in $(seq 1 200); do  # bounded: 20 s
  grep -q 'Ctrl-C stops both servers.' "$work/run.log" 2>/dev/null && break
  kill -0 "$run_pid" 2>/dev/null || { cat "$work/run.log" >&2; fail "make run's command ended before it was ready"; }
  sleep 0.1
done
grep -q 'Ctrl-C stops both servers.' "$work/run.log" || { cat "$work/run.log" >&2; fail "make run's command printed no banner in 20 s"; }
grep -q "master credential:  master:$password" "$work/run.log" || fail "the banner does not show the master credential"
ok "make run's command is up on 127.0.0.1:$port"

session=$(section_blocks "How a build uses it")
[[ -n $session ]] || fail "README has no sh block in 'How a build uses it'"
for placeholder in 127.0.0.1:8080 master:PASSWORD; do
  grep -qF "$placeholder" <<<"$session" || fail "README's blocks no longer contain $placeholder, which this test replaces"
done
session=${session//127.0.0.1:8080/127.0.0.1:$port}
session=${session//master:PASSWORD/master:$password}
mkdir "$work/client"
head -c 4096 /dev/urandom >"$work/client/pkg.deb"
cp "$work/client/pkg.deb" "$work/pkg.deb.orig"
echo "build log of build 42" >"$work/client/build.log"
mkdir -p "$work/client/dist/docs"
echo "<h1>docs of build 42</h1>" >"$work/client/dist/docs/index.html"
printf 'set -euo pipefail\n%s\n' "$session" >"$work/session.sh"
if ! (cd "$work/client" && timeout 60 bash "$work/session.sh") >"$work/session.out" 2>&1; then
  cat "$work/session.out" >&2
  fail "a block of README's 'How a build uses it' failed (output above)"
fi
blocks=$(grep -c '^```sh$' <(awk '/^## /{inside=($0=="## How a build uses it")} inside' README.md))
ok "README's $blocks blocks of 'How a build uses it' ran verbatim"

# What they did: the build uploaded, sealed, refused after the revoke, latest.
build42=$work/state/artifacts/dpkg/myproj/linux-amd64/42
cmp -s "$build42/pkg.deb" "$work/pkg.deb.orig" || fail "pkg.deb was not uploaded"
[[ -f $build42/logs/build.log ]] || fail "the PUT did not make logs/"
cmp -s "$build42/dist/docs/index.html" "$work/client/dist/docs/index.html" || fail "the tree upload did not unpack dist/"
(cd "$build42" && sha256sum --quiet -c SHA256SUMS) || fail "SHA256SUMS does not verify the build"
cmp -s "$work/client/pkg.deb" "$work/pkg.deb.orig" || fail "pkg.deb through latest/ differs"
grep -q '"state":"done"' "$work/session.out" || fail "the revoke did not answer with a done seal"
grep -q 'refused, as it should be' "$work/session.out" || fail "the upload after the revoke was not refused"
grep -q '"error":' "$work/session.out" || fail "the refusal printed no reason"
grep -q '"name":"pkg.deb"' "$work/session.out" || fail "latest/?format=json did not list the build"
sed 's/^/  | /' "$work/session.out"
ok "uploaded, sealed (SHA256SUMS verifies), refused after the revoke, found through latest/"

# --- Ctrl-C -----------------------------------------------------------------
app_pid=$(cat "$work/state/app.pid")
nginx_pid=$(cat "$work/state/nginx-master.pid")
kill -INT -- "-$run_pid"
status=0
wait "$run_pid" || status=$?
run_pid=
[[ $status -eq 0 ]] || { cat "$work/run.log" >&2; fail "Ctrl-C ended make run's command with status $status, not 0"; }
for pid in "$app_pid" "$nginx_pid"; do
  ! kill -0 "$pid" 2>/dev/null || fail "process $pid still runs after Ctrl-C"
done
! grep -q 'a server exited' "$work/run.log" || fail "Ctrl-C was reported as a server failure"
ok "Ctrl-C stopped both servers, status 0"
