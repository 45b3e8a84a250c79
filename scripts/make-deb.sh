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
# changed. The tree as git sees it (uncommitted edits included) is unpacked
# beside it, and only files whose content differs are copied over (with a
# new mtime, so make sees them); files gone from the tree are removed.
fresh=$out/src/fresh
rm -rf "$fresh"
mkdir -p "$src" "$fresh"
(cd "$here" && git ls-files -z --cached --others --exclude-standard) |
  (cd "$here" && tar --null -T - -cf -) | tar -C "$fresh" -xf -
(cd "$fresh" && find . \( -type f -o -type l \) -print0) | while IFS= read -r -d '' f; do
  if ! cmp -s "$fresh/$f" "$src/$f" 2>/dev/null || [[ -L $fresh/$f ]]; then
    mkdir -p "$(dirname "$src/$f")"
    rm -f "$src/$f"
    cp -P "$fresh/$f" "$src/$f"
    [[ -L $src/$f ]] || touch "$src/$f"
  fi
done
(cd "$src" && find . -path ./build-deb -prune -o -path ./debian/artifact-repository -prune -o -path ./debian/.debhelper -prune \
  -o \( -type f -o -type l \) ! -name 'debhelper-build-stamp' ! -name '*.debhelper.log' ! -name '*.substvars' ! -name files -print0) |
  while IFS= read -r -d '' f; do
    [[ -e $fresh/$f || -L $fresh/$f ]] || rm -f "$src/$f"
  done
rm -rf "$fresh"
# dh skips the steps its stamps say are done: without this, a rebuild would
# package the previous binary.
rm -rf "$src/debian/debhelper-build-stamp" "$src"/debian/*.debhelper.log "$src/debian/.debhelper" \
  "$src/debian/artifact-repository" "$src/debian/files" "$src"/debian/*.substvars
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
