# SPDX-License-Identifier: GPL-2.0
# Sourced by the scripts: which kernels the guests run, chosen by pattern.
#   KVER_61, KVER_612	release strings of Debian's stock kernels
#   KDIR_61, KDIR_612	their headers (module build directories)
#   KVER_612RT, KDIR_612RT	the same for the newest 6.12 PREEMPT_RT kernel
#   KDIR_61RT		headers of the 6.1 PREEMPT_RT kernel (make lint only)

# Highest installed release matching a pattern, by version order.
loop_newest_kver() {
	ls /boot | sed -n "s/^vmlinuz-\($1\)$/\1/p" | sort -V | tail -n 1
}

KVER_61=$(loop_newest_kver '6\.1\.[0-9]*-[0-9]*-amd64')
KVER_612=$(loop_newest_kver '6\.12\.[0-9]*+deb12-amd64')
KDIR_61=/usr/src/linux-headers-$KVER_61
KDIR_612=/usr/src/linux-headers-$KVER_612
KVER_612RT=$(loop_newest_kver '6\.12\.[0-9]*+deb12-rt-amd64')
KDIR_612RT=/usr/src/linux-headers-$KVER_612RT
KDIR_61RT=$(ls -d /usr/src/linux-headers-6.1.*-rt-amd64 2>/dev/null | sort -V | tail -n 1)
LOOP_CACHE=${LOOP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/loop-rework}
