#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Build the guest's initramfs:
#   mkinitramfs.sh OUT.cpio.gz KVER|- LOOP_KO [STOCK_LOOP_KO]
#
# It holds busybox, the real util-linux/e2fsprogs tools and bash with their
# libraries, the modules a Debian kernel KVER needs for a virtio disk and
# ext4 ("-" for a kernel with them built in), our loop.ko, optionally the
# stock loop.ko, the selftests and the guest init.
set -euo pipefail

out=$1 kver=$2 loop_ko=$3 stock_ko=${4:-}
top=$(cd "$(dirname "$0")/.." && pwd)
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT

mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,lib/modules,proc,sys,dev,tmp,mnt,run,etc,root}
cp /bin/busybox "$root/bin/busybox"

# Real tools, run by path or under bash (busybox sh prefers its applets).
tools="/usr/sbin/losetup /usr/bin/mount /usr/bin/umount /usr/sbin/blkid
/usr/sbin/sfdisk /usr/bin/partx /usr/sbin/mkfs.ext4 /usr/sbin/mke2fs
/usr/bin/bash /usr/sbin/blockdev /usr/bin/lsblk /usr/bin/fio /usr/bin/cmp
/usr/bin/strace /usr/sbin/mkfs.btrfs /usr/bin/btrfs /usr/sbin/mkfs.jfs
/usr/sbin/e2fsck"
for t in $tools; do
	[ -e "$t" ] || continue
	mkdir -p "$root$(dirname "$t")"
	cp -L "$t" "$root$t"
	ldd "$t" 2>/dev/null | grep -o '/[^ ]*' | while read -r lib; do
		mkdir -p "$root$(dirname "$lib")"
		cp -Ln "$lib" "$root$lib"
	done
done
[ -e /etc/mke2fs.conf ] && cp /etc/mke2fs.conf "$root/etc/"
echo 'root:x:0:0:root:/root:/bin/sh' > "$root/etc/passwd"
echo 'nobody:x:65534:65534:nobody:/:/bin/sh' >> "$root/etc/passwd"
printf 'root:x:0:\ndisk:x:6:\nnogroup:x:65534:\n' > "$root/etc/group"

# Copy module $1 to $2, decompressed for busybox insmod.
install_ko() {
	case "$1" in
	*.xz) xz -dc "$1" > "$2" ;;
	*.zst) zstd -qdc "$1" > "$2" ;;
	*) cp "$1" "$2" ;;
	esac
}

# Modules of a Debian kernel, in load order.
: > "$root/lib/modules/load-order"
if [ "$kver" != - ]; then
	for m in virtio_pci virtio_blk ext4 btrfs jfs; do
		modprobe -S "$kver" --show-depends "$m" | awk '$1 == "insmod" {print $2}'
	done | awk '!seen[$0]++' | while read -r ko; do
		name=$(basename "$ko")
		name=${name%.xz}
		name=${name%.zst}
		install_ko "$ko" "$root/lib/modules/$name"
		echo "$name" >> "$root/lib/modules/load-order"
	done
fi

install_ko "$loop_ko" "$root/lib/modules/loop-rework.ko"
if [ -n "$stock_ko" ]; then
	install_ko "$stock_ko" "$root/lib/modules/loop-stock.ko"
fi

# Selftests and the scripts the guest runs.
mkdir -p "$root/selftests" "$root/docs"
[ -d "$top/selftests/build" ] && cp -r "$top/selftests/build/." "$root/selftests/"
cp "$top"/selftests/*.sh "$root/selftests/"
if [ -x "$top/build/bench/loop_bench" ]; then
	mkdir -p "$root/bench"
	cp "$top/build/bench/loop_bench" "$top/bench/guest-bench.sh" \
		"$top/bench/guest-trace.sh" "$root/bench/"
fi
cp "$top/scripts/guest-init.sh" "$root/init"
chmod +x "$root/init" "$root"/selftests/*

(cd "$root" && find . | cpio -o -H newc --quiet) | gzip -1 > "$out"
