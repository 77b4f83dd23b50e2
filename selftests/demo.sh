#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# The scripted demo of "make vm": attach, partitions, mount, detach,
# diskseq. Each step prints what it runs and what it saw.
set -eu
L=/usr/sbin/losetup
step() { echo; echo "### $*"; }
run() { echo "\$ $*"; "$@"; }

img=${LOOP_SCRATCH:-/tmp}/demo.img
step "A 64 MiB image with two partitions"
run truncate -s 64M "$img"
printf 'label: dos\n,24M\n,\n' | run /usr/sbin/sfdisk -q "$img"

step "Attach with partition scanning; the device and its partitions"
echo "\$ $L -f --show -P $img"
dev=$($L -f --show -P "$img")
echo "$dev"
run ls "$dev" "${dev}p1" "${dev}p2"
run $L -l "$dev"
echo "diskseq of this attachment: $(cat /sys/block/${dev#/dev/}/diskseq)"

step "A filesystem on the first partition, mounted"
run mkfs.ext4 -q "${dev}p1"
mkdir -p /tmp/demo
run mount "${dev}p1" /tmp/demo
echo "hello from a loop partition" > /tmp/demo/hello
run cat /tmp/demo/hello

step "Detach while mounted: deferred until the last user goes (autoclear)"
run $L -d "$dev"
echo "autoclear now: $(cat /sys/block/${dev#/dev/}/loop/autoclear)"
run umount /tmp/demo
echo "after umount, still bound? $($L "$dev" >/dev/null 2>&1 && echo yes || echo no)"
echo "partitions left: $(ls "${dev}"p* 2>/dev/null | wc -l)"
echo "diskseq after detach: $(cat /sys/block/${dev#/dev/}/diskseq)"

step "Reattach: a new disk sequence number, so old events cannot be confused"
echo "\$ $L -f --show $img"
dev=$($L -f --show "$img")
echo "diskseq of the new attachment: $(cat /sys/block/${dev#/dev/}/diskseq)"
run $L -d "$dev"
rm -f "$img"
echo
echo "demo done"
