#!/bin/busybox sh
# SPDX-License-Identifier: GPL-2.0
#
# Init of the test guest. Kernel command line:
#   loop.mode=check	load our loop.ko, run every selftest, check the log
#   loop.mode=demo	load our loop.ko, run the demo
#   loop.mode=race	load our loop.ko, run the race tests only
#   loop.mode=races	the race tests and the fuzzer (the KCSAN guest of
#			make check)
#   loop.test=A,B	race mode: run only the race tests A and B
#   loop.prog=P		race mode: run selftest program P (default
#			loop_race_test)
#   bench.rounds=N bench.runtime=S bench.scale="100 1000 10000"
#   bench.jobs=A,B bench.setups=A,B bench.modargs=P=V,Q=W
#			bench mode: see bench/guest-bench.sh
#   bench.aa=1		bench mode, A/A calibration: the stock loop.ko
#			stands in for ours (see scripts/bench.sh)
#   loop.mode=shell	load our loop.ko, give a shell on the console
#   loop.mode=bench	run the benchmarks (stock loop.ko against ours)
#   loop.mode=soak	run selftests/soak.sh for loop.soak=SECONDS
#   loop.skip=A,B	check mode: leave the selftest programs A and B out
#   loop.time=F		scale the time bounds of the tests by F (LOOP_TIME_SCALE)
#   loop.mode=exec	run the script loop.exec=NAME of /selftests under bash
#			(experiments: scripts/run-guest.sh ... exec 0 600
#			loop.exec=NAME)
#   loop.debug=1	the kernel has kmemleak: scan it at the end
# TAP goes to the console (ttyS0). The kernel log and the verdict
# ("LOOP-GUEST-RESULT: PASS" or "... FAIL <why>") go to ttyS1.
/bin/busybox --install -s /bin
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
# Keep the console for TAP: the kernel log goes to ttyS1 at the end.
dmesg -n 1
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
mkdir -p /dev/pts /mnt/scratch /mnt/scratch4k
mount -t devpts devpts /dev/pts

mode=check
debug=0
soak=1800
prog=loop_race_test
only=
aa=0
for arg in $(cat /proc/cmdline); do
	case "$arg" in
	loop.mode=*) mode=${arg#loop.mode=} ;;
	loop.debug=*) debug=${arg#loop.debug=} ;;
	bench.rounds=*) export BENCH_ROUNDS=${arg#bench.rounds=} ;;
	bench.runtime=*) export BENCH_RUNTIME=${arg#bench.runtime=} ;;
	bench.scale=*) export BENCH_SCALE=${arg#bench.scale=} ;;
	bench.parts=*) export BENCH_PARTS=${arg#bench.parts=} ;;
	bench.jobs=*) export BENCH_JOBS=${arg#bench.jobs=} ;;
	bench.setups=*) export BENCH_SETUPS=${arg#bench.setups=} ;;
	bench.modargs=*) export BENCH_MODARGS=${arg#bench.modargs=} ;;
	bench.aa=*) aa=${arg#bench.aa=} ;;
	loop.soak=*) soak=${arg#loop.soak=} ;;
	loop.exec=*) exec_script=${arg#loop.exec=} ;;
	loop.skip=*) export LOOP_SKIP=$(echo "${arg#loop.skip=}" | tr , ' ') ;;
	loop.time=*) export LOOP_TIME_SCALE=${arg#loop.time=} ;;
	loop.prog=*) prog=${arg#loop.prog=} ;;
	loop.test=*)
		for t in $(echo "${arg#loop.test=}" | tr , ' '); do
			only="$only -t $t"
		done ;;
	esac
done

# The kernel log goes to ttyS1 as it is written, so that the host has it
# even if the guest hangs or is killed by its timeout.
echo "===== kernel log ====="  > /dev/ttyS1
cat /dev/kmsg > /dev/ttyS1 &
kmsg=$!

verdict() {
	sleep 1
	kill "$kmsg" 2>/dev/null
	wait "$kmsg" 2>/dev/null
	# The port may still be closing after the reader's exit (its open then
	# fails with EAGAIN, seen once): try again.
	for _ in 1 2 3 4 5; do
		{
			echo "===== end of kernel log ====="
			echo "LOOP-GUEST-RESULT: $*"
		} 2>/dev/null > /dev/ttyS1 && break
		sleep 1
	done
	sync
	# reboot, not poweroff: QEMU runs with -no-reboot and exits, ACPI or not.
	reboot -f
}

