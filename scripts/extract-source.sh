#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Extract Debian's linux-source-6.12 once into the cache (the guest kernels
# are built from it, and it provides kselftest_harness.h and checkpatch.pl).
# Prints the source directory on its last line of stdout.
set -euo pipefail

cache=${LOOP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/loop-rework}
tarball=$(ls /usr/src/linux-source-6.12*.tar.xz 2>/dev/null | sort -V | tail -n 1)
[ -n "$tarball" ] || { echo "linux-source-6.12 is not installed" >&2; exit 1; }
srcver=$(dpkg-query -W -f='${Version}' linux-source-6.12)
src=$cache/src-$srcver
if [ ! -f "$src/.done" ]; then
	rm -rf "$src"
	mkdir -p "$src"
	echo "extracting $tarball (about a minute)" >&2
	tar -xJf "$tarball" -C "$src" --strip-components=1
	touch "$src/.done"
fi
echo "$src"
