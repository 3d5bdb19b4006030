#!/bin/bash
# Build (once) the debug lane's kernel from Debian's linux-source-6.12 and
# print the directory that holds it.
#
#   tests/debug/kernel.sh [--print-dir]
#
# Cache: $DMU_DEBUG_CACHE (default /var/cache/dm-user/kernel), outside the
# clone, one directory per key "<linux-source version>-<sha256 of
# tests/debug/debug.config, 12 hex>".  A directory with a "done" file is
# reused as it is; anything else there is a build that did not finish and is
# removed; finished ones of other keys, once unused for 14 days.  Layout of
# a finished one:
#   kver      the kernel release (uname -r), <version>-dmu-debug-<key>
#   vmlinuz   the bzImage
#   build/    the O= build tree, KDIR for out-of-tree modules (has vmlinux)
#   src/      the source tree build/ refers to
#   modroot/lib/modules/<kver>/   modules_install output (modules.builtin...),
#             with build -> build/ and source -> src/ (for bpftrace)
#   config    the merged .config, build.log the build's output
# --print-dir prints the directory the current key names, built or not.
#
# The build runs with make -j$(nproc) under nice -n 19, so that the other work
# on the machine keeps priority; DMU_DEBUG_NICE=N changes that (on a machine
# busy with other guests, 19 gets next to no CPU).  Packages it needs:
# DEBUG_DEPS in the Makefile (make check-debug installs them).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
fragment=$here/debug.config
cache=${DMU_DEBUG_CACHE:-/var/cache/dm-user/kernel}
niceness=${DMU_DEBUG_NICE:-19}
tarball=/usr/src/linux-source-6.12.tar.xz

die() { echo "kernel.sh: error: $*" >&2; exit 1; }

srcver=$(dpkg-query -W -f='${Version}' linux-source-6.12 2>/dev/null) ||
	die "linux-source-6.12 is not installed (make debug-deps)"
[[ -r $tarball ]] || die "no $tarball (package linux-source-6.12)"
key=$(sha256sum <"$fragment" | cut -c1-12)
dir=$cache/$srcver-$key

if [[ ${1:-} == --print-dir ]]; then
	echo "$dir"
	exit 0
fi
# bpftrace takes the kernel's headers from lib/modules/<kver>/source, or
# from build/ when there is no source/ (kbuild no longer makes that link),
# and build/ (the O= tree) has no include/linux: 350's one-liners failed on
# "include/linux/kconfig.h file not found".  Made for a cache entry built
# before this line too.
source_link() {
	local kver
	kver=$(<"$dir/kver")
	[[ -e $dir/modroot/lib/modules/$kver/source ]] ||
		ln -sfn "$dir/src" "$dir/modroot/lib/modules/$kver/source"
}
if [[ -f $dir/done ]]; then
	source_link
	touch "$dir/done" # in use: see the pruning below
	echo "$dir"
	exit 0
fi

base=$(sed -n 's/^# base: *\([a-z0-9_]*\).*/\1/p' "$fragment" | head -n1)
[[ -n $base ]] || die "$fragment has no '# base: <target>' line"
for tool in make gcc bc flex bison pahole xz; do
	command -v "$tool" >/dev/null || die "'$tool' not found (make debug-deps)"
done

mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9 # one build at a time; a second caller waits and then reuses it
if [[ -f $dir/done ]]; then
	source_link
	echo "$dir"
	exit 0
fi
rm -rf "$dir"
mkdir -p "$dir/src" "$dir/build"
log=$dir/build.log
start=$SECONDS
echo "kernel.sh: building the debug kernel in $dir (log: $log)" >&2
{
	tar -xJf "$tarball" -C "$dir/src" --strip-components=1
	mk=(nice -n "$niceness" make -C "$dir/src" O="$dir/build")
	"${mk[@]}" "$base"
	"$dir/src/scripts/kconfig/merge_config.sh" -m -O "$dir/build" \
		"$dir/build/.config" "$fragment"
	"$dir/src/scripts/config" --file "$dir/build/.config" \
		--set-str LOCALVERSION "-dmu-debug-$key"
	"${mk[@]}" olddefconfig
} >"$log" 2>&1 || die "configuring failed (see $log)"

# Every option the fragment sets must be in the result: Kconfig drops what
# has unmet dependencies without a word.
bad=0
while IFS= read -r line; do
	if [[ $line =~ ^(CONFIG_[A-Za-z0-9_]+)=(.*)$ ]]; then
		want=$line
	elif [[ $line =~ ^#\ (CONFIG_[A-Za-z0-9_]+)\ is\ not\ set$ ]]; then
		want=$line
	else
		continue
	fi
	sym=${BASH_REMATCH[1]}
	got=$(grep -E "^($sym=|# $sym is not set)" "$dir/build/.config" || true)
	if [[ $want == \#* && -z $got ]]; then
		continue # an option that is off and not even offered
	fi
	if [[ $got != "$want" ]]; then
		echo "kernel.sh: $fragment wants '$want', the .config has '${got:-nothing}'" >&2
		bad=1
	fi
done <"$fragment"
((bad == 0)) || die "the config fragment did not apply (fix tests/debug/debug.config)"

nice -n "$niceness" make -C "$dir/src" O="$dir/build" -j"$(nproc)" bzImage modules >>"$log" 2>&1 ||
	die "kernel build failed: $(tail -n 20 "$log")"
nice -n "$niceness" make -C "$dir/src" O="$dir/build" INSTALL_MOD_PATH="$dir/modroot" \
	modules_install >>"$log" 2>&1 || die "modules_install failed (see $log)"
kver=$(make -s -C "$dir/src" O="$dir/build" kernelrelease 2>/dev/null | tail -n1)
[[ -d $dir/modroot/lib/modules/$kver ]] || die "no $dir/modroot/lib/modules/$kver after modules_install"
cp "$dir/build/arch/x86/boot/bzImage" "$dir/vmlinuz"
cp "$dir/build/.config" "$dir/config"
echo "$kver" >"$dir/kver"
echo "$srcver" >"$dir/source-version"
source_link
touch "$dir/done"
echo "kernel.sh: built $kver in $((SECONDS - start)) s" >&2
# Builds of other keys (an older source or config) go once unused for 14 days.
for old in "$cache"/*/done; do
	[[ -e $old && $(dirname "$old") != "$dir" ]] || continue
	[[ -n $(find "$old" -mtime +14) ]] && rm -rf "$(dirname "$old")"
done
echo "$dir"
