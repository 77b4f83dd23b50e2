#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# The system checks: what users do with loop devices on a Debian 12 system
# (systemd as PID 1, udev, the driver installed by DKMS). Run in the system
# guest by loop-rework-checks.service from the payload disk that
# scripts/run-system-guest.sh makes; prints TAP, then the kernel log and
# the verdict line "LOOP-SYSTEM-RESULT: PASS|FAIL ...".
#   loop_rework.boot=1	DKMS's module, udev links, mounts, systemd-dissect,
#			systemd-nspawn, test-loop-block, the demo; ends with
#			"dkms remove"
#   loop_rework.boot=2	(the same disk, rebooted) the stock module is
#			back; "dkms install" again makes ours the one loaded
# Every wait is bounded: udevadm's --timeout, timeout(1).
set -u
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
here=$(cd "$(dirname "$0")" && pwd)
version=$(cat "$here/version")
kver=$(uname -r)
boot=1
for arg in $(cat /proc/cmdline); do
	case "$arg" in loop_rework.boot=*) boot=${arg#loop_rework.boot=} ;; esac
done
work=/var/tmp/lr
rm -rf "$work"
mkdir -p "$work"
cd "$work" || exit 1

n=0 fails=0
ok() { n=$((n + 1)); echo "ok $n - $*"; }
notok() { n=$((n + 1)); fails=$((fails + 1)); echo "not ok $n - $*"; }
# check NAME COMMAND...: one TAP line; on failure, what the command said.
# Its own variables start with _: the commands may read the caller's.
check() {
	local _name=$1 _out
	shift
	if _out=$("$@" 2>&1); then
		ok "$_name"
	else
		notok "$_name"
		printf '%s\n' "$_out" | tail -n 30 | sed 's/^/#   /'
	fi
}
# eq GOT WANT: for check.
eq() { [ "$1" = "$2" ] || { echo "expected '$2', got '$1'"; return 1; }; }
step() { echo "# --- $* ($(date +%T))"; }
# udev catches up within a minute, or that is a failure (a worker stuck
# on one of our devices).
settle() {
	udevadm settle --timeout=60 && return 0
	notok "udevadm settle within 60 s (${FUNCNAME[1]}, line ${BASH_LINENO[0]})"
	return 1
}

# The loaded loop driver is ours: DKMS's module, with our version (the
# stock loop.ko has no version).
ours_loaded() {
	eq "$(cat /sys/module/loop/version 2>&1)" "$version" &&
		case "$(modinfo -n loop)" in
		/lib/modules/"$kver"/updates/dkms/loop.ko*) ;;
		*) echo "modinfo -n loop: $(modinfo -n loop)"; return 1 ;;
		esac
}
stock_loaded() {
	[ -d /sys/module/loop ] || { echo "no loop module loaded"; return 1; }
	[ ! -e /sys/module/loop/version ] ||
		{ echo "loaded loop has version $(cat /sys/module/loop/version)"; return 1; }
	case "$(modinfo -n loop)" in
	/lib/modules/"$kver"/kernel/drivers/block/loop.ko*) ;;
	*) echo "modinfo -n loop: $(modinfo -n loop)"; return 1 ;;
	esac
}
# systemd ran modprobe@loop.service at boot (systemd-repart.service wants
# it, whether or not repart has anything to do): a plain "modprobe loop" on
# every Debian 12 system with systemd.
loaded_at_boot() {
	eq "$(systemctl show -P Result modprobe@loop.service)" success &&
		[ "$(systemctl show -P ExecMainStartTimestampMonotonic modprobe@loop.service)" -gt 0 ] &&
		[ -d /sys/module/loop ]
}
# modprobe -r once udev is done with the devices that the load created
# (its workers hold each new /dev/loopN open while they probe it, and a
# module in use does not unload).
unload() { settle && modprobe -r loop && not_loaded; }
not_loaded() {
	[ ! -e /sys/module/loop ] || { echo "loop is loaded:"; lsmod | grep -w loop; return 1; }
}
# /dev/loop-control is a static node of modules.devname: at boot,
# kmod-static-nodes.service lists it in /run/tmpfiles.d/static-nodes.conf
# and systemd-tmpfiles-setup-dev.service creates it. Once a loaded driver
# has gone (rmmod removes its node), that boot step is run again.
control_node() {
	grep -q 'loop-control' /run/tmpfiles.d/static-nodes.conf &&
		systemd-tmpfiles --prefix=/dev/loop-control --create --boot &&
		eq "$(stat -c '%F %t:%T' /dev/loop-control)" "character special file a:ed"
}
# losetup opens /dev/loop-control (LOOP_CTL_GET_FREE): the open of the
# static node loads the driver (char-major-10-237, devname:loop-control).
autoload() { losetup -f >/dev/null && [ -e /sys/module/loop ]; }
dkms_installed() {
	local s
	s=$(dkms status loop-rework)
	echo "$s"
	grep -qx "loop-rework/$version, $kver, x86_64: installed" <<< "$s"
}
# DKMS signed the module with its own key: with openssl installed, it made
# /var/lib/dkms/mok.key and mok.pub, the key a Secure Boot user enrols
# (README). The module's signature names that certificate's serial.
dkms_signed() {
	local signer serial cert
	signer=$(modinfo -F signer loop)
	serial=$(modinfo -F sig_key loop | tr -d ':\n' | tr a-f A-F | sed 's/^0*//')
	cert=$(openssl x509 -inform DER -in /var/lib/dkms/mok.pub -noout -serial |
		sed 's/^serial=//; s/^0*//')
	eq "$signer" "DKMS module signing key" && eq "$serial" "$cert"
}
no_bound_device() {
	local a
	a=$(losetup -a)
	[ -z "$a" ] || { echo "still bound: $a"; return 1; }
}