for m in $(cat /lib/modules/load-order); do
	insmod "/lib/modules/$m" || verdict "FAIL insmod $m"
done

# No other loop driver may be present: ours must be the one under test.
if [ -e /sys/module/loop ] || grep -qE '^ *7 loop$' /proc/devices; then
	verdict "FAIL a loop driver is already loaded"
fi
insmod /lib/modules/loop-rework.ko || verdict "FAIL insmod loop-rework.ko"
# Stock loop.ko has no version: this one must be ours (unless an A/A bench
# asked for stock in its place).
if [ "$mode" != bench ] || [ "$aa" != 1 ]; then
	[ -s /sys/module/loop/version ] ||
		verdict "FAIL the loaded loop is not ours"
fi
[ -e /dev/loop-control ] || verdict "FAIL no /dev/loop-control"
# For the host: the guest kernel booted and our module is in.
echo "LOOP-GUEST-STARTED"

# Scratch filesystem on the virtio disk: a real block-backed filesystem
# (direct I/O, the umount chain).
if [ -b /dev/vda ]; then
	mkfs.ext4 -q -F /dev/vda >/dev/null 2>&1 &&
		mount -t ext4 /dev/vda /mnt/scratch
fi
export LOOP_SCRATCH=/mnt/scratch
# Two 4Kn disks (4096-byte logical blocks, see run-guest.sh): vdb stays a
# raw block device, vdc gets an ext4.
if [ -b /dev/vdc ]; then
	mkfs.ext4 -q -F /dev/vdc >/dev/null 2>&1 &&
		mount -t ext4 /dev/vdc /mnt/scratch4k &&
		export LOOP_SCRATCH4K=/mnt/scratch4k
fi
[ -b /dev/vdb ] && export LOOP_RAW4K=/dev/vdb
# The module test unloads and reloads the driver from here.
export LOOP_MODULE=/lib/modules/loop-rework.ko

case "$mode" in
shell)
	echo "Guest shell: the reworked loop.ko is loaded. 'reboot -f' ends it."
	setsid sh -c 'exec sh </dev/ttyS0 >/dev/ttyS0 2>&1'
	verdict "PASS shell"
	;;
demo)
	/usr/bin/bash /selftests/demo.sh
	rc=$?
	;;
race)
	"/selftests/$prog" $only
	rc=$?
	;;
races)
	LOOP_ONLY="loop_race_test loop_fuzz" \
		/usr/bin/bash /selftests/run_all.sh
	rc=$?
	;;
bench)
	/usr/bin/bash /bench/guest-bench.sh
	rc=$?
	;;
soak)
	/usr/bin/bash /selftests/soak.sh "$soak"
	rc=$?
	;;
exec)
	/usr/bin/bash "/selftests/$exec_script"
	rc=$?
	;;
*)
	/usr/bin/bash /selftests/run_all.sh
	rc=$?
	;;
esac

umount /mnt/scratch 2>/dev/null
umount /mnt/scratch4k 2>/dev/null
# A race test that failed may have left a device stuck (a deadlock): in
# race mode (make prove-races) the verdict does not wait for rmmod.
[ "$mode" = race ] && [ "$rc" != 0 ] && verdict "FAIL tests exit $rc"
# The module must unload once every device is unbound.
if ! rmmod loop; then
	# What is left: bound devices and the open count of each device.
	{
		echo "===== loop devices left at rmmod ====="
		/usr/sbin/losetup -a
		grep -H . /sys/module/loop/refcnt 2>/dev/null
		for d in /sys/block/loop*; do
			[ -e "$d" ] && echo "${d##*/}: size $(cat "$d/size")"
		done
	} > /dev/ttyS1 2>&1
	verdict "FAIL rmmod loop"
fi

if [ "$debug" = 1 ] && [ -e /sys/kernel/debug/kmemleak ]; then
	echo scan > /sys/kernel/debug/kmemleak
	sleep 6
	echo scan > /sys/kernel/debug/kmemleak
	leaks=$(grep -c 'unreferenced object' /sys/kernel/debug/kmemleak)
	if [ "$leaks" != 0 ]; then
		cat /sys/kernel/debug/kmemleak > /dev/ttyS1
		verdict "FAIL kmemleak: $leaks unreferenced objects"
	fi
fi
[ "$rc" = 0 ] && verdict "PASS" || verdict "FAIL tests exit $rc"
