#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# mmdebstrap customize hook of scripts/system-image.sh:
#   customize.sh ROOTFS KVER TREE OUT "KVER..."
# Installs our driver with DKMS exactly as the README tells users (the
# tree's "make dkms-install", run in the rootfs by chroot) for KVER, has
# DKMS build it for each of the other kernels KVER... (their headers are
# installed; OUT/dkms-build/K.log and K.rc keep the build log and exit
# status of each, KVER's included), then makes the rootfs bootable as a
# QEMU guest: fstab, hostname, root logged in on the serial console, and
# the unit that runs the system checks.
set -euo pipefail

root=$1 kver=$2 tree=$3 out=$4 others=$5
here=$(cd "$(dirname "$0")" && pwd)
version=$(sed -n 's/^PACKAGE_VERSION="\(.*\)"/\1/p' "$tree/dkms.conf")

mkdir -p "$root/root/loop-rework" "$out/dkms-build"
cp -a "$tree/." "$root/root/loop-rework/"
chroot "$root" make -C /root/loop-rework dkms-install KVER="$kver"
rm -rf "$root/root/loop-rework"
dkms_dir=$root/var/lib/dkms/loop-rework/$version
cp "$dkms_dir/$kver/x86_64/log/make.log" "$out/dkms-build/$kver.log"
echo 0 > "$out/dkms-build/$kver.rc"
for k in $others; do
	[ "$k" = "$kver" ] && continue
	rc=0
	chroot "$root" dkms build "loop-rework/$version" -k "$k" \
		> "$out/dkms-build/$k.log" 2>&1 || rc=$?
	echo "$rc" > "$out/dkms-build/$k.rc"
	# The compiler's output: make.log of the build (of the build
	# directory when it failed).
	for f in "$dkms_dir/$k/x86_64/log/make.log" "$dkms_dir/build/make.log"; do
		if [ -f "$f" ]; then
			cat "$f" >> "$out/dkms-build/$k.log"
			break
		fi
	done
done

echo loop-rework-guest > "$root/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\tloop-rework-guest\n' > "$root/etc/hosts"
echo 'LABEL=lrroot / ext4 rw,errors=remount-ro 0 1' > "$root/etc/fstab"
# A fixed machine id: no first-boot setup, the same system on every boot.
echo 6c6f6f70726577726b2d6775657374aa > "$root/etc/machine-id"
chroot "$root" passwd -qd root
chroot "$root" systemctl -q mask systemd-firstboot.service \
	apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer

# Root on the serial console without a password (make vm SYSTEM=1).
mkdir -p "$root/etc/systemd/system/serial-getty@ttyS0.service.d"
cat > "$root/etc/systemd/system/serial-getty@ttyS0.service.d/autologin.conf" <<'EOF'
[Service]
ExecStart=
ExecStart=-/sbin/agetty --autologin root --keep-baud 115200,57600,38400,9600 - $TERM
EOF

# The checks: started only with loop_rework.checks on the kernel command
# line, from the host's payload disk (see scripts/run-system-guest.sh).
install -m 755 "$here/loop-rework-checks" "$root/usr/local/sbin/"
install -m 644 "$here/loop-rework-checks.service" "$root/etc/systemd/system/"
chroot "$root" systemctl -q enable loop-rework-checks.service
