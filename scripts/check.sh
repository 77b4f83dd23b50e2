#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# make check: build the module against Debian's 6.1 and 6.12 headers (generic
# and PREEMPT_RT), a debug 6.12 kernel (lockdep, KASAN, kmemleak, ...) and a
# KCSAN 6.12 kernel, boot each kernel in QEMU (TCG) with our loop.ko, run
# the selftests, judge the kernel log; then the system guest: Debian 12 with
# systemd and udev, our driver installed by DKMS (run-system-guest.sh).
# Prints the TAP of every guest and a closing "N passed, N failed" line.
#   LOOP_KERNELS="deb-6.1 deb-6.12 rt-6.12 debug-6.12 kcsan-6.12 system-6.12"
#			which guests to run (default: these; system-6.1 too
#			if named)
#   LOOP_SOAK=SECONDS	instead of the selftests, run the soak (make soak)
set -uo pipefail
export LC_NUMERIC=C	# the decimal point of time's and times' figures
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top" || exit 1
mkdir -p build
rm -f build/*.tap build/*.klog
rm -rf build/prep
mkdir -p build/prep
start=$(date +%s)
want=${LOOP_KERNELS:-deb-6.1 deb-6.12 rt-6.12 debug-6.12 kcsan-6.12 system-6.12}
wanted() { case " $want " in *" $1 "*) return 0 ;; esac; return 1; }

# What takes long and needs no guest (our two guest kernels, 23 and 17
# CPU-minutes measured, and the system image) is made in the background
# at the lowest CPU priority while the guests that need none of it run: a
# TCG guest leaves part of the 2 CPUs idle, and a niced build takes what
# it leaves. The kernels' build starts as soon as their packages are in,
# while the rest installs. Each result is cached, so a second run finds
# them at once. build/prep/NAME.out gets the result's path, NAME.err the
# progress, NAME.rc the exit status, NAME.time its wall and CPU seconds.
prep() {
	local name=$1 rc
	shift
	# time in a subshell, which has no other child that could end (and
	# be counted) meanwhile.
	( time nice -n 19 "$@" > "build/prep/$name.out" \
		2> "build/prep/$name.err" ) 2> "build/prep/$name.time"
	rc=$?
	echo "$rc" > "build/prep/$name.rc.tmp"
	mv "build/prep/$name.rc.tmp" "build/prep/$name.rc"
}
TIMEFORMAT='%R %U %S'
export LOOP_APT_STAMP=$top/build/prep/apt-updated
./scripts/install-deps.sh kernel || exit 1
set -m	# the background steps in a process group of their own
(
	(
		prep src ./scripts/extract-source.sh
		[ "$(cat build/prep/src.rc)" = 0 ] || exit 1
		wanted debug-6.12 && prep debug ./scripts/build-kernel.sh debug
		wanted kcsan-6.12 && prep kcsan ./scripts/build-kernel.sh kcsan
		true
	) &
	# The system images once everything is installed (mmdebstrap).
	while [ ! -f build/prep/deps.rc ]; do
		kill -0 $$ 2>/dev/null || exit 1	# make check is gone
		sleep 1
	done
	if [ "$(cat build/prep/deps.rc)" = 0 ]; then
		. scripts/kernels.sh
		wanted system-6.12 && prep system-6.12 ./scripts/system-image.sh "$KVER_612"
		wanted system-6.1 && prep system-6.1 ./scripts/system-image.sh "$KVER_61"
	fi
	wait
) </dev/null &
prep_pid=$!
set +m
trap 'kill -- -$prep_pid 2>/dev/null' EXIT
./scripts/install-deps.sh
echo $? > build/prep/deps.rc.tmp
mv build/prep/deps.rc.tmp build/prep/deps.rc
[ "$(cat build/prep/deps.rc)" = 0 ] || exit 1
. scripts/kernels.sh	# which kernels are installed
while [ ! -f build/prep/src.rc ]; do
	kill -0 "$prep_pid" 2>/dev/null || [ -f build/prep/src.rc ] ||
		{ echo "the source's extraction did not finish"; exit 1; }
	sleep 1
done
[ "$(cat build/prep/src.rc)" = 0 ] || { cat build/prep/src.err; exit 1; }
make -s -C selftests >/dev/null || { echo "selftests do not build"; exit 1; }

# result NAME: the result of the finished background step NAME (the last
# line of its output); fails, showing its log, if the step did.
result() {
	if [ "$(cat "build/prep/$1.rc")" != 0 ]; then
		tail -n 30 "build/prep/$1.err" | sed 's/^/# /' >&2
		return 1
	fi
	tail -n 1 "build/prep/$1.out"
}
# cputime WHAT FILE: the wall and CPU seconds of a step, as bash's time
# (TIMEFORMAT above) wrote them to FILE.
cputime() {
	awk -v what="$1" 'NF == 3 {
		printf "# %s: %d s, CPU %d s (%.2f CPUs)\n", what, $1, $2 + $3,
			($1 > 0 ? ($2 + $3) / $1 : 0) }' "$2"
}
# fail NAME WHAT: a failure of the host's part of guest NAME, in its TAP.
fail() {
	echo "not ok - $1: $2" | tee -a "build/$1.tap"
	status=1
}

# name kdir bzimage modules-kver debug mode timeout time-scale [programs
# left out]. What needs to run once runs on one guest: the 32-bit builds
# (the compat ioctl paths are the same code on every kernel) on deb-6.12,
# the fuzzer on the kernels that check what it provokes (debug, KCSAN),
# the util-linux tools (loop_tools.sh: what they print does not depend on
# the kernel's debug options) on the Debian kernels. The KCSAN guest runs
# the race tests and the fuzzer (the rundown and review tests, also
# concurrent, run under lockdep and KASAN on the debug kernel).
# The tests bounded by time run 0.3 of their time on the Debian kernels
# and the KCSAN kernel, 0.2 of it on the debug kernel (five to fifteen
# times slower under TCG): LOOP_TIME_SCALE, which also scales the least
# number of rounds they must do (lt_least()), the amounts some of them
# write (lt_scaled()), the fuzzer's operations and the fault points
# visited. make prove-races runs
# the race tests on Debian's 6.12 at their full time.
once=loop_ioctl_test32,loop_badinput_test32
guests="deb-6.1 $KDIR_61 /boot/vmlinuz-$KVER_61 $KVER_61 0 check 900 0.3 $once,loop_fuzz
deb-6.12 $KDIR_612 /boot/vmlinuz-$KVER_612 $KVER_612 0 check 900 0.3 loop_fuzz
rt-6.12 $KDIR_612RT /boot/vmlinuz-$KVER_612RT $KVER_612RT 0 check 900 0.3 $once,loop_fuzz
debug-6.12 @debug arch/x86/boot/bzImage - 1 check 2700 0.2 $once,loop_tools.sh
kcsan-6.12 @kcsan arch/x86/boot/bzImage - 0 races 1500 0.3
system-6.12 @system-6.12 - $KVER_612 - system - - -
system-6.1 @system-6.1 - $KVER_61 - system - - -"

# run_guest NAME KDIR IMAGE KVER DEBUG MODE LIMIT SCALE SKIP
run_guest() {
	local name=$1 kdir=$2 image=$3 kver=$4 debug=$5 mode=$6 limit=$7
	local scale=$8 skip=${9:-} src stock=""

	if [ "$mode" = system ]; then
		echo "# ===== guest $name: Debian 12, systemd, udev, DKMS ($kver) ====="
		./scripts/run-system-guest.sh "$name" "$kver" </dev/null |
			tee "build/$name.tap" || status=1
		return
	fi
	echo "# ===== guest $name: $image ====="
	# Each kernel builds from its own copy: Kbuild writes beside sources.
	src=build/$name/src
	rm -rf "build/$name"
	mkdir -p "$src"
	cp -r Kbuild Makefile dkms.conf drivers include "$src/"
	if ! make -s -C "$kdir" M="$top/$src" modules > "build/$name/build.log" 2>&1 ||
	   grep -q 'warning:' "build/$name/build.log"; then
		cat "build/$name/build.log"
		fail "$name" "module builds without warnings"
		return
	fi
	[ "$kver" != - ] && stock=$(ls /lib/modules/"$kver"/kernel/drivers/block/loop.ko* 2>/dev/null | head -n 1)
	./scripts/mkinitramfs.sh "build/$name/initrd.gz" "$kver" "$src/loop.ko" $stock
	if [ -n "${LOOP_SOAK:-}" ]; then
		./scripts/run-guest.sh "$name" "$image" "build/$name/initrd.gz" soak \
			"$debug" $((LOOP_SOAK + 1200)) "loop.soak=$LOOP_SOAK" \
			</dev/null | tr -d '\r' | tee "build/$name.tap" || status=1
		return
	fi
	./scripts/run-guest.sh "$name" "$image" "build/$name/initrd.gz" "$mode" \
		"$debug" "$limit" "loop.time=$scale" ${skip:+loop.skip=$skip} \
		</dev/null | tr -d '\r' | tee "build/$name.tap" || status=1
}

# The guests run one at a time (TCG is timing-sensitive), each as soon as
# what it needs from the background is there: in the order above when
# everything is cached; on a fresh machine the system guest fills the wait
# for a guest kernel. A guest whose kernel or image failed to build is a
# failure in its TAP.
status=0
pending=$(while read -r line; do
	set -- $line
	wanted "$1" || continue
	[ -n "${LOOP_SOAK:-}" ] && [ "$6" = system ] && continue
	echo "$line"
done <<< "$guests")
waited=0
while [ -n "$pending" ]; do
	chosen="" rest="" blocked=""
	while read -r line; do
		set -- $line
		if [ -n "$chosen" ]; then
			rest+="$line"$'\n'
			continue
		fi
		case "$2" in
		@*)
			p=${2#@}
			if [ ! -f "build/prep/$p.rc" ]; then
				if ! kill -0 "$prep_pid" 2>/dev/null &&
				   [ ! -f "build/prep/$p.rc" ]; then
					echo "# $p: the background steps ended without it" >&2
					fail "$1" "its kernel or image builds"
				else
					rest+="$line"$'\n'
					blocked+=" $p"
				fi
				continue
			fi
			if ! out=$(result "$p"); then
				fail "$1" "its kernel or image builds"
				continue
			fi
			[ "$6" != system ] && line="$1 $out $out/$3 ${*:4}"
			;;
		esac
		chosen=$line
	done <<< "$pending"
	pending=${rest%$'\n'}
	if [ -n "$chosen" ]; then
		waited=0
		name=${chosen%% *}
		# In a subshell, as prep() (its status is the guest's).
		( time run_guest $chosen 2>&3; exit "$status" ) 3>&2 \
			2> "build/$name.time" || status=1
		cputime "guest $name" "build/$name.time"
		continue
	fi
	[ -z "$pending" ] && break
	if [ $((waited % 60)) = 0 ]; then
		for p in $blocked; do
			echo "# waiting for $p: $(tail -n 1 "build/prep/$p.err" 2>/dev/null)" >&2
		done
	fi
	waited=$((waited + 5))
	sleep 5
done
wait "$prep_pid"
for f in build/prep/*.time; do
	name=${f##*/}
	[ -s "$f" ] && cputime "background step ${name%.time}" "$f"
done

pass=$(cat build/*.tap 2>/dev/null | grep -E '^ *ok ' | grep -vc '# SKIP')
skip=$(cat build/*.tap 2>/dev/null | grep -E '^ *ok ' | grep -c '# SKIP')
fail=$(cat build/*.tap 2>/dev/null | grep -cE '^ *not ok ')
# CPU seconds of this script and of everything it waited for (bash's
# times: "XmY.YYYs XmY.YYYs", user and system, of the shell, then of its
# children).
times > build/prep/times
cpu=$(awk '{ for (i = 1; i <= 2; i++) {
	split($i, a, "m"); t += a[1] * 60 + a[2] } } END { printf "%d", t }' \
	build/prep/times)
echo "# wall time: $(( $(date +%s) - start ))s, CPU time: ${cpu}s"
echo "$pass passed, $fail failed, $skip skipped"
[ "$status" = 0 ] && [ "$fail" = 0 ]
