#!/usr/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Runs inside the bench guest (loop.mode=bench), in one boot: for each round
# and each measurement (one fio job, one churn thread count, one scale
# size), the stock loop.ko of this kernel and ours, each freshly loaded
# (unload, load) for every run, twice each (churn: four times) in the
# order ABBA or BAAB (the order alternates from one measurement to the
# next and from one round to the next). Each run is next to a run of the
# other driver, and within a round each driver is first of its pair as
# often as second. With one run each per round, the order alternating,
# one driver was first in three rounds of five, and the first run after
# the I/O round was the slower of its pair (by a median 4.6% for 1-thread
# churn on 6.1 in the tables of 27276dc). Raw
# fio on the backing files gives the physical limit. Prints "RESULT metric
# driver value" lines; scripts/bench.sh on the host takes the medians and
# writes the table.
#   BENCH_ROUNDS (5), BENCH_RUNTIME (seconds per fio run, 1),
#   BENCH_SCALE (device counts for the scale test, "100,1000,10000"; counts
#   of 10,000 and more are measured in the first round only),
#   BENCH_PARTS (what to run, "io,churn,scale"; "trace" adds a function
#   graph of the churn steps, see bench/guest-trace.sh),
#   BENCH_JOBS, BENCH_SETUPS (comma-separated fio jobs and backing setups
#   to run, by name; default all), BENCH_MODARGS (comma-separated
#   parameters for our loop.ko, e.g. nowait_depth=8)
set -u
parts=",${BENCH_PARTS:-io,churn,scale},"
rounds=${BENCH_ROUNDS:-5}
runtime=${BENCH_RUNTIME:-1}
scales=$(echo "${BENCH_SCALE:-100,1000,10000}" | tr , ' ')
size=256M
bench=$(dirname "$0")
PATH=/usr/sbin:/usr/bin:/sbin:/bin

result() { echo "RESULT $*"; }

load() {
	rmmod loop 2>/dev/null
	local args=
	[ "$1" = rework ] && args=$(echo "${BENCH_MODARGS:-}" | tr , ' ')
	# shellcheck disable=SC2086 # one word per parameter
	insmod "/lib/modules/loop-$1.ko" $args ||
		{ echo "# insmod $1 failed"; exit 1; }
}

# fio on $1 for job $2; prints MB/s for 1 MiB jobs, IOPS for 4 KiB ones.
fio_job() {
	local target=$1 job=$2 direct=$3 rw bs qd field jobs=1 hot=0
	case "$job" in
	seq-read) rw=read bs=1M qd=1 ;;
	seq-write) rw=write bs=1M qd=1 ;;
	rand-read-qd1) rw=randread bs=4k qd=1 ;;
	rand-read-qd32) rw=randread bs=4k qd=32 ;;
	rand-write-qd1) rw=randwrite bs=4k qd=1 ;;
	rand-write-qd32) rw=randwrite bs=4k qd=32 ;;
	rand-rw-4jobs-qd32) rw=randrw bs=4k qd=32 jobs=4 ;;
	# The backing file in the page cache (read once before): raw is a
	# copy from memory.
	rand-read-hot-qd1) rw=randread bs=4k qd=1 hot=1 ;;
	esac
	# Nothing left to write back from the job before: that would run
	# in the background and be charged to whichever driver comes next.
	# And every job starts from the same cold page cache of the backing
	# files (tmpfs keeps its pages): a job that found the file cached by
	# the one before ran at memory speed, the next at disk speed.
	sync
	echo 3 > /proc/sys/vm/drop_caches
	[ "$hot" = 1 ] && cat "$4" > /dev/null
	fio --name=j --filename="$target" --rw=$rw --bs=$bs --iodepth=$qd \
		--ioengine=libaio --direct="$direct" --size=$size \
		--numjobs=$jobs --group_reporting \
		--runtime="$runtime" --time_based --output-format=terse \
		--terse-version=3 </dev/null 2>/dev/null |
	awk -F';' -v bs=$bs '{
		bw = $7 + $48; iops = $8 + $49
		if (bs == "1M") printf "%.1f\n", bw / 1024; else printf "%.0f\n", iops }'
}

