#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Run every loop selftest in this guest; each prints its own TAP.
# Exit status: the number of test programs that failed.
cd "$(dirname "$0")" || exit 1
failed=0
for t in loop_ioctl_test loop_ioctl_test32 loop_io_test loop_race_test loop_tools.sh; do
	[ -x "./$t" ] || continue
	echo "# ===== $t ($(uname -r)) ====="
	case "$t" in
	*.sh) /usr/bin/bash "./$t" ;;
	*) "./$t" ;;
	esac || failed=$((failed + 1))
done
# The demo of "make vm" (and the admin guide's examples in it) must work too.
echo "# ===== demo.sh ($(uname -r)) ====="
if /usr/bin/bash ./demo.sh 2>&1 | sed 's/^/# /'; [ "${PIPESTATUS[0]}" = 0 ]; then
	echo "ok - demo.sh"
else
	echo "not ok - demo.sh"
	failed=$((failed + 1))
fi
exit "$failed"
