# SPDX-License-Identifier: GPL-2.0
# Sourced by both guest runners (run-guest.sh: busybox initramfs guests,
# run-system-guest.sh: the Debian system guest) and by the builders of what
# they boot (build-kernel.sh, system-image.sh): what they share.

# What counts as a splat in a guest's kernel log: any report of the
# kernel's checkers (an extended regular expression for grep -E).
LOOP_SPLAT_RE='(BUG:|WARNING:|INFO: task .* blocked|possible circular locking|possible recursive locking|inconsistent lock state|KASAN:|UBSAN:|kmemleak:.*unreferenced|general protection fault|Oops|Call Trace:|ODEBUG:|suspicious RCU usage|Kernel panic|sleeping function called from invalid context)'

# loop_lock FD FILE MESSAGE: take the lock FILE on descriptor FD (held
# until the caller exits or closes FD); if another process holds it, say
# MESSAGE on stderr and wait for it.
loop_lock() {
	eval "exec $1>\"\$2\""
	if ! flock -n "$1"; then
		echo "$3" >&2
		flock "$1"
	fi
}

# One guest at a time on this machine: two TCG guests on 2 cores slow each
# other down past the tests' time bounds. Takes the lock on fd 9, waiting
# for the guest that holds it.
#   loop_guest_lock NAME
loop_guest_lock() {
	loop_lock 9 "${LOOP_GUEST_LOCK:-/tmp/loop-rework-guest.lock}" \
		"# $1: waiting for another guest to finish"
}