jobs="seq-read seq-write rand-read-qd1 rand-read-qd32 rand-write-qd1 rand-write-qd32
rand-rw-4jobs-qd32 rand-read-hot-qd1"
[ -n "${BENCH_JOBS:-}" ] && jobs=$(echo "$BENCH_JOBS" | tr , ' ')
# backing setup: name file loop-options raw-direct
setups="tmpfs-buffered /tmp/bench.img - 0
ext4-buffered /mnt/scratch/bench.img - 0
ext4-dio /mnt/scratch/bench.img --direct-io=on 1"
if [ -n "${BENCH_SETUPS:-}" ]; then
	setups=$(echo "$setups" |
		awk -v want=",$BENCH_SETUPS," 'index(want, "," $1 ",")')
fi

dd if=/dev/zero of=/tmp/bench.img bs=1M count=256 status=none
dd if=/dev/zero of=/mnt/scratch/bench.img bs=1M count=256 status=none
dd if=/dev/zero of=/tmp/churn.img bs=1M count=4 status=none
sync

# The runs of measurement number $1 of round $r: ABBA or BAAB; with $2,
# only the first $2 of them.
order() {
	local runs
	if [ $((($1 + r) % 2)) = 0 ]; then
		runs="stock rework rework stock"
	else
		runs="rework stock stock rework"
	fi
	echo "$runs" | cut -d' ' -f"1-${2:-4}"
}

# One fio job on a fresh loop device of a freshly loaded driver $1.
io_job() {
	local drv=$1 name=$2 file=$3 opt=$4 job=$5 dev sys
	[ "$opt" = - ] && opt=
	load "$drv"
	dev=$(losetup -f --show $opt "$file" </dev/null) || { echo "# losetup failed"; exit 1; }
	result "io:$name:$job $drv $(fio_job "$dev" "$job" 1 "$file")"
	# How many of the device's requests our fast path issued (console).
	sys=/sys/block/${dev#/dev/}
	if [ -r "$sys/loop/nowait_issued" ]; then
		echo "# io:$name:$job fast path: $(cat "$sys/loop/nowait_issued") of $(awk '{print $1 + $5}' "$sys/stat") requests"
	fi
	losetup -d "$dev" </dev/null
}

io_round() {
	local name file opt direct j drv i=0
	while read -r name file opt direct; do
		for j in $jobs; do
			result "io:$name:$j raw $(fio_job "$file" "$j" "$direct" "$file")"
			for drv in $(order $i); do
				io_job "$drv" "$name" "$file" "$opt" "$j"
			done
			i=$((i + 1))
		done
	done <<< "$setups"
}

# Churn: runs of 0.75 s, four per driver and round (ABBA then BAAB), after
# an unmeasured second of churn that absorbs what the measurement before
# left behind.
churn_round() {
	local t drv i=0
	for t in 1 4 16; do
		load "$(order $i 1)"
		sync
		"$bench/loop_bench" churn $t 1 /tmp/churn.img </dev/null >/dev/null
		for drv in $(order $i) $(order $((i + 1))); do
			load "$drv"
			sync
			"$bench/loop_bench" churn $t 0.75 /tmp/churn.img </dev/null |
			while read -r k v; do result "churn:$t:$k $drv $v"; done
		done
		i=$((i + 1))
	done
}

scale_round() {
	local n drv runs i=0
	for n in $scales; do
		runs=$(order $i)
		# The largest count is slow to build: measured in round 1
		# only, once per driver.
		if [ "$n" -ge 10000 ]; then
			[ "$r" != 1 ] && continue
			runs=$(order $i 2)
		fi
		for drv in $runs; do
			load "$drv"
			"$bench/loop_bench" scale $n 50 /tmp/churn.img </dev/null |
			while read -r k v; do result "scale:$n:$k $drv $v"; done
		done
		i=$((i + 1))
	done
}

has() { [ "${parts#*,$1,}" != "$parts" ]; }

for r in $(seq 1 "$rounds"); do
	echo "# round $r at $(cut -d' ' -f1 /proc/uptime) s"
	has io && io_round
	has churn && churn_round
	has scale && scale_round
	if has trace; then
		for t in 1 16; do
			for drv in $(order 0 2); do
				load "$drv"
				"$bench/guest-trace.sh" "$drv" $t
			done
		done
	fi
done
load rework
