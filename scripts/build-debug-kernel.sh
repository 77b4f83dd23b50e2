#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Build the debug 6.12 guest kernel from Debian's linux-source-6.12:
# tinyconfig + scripts/kconfig/base.config + scripts/kconfig/debug.config.
#
# The build is cached outside the repository, keyed by a hash of the
# source package version and of the config fragments, so that reruns reuse it.
# Prints the build directory (usable as KDIR) on its last line of stdout.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cache=${LOOP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/loop-rework}
tarball=$(ls /usr/src/linux-source-6.12*.tar.xz 2>/dev/null | sort -V | tail -n 1)
[ -n "$tarball" ] || { echo "linux-source-6.12 is not installed" >&2; exit 1; }

srcver=$(dpkg-query -W -f='${Version}' linux-source-6.12)
key=$( { echo "$srcver"; cat "$here/kconfig/base.config" "$here/kconfig/debug.config"; } |
	sha256sum | cut -c1-16)
src=$cache/src-$srcver
out=$cache/kernel-debug-$key

if [ -f "$out/.done" ]; then
	echo "$out"
	exit 0
fi

mkdir -p "$cache"
if [ ! -f "$src/.done" ]; then
	rm -rf "$src"
	mkdir -p "$src"
	echo "extracting $tarball" >&2
	tar -xJf "$tarball" -C "$src" --strip-components=1
	touch "$src/.done"
fi

rm -rf "$out"
mkdir -p "$out"
jobs=$(nproc)
{
	make -C "$src" O="$out" ARCH=x86_64 tinyconfig
	"$src/scripts/kconfig/merge_config.sh" -m -O "$out" "$out/.config" \
		"$here/kconfig/base.config" "$here/kconfig/debug.config"
	make -C "$src" O="$out" ARCH=x86_64 olddefconfig
} >&2

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
done < <(cat "$here/kconfig/base.config" "$here/kconfig/debug.config")
[ "$missing" = 0 ] || { echo "config fragments do not apply" >&2; exit 1; }

make -C "$src" O="$out" ARCH=x86_64 -j"$jobs" bzImage modules >&2
touch "$out/.done"
echo "$out"
