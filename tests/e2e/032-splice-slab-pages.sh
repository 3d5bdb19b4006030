#!/bin/bash
# timeout: 300
# A WRITE whose pages are slab memory, taken by splice(2): the module copies
# each such page into one of its own, since a pipe may hold a reference to
# a page only if it is reference counted (dm-user.c, dmu_page_refable() and
# dmu_splice_out()); every other page of a spliced WRITE goes by reference.
# XFS writes its buffers smaller than a page (the superblock and the AG
# headers, one 512-byte sector each here) from kmalloc()ed memory.
# dmu-client serves the device from memory and takes every request by
# splice (dmuserd splices only after a large WRITE).  mkfs.xfs, mount, a
# tree copied in, unmount; xfs_repair -n is clean; mounted again read-only,
# the tree compares equal; the target counts no failed request.
# A kretprobe event with a histogram trigger (tracefs) counts
# dmu_page_refable()'s answers meanwhile (the module keeps it out of line):
# some pages were copied, and some referenced.  With the copy skipped, XFS's
# data still reads back on these kernels, so the count is what sees it.
# In make soak (64 generated files, not 16) and on the debug lane's RT
# kernel (its debug kernel has no XFS), not in make check, whose 20 minutes
# are spent (it takes 10 to 14 s on one vCPU).
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

# the stock kernels of make check, not the debug lane's
if [[ $DMU_SOAK != 1 && $DMU_KVER =~ ^6\.(1\.[0-9]+-[0-9]+|12\.[0-9]+\+deb12)-amd64$ ]]; then
	skip "runs in make soak and make check-debug (make check's time is spent)"
fi
client=$DMU_ROOT/build/tools/dmu-client
[[ -x $client ]] || die "test tool not built: $client (run make)"
command -v mkfs.xfs >/dev/null || die "mkfs.xfs is not installed (Debian package xfsprogs: make deps)"
tmp=$(dmu_tmpdir)
name=dmu-test-slab
size=$((320 << 20)) # mkfs.xfs: at least 300 MB
sectors=$((size / 512))
dev=/dev/mapper/$name
mnt=$tmp/mnt
src=$tmp/src
trace=/sys/kernel/tracing
dmu_load
if ! modprobe xfs 2>/dev/null; then
	[[ $DMU_KVER != *-dmu-debug-* ]] || skip "the debug lane's kernel has no XFS (tests/debug/debug.config)"
	die "no xfs module for $DMU_KVER"
fi

mkdir -p "$src/gen/empty" "$mnt"
for i in $(seq 1 "$(dmu_scale 16 64)"); do # files: 64 in make soak
	head -c $(((i * i * 997) % (1 << 20) + i)) /dev/urandom >"$src/gen/file$i"
done
ln -s file1 "$src/gen/link"
cp -a "$DMU_ROOT/module" "$src/"

dmsetup create --noudevsync "$name" --table "0 $sectors user 0 $sectors $name"
dmsetup mknodes "$name"
dmu_bg "$client" serve "/dev/dm-user/$name" "$size" --splice --ready "$tmp/ready"
client_pid=$DMU_BG_PID
wait_for_path "$tmp/ready" 10 || die "dmu-client did not start"
assert_eq "$(blockdev --getss "$dev")" 512 "logical block size of $dev"

awk '$3 == "dmu_page_refable" && $4 == "[dm_user]" { f = 1 } END { exit !f }' /proc/kallsyms ||
	die "dmu_page_refable is not a symbol of dm_user (the module keeps it out of line)"
event=$trace/events/dmu_test/refable
refable_off() { # remove the probe (before the module goes)
	[[ -d $event ]] || return 0
	echo 0 >"$event/enable"
	echo '!hist:keys=ret' >"$event/trigger"
	echo '-:dmu_test/refable' >>"$trace/kprobe_events"
}
dmu_at_exit refable_off
# shellcheck disable=SC2016 # $retval is the probe's syntax
echo 'r:dmu_test/refable dmu_page_refable ret=$retval:u8' >>"$trace/kprobe_events"
echo 'hist:keys=ret' >"$event/trigger"
echo 1 >"$event/enable"

mkfs.xfs -q -f "$dev" || die "mkfs.xfs failed"
mount -t xfs "$dev" "$mnt" || die "mount failed"
cp -a "$src" "$mnt/tree"
umount "$mnt" || die "umount failed"

echo 0 >"$event/enable"
cp "$event/hist" "$tmp/hist"
refable_off
# { ret:          0 } hitcount:         16
copied=$(awk '$1 == "{" && $2 == "ret:" && $3 == 0 { print $6 }' "$tmp/hist")
referenced=$(awk '$1 == "{" && $2 == "ret:" && $3 == 1 { print $6 }' "$tmp/hist")
log "WRITE pages taken by splice: ${copied:-0} slab pages copied, ${referenced:-0} referenced"
((${copied:-0} > 0)) || die "no slab page was copied: $(cat "$tmp/hist")"
((${referenced:-0} > 0)) || die "no page was referenced: $(cat "$tmp/hist")"

xfs_repair -n "$dev" >"$tmp/repair" 2>&1 || die "xfs_repair -n found problems: $(tail -n 20 "$tmp/repair")"
mount -t xfs -o ro "$dev" "$mnt" || die "second mount failed"
diff -r --no-dereference "$src" "$mnt/tree" >"$tmp/diff" 2>&1 ||
	die "the tree differs after a remount: $(head -n 20 "$tmp/diff")"
umount "$mnt"
log "xfs: $(find "$src" | wc -l) entries, $(du -sh "$src" | cut -f1), xfs_repair -n clean, equal after a remount"
read -r _ _ _ _ _ _ _ errors _ <<<"$(dmsetup status "$name")"
assert_eq "$errors" 0 "failed requests"

dmsetup remove "$name"
wait_until 10 dmu_not_running "$client_pid" || die "dmu-client still runs 10 s after remove"
dmu_stop "$client_pid" 10 || die "dmu-client did not exit cleanly after remove"
dmu_unload
