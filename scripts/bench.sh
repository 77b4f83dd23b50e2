#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# make bench: not a test. For Debian's 6.1 and 6.12 kernels, boot one guest
# that measures the kernel's stock loop.ko and ours alternately in the same
# boot (bench/guest-bench.sh), then write the medians and ratios
# (scripts/bench-table.awk) to bench/results-<kernel>.md, print them, and
# draw them as SVG beside it (scripts/bench-plot.sh).
#   BENCH_KERNELS="deb-6.1 deb-6.12"	which kernels
#   BENCH_ROUNDS=5 BENCH_RUNTIME=1 BENCH_SCALE=100,1000,10000
#   BENCH_PARTS=io,churn,scale BENCH_PARALLEL=0	see
#   BENCH_JOBS= BENCH_SETUPS= BENCH_MODARGS=	bench/guest-bench.sh
#   BENCH_AA=1	A/A calibration: the stock loop.ko stands in for ours
#		too, and the table goes to bench/results-<kernel>-aa.md.
#		Its ratios differ from 1.00 by the bench's noise alone.
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top" || exit 1
. scripts/kernels.sh
mkdir -p build/bench
gcc -Wall -O2 -pthread -static -Iinclude/uapi -o build/bench/loop_bench \
	bench/loop_bench.c || exit 1

guests="deb-6.1 $KDIR_61 $KVER_61
deb-6.12 $KDIR_612 $KVER_612"
want=${BENCH_KERNELS:-deb-6.1 deb-6.12}
status=0
bench_one() {
	local name=$1 kdir=$2 kver=$3 dir stock ours out
	dir=build/bench-$name
	rm -rf "$dir"
	mkdir -p "$dir/src"
	stock=$(ls /lib/modules/"$kver"/kernel/drivers/block/loop.ko* | head -n 1)
	[ -f "$stock" ] || { echo "no stock loop.ko for $kver"; exit 1; }
	if [ "${BENCH_AA:-0}" = 1 ]; then
		ours=$stock
		out=bench/results-$name-aa.md
	else
		cp -r Kbuild Makefile dkms.conf drivers include "$dir/src/"
		make -s -C "$kdir" M="$top/$dir/src" modules > "$dir/build.log" 2>&1 ||
			{ cat "$dir/build.log"; exit 1; }
		ours=$dir/src/loop.ko
		out=bench/results-$name.md
	fi
	./scripts/mkinitramfs.sh "$dir/initrd.gz" "$kver" "$ours" "$stock"
	echo "# bench guest $name ($kver): this takes a while"
	./scripts/run-guest.sh "bench-$name" "/boot/vmlinuz-$kver" \
		"$dir/initrd.gz" bench 0 5400 "bench.rounds=${BENCH_ROUNDS:-5}" \
		"bench.runtime=${BENCH_RUNTIME:-1}" \
		"bench.scale=${BENCH_SCALE:-100,1000,10000}" \
		"bench.parts=${BENCH_PARTS:-io,churn,scale}" \
		"bench.aa=${BENCH_AA:-0}" ${BENCH_JOBS:+"bench.jobs=$BENCH_JOBS"} \
		${BENCH_SETUPS:+"bench.setups=$BENCH_SETUPS"} \
		${BENCH_MODARGS:+"bench.modargs=$BENCH_MODARGS"} </dev/null | tr -d '\r' > "$dir/console"
	tail -n 1 "$dir/console"
	grep -q '^ok - ' "$dir/console" || return 1
	grep '^RESULT ' "$dir/console" |
		./scripts/bench-table.awk -v kernel="$kver" \
		-v parallel="${BENCH_PARALLEL:-0}" -v rounds="${BENCH_ROUNDS:-5}" \
		-v aa="${BENCH_AA:-0}" > "$out"
	cat "$out"
	./scripts/bench-plot.sh "$out" || return 1
}
# BENCH_PARALLEL=1 boots the guests at the same time (each has 2 vCPUs on
# this 2-core host): faster, noisier; both drivers of one kernel still share
# one boot, alternately, so their ratio stays fair. The tables say so.
pids=""
while read -r name kdir kver; do
	case " $want " in *" $name "*) ;; *) continue ;; esac
	if [ "${BENCH_PARALLEL:-0}" = 1 ]; then
		bench_one "$name" "$kdir" "$kver" > "build/bench-$name.out" 2>&1 &
		pids="$pids $!"
	else
		bench_one "$name" "$kdir" "$kver" || status=1
	fi
done <<< "$guests"
for p in $pids; do
	wait "$p" || status=1
done
[ -n "$pids" ] && cat build/bench-*.out
exit "$status"
