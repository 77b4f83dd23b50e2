#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# make vm: boot Debian's 6.12 kernel in QEMU with our loop.ko and run the
# demo (selftests/demo.sh). SHELL_VM=1 gives an interactive shell instead.
# LOOP_VM_KERNEL=deb-6.1 boots the 6.1 kernel.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
. scripts/kernels.sh
case "${LOOP_VM_KERNEL:-deb-6.12}" in
deb-6.1) kver=$KVER_61 kdir=$KDIR_61 ;;
*) kver=$KVER_612 kdir=$KDIR_612 ;;
esac
name=vm-$kver
src=build/$name/src
rm -rf "build/$name"
mkdir -p "$src"
cp -r Kbuild Makefile dkms.conf drivers include "$src/"
make -s -C "$kdir" M="$top/$src" modules
./scripts/extract-source.sh >/dev/null	# provides kselftest_harness.h
make -s -C selftests >/dev/null
./scripts/mkinitramfs.sh "build/$name/initrd.gz" "$kver" "$src/loop.ko"
mode=demo
[ "${SHELL_VM:-0}" = 1 ] && mode=shell
./scripts/run-guest.sh "$name" "/boot/vmlinuz-$kver" "build/$name/initrd.gz" \
	"$mode" 0 900