# Every /dev/disk/by-diskseq/N link points at a device whose disk sequence
# number is N now: udev's links never name an old attachment's number for
# a newer one. Meaningful once udev has settled.
diskseq_links_consistent() {
	local l t seq bad=0
	for l in /dev/disk/by-diskseq/*; do
		[ -L "$l" ] || continue
		t=$(readlink -f "$l")
		seq=$(cat "/sys/class/block/${t#/dev/}/diskseq" 2>/dev/null)
		if [ "$seq" != "${l##*/}" ]; then
			echo "$l -> $t, whose diskseq is ${seq:-gone}"
			bad=1
		fi
	done
	return "$bad"
}
# link_is LINK TARGET
link_is() { eq "$(readlink -f "$1" 2>&1)" "$2"; }
# udev's record of the device (from its last uevent) has its current diskseq.
udev_diskseq() {
	eq "$(udevadm info -q property --property=DISKSEQ --value -n "$1")" \
		"$(cat "/sys/class/block/${1#/dev/}/diskseq")"
}

# A GPT image with two ext4 partitions of known PARTUUIDs and UUIDs, made
# without any loop device (mkfs at an offset of the file).
pu1=4c4f4f50-0001-4a4a-8000-000000000001
pu2=4c4f4f50-0002-4a4a-8000-000000000002
fu1=4c4f4f50-00f1-4a4a-8000-000000000001
fu2=4c4f4f50-00f2-4a4a-8000-000000000002
make_parts_image() {
	truncate -s 64M parts.img &&
	printf 'label: gpt\nstart=2048, size=40960, uuid=%s, name=one\nstart=43008, size=40960, uuid=%s, name=two\n' \
		"$pu1" "$pu2" | sfdisk -q parts.img &&
	mkfs.ext4 -q -F -U "$fu1" -E offset=$((2048 * 512)) parts.img 20M &&
	mkfs.ext4 -q -F -U "$fu2" -E offset=$((43008 * 512)) parts.img 20M
}

boot1() {
	step "the driver: DKMS's loop.ko, loaded at boot and on demand"
	check "systemd's modprobe@loop.service loaded a loop driver at boot" loaded_at_boot
	check "the driver loaded at boot is ours, $version from updates/dkms" ours_loaded
	check "dkms status: loop-rework/$version installed for $kver" dkms_installed
	check "DKMS signed it with /var/lib/dkms/mok.key (its certificate mok.pub)" dkms_signed
	check "modprobe -r loop unloads it" unload
	check "/dev/loop-control is the static node of boot again (char 10:237, systemd-tmpfiles)" control_node
	check "opening /dev/loop-control loads a loop driver (devnode autoload)" autoload
	check "the autoloaded driver is ours, $version from updates/dkms" ours_loaded
	check "modprobe -r loop, then plain modprobe loop loads ours again" eval \
		'unload && modprobe loop && ours_loaded'

	# dkms remove takes minutes under TCG (most of it depmod), and nothing
	# below needs the module's files, only the loaded module: it runs
	# meanwhile, its result is checked at the end.
	step "dkms remove loop-rework/$version --all, in the background"
	timeout 600 dkms remove "loop-rework/$version" --all > dkms-remove.log 2>&1 &
	local remove=$!

	step "losetup -P with udevd: by-diskseq, by-partuuid, by-uuid links"
	check "a GPT image with two ext4 partitions (sfdisk, mkfs.ext4)" make_parts_image
	settle
	local dev name seq seq_old p
	dev=$(losetup -f --show -P parts.img)
	name=${dev#/dev/}
	seq=$(cat "/sys/block/$name/diskseq")
	echo "# attached $dev, diskseq $seq"
	check "udev creates the attachment's links (by-diskseq/$seq, by-partuuid, by-uuid)" \
		udevadm wait --timeout=60 "/dev/disk/by-diskseq/$seq" \
		"/dev/disk/by-partuuid/$pu1" "/dev/disk/by-partuuid/$pu2" \
		"/dev/disk/by-uuid/$fu1" "/dev/disk/by-uuid/$fu2"
	settle
	check "by-diskseq/$seq -> $dev" link_is "/dev/disk/by-diskseq/$seq" "$dev"
	check "by-partuuid links -> ${dev}p1, ${dev}p2" eval \
		"link_is /dev/disk/by-partuuid/$pu1 ${dev}p1 && link_is /dev/disk/by-partuuid/$pu2 ${dev}p2"
	check "by-uuid links -> ${dev}p1, ${dev}p2" eval \
		"link_is /dev/disk/by-uuid/$fu1 ${dev}p1 && link_is /dev/disk/by-uuid/$fu2 ${dev}p2"
	check "udev's DISKSEQ of $dev is the attachment's (from its uevent)" udev_diskseq "$dev"
	check "by-diskseq links all name their device's current diskseq (attached)" \
		diskseq_links_consistent
	check "losetup -d $dev" losetup -d "$dev"
	# No waiting: the detach of the only opener is done when it returns.
	check "after losetup -d: unbound, partitions gone, size 0" eval \
		"! losetup $dev >/dev/null 2>&1 && [ ! -e ${dev}p1 ] && [ ! -e ${dev}p2 ] &&
		 eq \$(cat /sys/block/$name/size) 0"
	check "udev removes by-diskseq/$seq and the partitions' links" \
		udevadm wait --removed --timeout=60 "/dev/disk/by-diskseq/$seq" \
		"/dev/disk/by-partuuid/$pu1" "/dev/disk/by-partuuid/$pu2" \
		"/dev/disk/by-uuid/$fu1" "/dev/disk/by-uuid/$fu2"
	settle
	check "udev's DISKSEQ of the detached $dev is the one after the bump" udev_diskseq "$dev"
	check "by-diskseq links all name their device's current diskseq (detached)" \
		diskseq_links_consistent

	seq_old=$seq
	dev=$(losetup -f --show -P parts.img)
	name=${dev#/dev/}
	seq=$(cat "/sys/block/$name/diskseq")
	echo "# attached again: $dev, diskseq $seq"
	check "a new attachment has a new diskseq ($seq > $seq_old)" test "$seq" -gt "$seq_old"
	check "udev links the new attachment (by-diskseq/$seq, partitions)" \
		udevadm wait --timeout=60 "/dev/disk/by-diskseq/$seq" \
		"/dev/disk/by-partuuid/$pu1" "/dev/disk/by-uuid/$fu2"
	settle
	check "the old attachment's by-diskseq/$seq_old does not point at the new one" \
		test ! -e "/dev/disk/by-diskseq/$seq_old"
	check "by-diskseq/$seq -> $dev, by-partuuid -> ${dev}p1" eval \
		"link_is /dev/disk/by-diskseq/$seq $dev && link_is /dev/disk/by-partuuid/$pu1 ${dev}p1"
	losetup -d "$dev"
	# Quick cycles, udev left behind: once it has caught up, no link may
	# name any of the attachments that came and went.
	local seqs="" cycles=0
	for _ in 1 2 3 4 5 6; do
		dev=$(losetup -f --show -P parts.img) || break
		seqs="$seqs $(cat "/sys/block/${dev#/dev/}/diskseq")"
		losetup -d "$dev" || break
		cycles=$((cycles + 1))
	done
	check "6 quick attach/detach cycles with losetup -P ($cycles done)" eq "$cycles" 6
	settle
	check "after 6 quick attach/detach cycles, udev settled: no link of their attachments ($seqs )" \
		eval "for s in $seqs; do [ ! -e /dev/disk/by-diskseq/\$s ] || { echo by-diskseq/\$s left; exit 1; }; done;
		      [ ! -e /dev/disk/by-partuuid/$pu1 ] && [ ! -e /dev/disk/by-uuid/$fu1 ]"
	check "by-diskseq links all name their device's current diskseq (after the cycles)" \
		diskseq_links_consistent
	check "losetup -a is empty" no_bound_device

	step "mount -o loop: from the command line, fstab and a mount unit"
	mkdir -p fs-tree /mnt/lrcli /mnt/lrfstab /mnt/lrunit
	echo "hello from a loop mount" > fs-tree/hello
	check "an ext4 image with a file (mkfs.ext4 -d)" \
		mkfs.ext4 -q -F -d fs-tree fs.img 32M
	check "mount -o loop fs.img" mount -o loop fs.img /mnt/lrcli
	check "the mount is on a loop device and reads the file" eval \
		'findmnt -n -o SOURCE /mnt/lrcli | grep -q "^/dev/loop" &&
		 eq "$(cat /mnt/lrcli/hello)" "hello from a loop mount"'
	settle
	check "umount" umount /mnt/lrcli
	check "losetup -a is empty as soon as umount returns" no_bound_device

	echo "$work/fs.img /mnt/lrfstab ext4 loop,noauto 0 0" >> /etc/fstab
	systemctl daemon-reload
	check "systemctl start mnt-lrfstab.mount (from fstab)" \
		timeout 120 systemctl start mnt-lrfstab.mount
	check "the fstab mount is on a loop device and reads the file" eval \
		'findmnt -n -o SOURCE /mnt/lrfstab | grep -q "^/dev/loop" &&
		 eq "$(cat /mnt/lrfstab/hello)" "hello from a loop mount"'
	settle
	check "systemctl stop mnt-lrfstab.mount" timeout 120 systemctl stop mnt-lrfstab.mount
	check "losetup -a is empty once the unit is stopped" no_bound_device
	check "mount /mnt/lrfstab (mount(8) reads fstab)" mount /mnt/lrfstab
	settle
	check "umount /mnt/lrfstab" umount /mnt/lrfstab
	check "losetup -a is empty after umount" no_bound_device
	sed -i '\|/mnt/lrfstab|d' /etc/fstab

	cat > /etc/systemd/system/mnt-lrunit.mount <<-EOF
	[Mount]
	What=$work/fs.img
	Where=/mnt/lrunit
	Type=ext4
	Options=loop
	EOF
	systemctl daemon-reload
	check "systemctl start mnt-lrunit.mount (a mount unit with Options=loop)" \
		timeout 120 systemctl start mnt-lrunit.mount
	check "the unit's mount is on a loop device and reads the file" eval \
		'findmnt -n -o SOURCE /mnt/lrunit | grep -q "^/dev/loop" &&
		 eq "$(cat /mnt/lrunit/hello)" "hello from a loop mount"'
	settle
	check "systemctl stop mnt-lrunit.mount" timeout 120 systemctl stop mnt-lrunit.mount
	check "losetup -a is empty once the unit is stopped" no_bound_device
	rm -f /etc/systemd/system/mnt-lrunit.mount
	systemctl daemon-reload

	step "systemd-dissect and systemd-nspawn on a GPT image with an OS tree"
	# A minimal OS tree: os-release and a static busybox, in the root
	# partition (type root-x86-64) of a GPT image.
	mkdir -p os/usr/bin os/usr/lib os/etc os/proc os/sys os/dev os/run \
		os/tmp os/var os/root
	cp /bin/busybox os/usr/bin/busybox
	ln -s busybox os/usr/bin/sh
	ln -s usr/bin os/bin
	printf 'ID=lrtest\nNAME="loop-rework test tree"\nVERSION_ID=1\n' > os/usr/lib/os-release
	ln -s ../usr/lib/os-release os/etc/os-release
	cp /etc/machine-id os/etc/machine-id
	check "a GPT image, root partition with the OS tree (sfdisk, mkfs.ext4 -d)" eval \
		'truncate -s 64M os.img &&
		 printf "label: gpt\nstart=2048, size=102400, type=4f68bce3-e8cd-4db1-96e7-fbcaf984b709, name=root-x86-64\n" |
			sfdisk -q os.img &&
		 mkfs.ext4 -q -F -L lrtest -d os -E offset=1048576 os.img 50M'
	local out rc
	out=$(timeout 120 systemd-dissect os.img 2>&1)
	rc=$?
	printf '%s\n' "$out" | sed 's/^/#   /'
	check "systemd-dissect os.img (exit $rc)" eq "$rc" 0
	check "systemd-dissect finds the root partition, ext4, and the tree's os-release" eval \
		'grep -q "root" <<< "$out" && grep -q "ext4" <<< "$out" && grep -q "lrtest" <<< "$out"'
	check "systemd-dissect leaves no loop device bound" eval 'settle; no_bound_device'
	mkdir -p /mnt/lrdissect
	check "systemd-dissect --mount os.img /mnt/lrdissect" \
		timeout 120 systemd-dissect --mount os.img /mnt/lrdissect
	# systemd mounts it through /proc/self/fd/N: the device is its MAJ:MIN.
	check "the dissected image is mounted from a loop partition" eval \
		'p=$(readlink -f /sys/dev/block/$(findmnt -n -o MAJ:MIN /mnt/lrdissect));
		 echo "mounted from $p";
		 [[ "$p" =~ /block/loop[0-9]+/loop[0-9]+p1$ ]] &&
		 grep -q lrtest /mnt/lrdissect/usr/lib/os-release'
	settle
	check "umount /mnt/lrdissect" umount -R /mnt/lrdissect
	check "the loop device is gone (unbound) as soon as umount returns" no_bound_device
	out=$(timeout 300 systemd-nspawn -q --register=no --image=os.img \
		/usr/bin/busybox sh -c 'echo nspawn-ran; cat /etc/os-release' </dev/null 2>&1)
	local rc=$?
	printf '%s\n' "$out" | sed 's/^/#   /'
	check "systemd-nspawn --image=os.img runs a command of the tree (exit $rc)" eval \
		'[ "$rc" = 0 ] && grep -q nspawn-ran <<< "$out" && grep -q lrtest <<< "$out"'
	check "no loop device is bound after nspawn exits" eval 'settle; no_bound_device'

	step "systemd's test-loop-block (systemd-tests), with udevd"
	out=$(cd /var/tmp && timeout 600 /usr/lib/systemd/tests/test-loop-block 2>&1)
	rc=$?
	printf '%s\n' "$out" | tail -n 15 | sed 's/^/#   /'
	check "test-loop-block passes (exit $rc; 77 would be a skip)" test "$rc" = 0
	check "no loop device is bound after test-loop-block" eval 'settle; no_bound_device'

	step "the demo of make vm"
	out=$(LOOP_SCRATCH=$work timeout 300 bash "$here/demo.sh" 2>&1)
	rc=$?
	printf '%s\n' "$out" | sed 's/^/#   /'
	check "demo.sh (exit $rc)" eval '[ "$rc" = 0 ] && grep -q "^demo done$" <<< "$out"'
	check "no loop device is bound after the demo" eval 'settle; no_bound_device'

	step "dkms remove"
	wait "$remove"
	rc=$?
	sed 's/^/#   /' dkms-remove.log
	check "dkms remove loop-rework/$version --all (exit $rc)" test "$rc" = 0
	check "modprobe -r loop" unload
	check "dkms status no longer lists loop-rework" eval \
		'[ -z "$(dkms status loop-rework)" ]'
	check "modinfo -n loop is the stock module again" eval \
		'case "$(modinfo -n loop)" in /lib/modules/'"$kver"'/kernel/drivers/block/loop.ko*) ;; *) modinfo -n loop; exit 1 ;; esac'
}

boot2() {
	step "rebooted after dkms remove: the stock driver"
	check "systemd's modprobe@loop.service loaded a loop driver at boot" loaded_at_boot
	check "it is the stock loop.ko (no version, kernel/drivers/block)" stock_loaded
	check "modprobe -r loop" unload
	check "/dev/loop-control is the static node of boot again (char 10:237, systemd-tmpfiles)" control_node
	check "opening /dev/loop-control loads a loop driver (devnode autoload)" autoload
	check "the autoloaded driver is the stock one" stock_loaded
	check "modprobe -r loop" unload

	step "dkms install again (builds in this guest)"
	local out rc
	out=$(timeout 900 dkms install "loop-rework/$version" -k "$kver" 2>&1)
	rc=$?
	printf '%s\n' "$out" | tail -n 15 | sed 's/^/#   /'
	check "dkms install loop-rework/$version -k $kver (exit $rc)" test "$rc" = 0
	check "the build has no compiler warning" eval \
		"[ -f /var/lib/dkms/loop-rework/$version/$kver/x86_64/log/make.log ] &&
		 ! grep -n 'warning:' /var/lib/dkms/loop-rework/$version/$kver/x86_64/log/make.log"
	check "dkms status: loop-rework/$version installed for $kver" dkms_installed
	check "DKMS signed it with /var/lib/dkms/mok.key again" dkms_signed
	check "plain modprobe loop loads ours" eval 'modprobe loop && ours_loaded'
	# udev's blkid may still hold the new device open when losetup -d
	# runs: the detach is then the deferred one (as with stock), finished
	# by udev's last close, so the device is unbound once udev settles.
	check "losetup attaches and detaches with it" eval \
		'truncate -s 16M r.img && d=$(losetup -f --show r.img) && losetup -d "$d" && settle && no_bound_device'
}

echo "TAP version 13"
echo "# system guest, boot $boot, $kver, loop-rework $version"
case "$boot" in
1) boot1 ;;
2) boot2 ;;
esac
step "the system"
failed_units=$(systemctl --failed --no-legend --plain)
check "no failed systemd unit" eval '[ -z "$failed_units" ] || { echo "$failed_units"; exit 1; }'
echo "1..$n"

echo "===== kernel log ====="
dmesg
echo "===== end of kernel log ====="
if [ "$fails" = 0 ]; then
	echo "LOOP-SYSTEM-RESULT: PASS"
else
	echo "LOOP-SYSTEM-RESULT: FAIL $fails of $n checks"
fi
sync
exit 0
