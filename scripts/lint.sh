#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# make lint: sparse (C=2) and W=1 against Debian's 6.1 and 6.12 headers and
# the debug 6.12 tree, and checkpatch.pl --strict from linux-source-6.12.
# Fails on any warning.
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top" || exit 1
. scripts/kernels.sh
status=0
kd_debug=$(./scripts/build-kernel.sh debug | tail -n 1)

for kdir in "$KDIR_61" "$KDIR_612" "$kd_debug"; do
	src=build/lint/src
	rm -rf build/lint
	mkdir -p "$src"
	cp -r Kbuild Makefile dkms.conf drivers include "$src/"
	log=build/lint/log
	make -C "$kdir" M="$top/$src" C=2 W=1 modules > "$log" 2>&1
	if grep -E 'warning|error' "$log"; then
		echo "lint: $kdir: sparse/W=1 not clean"
		status=1
	else
		echo "lint: $kdir: sparse C=2 and W=1 clean"
	fi
done

srcdir=$(ls -d "$LOOP_CACHE"/src-* | sort -V | tail -n 1)
files=$(git ls-files 'drivers/*.[ch]' 'include/*.h' 'Kbuild')
if "$srcdir/scripts/checkpatch.pl" --strict --no-tree --terse --show-types \
	--ignore FILE_PATH_CHANGES,SPDX_LICENSE_TAG -f $files; then
	echo "lint: checkpatch --strict clean"
else
	status=1
fi
exit "$status"
