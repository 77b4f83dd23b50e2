#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# make check: build the module against Debian's 6.1 headers, Debian's
# newest 6.12 headers and the debug 6.12 kernel, boot each kernel in QEMU
# (TCG) with our loop.ko, run every selftest, judge the kernel log; then
# the system guest: Debian 12 with systemd and udev, our driver installed
# by DKMS (scripts/run-system-guest.sh).
# Prints the TAP of every guest and a closing "N passed, N failed" line.
#   LOOP_KERNELS="deb-6.1 deb-6.12 debug-6.12 system-6.12"
#			which guests to run (system-6.1 too, if named)
#   LOOP_SOAK=SECONDS	instead of the selftests, run the soak (make soak)
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top" || exit 1
. scripts/kernels.sh
mkdir -p build
rm -f build/*.tap build/*.klog
start=$(date +%s)

# The debug kernel's source tree also provides kselftest_harness.h.
kd_debug=$(./scripts/build-kernel.sh debug | tail -n 1) ||
	{ echo "debug kernel does not build"; exit 1; }
make -s -C selftests >/dev/null || { echo "selftests do not build"; exit 1; }

# name kdir bzimage modules-kver debug timeout
guests="deb-6.1 $KDIR_61 /boot/vmlinuz-$KVER_61 $KVER_61 0 900
deb-6.12 $KDIR_612 /boot/vmlinuz-$KVER_612 $KVER_612 0 900
debug-6.12 $kd_debug $kd_debug/arch/x86/boot/bzImage - 1 1800"

want=${LOOP_KERNELS:-deb-6.1 deb-6.12 debug-6.12 system-6.12}
status=0
while read -r name kdir image kver debug limit; do
	case " $want " in *" $name "*) ;; *) continue ;; esac
	echo "# ===== guest $name: $image ====="
	# Each kernel builds from its own copy: Kbuild writes beside sources.
	src=build/$name/src
	rm -rf "build/$name"
	mkdir -p "$src"
	cp -r Kbuild Makefile dkms.conf drivers include "$src/"
	if ! make -s -C "$kdir" M="$top/$src" modules > "build/$name/build.log" 2>&1 ||
	   grep -q 'warning:' "build/$name/build.log"; then
		cat "build/$name/build.log"
		echo "not ok - $name: module builds without warnings"
		status=1
		continue
	fi
	stock=""
	[ "$kver" != - ] && stock=$(ls /lib/modules/"$kver"/kernel/drivers/block/loop.ko* 2>/dev/null | head -n 1)
	./scripts/mkinitramfs.sh "build/$name/initrd.gz" "$kver" "$src/loop.ko" $stock
	if [ -n "${LOOP_SOAK:-}" ]; then
		./scripts/run-guest.sh "$name" "$image" "build/$name/initrd.gz" soak \
			"$debug" $((LOOP_SOAK + 1200)) "loop.soak=$LOOP_SOAK" \
			</dev/null | tr -d '\r' | tee "build/$name.tap" || status=1
		continue
	fi
	./scripts/run-guest.sh "$name" "$image" "build/$name/initrd.gz" check \
		"$debug" "$limit" </dev/null | tr -d '\r' | tee "build/$name.tap" || status=1
done <<< "$guests"

# The system guests: the image is built once per kernel and cached.
for g in "system-6.12 $KVER_612" "system-6.1 $KVER_61"; do
	read -r name kver <<< "$g"
	case " $want " in *" $name "*) ;; *) continue ;; esac
	echo "# ===== guest $name: Debian 12, systemd, udev, DKMS ($kver) ====="
	./scripts/run-system-guest.sh "$name" "$kver" </dev/null |
		tee "build/$name.tap" || status=1
done

pass=$(cat build/*.tap 2>/dev/null | grep -E '^ *ok ' | grep -vc '# SKIP')
skip=$(cat build/*.tap 2>/dev/null | grep -E '^ *ok ' | grep -c '# SKIP')
fail=$(cat build/*.tap 2>/dev/null | grep -cE '^ *not ok ')
echo "# wall time: $(( $(date +%s) - start ))s"
echo "$pass passed, $fail failed, $skip skipped"
[ "$status" = 0 ] && [ "$fail" = 0 ]
