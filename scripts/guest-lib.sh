# SPDX-License-Identifier: GPL-2.0
# Sourced by both guest runners (run-guest.sh: busybox initramfs guests,
# run-system-guest.sh: the Debian system guest): what they share.

# What counts as a splat in a guest's kernel log: any report of the
# kernel's checkers (an extended regular expression for grep -E).
LOOP_SPLAT_RE='(BUG:|WARNING:|INFO: task .* blocked|possible circular locking|possible recursive locking|inconsistent lock state|KASAN:|UBSAN:|kmemleak:.*unreferenced|general protection fault|Oops|Call Trace:|ODEBUG:|suspicious RCU usage|Kernel panic|sleeping function called from invalid context)'

# One guest at a time on this machine: two TCG guests on 2 cores slow each
# other down past the tests' time bounds. Takes the lock on fd 9 (held
# until the caller exits), waiting for the guest that holds it.
#   loop_guest_lock NAME
loop_guest_lock() {
	exec 9>"${LOOP_GUEST_LOCK:-/tmp/loop-rework-guest.lock}"
	if ! flock -n 9; then
		echo "# $1: waiting for another guest to finish" >&2
		flock 9
	fi
}
