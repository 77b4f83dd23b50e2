#!/usr/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Runs inside the bench guest (loop.mode=bench), in one boot: for each round,
# the stock loop.ko of this kernel and ours, alternately (unload, load),
# measure I/O with fio, attach/detach churn and scale. Raw fio on the
# backing files gives the physical limit. Prints "RESULT metric driver value"
# lines; scripts/bench.sh on the host takes the medians and writes the table.
#   BENCH_ROUNDS (3), BENCH_RUNTIME (seconds per fio job, 2),
#   BENCH_SCALE (device counts for the scale test, "100,1000,10000"; counts
#   of 10,000 and more are measured in the first round only),
#   BENCH_PARTS (what to run, "io,churn,scale"; "trace" adds a function
#   graph of the churn steps, see bench/guest-trace.sh)
set -u
parts=",${BENCH_PARTS:-io,churn,scale},"
rounds=${BENCH_ROUNDS:-3}
runtime=${BENCH_RUNTIME:-2}
scales=$(echo "${BENCH_SCALE:-100,1000,10000}" | tr , ' ')
size=256M
bench=$(dirname "$0")
PATH=/usr/sbin:/usr/bin:/sbin:/bin

result() { echo "RESULT $*"; }

load() {
	rmmod loop 2>/dev/null
	insmod "/lib/modules/loop-$1.ko" || { echo "# insmod $1 failed"; exit 1; }
}

# fio on $1 for job $2; prints MB/s for 1 MiB jobs, IOPS for 4 KiB ones.
fio_job() {
	local target=$1 job=$2 direct=$3 rw bs qd field
	case "$job" in
	seq-read) rw=read bs=1M qd=1 ;;
	seq-write) rw=write bs=1M qd=1 ;;
	rand-read-qd1) rw=randread bs=4k qd=1 ;;
	rand-read-qd32) rw=randread bs=4k qd=32 ;;
	rand-write-qd1) rw=randwrite bs=4k qd=1 ;;
	rand-write-qd32) rw=randwrite bs=4k qd=32 ;;
	esac
	# Nothing left to write back from the job before: that would run
	# in the background and be charged to whichever driver comes next.
	sync
	fio --name=j --filename="$target" --rw=$rw --bs=$bs --iodepth=$qd \
		--ioengine=libaio --direct="$direct" --size=$size \
		--runtime="$runtime" --time_based --output-format=terse \
		--terse-version=3 </dev/null 2>/dev/null |
	awk -F';' -v bs=$bs '{
		bw = $7 + $48; iops = $8 + $49
		if (bs == "1M") printf "%.1f\n", bw / 1024; else printf "%.0f\n", iops }'
}

jobs="seq-read seq-write rand-read-qd1 rand-read-qd32 rand-write-qd1 rand-write-qd32"
# backing setup: name file loop-options raw-direct
setups="tmpfs-buffered /tmp/bench.img - 0
ext4-buffered /mnt/scratch/bench.img - 0
ext4-dio /mnt/scratch/bench.img --direct-io=on 1"

dd if=/dev/zero of=/tmp/bench.img bs=1M count=256 status=none
dd if=/dev/zero of=/mnt/scratch/bench.img bs=1M count=256 status=none
dd if=/dev/zero of=/tmp/churn.img bs=1M count=4 status=none
sync

io_round() {
	local drv=$1 name file opt direct dev j
	while read -r name file opt direct; do
		[ "$opt" = - ] && opt=
		dev=$(losetup -f --show $opt "$file" </dev/null) || { echo "# losetup failed"; exit 1; }
		for j in $jobs; do
			result "io:$name:$j $drv $(fio_job "$dev" "$j" 1)"
		done
		losetup -d "$dev" </dev/null
	done <<< "$setups"
}

raw_round() {
	local name file opt direct j
	while read -r name file opt direct; do
		for j in $jobs; do
			result "io:$name:$j raw $(fio_job "$file" "$j" "$direct")"
		done
	done <<< "$setups"
}

other_round() {
	local drv=$1 t n
	sync
	[ "${parts#*,churn,}" != "$parts" ] && for t in 1 4 16; do
		"$bench/loop_bench" churn $t 3 /tmp/churn.img </dev/null |
		while read -r k v; do result "churn:$t:$k $drv $v"; done
	done
	[ "${parts#*,scale,}" != "$parts" ] && for n in $scales; do
		# The largest count is slow to build: measured in round 1 only.
		[ "$n" -ge 10000 ] && [ "$r" != 1 ] && continue
		"$bench/loop_bench" scale $n 50 /tmp/churn.img </dev/null |
		while read -r k v; do result "scale:$n:$k $drv $v"; done
	done
}

for r in $(seq 1 "$rounds"); do
	echo "# round $r"
	[ "${parts#*,io,}" != "$parts" ] && raw_round
	order="stock rework"
	[ $((r % 2)) = 0 ] && order="rework stock"
	for drv in $order; do
		load "$drv"
		echo "# round $r: $drv"
		[ "${parts#*,io,}" != "$parts" ] && io_round "$drv"
		other_round "$drv"
		[ "${parts#*,trace,}" != "$parts" ] && "$bench/guest-trace.sh" "$drv"
	done
done
load rework
