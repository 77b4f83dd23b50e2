#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# The system guest: Debian 12 with systemd as PID 1, udev, and our driver
# installed by DKMS (scripts/system-image.sh builds and caches the image).
#   run-system-guest.sh NAME KVER [check|shell]
# check (default): two boots of one disk (a copy-on-write overlay of the
#	cached image). Boot 1 runs selftests/system_test.sh's checks and ends
#	with "dkms remove"; boot 2 sees the stock module back and runs "dkms
#	install" again. Prints TAP on stdout (the guest's, live, then one line
#	per boot for its kernel log and verdict), keeps the consoles and the
#	kernel logs in build/NAME/ and build/NAME.klog. Exit status 0 only if
#	every check passed and no kernel log has a splat.
# shell: boots the same image to root's login on the console (make vm
#	SYSTEM=1); "poweroff" ends it.
set -uo pipefail

name=$1 kver=$2 mode=${3:-check}
top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/scripts/kernels.sh"
. "$top/scripts/guest-lib.sh"

status=0
tap() { echo "$1 - $name: $2"; [ "$1" = ok ] || status=1; }

img=$("$top/scripts/system-image.sh" "$kver" | tail -n 1) &&
	[ -f "$img/.done" ] || { tap "not ok" "the system image builds"; exit 1; }
# Held while the guest uses the image: system-image.sh evicts only images
# that nobody holds.
exec 6>>"$img.lock"
flock -s 6
work=$top/build/$name
rm -rf "$work"
mkdir -p "$work"
qemu-img create -q -f qcow2 -b "$img/root.img" -F raw "$work/disk.qcow2" ||
	exit 1
append="root=/dev/vda rw console=ttyS0,115200 panic=-1 oops=panic"

loop_guest_lock "$name"

if [ "$mode" = shell ]; then
	echo "booting the system guest ($kver, systemd; about a minute under" \
		"TCG): root is logged in on this console, 'poweroff' ends it" >&2
	exec qemu-system-x86_64 -accel tcg -cpu max -smp 2 -m 3G \
		-nodefaults -display none -no-reboot -serial mon:stdio \
		-drive "if=none,id=root,file=$work/disk.qcow2,format=qcow2,cache=unsafe" \
		-device virtio-blk-pci,drive=root \
		-kernel "$img/vmlinuz" -initrd "$img/initrd.img" -append "$append"
fi

# The checks of this run, on a second disk (the image does not change
# when they do).
mkdir -p "$work/payload"
cp "$top/selftests/system_test.sh" "$work/payload/run.sh"
cp "$top/selftests/demo.sh" "$work/payload/"
sed -n 's/^PACKAGE_VERSION="\(.*\)"/\1/p' "$top/dkms.conf" > "$work/payload/version"
truncate -s 16M "$work/payload.img"
mke2fs -q -t ext4 -L lrpayload -d "$work/payload" -F "$work/payload.img" ||
	exit 1

# What DKMS built while the image was made (system-image.sh): our module
# for the guest kernel and for every other Debian 6.1 and 6.12 kernel.
for log in "$img"/dkms-build/*.log; do
	k=$(basename "$log" .log)
	if [ "$(cat "$img/dkms-build/$k.rc")" != 0 ]; then
		tap "not ok" "dkms build for $k (in the image's chroot)"
		tail -n 20 "$log" | sed 's/^/# /'
	elif grep -q 'warning:' "$log"; then
		tap "not ok" "dkms build for $k has no compiler warning"
		grep -A3 'warning:' "$log" | head -n 20 | sed 's/^/# /'
	else
		tap ok "dkms build for $k, no compiler warning (in the image's chroot)"
	fi
done

: > "$top/build/$name.klog"
# boot N LIMIT_S: boot the disk once; the guest's TAP appears live.
boot() {
	local n=$1 limit=$2 start qemu
	local con=$work/console.$n out=$work/ttyS1.$n
	start=$(date +%s)
	: > "$out"
	echo "# $name: boot $n of the system guest ($kver)"
	timeout --foreground "$limit" qemu-system-x86_64 -accel tcg -cpu max \
		-smp 2 -m 3G -nodefaults -display none -no-reboot \
		-serial "file:$con" -serial "file:$out" \
		-drive "if=none,id=root,file=$work/disk.qcow2,format=qcow2,cache=unsafe" \
		-device virtio-blk-pci,drive=root \
		-drive "if=none,id=payload,file=$work/payload.img,format=raw,readonly=on" \
		-device virtio-blk-pci,drive=payload \
		-kernel "$img/vmlinuz" -initrd "$img/initrd.img" \
		-append "$append loop_rework.checks loop_rework.boot=$n" \
		</dev/null &
	qemu=$!
	# The guest's TAP, line by line as it comes, without the kernel log
	# that follows it.
	local line
	tail -n +1 -f --pid="$qemu" "$out" 2>/dev/null |
		while IFS= read -r line; do
			line=${line%$'\r'}
			[ "$line" = "===== kernel log =====" ] && break
			printf '%s\n' "$line"
		done
	wait "$qemu"
	local rc=$?
	[ "$rc" = 124 ] && echo "# $name: boot $n timed out after ${limit}s"
	echo "# $name: boot $n took $(( $(date +%s) - start )) s"

	# The kernel log: what the guest dumped at the end of its checks, and
	# the kernel's lines on the console (the whole boot and shutdown, and
	# a crash that left no dump).
	local klog=$work/klog.$n
	{
		tr -d '\r' < "$out" | sed -n '/^===== kernel log =====$/,/^===== end of kernel log =====$/p'
		echo "===== kernel lines of the console ====="
		tr -d '\r' < "$con" | grep -aE '\[ *[0-9]+\.[0-9]{6}\]'
	} > "$klog"
	{ echo "===== boot $n ====="; cat "$klog"; } >> "$top/build/$name.klog"
	local splats verdict
	splats=$(grep -aEc "$LOOP_SPLAT_RE" "$klog")
	verdict=$(tr -d '\r' < "$out" | grep -a 'LOOP-SYSTEM-RESULT:' | tail -n 1)
	if [ "$rc" != 0 ]; then
		# Killed at the time limit, or QEMU failed: even after a PASS
		# (a shutdown that hangs is a failure too).
		tap "not ok" "boot $n: the guest powers off by itself (QEMU exit $rc)"
		tr -d '\r' < "$con" | tail -n 40 | sed 's/^/# /'
	elif [ "$splats" != 0 ]; then
		tap "not ok" "boot $n: kernel log is clean ($splats splat lines, see build/$name.klog)"
		grep -aE -m 20 -A 12 "$LOOP_SPLAT_RE" "$klog" | sed 's/^/# /'
	elif [ "$verdict" = "LOOP-SYSTEM-RESULT: PASS" ]; then
		tap ok "boot $n: kernel log is clean, guest verdict PASS"
	else
		tap "not ok" "boot $n: guest verdict: ${verdict:-none (crash or timeout)}"
		tr -d '\r' < "$con" | tail -n 40 | sed 's/^/# /'
	fi
}
boot 1 900
boot 2 900
exit "$status"
