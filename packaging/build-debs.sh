#!/bin/bash
# SPDX-License-Identifier: MIT
# Builds the Debian packages baton-agent, baton-controller and batonctl from
# this source tree: copies the tree (without build directories) to a
# temporary directory, puts packaging/debian there as debian/, runs
# dpkg-buildpackage -us -uc -b, checks the result with lintian (failing on
# errors) and leaves the .debs, .buildinfo and .changes in OUTDIR.
set -euo pipefail

usage() {
        echo "Usage: packaging/build-debs.sh [--nocheck] OUTDIR"
        echo "  --nocheck   skip the unit tests during the build (DEB_BUILD_OPTIONS=nocheck)"
}

nocheck=no
while [ $# -gt 0 ]; do
        case $1 in
        --nocheck) nocheck=yes ;;
        -h | --help) usage; exit 0 ;;
        -*) usage >&2; exit 2 ;;
        *) break ;;
        esac
        shift
done
[ $# -eq 1 ] || { usage >&2; exit 2; }

here=$(cd "$(dirname "$0")" && pwd)
src=$(dirname "$here")
mkdir -p "$1"
out=$(cd "$1" && pwd)

for tool in dpkg-buildpackage dpkg-parsechangelog dh lintian; do
        command -v $tool >/dev/null 2>&1 ||
                { echo "build-debs.sh: $tool is missing (packaging/install-deps.sh installs it)" >&2; exit 1; }
done

version=$(dpkg-parsechangelog -l "$here/debian/changelog" -S Version)
work=$(mktemp -d "${TMPDIR:-/tmp}/baton-debs.XXXXXX")
trap 'rm -rf "$work"' EXIT
tree="$work/baton-$version"
mkdir "$tree"

# The tree as it is (also uncommitted work), minus VCS data and any meson
# build directory, however it is named.
excludes=(--exclude=./.git --exclude=__pycache__ --exclude='*.pyc')
for d in "$src"/*/; do
        d=${d%/}
        if [ -e "$d/meson-private" ] || [ -e "$d/build.ninja" ]; then
                excludes+=("--exclude=./${d##*/}")
        fi
done
tar -C "$src" "${excludes[@]}" -cf - . | tar -C "$tree" -xf -
rm -rf "$tree/debian"
cp -a "$here/debian" "$tree/debian"

opts="parallel=$(nproc)"
[ $nocheck = no ] || opts="$opts nocheck"
echo "build-debs.sh: building baton $version in $tree"
if ! (cd "$tree" && DEB_BUILD_OPTIONS="$opts" dpkg-buildpackage -us -uc -b) >"$work/build.log" 2>&1; then
        tail -n 80 "$work/build.log" >&2
        echo "build-debs.sh: dpkg-buildpackage failed (the last lines of its log are above)" >&2
        exit 1
fi

changes=$(ls "$work"/baton_"$version"_*.changes)
echo "build-debs.sh: lintian $(basename "$changes")"
# Errors fail the build; warnings and the rest are shown.
if ! lintian --fail-on error --display-info --suppress-tags-from-file /dev/null "$changes" \
        >"$work/lintian.log" 2>&1; then
        cat "$work/lintian.log" >&2
        echo "build-debs.sh: lintian found errors" >&2
        exit 1
fi
cat "$work/lintian.log"

debs=()
for f in "$work"/*.deb "$work"/*.buildinfo "$changes"; do
        cp "$f" "$out/"
        case $f in *.deb) debs+=("$out/${f##*/}") ;; esac
done
printf '%s\n' "${debs[@]}"
