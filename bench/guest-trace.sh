#!/usr/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Where the time of an attach/detach cycle goes (BENCH_PARTS=trace): runs
# one second of churn by $2 threads (1 if not given) under the
# function_graph tracer, with
# the attach, the last close and the teardown as roots, and prints "TRACE
# driver/threads depth function calls total_us" for them (depth 0) and their
# callees (depth 1, as "root>callee") to the guest console
# (build/bench-<kernel>/console). Stock tears down inside the last close
# (blkdev_release() on 6.12, blkdev_close() on 6.1), ours in loop_rundown()
# from task work. Tracing slows every call down: compare the drivers' shares,
# not the absolute figures. With several threads, a call's time includes
# its sleeps: a lock's waiters show as time in mutex_lock() and the like.
set -u
drv=$1
threads=${2:-1}
T=/sys/kernel/tracing
[ -e $T/trace ] || mount -t tracefs nodev $T || exit 1
echo 0 > $T/tracing_on
echo function_graph > $T/current_tracer
echo 1 > $T/options/funcgraph-tail
echo 1 > $T/options/funcgraph-proc
echo 2 > $T/max_graph_depth
echo 16384 > $T/buffer_size_kb
for f in loop_configure loop_rundown blkdev_release blkdev_close; do
	echo $f >> $T/set_graph_function 2>/dev/null
done
echo > $T/trace
echo 1 > $T/tracing_on
"$(dirname "$0")/loop_bench" churn "$threads" 1 /tmp/churn.img > /dev/null
echo 0 > $T/tracing_on
awk -F'|' -v drv="$drv/$threads" '
# With funcgraph-proc, a line is "CPU) comm-pid | duration | body". Each
# task has a root of its own: with several threads, the lines of the task
# switched in follow those of one that sleeps, on the same CPU.
NF >= 3 {
	who = $1
	sub(/^ *[0-9]+\) */, "", who)
	sub(/ *$/, "", who)
	body = $3
	# functions of modules carry the module name: "lo_ioctl [loop]()"
	gsub(/ \[[A-Za-z0-9_]+\]/, "", body)
	match(body, /^ */)
	depth = int((RLENGTH - 1) / 2)
	if (depth == 0 && match(body, /[A-Za-z0-9_.]+\(\) \{/)) {
		root[who] = substr(body, RSTART, RLENGTH - 4)
		next
	}
	if (!match($2, /[0-9.]+ us/))
		next
	us = substr($2, RSTART, RLENGTH - 3) + 0
	if (match(body, /\/\* [^ ]+/))
		fn = substr(body, RSTART + 3, RLENGTH - 3)
	else if (match(body, /[A-Za-z0-9_.]+\(\);/))
		fn = substr(body, RSTART, RLENGTH - 3)
	else
		next
	k = depth == 0 ? depth " " fn : depth " " root[who] ">" fn
	calls[k]++
	total[k] += us
}
END {
	for (k in calls)
		printf "TRACE %s %s %d %.0f\n", drv, k, calls[k], total[k]
}' $T/trace | sort -k3,3n -k6,6nr
echo nop > $T/current_tracer
