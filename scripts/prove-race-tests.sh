#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# make prove-races: show that each race test can catch the race it names.
# For every scripts/breakages/*.patch (a deliberately broken driver), build
# the patched driver for Debian's 6.12, run the race tests named on the
# patch's "Expected to fail:" lines in a guest, and require each to fail
# (a kernel crash while the test runs counts: the guest panics on oops).
# Prints TAP: "ok" means the breakage was caught.
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top" || exit 1
. scripts/kernels.sh
./scripts/extract-source.sh >/dev/null || exit 1
make -s -C selftests >/dev/null || exit 1
n=0 failed=0
for patch in scripts/breakages/*.patch; do
	name=$(basename "$patch" .patch)
	expect=$(sed -n 's/^Expected to fail: \([a-z_0-9]*\).*/\1/p' "$patch")
	dir=build/break-$name
	rm -rf "$dir"
	mkdir -p "$dir/src"
	cp -r Kbuild Makefile dkms.conf drivers include "$dir/src/"
	(cd "$dir/src" && patch -s -p1 < "$top/$patch") || exit 1
	make -s -C "$KDIR_612" M="$top/$dir/src" modules > "$dir/build.log" 2>&1 || exit 1
	./scripts/mkinitramfs.sh "$dir/initrd.gz" "$KVER_612" "$dir/src/loop.ko"
	# Only the tests the patch names: each must fail.
	./scripts/run-guest.sh "break-$name" "/boot/vmlinuz-$KVER_612" \
		"$dir/initrd.gz" race 0 900 "loop.test=$(echo $expect | tr ' ' ,)" \
		</dev/null | tr -d '\r' > "$dir/tap"
	for t in $expect; do
		n=$((n + 1))
		# Kernel crash lines printed since the test started, if any.
		crash=$(sed -n "/RUN  *global\.$t /,\$p" "$dir/tap" |
			grep -E '\] (BUG|Oops|RIP|Kernel panic|general protection)' |
			head -n 2)
		if grep -qE "^not ok [0-9]+ global\.$t\$" "$dir/tap"; then
			echo "ok $n $name: caught by $t"
			# What the test reported: its own log lines.
			sed -n "/RUN  *global\.$t /,/global\.$t\$/p" "$dir/tap" |
				grep -E "^# loop_race_test.c:[0-9]+:$t:" |
				grep -v ':Expected ' | head -n 2
		elif [ -n "$crash" ] &&
			! grep -qE "^ok [0-9]+ global\.$t\$" "$dir/tap"; then
			# The guest panics on an oops: the test got no verdict.
			echo "ok $n $name: caught by $t (the kernel crashed while it ran)"
			echo "$crash" | sed 's/^/# /'
		else
			echo "not ok $n $name: $t did not fail"
			failed=$((failed + 1))
		fi
	done
done
echo "$((n - failed)) passed, $failed failed"
[ "$failed" = 0 ]
