#!/usr/bin/env bash
# End-to-end test of the buildbot integration (buildbot/artifact_repository)
# against real nginx + artifact-token, a Debian buildbot master and worker.
#
#   tests/buildbot/run_e2e.sh [ARTIFACT_TOKEN_BINARY]
#
# The binary defaults to $ARTIFACT_BIN, else build/artifact-token. Needs root
# or the run user of scripts/run.sh, and the Debian packages buildbot,
# buildbot-worker, nginx, spawn-fcgi, apache2-utils, curl. A missing package is
# a failure, never a skip. E2E_KEEP=1 keeps the temporary directory.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
fail() { echo "FAIL: $*" >&2; exit 1; }

# Debian's interpreter, where python3-buildbot lives (not a pyenv or venv python3).
python=/usr/bin/python3
[[ -x $python ]] || fail "$python is missing"
for tool in buildbot buildbot-worker curl nginx spawn-fcgi htpasswd; do
  command -v "$tool" >/dev/null ||
    fail "$tool is not installed: apt-get install buildbot buildbot-worker (scripts/install-deps.sh)"
done
"$python" -c 'import buildbot, buildbot_worker' 2>/dev/null ||
  fail "$python cannot import buildbot: apt-get install buildbot buildbot-worker"

export PYTHONDONTWRITEBYTECODE=1  # no __pycache__ in the source tree
"$python" -m unittest discover -s "$here" -p 'test_*.py' -q
exec "$python" "$here/e2e.py" "$@"
