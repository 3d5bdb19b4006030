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

# Resolve a --kernel argument: an exact installed version, or a prefix ending at a
# component boundary that matches exactly one of them ("6.1" -> 6.1.0-56-amd64, not
# 6.12.x; "6.12" -> 6.12.117+deb12-amd64).
vm_resolve_kernel() {
	local want=$1 k exact="" matches=()
	while IFS= read -r k; do
		[[ $k == "$want" ]] && exact=$k
		[[ $k == "$want"[.+-]* ]] && matches+=("$k")
	done < <(vm_kernels)
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
