#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# make check: build the module against Debian's 6.1 and 6.12 headers (generic
# and PREEMPT_RT), a debug 6.12 kernel (lockdep, KASAN, kmemleak, ...) and a
# KCSAN 6.12 kernel, boot each kernel in QEMU (TCG) with our loop.ko, run
# the selftests, judge the kernel log. Prints the TAP of every guest and a
# closing "N passed, N failed" line.
#   LOOP_KERNELS="deb-6.1 deb-6.12 rt-6.12 debug-6.12 kcsan-6.12"
#			which guests to run (default: all)
#   LOOP_SOAK=SECONDS	instead of the selftests, run the soak (make soak)
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top" || exit 1
. scripts/kernels.sh
mkdir -p build
rm -f build/*.tap build/*.klog
start=$(date +%s)
want=${LOOP_KERNELS:-deb-6.1 deb-6.12 rt-6.12 debug-6.12 kcsan-6.12}

# Guest kernels of our own, built once and cached (about 10 minutes each).
kd_debug=- kd_kcsan=-
case " $want " in *" debug-6.12 "*)
	kd_debug=$(./scripts/build-kernel.sh debug | tail -n 1) ||
		{ echo "debug kernel does not build"; exit 1; } ;;
esac
case " $want " in *" kcsan-6.12 "*)
	kd_kcsan=$(./scripts/build-kernel.sh kcsan | tail -n 1) ||
		{ echo "KCSAN kernel does not build"; exit 1; } ;;
esac
./scripts/extract-source.sh >/dev/null || exit 1
make -s -C selftests >/dev/null || { echo "selftests do not build"; exit 1; }

# name kdir bzimage modules-kver debug mode timeout [programs left out].
# What needs to run once runs on one guest: the 32-bit builds (the compat
# ioctl paths are the same code on every kernel) on deb-6.12, the fuzzer on
# the kernels that check what it provokes (debug, KCSAN). The KCSAN guest
# runs what hunts races (race, rundown and review tests, fuzzer): the rest
# gives KCSAN nothing concurrent to look at.
once=loop_ioctl_test32,loop_badinput_test32
guests="deb-6.1 $KDIR_61 /boot/vmlinuz-$KVER_61 $KVER_61 0 check 900 $once,loop_fuzz
deb-6.12 $KDIR_612 /boot/vmlinuz-$KVER_612 $KVER_612 0 check 900 loop_fuzz
rt-6.12 $KDIR_612RT /boot/vmlinuz-$KVER_612RT $KVER_612RT 0 check 900 $once,loop_fuzz
debug-6.12 $kd_debug $kd_debug/arch/x86/boot/bzImage - 1 check 1800 $once
kcsan-6.12 $kd_kcsan $kd_kcsan/arch/x86/boot/bzImage - 0 races 1500"

status=0
while read -r name kdir image kver debug mode limit skip; do
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
	./scripts/run-guest.sh "$name" "$image" "build/$name/initrd.gz" "$mode" \
		"$debug" "$limit" ${skip:+loop.skip=$skip} </dev/null |
		tr -d '\r' | tee "build/$name.tap" || status=1
done <<< "$guests"

pass=$(cat build/*.tap 2>/dev/null | grep -E '^ *ok ' | grep -vc '# SKIP')
skip=$(cat build/*.tap 2>/dev/null | grep -E '^ *ok ' | grep -c '# SKIP')
fail=$(cat build/*.tap 2>/dev/null | grep -cE '^ *not ok ')
echo "# wall time: $(( $(date +%s) - start ))s"
echo "$pass passed, $fail failed, $skip skipped"
[ "$status" = 0 ] && [ "$fail" = 0 ]
