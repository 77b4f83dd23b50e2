#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# make prove-races: show that each race test can catch the race it names.
# For every scripts/breakages/*.patch (a deliberately broken driver), build
# the patched driver for Debian's 6.12, run the tests named on the patch's
# "Expected to fail: [PROGRAM:]TEST" lines (PROGRAM defaults to
# loop_race_test) in a guest, one guest per program, and require each to
# fail (a kernel crash while the test runs counts: the guest panics on
# oops). "Kernel: deb-6.1" runs a patch on Debian's 6.1 instead (a race
# that 6.12 closes by itself). A patch with a "Kernel: kcsan" line breaks nothing a test can
# see: it is built for the KCSAN guest kernel (scripts/build-kernel.sh
# kcsan) and is caught when that kernel reports a data race in our module
# while the named tests run. "Cmdline: ..." adds guest kernel parameters
# (KCSAN's sampling, for one). Prints TAP: "ok" means the breakage was caught.
#   PROVE_ONLY="name ..."	only these breakages (patch names)
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top" || exit 1
. scripts/kernels.sh
./scripts/extract-source.sh >/dev/null || exit 1
make -s -C selftests >/dev/null || exit 1
n=0 failed=0
for patch in scripts/breakages/*.patch; do
	name=$(basename "$patch" .patch)
	case " ${PROVE_ONLY:-$name} " in *" $name "*) ;; *) continue ;; esac
	expect=$(sed -n 's/^Expected to fail: \([a-z_0-9:]*\).*/\1/p' "$patch" |
		 sed '/:/!s/^/loop_race_test:/')
	dir=build/break-$name
	rm -rf "$dir"
	mkdir -p "$dir/src"
	cp -r Kbuild Makefile dkms.conf drivers include "$dir/src/"
	(cd "$dir/src" && patch -s -p1 < "$top/$patch") || exit 1
	kernel=$(sed -n 's/^Kernel: //p' "$patch")
	# Extra guest kernel parameters ("Cmdline: kcsan.skip_watch=400").
	cmdline=$(sed -n 's/^Cmdline: //p' "$patch")
	kdir=$KDIR_612 image=/boot/vmlinuz-$KVER_612 kver=$KVER_612
	if [ "$kernel" = kcsan ]; then
		kdir=$(./scripts/build-kernel.sh kcsan | tail -n 1) || exit 1
		image=$kdir/arch/x86/boot/bzImage kver=-
	elif [ "$kernel" = deb-6.1 ]; then
		kdir=$KDIR_61 image=/boot/vmlinuz-$KVER_61 kver=$KVER_61
	fi
	make -s -C "$kdir" M="$top/$dir/src" modules > "$dir/build.log" 2>&1 ||
		{ cat "$dir/build.log"; exit 1; }
	./scripts/mkinitramfs.sh "$dir/initrd.gz" "$kver" "$dir/src/loop.ko"
	for prog in $(echo "$expect" | cut -d: -f1 | sort -u); do
		tests=$(echo "$expect" | sed -n "s/^$prog://p")
		tap=$dir/$prog.tap
		# Only the tests the patch names: each must fail.
		./scripts/run-guest.sh "break-$name" "$image" \
			"$dir/initrd.gz" race 0 900 "loop.prog=$prog" \
			"loop.test=$(echo $tests | tr ' ' ,)" $cmdline \
			</dev/null | tr -d '\r' > "$tap"
		if [ "$kernel" = kcsan ]; then
			n=$((n + 1))
			# run-guest.sh prints the reports that name our module.
			race=$(grep -a -m 1 'BUG: KCSAN: .*\[loop\]' "$tap")
			if [ -n "$race" ]; then
				echo "ok $n $name: KCSAN reported a data race in our module while $prog ran $tests"
				echo "$race" | sed 's/^# */# /'
			else
				echo "not ok $n $name: no KCSAN report in our module while $prog ran $tests"
				failed=$((failed + 1))
			fi
			continue
		fi
		for t in $tests; do
			n=$((n + 1))
			# Kernel crash lines printed since the last run of the
			# test started (of one variant, if it has several), and
			# that run's full name.
			full=$(grep -aoE "RUN  *[a-z_0-9.]*\.$t " "$tap" |
				tail -n 1 | awk '{ print $2 }')
			crash=$(sed -n "/RUN  *${full//./\\.} /,\$p" "$tap" |
				grep -E '\] (BUG|Oops|RIP|Kernel panic|general protection|INFO: task)' |
				head -n 2)
			if grep -qE "^not ok [0-9]+ [a-z_0-9.]*\.$t\$" "$tap"; then
				echo "ok $n $name: caught by $prog $t"
				# What the test reported: its own log lines.
				sed -n "/RUN  *[a-z_0-9.]*\.$t /,/[a-z_0-9.]*\.$t\$/p" "$tap" |
					grep -E "^# $prog.c:[0-9]+:$t:" |
					grep -v ':Expected ' | head -n 2
			elif [ -n "$full" ] && [ -n "$crash" ] &&
				! grep -qE "^ok [0-9]+ ${full//./\\.}\$" "$tap"; then
				# The guest panics on an oops: the test got no verdict.
				echo "ok $n $name: caught by $prog $t (the kernel crashed or hung while it ran)"
				echo "$crash" | sed 's/^/# /'
			else
				echo "not ok $n $name: $prog $t did not fail"
				failed=$((failed + 1))
			fi
		done
	done
done
echo "$((n - failed)) passed, $failed failed"
[ "$failed" = 0 ]
