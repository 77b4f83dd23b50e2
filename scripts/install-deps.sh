#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Install the Debian packages the build, the guests and the tests need, if
# any is missing. Kernel packages are chosen by pattern: Debian's default
# 6.1 kernel (linux-image-amd64, linux-headers-amd64), the headers of its
# PREEMPT_RT flavour (linux-headers-rt-amd64, for make lint), and the
# newest 6.12 kernel of the archive in both flavours (generic and
# PREEMPT_RT, image and headers), never a hard-coded patch release.
# mmdebstrap and qemu-utils (qemu-img) build and boot the system guest
# (scripts/system-image.sh, scripts/run-system-guest.sh).
#   install-deps.sh		everything
#   install-deps.sh kernel	only what building the guest kernels needs
#				(make check builds them while the rest
#				installs)
#   install-deps.sh bench	everything, and gnuplot for make bench's
#				pictures
set -euo pipefail

# Before an installation, the package lists are refreshed, once per run:
# make check calls this script twice, with LOOP_APT_STAMP naming a file of
# its own run, which the first update creates.
update() {
	[ -n "${LOOP_APT_STAMP:-}" ] && [ -f "$LOOP_APT_STAMP" ] && return 0
	echo "apt-get update" >&2
	apt-get update -qq
	[ -z "${LOOP_APT_STAMP:-}" ] || touch "$LOOP_APT_STAMP"
}
install() {
	[ -n "$1" ] || return 0
	update
	echo "installing:$1 (a few minutes on a fresh machine)" >&2
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $1 >/dev/null
}
missing_of() {
	local p out=""
	for p in "$@"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' ||
			out="$out $p"
	done
	echo "$out"
}

# The kernels' set holds the whole compiler (gcc-multilib pins gcc's and
# libc's versions): the second call must not change it under their build.
kernel_pkgs="build-essential gcc-multilib bc bison flex libelf-dev libssl-dev
dwarves xz-utils linux-source-6.12"
if [ "${1:-}" = kernel ]; then
	install "$(missing_of $kernel_pkgs)"
	exit 0
fi

base_pkgs="$kernel_pkgs cpio kmod qemu-system-x86 busybox-static sparse dkms
util-linux fdisk e2fsprogs fio linux-headers-amd64 linux-image-amd64 bash
linux-headers-rt-amd64 btrfs-progs jfsutils mmdebstrap qemu-utils"
[ "${1:-}" = bench ] && base_pkgs="$base_pkgs gnuplot-nox"

missing=$(missing_of $base_pkgs)

newest_612() {
	# Newest linux-image-6.12.N+deb12-$1 the archive offers.
	apt-cache search --names-only "^linux-image-6\\.12\\.[0-9]+\\+deb12-$1\$" |
		awk '{print $1}' | sort -V | tail -n 1
}

img612=$(newest_612 amd64 || true)
rt612=$(newest_612 rt-amd64 || true)
if [ -z "$img612" ] || [ -z "$rt612" ] || [ -n "$missing" ]; then
	update
	img612=$(newest_612 amd64)
	rt612=$(newest_612 rt-amd64)
fi
[ -n "$img612" ] || { echo "no linux-image-6.12 in the archive" >&2; exit 1; }
[ -n "$rt612" ] || { echo "no linux-image-6.12 rt in the archive" >&2; exit 1; }
missing="$missing$(missing_of "$img612" "${img612/linux-image-/linux-headers-}" \
	"$rt612" "${rt612/linux-image-/linux-headers-}")"
install "$missing"
