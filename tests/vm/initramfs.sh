#!/bin/bash
# shellcheck source-path=SCRIPTDIR
# Build the tiny test-guest initramfs for one kernel.
#
#   tests/vm/initramfs.sh <kver> <out.cpio.gz>
#
# Contents: busybox (static), /init (= tests/vm/init.sh) and the modules needed to
# mount the host root over 9p (virtio_pci, 9pnet_virtio, 9p and their dependencies,
# as listed by `modprobe -S <kver> --show-depends`), loaded by every guest; and
# those that `run.sh --systemd` needs as well, for its overlay root over the host's
# (virtio_blk, ext4, overlay), loaded only by such a guest. Compressed modules (.ko.xz,
# .ko.zst, .ko.gz) are decompressed here, because busybox insmod loads the image with
# init_module(2) and the kernel does not decompress that.
#
# The image is rebuilt only when an input changes (this script, init.sh, busybox,
# the module files); a "<out>.inputs" file next to the image records them.
set -euo pipefail

# shellcheck source=common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

(($# == 2)) || { echo "usage: $0 <kver> <out.cpio.gz>" >&2; exit 2; }
kver=$1
out=$2
# DMU_VM_MODROOT: the modules are in $DMU_VM_MODROOT/lib/modules (a kernel from
# tests/debug/kernel.sh); default: the host's /lib/modules.
modroot=${DMU_VM_MODROOT:-/}
moddir=$modroot/lib/modules/$kver
[[ -d $moddir ]] || vm_die "no $moddir"

for tool in modprobe cpio gzip sha256sum; do
	command -v "$tool" >/dev/null || vm_die "'$tool' not found (packages: kmod cpio gzip coreutils)"
done

busybox=""
for b in /bin/busybox /usr/bin/busybox; do
	[[ -x $b ]] && { busybox=$b; break; }
done
[[ -n $busybox ]] || vm_die "busybox not found (package busybox-static)"
if command -v ldd >/dev/null && ldd "$busybox" >/dev/null 2>&1; then
	vm_die "$busybox is dynamically linked; install busybox-static"
fi

# Modules to load, in dependency order, without duplicates. Built-ins are skipped.
# list[i] names the load list (order, or order-systemd) of mods[i].
mods=() list=()
declare -A seen=()
# With --optional, a module the kernel has neither built in nor as a file is
# left out (the boots that need it fail on their own, saying what is missing).
add_mods() { # [--optional] LIST MODULE...
	local optional=0 l want deps kind path
	[[ $1 != --optional ]] || { optional=1; shift; }
	l=$1
	shift
	for want; do
		if ! deps=$(modprobe -d "$modroot" -S "$kver" --show-depends "$want" 2>/dev/null); then
			((optional)) || vm_die "modprobe -d $modroot -S $kver --show-depends $want failed"
			continue
		fi
		while read -r kind path _; do
			[[ $kind == insmod ]] || continue
			[[ -n ${seen[$path]:-} ]] && continue
			seen[$path]=1
			mods+=("$path") list+=("$l")
		done <<<"$deps"
	done
}
add_mods order virtio_pci 9pnet_virtio 9p
# only for run.sh --systemd: the debug lane's kernel has no virtio_blk, and
# boots only the way the suites do
add_mods --optional order-systemd virtio_blk ext4 overlay

self=$(realpath "${BASH_SOURCE[0]}")
init=$(dirname "$self")/init.sh
inputs=$(
	sha256sum "$self" "$init" "$busybox" "${mods[@]}"
	echo "kver $kver"
)
if [[ -f $out && -f $out.inputs && $(<"$out.inputs") == "$inputs" ]]; then
	exit 0
fi

stage=$(mktemp -d "${TMPDIR:-/tmp}/dmu-initramfs.XXXXXX")
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage"/{bin,dev,proc,sys,newroot,out,keep,lib/dmu-modules}
cp "$busybox" "$stage/bin/busybox"
install -m 0755 "$init" "$stage/init"
: >"$stage/lib/dmu-modules/order" # empty when all of them are built in
: >"$stage/lib/dmu-modules/order-systemd"
for i in "${!mods[@]}"; do
	path=${mods[i]}
	name=$(basename "$path")
	case $name in
	*.ko.xz) xz -dc "$path" >"$stage/lib/dmu-modules/${name%.xz}" ;;
	*.ko.zst) zstd -qdc "$path" >"$stage/lib/dmu-modules/${name%.zst}" ;;
	*.ko.gz) gzip -dc "$path" >"$stage/lib/dmu-modules/${name%.gz}" ;;
	*.ko) cp "$path" "$stage/lib/dmu-modules/$name" ;;
	*) vm_die "unexpected module file $path" ;;
	esac
	name=${name%.xz}
	name=${name%.zst}
	printf '%s\n' "${name%.gz}" >>"$stage/lib/dmu-modules/${list[i]}"
done

mkdir -p "$(dirname "$out")"
tmp=$out.tmp.$$
(cd "$stage" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc -R 0:0 --quiet) |
	gzip -6 -n >"$tmp"
mv -f "$tmp" "$out"
printf '%s\n' "$inputs" >"$out.inputs"
vm_log "built $out ($(du -k "$out" | cut -f1) KiB, modules: $(tr '\n' ' ' <"$stage/lib/dmu-modules/order")+ for --systemd: $(tr '\n' ' ' <"$stage/lib/dmu-modules/order-systemd"))"
