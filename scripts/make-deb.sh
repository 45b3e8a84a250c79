#!/usr/bin/env bash
# `make deb`: builds artifact-repository_<version>_<arch>.deb from the
# working tree (tracked and new files, not ignored ones) with
# dpkg-buildpackage in a staging copy, so nothing is written next to the
# repository, then runs lintian on it. Prints the .deb's path last.
#
#   scripts/make-deb.sh [OUTDIR]     default OUTDIR: build/deb
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=${1:-$here/build/deb}
version=$(dpkg-parsechangelog -l "$here/debian/changelog" -S Version)
src=$out/src/artifact-repository-$version

# The staging copy is kept between runs with its build directory, and
# dpkg-buildpackage does not clean first, so a rebuild compiles only what
# changed. The tree as git sees it (uncommitted edits included):
mkdir -p "$src"
(cd "$here" && git ls-files -z --cached --others --exclude-standard) |
  (cd "$here" && tar --null -T - -cf -) | tar -C "$src" -xf -
rm -f "$out"/src/*.deb "$out"/src/*.changes "$out"/src/*.buildinfo

echo "make-deb: building artifact-repository $version in $src" >&2
start=$(date +%s)
(cd "$src" && dpkg-buildpackage -b -us -uc --no-pre-clean --jobs="${JOBS:-$(nproc)}" >"$out/build.log" 2>&1) || {
  tail -n 40 "$out/build.log" >&2
  echo "make-deb: dpkg-buildpackage failed; the whole log is $out/build.log" >&2
  exit 1
}
arch=$(dpkg --print-architecture)
deb=$out/src/artifact-repository_${version}_${arch}.deb
mv "$deb" "$out/"
mv "$out/src/artifact-repository_${version}_${arch}.changes" "$out/" 2>/dev/null || true
deb=$out/artifact-repository_${version}_${arch}.deb
echo "make-deb: built in $(($(date +%s) - start)) s" >&2

# lintian: errors fail the build; warnings are printed for the record.
if ! lintian --fail-on error --suppress-tags-from-file "$here/debian/lintian-suppressed" "$deb" >&2; then
  echo "make-deb: lintian reports errors for $deb" >&2
  exit 1
fi
echo "$deb"
