#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Build the system guest's disk image, once, and cache it:
#   system-image.sh KVER
# A Debian 12 root filesystem from the archive (mmdebstrap: systemd as PID 1,
# udev, dbus, dkms, the headers and image of Debian's kernel KVER, the tools
# of the system checks), our driver installed into it by
# "make dkms-install KVER=KVER" run in the rootfs (a chroot hook of
# mmdebstrap) on a copy of the tree, made into an ext4 image with
# "mke2fs -d" (nothing is mounted on the host). The kernel and the initramfs
# that Debian's initramfs-tools generated inside the rootfs are copied out
# beside it, to boot it with QEMU's -kernel and -initrd.
#
# The cache directory, $LOOP_CACHE/system-KVER-KEY, is keyed by a hash of
# the package list, KVER, the apt sources, this script, the files it puts
# in the image (scripts/system/) and the driver's sources. Downloaded
# packages are kept in $LOOP_CACHE/apt-archives, so a rebuild for a changed
# driver downloads nothing. Prints what it does on stderr and the cache
# directory (root.img, vmlinuz, initrd.img, dkms-build/KVER.log and .rc for
# each kernel DKMS built for) on its last line of stdout.
set -euo pipefail

kver=$1
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
. "$here/kernels.sh"

# What a user of the driver would have, plus what the checks run: sfdisk
# (fdisk), mkfs.vfat for systemd's test-loop-block (dosfstools),
# systemd-dissect and systemd-nspawn (systemd-container), test-loop-block
# (systemd-tests), a static busybox for the OS tree in the nspawn image,
# and openssl, with which DKMS makes its signing key and signs the module
# (what the README tells Secure Boot users).
pkgs="systemd systemd-sysv udev dbus kmod dkms make initramfs-tools
linux-image-$kver linux-headers-$kver fdisk e2fsprogs dosfstools
systemd-container systemd-tests busybox-static openssl"
# DKMS also builds our module for every other Debian 6.1 and 6.12 kernel
# whose headers "make deps" installed here (generic and PREEMPT_RT), in
# the rootfs: what it does on a machine with these kernels.
dkms_kvers=$(ls -d /usr/src/linux-headers-6.1.*-amd64 \
	/usr/src/linux-headers-6.12.*-amd64 2>/dev/null |
	sed 's|.*/linux-headers-||' | sort -V | tr '\n' ' ')
for k in $dkms_kvers; do
	[ "$k" = "$kver" ] || pkgs="$pkgs linux-headers-$k"
done

# The host's apt sources (the same mirrors as every other package here).
sources=
for f in /etc/apt/sources.list.d/debian.sources /etc/apt/sources.list; do
	if [ -s "$f" ] && grep -qv '^[[:space:]]*#' "$f"; then
		sources=$f
		break
	fi
done

# The driver's sources, as "make dkms-install" copies them, without build
# products of an in-tree "make".
tree_files() {
	(cd "$top" && find Kbuild Makefile dkms.conf drivers include -type f \
		! -name '*.o' ! -name '*.ko' ! -name '*.mod' ! -name '*.mod.c' \
		! -name '.*' ! -name '*.a' ! -name 'modules.order' \
		! -name 'Module.symvers' | LC_ALL=C sort)
}

key=$( {
	echo "$pkgs" "$kver"
	[ -n "$sources" ] && cat "$sources"
	cat "$0"
	(cd "$here/system" && LC_ALL=C sort <<< "$(ls)" | xargs cat)
	(cd "$top" && tree_files | xargs sha256sum)
} | sha256sum | cut -c1-16)
out=$LOOP_CACHE/system-$kver-$key
# One build of an image at a time (a second one waits for it).
. "$here/guest-lib.sh"
mkdir -p "$LOOP_CACHE"
loop_lock 8 "$out.lock" "waiting for another build of $out"
if [ -f "$out/.done" ]; then
	echo "system image for $kver: cached in $out" >&2
	echo "$out"
	exit 0
fi

rm -rf "$out"
mkdir -p "$out" "$LOOP_CACHE/apt-archives"
rootfs=$out/rootfs
log=$out/build.log
start=$(date +%s)
echo "building the system guest's root filesystem for $kver with mmdebstrap" \
	"(3 to 4 minutes; log: $log)" >&2

