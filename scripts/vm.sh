#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# make vm: boot Debian's 6.12 kernel in QEMU with our loop.ko and run the
# demo (selftests/demo.sh). SHELL_VM=1 gives an interactive shell instead.
# LOOP_VM_KERNEL=deb-6.1 boots the 6.1 kernel. SYSTEM=1 boots the system
# guest instead (Debian 12 with systemd and udev, our driver installed by
# DKMS; see scripts/run-system-guest.sh) with root logged in on the console.
# Every step that can take long says what it does on stderr.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
. scripts/kernels.sh
case "${LOOP_VM_KERNEL:-deb-6.12}" in
deb-6.1) kver=$KVER_61 kdir=$KDIR_61 ;;
*) kver=$KVER_612 kdir=$KDIR_612 ;;
esac
say() { echo "vm: $*" >&2; }

if [ "${SYSTEM:-0}" = 1 ]; then
	say "the system guest for $kver (the image is built once, about 4" \
		"minutes, then cached in $LOOP_CACHE)"
	exec ./scripts/run-system-guest.sh "vm-system-$kver" "$kver" shell
fi

name=vm-$kver
src=build/$name/src
rm -rf "build/$name"
mkdir -p "$src"
cp -r Kbuild Makefile dkms.conf drivers include "$src/"
say "building loop.ko for $kver"
make -s -C "$kdir" M="$top/$src" modules
mode=demo
[ "${SHELL_VM:-0}" = 1 ] && mode=shell
# The demo needs no selftest; the shell gets them, to run by hand.
if [ "$mode" = shell ]; then
	./scripts/extract-source.sh >/dev/null	# provides kselftest_harness.h
	say "building the selftests"
	make -s -C selftests >/dev/null
fi
say "making the guest's initramfs"
./scripts/mkinitramfs.sh "build/$name/initrd.gz" "$kver" "$src/loop.ko"
say "booting Debian's $kver kernel under QEMU (TCG, about 15 s to the" \
	"demo's first line)"
./scripts/run-guest.sh "$name" "/boot/vmlinuz-$kver" "build/$name/initrd.gz" \
	"$mode" 0 900
