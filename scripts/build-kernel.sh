#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Build a guest kernel from Debian's linux-source-6.12:
#   build-kernel.sh [FLAVOR]	FLAVOR: debug (default) or kcsan
# The config is tinyconfig + scripts/kconfig/base.config +
# scripts/kconfig/FLAVOR.config.
#
# The build is cached outside the repository, keyed by a hash of the
# source package version and of the config fragments, so that reruns reuse
# it. Prints what it does on stderr (the kernel build's progress as the
# count of objects compiled), and the build directory (usable as KDIR) on
# its last line of stdout.
set -euo pipefail

flavor=${1:-debug}
here=$(cd "$(dirname "$0")" && pwd)
frag=$here/kconfig/$flavor.config
[ -f "$frag" ] || { echo "no config fragment $frag" >&2; exit 1; }
cache=${LOOP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/loop-rework}
src=$("$here/extract-source.sh")
srcver=${src##*/src-}
key=$( { echo "$srcver"; cat "$here/kconfig/base.config" "$frag"; } |
	sha256sum | cut -c1-16)
out=$cache/kernel-$flavor-$key

# One build of a configuration at a time (a second make waits for it).
. "$here/guest-lib.sh"
mkdir -p "$cache"
loop_lock 8 "$out.lock" "waiting for another build of the $flavor kernel ($out)"
if [ -f "$out/.done" ]; then
	echo "$out"
	exit 0
fi

log=$out/build.log
resumed=0
if [ -f "$out/.configured" ]; then
	resumed=1
	# An interrupted build of this configuration: make goes on from there.
	echo "resuming the build of the $flavor guest kernel in $out (log: $log)" >&2
else
	rm -rf "$out"
	mkdir -p "$out"
	echo "building the $flavor guest kernel (cached afterwards in $out; log: $log)" >&2
	{
		make -C "$src" O="$out" ARCH=x86_64 tinyconfig
		"$src/scripts/kconfig/merge_config.sh" -m -O "$out" "$out/.config" \
			"$here/kconfig/base.config" "$frag"
		make -C "$src" O="$out" ARCH=x86_64 olddefconfig
	} > "$log" 2>&1
fi

# Every option a fragment asks for must have survived olddefconfig.
missing=0
while IFS= read -r line; do
	case "$line" in
	CONFIG_*=n) opt=${line%%=*}
		if grep -q "^$opt=" "$out/.config"; then
			echo "config: $opt should be unset" >&2; missing=1
		fi ;;
	CONFIG_*=*) if ! grep -qx "$line" "$out/.config"; then
			echo "config: $line did not stick" >&2; missing=1
		fi ;;
	esac
done < <(cat "$here/kconfig/base.config" "$frag")
[ "$missing" = 0 ] || { echo "config fragments do not apply" >&2; exit 1; }
touch "$out/.configured"

# Progress: objects compiled so far, every 30 s, on stderr.
start=$(date +%s)
make -C "$src" O="$out" ARCH=x86_64 -j"$(nproc)" bzImage modules >> "$log" 2>&1 &
build=$!
while kill -0 "$build" 2>/dev/null; do
	for _ in $(seq 30); do
		kill -0 "$build" 2>/dev/null || break
		sleep 1
	done
	kill -0 "$build" 2>/dev/null || break
	echo "  $flavor kernel: $(grep -c '^  CC ' "$log") objects compiled, $(( $(date +%s) - start )) s" >&2
done
if ! wait "$build"; then
	tail -n 30 "$log" >&2
	if [ "$resumed" = 1 ]; then
		# What the interrupted build left may be the cause: once more,
		# from nothing (the lock is released when this process ends).
		echo "the resumed build failed: building the $flavor kernel again from scratch" >&2
		rm -f "$out/.configured"
		exec 8>&-
		exec "$0" "$flavor"
	fi
	echo "the $flavor kernel does not build (see $log)" >&2
	exit 1
fi
echo "  $flavor kernel built in $(( $(date +%s) - start )) s" >&2
touch "$out/.done"
echo "$out"
