#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Soak: for $1 seconds, the fuzzer (timed mode, its own devices) runs
# alongside the race tests and the integrity test, which run one after the
# other over and over. Prints TAP with the counts; exit status: failures.
# The module-unload race test is left out: it unloads the driver, which
# the fuzzer's open devices forbid.
cd "$(dirname "$0")" || exit 1
dur=${1:-1800}
end=$((SECONDS + dur))
echo "TAP version 13"
echo "1..3"
echo "# soak for ${dur}s: fuzzer alongside race and integrity tests"

./loop_fuzz -S -t "$dur" -n 500 > /tmp/soak-fuzz.tap 2>&1 &
fuzz=$!

races=0 race_fail=0 integ=0 integ_fail=0 bytes=0
while [ "$SECONDS" -lt "$end" ]; do
	if ./loop_race_test -T module_unload_waits_for_pending_teardown \
		> /tmp/soak-race.tap 2>&1; then
		races=$((races + 1))
	else
		race_fail=$((race_fail + 1))
		grep -E 'not ok|:[0-9]+:' /tmp/soak-race.tap | sed 's/^/# race: /'
	fi
	if ./loop_integrity_test > /tmp/soak-integ.tap 2>&1; then
		integ=$((integ + 1))
	else
		integ_fail=$((integ_fail + 1))
		grep -E 'not ok|:[0-9]+:' /tmp/soak-integ.tap | sed 's/^/# integrity: /'
	fi
	b=$(sed -n 's/.* \([0-9]*\) bytes of acknowledged writes verified.*/\1/p' \
		/tmp/soak-integ.tap | awk '{ s += $1 } END { print s + 0 }')
	bytes=$((bytes + b))
done
wait "$fuzz"
fuzz_rc=$?
sed 's/^/# fuzz: /' /tmp/soak-fuzz.tap | grep -v 'TAP version\|1\.\.1'

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
ops=$(sed -n 's/^ok 1 fuzz: \([0-9]*\) operations.*/\1/p' /tmp/soak-fuzz.tap)
if [ "$fuzz_rc" = 0 ]; then
	echo "ok 3 fuzzer: ${ops:-?} operations"
else
	echo "not ok 3 fuzzer: $(grep '^not ok' /tmp/soak-fuzz.tap)"
	failed=$((failed + 1))
fi
exit "$failed"
