#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Soak: for $1 seconds, run the race tests, the integrity test and the
# fuzzer (a fresh seed each time) one after the other, over and over. They
# run in turn, not at once: the race tests assert things of the devices
# LOOP_CTL_GET_FREE gives them and of the uevents they see, which another
# test's devices would falsify. Prints TAP with the counts; exit status:
# the number of failed kinds.
cd "$(dirname "$0")" || exit 1
dur=${1:-1800}
end=$((SECONDS + dur))
echo "TAP version 13"
echo "1..3"
echo "# soak for ${dur}s: race tests, integrity test, fuzzer, in turn"

races=0 race_fail=0 integ=0 integ_fail=0 bytes=0
fuzz=0 fuzz_fail=0 ops=0
while [ "$SECONDS" -lt "$end" ]; do
	if ./loop_race_test > /tmp/soak-race.tap 2>&1; then
		races=$((races + 1))
	else
		race_fail=$((race_fail + 1))
		grep -E 'not ok|:[0-9]+:' /tmp/soak-race.tap | sed 's/^/# race: /'
	fi
	[ "$SECONDS" -lt "$end" ] || break
	if ./loop_integrity_test > /tmp/soak-integ.tap 2>&1; then
		integ=$((integ + 1))
	else
		integ_fail=$((integ_fail + 1))
		grep -E 'not ok|:[0-9]+:' /tmp/soak-integ.tap | sed 's/^/# integrity: /'
	fi
	b=$(sed -n 's/.* \([0-9]*\) bytes of acknowledged writes verified.*/\1/p' \
		/tmp/soak-integ.tap | awk '{ s += $1 } END { print s + 0 }')
	bytes=$((bytes + b))
	[ "$SECONDS" -lt "$end" ] || break
	if ./loop_fuzz -n 1500 > /tmp/soak-fuzz.tap 2>&1; then
		fuzz=$((fuzz + 1))
	else
		fuzz_fail=$((fuzz_fail + 1))
		grep -E '^not ok|loop_fuzz -s' /tmp/soak-fuzz.tap | sed 's/^/# fuzz: /'
	fi
	o=$(sed -n 's/^ok 1 fuzz: \([0-9]*\) operations.*/\1/p' /tmp/soak-fuzz.tap)
	ops=$((ops + ${o:-0}))
done

failed=0
if [ "$race_fail" = 0 ] && [ "$races" -gt 0 ]; then
	echo "ok 1 race tests: $races full runs"
else
	echo "not ok 1 race tests: $races runs passed, $race_fail failed"
	failed=$((failed + 1))
fi
if [ "$integ_fail" = 0 ] && [ "$integ" -gt 0 ]; then
	echo "ok 2 integrity test: $integ full runs, $bytes bytes of acknowledged writes verified"
else
	echo "not ok 2 integrity test: $integ runs passed, $integ_fail failed"
	failed=$((failed + 1))
fi
if [ "$fuzz_fail" = 0 ] && [ "$fuzz" -gt 0 ]; then
	echo "ok 3 fuzzer: $fuzz runs, $ops operations"
else
	echo "not ok 3 fuzzer: $fuzz runs passed, $fuzz_fail failed"
	failed=$((failed + 1))
fi
exit "$failed"
