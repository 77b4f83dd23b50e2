#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Draw the tables of a bench result (bench/results-<name>.md, written by
# scripts/bench-table.awk) as SVG files beside it, with gnuplot:
#   results-<name>-io.svg	each I/O job: stock and ours relative to raw
#   results-<name>-churn.svg	attach/detach cycles per second and the
#				close p99 against the thread count
#   results-<name>-scale.svg	attach cycle time and kernel memory per
#				device against the device count
# A section missing from the Markdown (BENCH_PARTS) draws no picture.
#   bench-plot.sh bench/results-deb-6.12.md
set -euo pipefail
md=$1
base=${md%.md}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
title=$(sed -n '1s/^# Loop driver benchmark: //p' "$md")

# The rows of the table under the "## <heading>" line that starts with
# $2, as tab-separated fields without the leading and trailing "|".
rows() {
	awk -v want="$2" '
	/^## / { in_sec = index($0, "## " want) == 1; hdr = 0; next }
	in_sec && /^\|/ {
		if (++hdr <= 2)
			next
		line = $0
		gsub(/^\| *| *\|$/, "", line)
		gsub(/ *\| */, "\t", line)
		print line
	}
	in_sec && !/^\|/ && hdr > 2 { in_sec = 0 }' "$1"
}

# gnuplot's SVG, with our SPDX line after its XML declaration.
svg() {
	gnuplot -e "set terminal svg size $1 dynamic noenhanced font 'sans,11' background rgb 'white'" \
		-e "set output '$tmp/out.svg'" "$3"
	sed '1a <!-- SPDX-License-Identifier: GPL-2.0 -->' "$tmp/out.svg" > "$2"
}

# I/O: setup, job, raw, stock, ours, ...: ratios to raw, one bar pair
# per job, log scale (buffered setups beat raw by the page cache).
rows "$md" "I/O" | awk -F'\t' '$3 > 0 {
	printf "\"%s %s\"\t%g\t%g\n", $1, $2, $4 / $3, $5 / $3 }' > "$tmp/io"
if [ -s "$tmp/io" ]; then
	cat > "$tmp/io.gp" <<-EOF
	set title "I/O relative to the same job on the raw backing file (1 = raw)\n$title"
	set style data histogram
	set style histogram clustered gap 1
	set style fill solid 0.8 border -1
	set logscale y 2
	set yrange [0.05:*]
	set ylabel "job / raw"
	set xtics rotate by -45 scale 0 font ',9'
	set grid ytics
	set key outside top center horizontal
	set rmargin 10
	plot '$tmp/io' using 2:xtic(1) title 'stock loop.ko', '' using 3 title 'ours', 1 with lines dt 2 lw 2 lc rgb 'black' title 'raw backing file'
	EOF
	svg "1200,600" "$base-io.svg" "$tmp/io.gp"
fi

# Churn: threads, stock cycles/s, ours cycles/s, ratio, range,
# "p50 stock / ours", "p99 stock / ours", "EBUSY stock / ours".
rows "$md" "Attach/detach churn" | awk -F'\t' '{
	split($7, p, " / "); split($8, e, " / ")
	printf "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", $1, $2, $3, p[1], p[2], e[1], e[2] }' \
	> "$tmp/churn"
if [ -s "$tmp/churn" ]; then
	cat > "$tmp/churn.gp" <<-EOF
	set multiplot layout 1,3 title "Attach/detach churn (GET_FREE, open, LOOP_CONFIGURE, read, close)\n$title"
	set logscale x 2
	set xlabel "threads"
	set grid
	set key top left
	set style data linespoints
	set ylabel "cycles per second"
	set yrange [0:*]
	plot '$tmp/churn' using 1:2 title 'stock loop.ko' lw 2 pt 7, '' using 1:3 title 'ours' lw 2 pt 5
	set ylabel "close p99, µs"
	plot '$tmp/churn' using 1:4 title 'stock loop.ko' lw 2 pt 7, '' using 1:5 title 'ours' lw 2 pt 5
	set ylabel "EBUSY per run"
	plot '$tmp/churn' using 1:6 title 'stock loop.ko' lw 2 pt 7, '' using 1:7 title 'ours' lw 2 pt 5
	unset multiplot
	EOF
	svg "1200,420" "$base-churn.svg" "$tmp/churn.gp"
fi

# Scale: devices, stock µs, ours µs, ...; memory: devices, stock KiB,
# ours KiB, ...
rows "$md" "Scale" | cut -f1-3 > "$tmp/scale"
rows "$md" "Kernel memory" | cut -f1-3 > "$tmp/mem"
if [ -s "$tmp/scale" ] || [ -s "$tmp/mem" ]; then
	cat > "$tmp/scale.gp" <<-EOF
	set multiplot layout 1,2 title "Against the number of devices\n$title"
	set logscale x 10
	set xlabel "devices"
	set grid
	set key bottom right
	set style data linespoints
	set yrange [0:*]
	set ylabel "GET_FREE + attach + detach, µs"
	$( [ -s "$tmp/scale" ] && echo "plot '$tmp/scale' using 1:2 title 'stock loop.ko' lw 2 pt 7, '' using 1:3 title 'ours' lw 2 pt 5" )
	set ylabel "kernel memory per idle device, KiB"
	$( [ -s "$tmp/mem" ] && echo "plot '$tmp/mem' using 1:2 title 'stock loop.ko' lw 2 pt 7, '' using 1:3 title 'ours' lw 2 pt 5" )
	unset multiplot
	EOF
	svg "1000,420" "$base-scale.svg" "$tmp/scale.gp"
fi
ls "$base"-*.svg 2>/dev/null || true
