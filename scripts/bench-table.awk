#!/usr/bin/awk -f
# SPDX-License-Identifier: GPL-2.0
#
# Reads "RESULT metric driver value" lines (bench/guest-bench.sh), writes
# the Markdown tables of bench/results-<kernel>.md: medians over the rounds,
# and ratios ours/stock (and ours/raw for I/O). -v kernel=KVER
function median(key,    n, i, j, v, t) {
	n = split(vals[key], v, " ")
	if (n == 0)
		return ""
	for (i = 2; i <= n; i++)
		for (j = i; j > 1 && v[j - 1] + 0 > v[j] + 0; j--) {
			t = v[j]; v[j] = v[j - 1]; v[j - 1] = t
		}
	return n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
}
function ratio(a, b) {
	return (a == "" || b == "" || b + 0 == 0) ? "n/a" : sprintf("%.2f", a / b)
}
function rounds(key,    v) {
	return split(vals[key], v, " ")
}
$1 == "RESULT" {
	key = $2 SUBSEP $3
	vals[key] = vals[key] " " $4
	if (!(($2) in seen)) {
		seen[$2] = 1
		order[++nm] = $2
	}
}
END {
	printf "# Loop driver benchmark: stock loop.ko vs ours, Linux %s\n\n", kernel
	printf "QEMU TCG guest, 2 vCPUs, 3 GiB; both drivers measured in the same boot, "
	printf "back to back for every measurement, each freshly loaded, in alternating order, %d rounds each; medians. Absolute figures under TCG mean little: read the ratios.", rounds(order[1] SUBSEP "stock")
	if (parallel == 1)
		printf " This run booted the 6.1 and 6.12 guests at the same time on the 2-core host: figures are noisier than in a sequential run."
	printf "\n\n"
	printf "## I/O (fio, libaio, O_DIRECT on the loop device; MB/s for 1 MiB jobs, IOPS for 4 KiB)\n\n"
	printf "Backing file of 256 MiB on tmpfs or on ext4 on a virtio disk; loop device buffered or with `--direct-io=on`. raw: the same job on the backing file itself (buffered for the buffered setups). Every job starts after `sync` and with the page cache dropped.\n\n"
	printf "| setup | job | raw | stock | ours | ours/stock | ours/raw |\n"
	printf "|---|---|---:|---:|---:|---:|---:|\n"
	worst = ""
	for (i = 1; i <= nm; i++) {
		m = order[i]
		if (m !~ /^io:/)
			continue
		split(m, p, ":")
		raw = median(m SUBSEP "raw"); st = median(m SUBSEP "stock")
		ou = median(m SUBSEP "rework")
		r = ratio(ou, st)
		if (r != "n/a" && (worst == "" || r + 0 < worst + 0)) {
			worst = r; worstjob = p[2] " " p[3]
		}
		printf "| %s | %s | %s | %s | %s | %s | %s |\n", p[2], p[3], raw, st, ou, r, ratio(ou, raw)
	}
	printf "\nLowest I/O ratio ours/stock: %s (%s); target: none below 0.97.\n\n", worst, worstjob
	printf "## Attach/detach churn (LOOP_CTL_GET_FREE, open, LOOP_CONFIGURE with autoclear, read 4 KiB, close; 3 s)\n\n"
	printf "| threads | stock cycles/s | ours cycles/s | ours/stock | close p50 µs stock / ours | close p99 µs stock / ours | EBUSY stock / ours |\n"
	printf "|---:|---:|---:|---:|---:|---:|---:|\n"
	for (t = 1; t <= 16; t *= 4) {
		k = "churn:" t ":"
		st = median(k "cycles_per_s" SUBSEP "stock"); ou = median(k "cycles_per_s" SUBSEP "rework")
		printf "| %d | %s | %s | %s | %s / %s | %s / %s | %s / %s |\n", t, st, ou, ratio(ou, st),
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
	printf "\n## Scale (devices existing, every tenth bound; median of 50 GET_FREE + attach + detach; 10,000 devices: first round only)\n\n"
	printf "| devices | stock µs | ours µs | ours/stock | ours / ours at 100 |\n"
	printf "|---:|---:|---:|---:|---:|\n"
	base = median("scale:100:cycle_us" SUBSEP "rework")
	for (n = 100; n <= 10000; n *= 10) {
		k = "scale:" n ":cycle_us"
		st = median(k SUBSEP "stock"); ou = median(k SUBSEP "rework")
		printf "| %d | %s | %s | %s | %s |\n", n, st, ou, ratio(ou, st), ratio(ou, base)
	}
	printf "\nTarget: ours at 10,000 devices at most 1.5 times ours at 100.\n\n"
	printf "## Kernel memory per idle device (slab + vmalloc + percpu, KiB; devices created by LOOP_CTL_ADD)\n\n"
	printf "| devices created | stock | ours | ours/stock |\n"
	printf "|---:|---:|---:|---:|\n"
	for (n = 100; n <= 10000; n *= 10) {
		k = "scale:" n ":idle_device_kib"
		st = median(k SUBSEP "stock"); ou = median(k SUBSEP "rework")
		printf "| %d | %s | %s | %s |\n", n, st, ou, ratio(ou, st)
	}
	printf "\nTarget: no more than stock.\n"
}
