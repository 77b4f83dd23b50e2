#!/usr/bin/awk -f
# SPDX-License-Identifier: GPL-2.0
#
# Reads "RESULT metric driver value" lines (bench/guest-bench.sh), writes
# the Markdown tables of bench/results-<kernel>.md: the median of each
# driver's figures over the runs, and the ratios ours/stock (and ours/raw
# for I/O) as the median of the ratios of the pairs, with their range.
# Every measurement of a round runs the drivers ABBA or BAAB: the k-th
# figure of one driver and the k-th of the other come from adjacent runs
# and form a pair. The guest drifts by more from one round to the next
# (raw fio alone varies by 10% or more) than between adjacent runs, and a
# ratio taken within each pair leaves that drift out.
# A section whose measurements did not run (BENCH_PARTS) is left out.
# -v kernel=KVER -v rounds=N [-v parallel=1] [-v aa=1: A/A calibration,
# "ours" is the stock loop.ko too]
function sort_median(v, n,    i, j, t) {
	if (n == 0)
		return ""
	for (i = 2; i <= n; i++)
		for (j = i; j > 1 && v[j - 1] + 0 > v[j] + 0; j--) {
			t = v[j]; v[j] = v[j - 1]; v[j - 1] = t
		}
	return n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
}
# A measurement that printed no figure holds "-": it keeps its round's
# place in the pairs, and counts in no median or ratio.
function num(x) {
	return x ~ /^[0-9.]+$/
}
function median(key,    n, v, w, i, m) {
	n = split(vals[key], v, " ")
	m = 0
	for (i = 1; i <= n; i++)
		if (num(v[i]))
			w[++m] = v[i]
	return sort_median(w, m)
}
# Median of the ratios a/b of the values of the same round; sets lo and hi
# (read by range()) to the lowest and highest of them.
function ratio(a, b,    na, nb, va, vb, r, i, n, m) {
	na = split(vals[a], va, " ")
	nb = split(vals[b], vb, " ")
	n = 0
	for (i = 1; i <= na && i <= nb; i++)
		if (num(va[i]) && num(vb[i]) && vb[i] + 0 != 0)
			r[++n] = va[i] / vb[i]
	if (n == 0) {
		lo = hi = ""
		return "n/a"
	}
	m = sort_median(r, n)
	lo = sprintf("%.2f", r[1]); hi = sprintf("%.2f", r[n])
	return sprintf("%.2f", m)
}
function quot(a, b) {
	return (a == "" || b == "" || b + 0 == 0) ? "n/a" : sprintf("%.2f", a / b)
}
function range() {
	return lo == hi ? lo : lo "–" hi
}
$1 == "RESULT" {
	key = $2 SUBSEP $3
	vals[key] = vals[key] " " ($4 == "" ? "-" : $4)
	split($2, part, ":")
	has[part[1]] = 1
	if (!(($2) in seen)) {
		seen[$2] = 1
		order[++nm] = $2
	}
}
END {
	if (aa)
		printf "# Loop driver benchmark, A/A calibration: stock loop.ko vs itself, Linux %s\n\n", kernel
	else
		printf "# Loop driver benchmark: stock loop.ko vs ours, Linux %s\n\n", kernel
	if (aa)
		printf "Made with `BENCH_AA=1`: the column \"ours\" is the same stock loop.ko as the column \"stock\", measured exactly as ours is in the real bench. Every ratio here differs from 1.00 by the bench's own noise: it is the yardstick for the ratios and targets of the real table.\n\n"
	printf "QEMU TCG guest, 2 vCPUs, 3 GiB; both drivers measured in the same boot, "
	printf "%d rounds. In each round, every measurement runs each driver twice, freshly loaded for every run, in the order ABBA or BAAB (alternating from one measurement and one round to the next; churn runs four times, ABBA then BAAB): each run has a run of the other driver next to it, and each driver is first of its pair as often as second. Figures: the median of each driver's runs. Ratios: the median of the ratios of the adjacent pairs (two per round, four for churn), and their range. Absolute figures under TCG mean little: read the ratios, and their range for the noise.", rounds
	if (parallel == 1)
		printf " This run booted the 6.1 and 6.12 guests at the same time on the 2-core host: figures are noisier than in a sequential run."
	printf "\n\n"
	if (has["io"]) {
		printf "## I/O (fio, libaio, O_DIRECT on the loop device; MB/s for 1 MiB jobs, IOPS for 4 KiB)\n\n"
		printf "Backing file of 256 MiB on tmpfs or on ext4 on a virtio disk; loop device buffered or with `--direct-io=on`. raw: the same job on the backing file itself (buffered for the buffered setups). Every job starts after `sync` and with the page cache dropped; `rand-read-hot-qd1` then reads the backing file once, so that it is cached (for the buffered setups raw is then a copy from memory); `rand-rw-4jobs-qd32` runs 4 fio jobs at once.\n\n"
		printf "| setup | job | raw | stock | ours | ours/stock | range | ours/raw |\n"
		printf "|---|---|---:|---:|---:|---:|---:|---:|\n"
		worst = ""
		for (i = 1; i <= nm; i++) {
			m = order[i]
			if (m !~ /^io:/)
				continue
			split(m, p, ":")
			raw = median(m SUBSEP "raw"); st = median(m SUBSEP "stock")
			ou = median(m SUBSEP "rework")
			r = ratio(m SUBSEP "rework", m SUBSEP "stock")
			rg = range()
			if (r != "n/a" && (worst == "" || r + 0 < worst + 0)) {
				worst = r; worstjob = p[2] " " p[3]
			}
			printf "| %s | %s | %s | %s | %s | %s | %s | %s |\n", p[2], p[3], raw, st, ou, r, rg,
				ratio(m SUBSEP "rework", m SUBSEP "raw")
		}
		printf "\nLowest I/O ratio ours/stock: %s (%s); target: none below 0.97.\n\n", worst, worstjob
	}
	if (has["churn"]) {
		printf "## Attach/detach churn (LOOP_CTL_GET_FREE, open, LOOP_CONFIGURE with autoclear, read 4 KiB, close; runs of 0.75 s, after 1 s of unmeasured churn)\n\n"
		printf "| threads | stock cycles/s | ours cycles/s | ours/stock | range | close p50 µs stock / ours | close p99 µs stock / ours | EBUSY stock / ours |\n"
		printf "|---:|---:|---:|---:|---:|---:|---:|---:|\n"
		for (t = 1; t <= 16; t *= 4) {
			k = "churn:" t ":"
			st = median(k "cycles_per_s" SUBSEP "stock"); ou = median(k "cycles_per_s" SUBSEP "rework")
			r = ratio(k "cycles_per_s" SUBSEP "rework", k "cycles_per_s" SUBSEP "stock")
			printf "| %d | %s | %s | %s | %s | %s / %s | %s / %s | %s / %s |\n", t, st, ou, r, range(),
				median(k "close_p50_us" SUBSEP "stock"), median(k "close_p50_us" SUBSEP "rework"),
				median(k "close_p99_us" SUBSEP "stock"), median(k "close_p99_us" SUBSEP "rework"),
				median(k "ebusy" SUBSEP "stock"), median(k "ebusy" SUBSEP "rework")
		}
		printf "\nMean time of each step of a successful cycle, µs, stock / ours:\n\n"
		printf "| threads | GET_FREE | open | LOOP_CONFIGURE | read 4 KiB | close |\n"
		printf "|---:|---:|---:|---:|---:|---:|\n"
		split("get_free open configure read close", steps, " ")
		for (t = 1; t <= 16; t *= 4) {
			k = "churn:" t ":"
			printf "| %d |", t
			for (i = 1; i <= 5; i++)
				printf " %s / %s |", median(k steps[i] "_mean_us" SUBSEP "stock"),
					median(k steps[i] "_mean_us" SUBSEP "rework")
			printf "\n"
		}
	}
	if (has["scale"]) {
		printf "\n## Scale (devices existing, every tenth bound; median of 50 GET_FREE + attach + detach; 10,000 devices: first round only, one run per driver)\n\n"
		printf "| devices | stock µs | ours µs | ours/stock | ours / ours at 100 |\n"
		printf "|---:|---:|---:|---:|---:|\n"
		base = median("scale:100:cycle_us" SUBSEP "rework")
		for (n = 100; n <= 10000; n *= 10) {
			k = "scale:" n ":cycle_us"
			st = median(k SUBSEP "stock"); ou = median(k SUBSEP "rework")
			printf "| %d | %s | %s | %s | %s |\n", n, st, ou,
				ratio(k SUBSEP "rework", k SUBSEP "stock"), quot(ou, base)
		}
		printf "\nTarget: ours at 10,000 devices at most 1.5 times ours at 100.\n\n"
		printf "## Kernel memory per idle device (slab + vmalloc + percpu, KiB; devices created by LOOP_CTL_ADD)\n\n"
		printf "Growth over the creation of the devices, per device. For small counts, each figure is the median of several creations (see measure_idle_memory() in bench/loop_bench.c).\n\n"
		printf "| devices created | stock | ours | ours/stock | range |\n"
		printf "|---:|---:|---:|---:|---:|\n"
		for (n = 100; n <= 10000; n *= 10) {
			k = "scale:" n ":idle_device_kib"
			st = median(k SUBSEP "stock"); ou = median(k SUBSEP "rework")
			r = ratio(k SUBSEP "rework", k SUBSEP "stock")
			printf "| %d | %s | %s | %s | %s |\n", n, st, ou, r, range()
		}
		printf "\nTarget: no more than stock.\n"
	}
}
