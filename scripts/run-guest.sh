#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Boot one guest and judge it:
#   run-guest.sh NAME BZIMAGE INITRAMFS MODE DEBUG TIMEOUT_S [CMDLINE...]
# Prints the guest's console (the TAP of the tests) on stdout, saves the
# kernel log in build/NAME.klog, and prints one more TAP line for the
# kernel log. Exit status 0 only if the guest said PASS and its kernel log
# has no splat.
set -uo pipefail

name=$1 kernel=$2 initrd=$3 mode=$4 debug=$5 limit=$6
shift 6
top=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$top/build"
klog=$top/build/$name.klog
disk=$top/build/$name.scratch.img
# Two 4Kn disks (4096-byte logical and physical blocks): vdb stays raw,
# the guest makes an ext4 on vdc. The 512-byte scratch disk stays vda.
disk4k=$top/build/$name.raw4k.img
disk4kfs=$top/build/$name.scratch4k.img

append="console=ttyS0 loglevel=1 panic=-1 oops=panic rdinit=/init"
# TCG's TSC follows the host's clock: on a loaded host the clocksource
# watchdog can call it unstable, and the kernel then patches the
# sched_clock static branch while the other vCPU may run through it. An
# RT guest died of an unhandled int3 in sched_clock_cpu(), which fits
# that (not proven).
append="$append tsc=reliable"
# PCI interrupts from the BIOS's routing table, not from ACPI's: the debug
# kernel (KASAN, lockdep) spends minutes in the AML interpreter evaluating
# _PRT for each virtio device (soft lockups at boot, measured); ACPI still
# describes the CPUs (see scripts/kconfig/base.config).
append="$append pci=noacpi"
append="$append loop.mode=$mode loop.debug=$debug hung_task_panic=0"
[ "$debug" = 1 ] && append="$append kmemleak=on"
[ $# -gt 0 ] && append="$append $*"

. "$top/scripts/guest-lib.sh"
loop_guest_lock "$name"

serial0="-serial stdio"
[ "$mode" = shell ] && serial0="-serial mon:stdio"
console=$top/build/$name.console
boot() {
	rm -f "$klog"
	truncate -s 1G "$disk"
	truncate -s 256M "$disk4k" "$disk4kfs"
	qemu() {
		timeout --foreground "$limit" qemu-system-x86_64 -accel tcg \
			-cpu max -smp 2 -m 3G -display none -no-reboot \
			$serial0 -serial "file:$klog" \
			-drive "if=none,id=scratch,file=$disk,format=raw,cache=unsafe" \
			-device virtio-blk-pci,drive=scratch \
			-drive "if=none,id=raw4k,file=$disk4k,format=raw,cache=unsafe" \
			-device virtio-blk-pci,drive=raw4k,logical_block_size=4096,physical_block_size=4096 \
			-drive "if=none,id=scratch4k,file=$disk4kfs,format=raw,cache=unsafe" \
			-device virtio-blk-pci,drive=scratch4k,logical_block_size=4096,physical_block_size=4096 \
			-kernel "$kernel" -initrd "$initrd" -append "$append"
	}
	if [ "$mode" = shell ]; then
		qemu
		rc=$?
	else
		qemu | tee "$console"
		rc=${PIPESTATUS[0]}
	fi
	rm -f "$disk" "$disk4k" "$disk4kfs"
}
# Under TCG, a Debian kernel very rarely dies while booting, before any of
# our code runs (seen once: an int3 Oops in sched_clock_cpu while patching
# kernel text). Such a boot is retried, at most twice, and said so; a guest
# that got as far as loading our module is never retried.
for attempt in 1 2 3; do
	boot
	[ "$mode" = shell ] && break
	grep -aq 'LOOP-GUEST-STARTED' "$console" && break
	grep -aqE 'Oops|Kernel panic' "$console" || break
	echo "# $name: guest kernel crashed while booting, before our module was loaded (attempt $attempt)"
done
[ "$rc" = 124 ] && echo "# $name: guest timed out after ${limit}s"

# What counts as a splat: any report of the kernel's checkers.
splat=$LOOP_SPLAT_RE
verdict=$(grep -a 'LOOP-GUEST-RESULT:' "$klog" 2>/dev/null | tail -n 1)
# The one exception: while loop_fault_test injects allocation failures
# (between its "loop-fault:" markers), a failed page or vmalloc allocation
# prints its stack ("page allocation failure" or "vmalloc error" ... "Call
# Trace:"). Those stacks only are excused; any other report there counts.
#
# On the KCSAN kernel, a data race report whose racing accesses are both
# outside our module (its title, "data-race in F / G", names no function
# marked "[loop]") is one of the kernel's own: it is listed, not counted,
# and says whether our module was on one of its stacks (as in two reads
# through one backing file racing on the file's readahead state inside
# filemap_read(), which threads of any program sharing a file descriptor
# also do). One whose title names a function of ours is ours, and fails.
# (The serial log ends its lines with CR LF: the CRs go first.)
excused() {
	awk '/loop-fault: injecting/ { f = 1 } /loop-fault: done/ { f = 0 }
	     f && /page allocation failure|vmalloc error:/ { w = NR }
	     f && w && NR - w <= 8 && /Call Trace:/ { next }
	     { print }' <(tr -d '\r' < "$klog") |
	awk '/==================================================$/ {
		blk = blk $0 "\n"
		if (!inblk) { inblk = 1; next }
		inblk = 0
		match(blk, /KCSAN: [^\n]*/)
		title = substr(blk, RSTART, RLENGTH)
		if (RSTART && title !~ /\[loop\]/) {
			print "foreign " title \
			      (blk ~ /\[loop\]/ ? " (reached through loop)" : "")
		} else {
			printf "%s", blk
		}
		blk = ""
		next
	     }
	     inblk { blk = blk $0 "\n"; next }
	     { print }
	     END { printf "%s", blk }'
}
splats=$(excused 2>/dev/null | grep -aEc "$splat")
foreign=$(excused 2>/dev/null | grep -a '^foreign KCSAN' | sort | uniq -c)
[ -n "$foreign" ] && echo "$foreign" |
	sed "s/^/# $name: data race outside the loop module (not counted): /"
if [ "${splats:-0}" != 0 ]; then
	echo "not ok - $name: kernel log is clean ($splats splat lines, see build/$name.klog)"
	excused | grep -aE -m 20 -A 12 "$splat" | sed 's/^/# /'
	exit 1
fi
case "$verdict" in
*": PASS"*)
	echo "ok - $name: kernel log is clean, guest verdict PASS"
	exit 0 ;;
*)
	echo "not ok - $name: guest verdict: ${verdict:-none (crash or timeout)}"
	tail -n 40 "$klog" 2>/dev/null | sed 's/^/# /'
	exit 1 ;;
esac