# Hooks get the rootfs as $1. The tree goes to /root/loop-rework, where
# the README's "make dkms-install" runs; the essential hook sets up
# initramfs-tools before the kernel package runs it: the modules to find a
# virtio disk with ext4 only, so that the initramfs is small and quick to
# boot under TCG.
# The log's lines start with the seconds since the start.
stamp() {
	while IFS= read -r line; do
		printf '%4d %s\n' $(( $(date +%s) - start )) "$line"
	done
}
tree_copy=$(mktemp -d)
trap 'rm -rf "$tree_copy"' EXIT
(cd "$top" && tree_files | cpio -pdm --quiet "$tree_copy")

# dpkg's fsync per file is not needed for a throw-away build; nor are the
# man pages, translations and docs. Nor the kernel's modules for hardware
# that the guest (qemu -nodefaults, virtio disks) does not have: they are
# half of the modules' bytes, and depmod, which dkms runs in the guest for
# "dkms remove" and "dkms install", reads every module (about 95 s under
# TCG with all of them).
nohw="drivers/media drivers/net/wireless drivers/net/ethernet sound
drivers/gpu drivers/infiniband drivers/iio drivers/hwmon drivers/platform
drivers/staging drivers/comedi drivers/isdn drivers/bluetooth"
exclude=()
for d in $nohw; do
	exclude+=("--dpkgopt=path-exclude=/lib/modules/*/kernel/$d/*")
done
mmdebstrap --variant=minbase --mode=root \
	--dpkgopt=force-unsafe-io \
	--dpkgopt='path-exclude=/usr/share/man/*' \
	--dpkgopt='path-exclude=/usr/share/locale/*' \
	--dpkgopt='path-exclude=/usr/share/doc/*' \
	--dpkgopt='path-include=/usr/share/doc/*/copyright' \
	"${exclude[@]}" \
	--include="$(echo $pkgs | tr ' ' ,)" \
	--skip=download/empty --skip=essential/unlink \
	--setup-hook="mkdir -p \"\$1\"/var/cache/apt/archives" \
	--setup-hook="sync-in $LOOP_CACHE/apt-archives /var/cache/apt/archives" \
	--essential-hook="mkdir -p \"\$1\"/etc/initramfs-tools/conf.d \"\$1\"/usr/share/initramfs-tools/modules.d" \
	--essential-hook="echo MODULES=list > \"\$1\"/etc/initramfs-tools/conf.d/loop-rework.conf" \
	--essential-hook="printf '%s\n' virtio_pci virtio_blk ext4 > \"\$1\"/usr/share/initramfs-tools/modules.d/loop-rework" \
	--customize-hook="sync-out /var/cache/apt/archives $LOOP_CACHE/apt-archives" \
	--customize-hook="rm -f \"\$1\"/var/cache/apt/archives/*.deb" \
	--customize-hook="'$here/system/customize.sh' \"\$1\" '$kver' '$tree_copy' '$out' '$dkms_kvers'" \
	bookworm "$rootfs" ${sources:+"$sources"} 2>&1 | stamp > "$log" || {
	tail -n 30 "$log" >&2
	echo "mmdebstrap failed (see $log)" >&2
	exit 1
}
echo "  root filesystem built in $(( $(date +%s) - start )) s" >&2

cp "$rootfs/boot/vmlinuz-$kver" "$out/vmlinuz"
cp "$rootfs/boot/initrd.img-$kver" "$out/initrd.img"

# 2 GiB free for the checks' images; sparse on the host.
size=$(( $(du -sm "$rootfs" | cut -f1) + 2048 ))M
echo "making the ext4 image ($size) with mke2fs -d" >&2
mke2fs -q -t ext4 -L lrroot -d "$rootfs" -F "$out/root.img" "$size" 2>&1 |
	stamp >> "$log"
rm -rf "$rootfs"
touch "$out/.done"
# Images of older trees for this kernel: all but the previous one go (only
# finished ones that no build holds).
for old in $(ls -dt "$LOOP_CACHE/system-$kver-"*/ | tail -n +3); do
	old=${old%/}
	[ -f "$old/.done" ] || continue
	(flock -n 7 && rm -rf "$old" && rm -f "$old.lock") 7>"$old.lock"
done
echo "  system image built in $(( $(date +%s) - start )) s: $out" >&2
echo "$out"
