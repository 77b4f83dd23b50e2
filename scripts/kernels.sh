# SPDX-License-Identifier: GPL-2.0
# Sourced by the scripts: which kernels the guests run, chosen by pattern.
#   KVER_61, KVER_612	release strings of Debian's stock kernels
#   KDIR_61, KDIR_612	their headers (module build directories)

# Highest installed release matching a pattern, by version order.
loop_newest_kver() {
	ls /boot | sed -n "s/^vmlinuz-\($1\)$/\1/p" | sort -V | tail -n 1
}

KVER_61=$(loop_newest_kver '6\.1\.[0-9]*-[0-9]*-amd64')
KVER_612=$(loop_newest_kver '6\.12\.[0-9]*+deb12-amd64')
KDIR_61=/usr/src/linux-headers-$KVER_61
KDIR_612=/usr/src/linux-headers-$KVER_612
LOOP_CACHE=${LOOP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/loop-rework}
