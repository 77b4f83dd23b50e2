#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Run every loop selftest in this guest; each prints its own TAP.
# Exit status: the number of test programs that failed.
#   LOOP_MODULE	our loop.ko; with the stock loop.ko in
#		/lib/modules/loop-stock.ko, the permission test and
#		loop_stock_test first record the stock driver's answers in
#		this guest
#   LOOP_FUZZ_OPS	fuzzer operations per process (default 1500, scaled by
#			LOOP_TIME_SCALE)
#   LOOP_SKIP		selftest programs to leave out (make check runs some
#			on one guest only)
#   LOOP_ONLY		run only these selftest programs, and not the demo
cd "$(dirname "$0")" || exit 1
failed=0

stock=/lib/modules/loop-stock.ko
if [ -n "${LOOP_MODULE:-}" ] && [ -f "$stock" ] && [ -x ./loop_perm_test ]; then
	echo "# recording the stock loop.ko's answers for loop_perm_test"
	if rmmod loop && insmod "$stock"; then
		./loop_perm_test --record > /tmp/perm-stock.txt &&
			export LOOP_PERM_STOCK=/tmp/perm-stock.txt
		sed 's/^/# stock: /' /tmp/perm-stock.txt
		if [ -x ./loop_stock_test ]; then
			echo "# recording the stock loop.ko's answers for loop_stock_test"
			./loop_stock_test --record > /tmp/stock-answers.txt &&
				export LOOP_STOCK_ANSWERS=/tmp/stock-answers.txt
			sed 's/^/# stock: /' /tmp/stock-answers.txt
		fi
	fi
	rmmod loop 2>/dev/null
	insmod "$LOOP_MODULE" || { echo "not ok - reload our loop.ko"; exit 1; }
fi

hold_param=/sys/module/loop/parameters/get_free_hold_ms
hold_ms=$(cat "$hold_param" 2>/dev/null)

# Copies the TAP and says after each test's result line how long it took.
timed() {
	local line t=$SECONDS
	while IFS= read -r line || [ -n "$line" ]; do
		printf '%s\n' "$line"
		case "$line" in
		"ok "*|"not ok "*)
			echo "# time: $((SECONDS - t)) s"
			t=$SECONDS ;;
		esac
	done
}

for t in loop_ioctl_test loop_ioctl_test32 loop_badinput_test \
	 loop_badinput_test32 loop_perm_test loop_io_test loop_integrity_test \
	 loop_stock_test loop_race_test loop_rundown_test loop_review_test \
	 loop_fault_test loop_fuzz \
	 loop_tools.sh; do
	[ -x "./$t" ] || continue
	case " ${LOOP_SKIP:-} " in *" $t "*)
		echo "# ===== $t: not on this guest (see scripts/check.sh)"
		continue ;;
	esac
	if [ -n "${LOOP_ONLY:-}" ]; then
		case " $LOOP_ONLY " in *" $t "*) ;; *) continue ;; esac
	fi
	# A test killed by its timeout cannot restore the GET_FREE hold it
	# changed: every program starts with the value of load time.
	[ -n "$hold_ms" ] && echo "$hold_ms" > "$hold_param"
	echo "# ===== $t ($(uname -r)) ====="
	t0=$SECONDS
	case "$t" in
	*.sh) /usr/bin/bash "./$t" ;;
	loop_fuzz) ./loop_fuzz -n "${LOOP_FUZZ_OPS:-$(awk -v s="${LOOP_TIME_SCALE:-1}" \
		'BEGIN { n = int(1500 * (s > 0 && s < 1 ? s : 1)); print (n > 100 ? n : 100) }')}" ;;
	*) "./$t" ;;
	esac 2>&1 | timed
	[ "${PIPESTATUS[0]}" = 0 ] || failed=$((failed + 1))
	echo "# ----- $t: $((SECONDS - t0)) s"
done
[ -n "${LOOP_ONLY:-}" ] && exit "$failed"
# The demo of "make vm" (and the admin guide's examples in it) must work too.
echo "# ===== demo.sh ($(uname -r)) ====="
if /usr/bin/bash ./demo.sh 2>&1 | sed 's/^/# /'; [ "${PIPESTATUS[0]}" = 0 ]; then
	echo "ok - demo.sh"
else
	echo "not ok - demo.sh"
	failed=$((failed + 1))
fi
exit "$failed"
