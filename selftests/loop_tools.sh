#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Interoperability with the real util-linux and e2fsprogs tools: losetup
# (-f --show, -P, -o, --sizelimit, -r, --direct-io, -b, -c, -d, -D),
# mount -o loop of an ext4 image, blkid, sfdisk, partx. Prints TAP.
# The admin guide's examples are these commands.
set -u
LOSETUP=/usr/sbin/losetup
DIR=${LOOP_SCRATCH:-/tmp}
n=0 fails=0
ok() { n=$((n + 1)); echo "ok $n $1"; }
fail() { n=$((n + 1)); fails=$((fails + 1)); echo "not ok $n $1"; }
check() { # check NAME COMMAND...
	local name=$1
	shift
	if "$@"; then ok "$name"; else fail "$name"; fi
}
eq() { [ "$1" = "$2" ] || { echo "# expected '$2', got '$1'"; return 1; }; }

echo "TAP version 13"
echo "1..19"
img=$DIR/tools-$$.img
truncate -s 64M "$img"

dev=$($LOSETUP -f --show "$img")
check "losetup -f --show prints a device" test -b "$dev"
check "losetup -l lists it" eval "$LOSETUP -l -n -O BACK-FILE $dev | grep -q $img"
check "sysfs backing_file" eq "$(cat /sys/block/${dev#/dev/}/loop/backing_file)" "$img"
check "losetup -d detaches" $LOSETUP -d "$dev"
check "device is unbound after -d" eval "! $LOSETUP $dev >/dev/null 2>&1"

dev=$($LOSETUP -f --show -o 1048576 --sizelimit 8388608 "$img")
check "-o and --sizelimit give the size" eq "$(blockdev --getsize64 "$dev")" 8388608
check "-o shows in sysfs" eq "$(cat /sys/block/${dev#/dev/}/loop/offset)" 1048576
$LOSETUP -d "$dev"

dev=$($LOSETUP -f --show -r "$img")
check "-r gives a read-only device" eq "$(blockdev --getro "$dev")" 1
$LOSETUP -d "$dev"

dev=$($LOSETUP -f --show -b 4096 "$img")
check "-b 4096 sets the logical block size" eq "$(blockdev --getss "$dev")" 4096
truncate -s 96M "$img"
$LOSETUP -c "$dev"
check "-c picks up the new size" eq "$(blockdev --getsize64 "$dev")" 100663296
$LOSETUP -d "$dev"

if dev=$($LOSETUP -f --show --direct-io=on "$img") &&
   [ "$(cat /sys/block/${dev#/dev/}/loop/dio)" = 1 ]; then
	ok "--direct-io=on"
elif [ "$DIR" = /tmp ]; then
	ok "--direct-io=on # SKIP no O_DIRECT on $DIR"
else
	fail "--direct-io=on"
fi
$LOSETUP -d "$dev" 2>/dev/null

printf 'label: dos\n,16M\n,16M\n' | sfdisk -q "$img" >/dev/null 2>&1
dev=$($LOSETUP -f --show -P "$img")
check "-P scans partitions" test -b "${dev}p1" -a -b "${dev}p2"
check "partx lists two partitions" eq "$(partx -g -o NR "$dev" | wc -l)" 2
$LOSETUP -d "$dev"
check "no partition survives detach" test ! -e "${dev}p1"

truncate -s 0 "$img"
truncate -s 64M "$img"
mkfs.ext4 -q -F "$img" >/dev/null 2>&1
mkdir -p /tmp/mnt-$$
check "mount -o loop of an ext4 image" mount -o loop "$img" /tmp/mnt-$$
echo hello > /tmp/mnt-$$/hello
mdev=$(/usr/bin/mount | awk -v m=/tmp/mnt-$$ '$3 == m {print $1}')
check "blkid sees ext4" eq "$(blkid -o value -s TYPE "$mdev")" ext4
umount /tmp/mnt-$$
check "umount releases the loop device" eval "! $LOSETUP -j $img | grep -q ."

$LOSETUP -f "$img"
$LOSETUP -f "$img"
$LOSETUP -D
check "losetup -D detaches all" eval "! $LOSETUP -a | grep -q ."
mount -o loop "$img" /tmp/mnt-$$
check "the file written through the loop mount is there" eq "$(cat /tmp/mnt-$$/hello)" hello
umount /tmp/mnt-$$
rmdir /tmp/mnt-$$
rm -f "$img"
echo "# $fails of $n failed"
[ "$fails" = 0 ]
