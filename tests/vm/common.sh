# shellcheck shell=bash
# Shared helpers for the host-side VM scripts (run.sh, suite.sh, initramfs.sh,
# ../demo/demo.sh). Sourced, never executed.

# Repository root: the directory that contains tests/. Computed from this file's
# own location so a fresh clone at any path works.
DMU_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)"
# shellcheck disable=SC2034 # used by the scripts that source this file
DMU_VM_BUILD="$DMU_ROOT/build/vm"
DMU_PROG=${DMU_PROG:-$(basename "$0")}

vm_log() { printf '%s: %s\n' "$DMU_PROG" "$*" >&2; }
vm_die() { vm_log "error: $*"; exit 1; }

# Installed kernels we can test on, oldest first: generic "-amd64" flavour only,
# with an image in /boot and headers in /lib/modules/<kver>/build.
vm_kernels() {
	local f k
	for f in /boot/vmlinuz-*; do
		[[ -e $f ]] || continue
		k=${f#/boot/vmlinuz-}
		[[ $k == *-amd64 ]] || continue
		case $k in *-cloud-amd64 | *-rt-amd64) continue ;; esac
		[[ -d /lib/modules/$k/kernel && -d /lib/modules/$k/build ]] || continue
		printf '%s\n' "$k"
	done | sort -V
}

# Kernels that are not in /boot, for the debug lane (tests/debug/): each word of
# DMU_VM_KERNEL_DIRS is a directory made by tests/debug/kernel.sh, with the files
# kver (the release), vmlinuz and modroot/lib/modules/<kver>/. Prints the
# directory whose kver is $1, or nothing.
vm_kernel_dir() {
	local d
	for d in ${DMU_VM_KERNEL_DIRS:-}; do
		[[ -f $d/kver && $(<"$d/kver") == "$1" ]] && { printf '%s\n' "$d"; return 0; }
	done
	return 0
}

# The image to boot for kernel $1, and the root under which its lib/modules/<kver>
# is ("" for the host's own).
vm_kernel_image() {
	local d
	d=$(vm_kernel_dir "$1")
	if [[ -n $d ]]; then printf '%s\n' "$d/vmlinuz"; else printf '/boot/vmlinuz-%s\n' "$1"; fi
}
vm_kernel_modroot() {
	local d
	d=$(vm_kernel_dir "$1")
	[[ -z $d ]] || printf '%s\n' "$d/modroot"
}

# Resolve a --kernel argument: an exact installed version, or a prefix ending at a
# component boundary that matches exactly one of them ("6.1" -> 6.1.0-56-amd64, not
# 6.12.x; "6.12" -> 6.12.117+deb12-amd64). Only the exact version selects a kernel
# that vm_kernels leaves out: an installed -rt (or -cloud) flavour, or one of
# DMU_VM_KERNEL_DIRS.
vm_resolve_kernel() {
	local want=$1 k exact="" matches=()
	while IFS= read -r k; do
		[[ $k == "$want" ]] && exact=$k
		[[ $k == "$want"[.+-]* ]] && matches+=("$k")
	done < <(vm_kernels)
	if [[ -z $exact && -n $(vm_kernel_dir "$want") ]]; then
		exact=$want
	elif [[ -z $exact && $want == *-amd64 && -e /boot/vmlinuz-$want &&
		-d /lib/modules/$want/kernel && -d /lib/modules/$want/build ]]; then
		exact=$want
	fi
	if [[ -n $exact ]]; then
		printf '%s\n' "$exact"
	elif ((${#matches[@]} == 1)); then
		printf '%s\n' "${matches[0]}"
	elif ((${#matches[@]} == 0)); then
		vm_die "no installed generic -amd64 kernel with headers matches '$want' (have: $(vm_kernels | tr '\n' ' '))"
	else
		vm_die "kernel '$want' is ambiguous: ${matches[*]}"
	fi
}

vm_ko_path() { printf '%s/build/kmod/%s/dm-user.ko\n' "$DMU_ROOT" "$1"; }

# Remove build/vm/GLOB.<pid> or GLOB-<pid> result directories whose run is over
# (their pid is gone) and that are older than MINUTES (default 0).
vm_prune() {
	local glob=$1 minutes=${2:-0} d pid
	for d in "$DMU_VM_BUILD"/$glob; do
		[[ -d $d && ! -L $d ]] || continue
		pid=${d##*[.-]}
		[[ $pid =~ ^[0-9]+$ ]] || continue
		kill -0 "$pid" 2>/dev/null && continue
		[[ -n $(find "$d" -maxdepth 0 -mmin +"$minutes" 2>/dev/null) ]] || ((minutes == 0)) || continue
		rm -rf "$d"
	done
}

# Seconds since the epoch with sub-second precision, for timings.
vm_now() { date +%s.%N; }
vm_elapsed() { awk -v a="$1" -v b="$(vm_now)" 'BEGIN { printf "%.1f", b - a }'; }
