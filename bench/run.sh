#!/usr/bin/env bash
# artifact-repository benchmarks (issue 7): `make bench` / `make bench-quick`.
#
#   bench/run.sh [--quick] [--out FILE]
#   bench/run.sh [--quick] --only seal --out FILE    (figure 7 alone, no server)
#
# Builds the product (Release, into $BENCH_BUILD_DIR, default /tmp/bench-build,
# so a developer's build/ is never touched) and bench/fsloop.cc, then runs
# bench/bench.py, which starts its own servers on 127.0.0.1, measures and writes
# bench/RESULTS.md. Needs: nginx (with dav), spawn-fcgi, apache2-utils, curl,
# openssl, python3, strace, wrk, cmake, g++, fincore (see bench/README.md).
# BENCH_JOBS: parallel build jobs (default: all cores).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
build=${BENCH_BUILD_DIR:-/tmp/bench-build}
export BENCH_BUILD_DIR=$build

for tool in wrk nginx spawn-fcgi htpasswd curl openssl python3 strace cmake g++ findmnt fincore sha256sum find xargs sync; do
  command -v "$tool" >/dev/null || { echo "bench: $tool is missing (apt-get install wrk strace; make deps)" >&2; exit 1; }
done

cmake -S "$repo" -B "$build" -DBUILD_TESTING=OFF -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" -j "${BENCH_JOBS:-$(nproc)}" >/dev/null
g++ -O2 -std=c++17 -Wall -o "$build/bench-fsloop" "$here/fsloop.cc"

exec python3 "$here/bench.py" "$@"
