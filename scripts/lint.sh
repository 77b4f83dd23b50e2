#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# make lint: sparse (C=2) and W=1 against Debian's 6.1 and 6.12 headers,
# generic and PREEMPT_RT, and the debug 6.12 tree, and checkpatch.pl
# --strict from linux-source-6.12. Fails on any warning.
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top" || exit 1
. scripts/kernels.sh
status=0
kd_debug=$(./scripts/build-kernel.sh debug | tail -n 1)

for kdir in "$KDIR_61" "$KDIR_612" "$KDIR_61RT" "$KDIR_612RT" "$kd_debug"; do
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

srcdir=$(./scripts/extract-source.sh)
files=$(git ls-files 'drivers/*.[ch]' 'include/*.h' 'Kbuild')
# checkpatch's ENOSYS warning is waived for one line: /dev/loop-control
# answers an unknown ioctl with ENOSYS, as the stock driver does.
# Judged by what it prints, not by its exit status (under pipefail a
# warning made the whole test false, and the warning passed as clean).
# A checkpatch that did not run to the end prints no "total:" lines.
out=$("$srcdir/scripts/checkpatch.pl" --strict --no-tree --terse --show-types \
	--ignore FILE_PATH_CHANGES,SPDX_LICENSE_TAG -f $files 2>&1)
found=$(echo "$out" |
	grep -v 'drivers/block/loop_main.c:[0-9]*: WARNING:ENOSYS:' |
	grep -v '^total: ')
if [ -n "$found" ] || ! echo "$out" | grep -q '^total: '; then
	echo "${found:-lint: checkpatch did not run}"
	status=1
else
	echo "lint: checkpatch --strict clean"
fi
if [ "$(git grep -h ENOSYS -- drivers include | wc -l)" != 1 ]; then
	echo "lint: ENOSYS appears elsewhere than loop_control_ioctl()"
	status=1
fi
exit "$status"
