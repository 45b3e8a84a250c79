#!/usr/bin/env bash
# Every shell script of the repository passes shellcheck.
#
#   tests/deploy/shellcheck.sh SOURCE_DIR
set -euo pipefail
src=${1:?usage: shellcheck.sh SOURCE_DIR}
command -v shellcheck >/dev/null || { echo "FAIL: shellcheck is not installed (make deps installs it)" >&2; exit 1; }
# The repository's scripts: what git tracks, or every *.sh outside build
# and state directories when this is not a git checkout.
if git -C "$src" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  mapfile -t scripts < <(cd "$src" && git ls-files '*.sh' .ci/run | sort)
else
  mapfile -t scripts < <(cd "$src" && find . -path ./build -prune -o -path './build-*' -prune -o -path ./run -prune \
    -o -type f \( -name '*.sh' -o -path ./.ci/run \) -print | sort)
fi
[[ ${#scripts[@]} -gt 0 ]] || { echo "FAIL: no scripts found under $src" >&2; exit 1; }
(cd "$src" && shellcheck -x "${scripts[@]}")
echo "ok: shellcheck passes on ${#scripts[@]} scripts"
