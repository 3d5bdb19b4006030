#!/bin/bash
# timeout: 900
# soak-timeout: 2700
# 5 cycles (200 in `make soak`) of: load, create, serve, write and read back,
# remove, unload. Afterwards the kernel holds nothing of ours: no dm_user
# module, and the module's slab caches had no live objects before each rmmod
# (the guest boots with slab_nomerge, so the caches are not shared). Leaked
# BIOs would hang remove; leaked objects would also make rmmod complain.
. "$(dirname "$0")/lib.sh"

client=$DMU_ROOT/build/tools/dmu-client
tmp=$(dmu_tmpdir)
name=dmu-test-cyc
sectors=8192
size=$((sectors * 512))
cycles=$(dmu_scale 5 200)
head -c 262144 /dev/urandom >"$tmp/p"
modules_before=$(wc -l </proc/modules)

# Live objects in one of our slab caches. SLUB counts free objects held in
# per-CPU slabs as active; shrinking first flushes those, so the count is exact.
slab_active() {
	[[ -d /sys/kernel/slab/$1 ]] || die "no slab cache $1 (is the guest booted with slab_nomerge?)"
	echo 1 >"/sys/kernel/slab/$1/shrink"
	awk -v c="$1" '$1 == c { print $2 }' /proc/slabinfo
}

for ((i = 1; i <= cycles; i++)); do
	dmu_load
	dmsetup create --noudevsync "$name" --table "0 $sectors user 0 $sectors $name"
	dmsetup mknodes "$name"
	rm -f "$tmp/ready"
	dmu_bg "$client" serve "/dev/dm-user/$name" "$size" --ready "$tmp/ready"
	pid=$DMU_BG_PID
	wait_for_path "$tmp/ready" 10
	dd if="$tmp/p" of="/dev/mapper/$name" bs=64k oflag=direct status=none
	cmp -n 262144 "$tmp/p" "/dev/mapper/$name" || die "cycle $i: data differs"
	dmsetup remove --noudevsync "$name"
	dmu_stop "$pid" 10 || die "cycle $i: dmu-client failed"
	for cache in dmu_channel dmu_target; do
		n=$(slab_active "$cache")
		[[ $n == 0 ]] || die "cycle $i: $n live objects in slab cache $cache after remove"
	done
	dmu_unload
	((i % 20)) || log "$i cycles"
done
assert_eq "$(wc -l </proc/modules)" "$modules_before" "number of loaded modules"
log "$cycles cycles, no live objects left"
