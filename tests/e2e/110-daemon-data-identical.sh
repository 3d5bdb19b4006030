#!/bin/bash
# timeout: 300
# What is written through the dm device ends up byte for byte in the backing file:
# a known pattern written with O_DIRECT over the whole device, then unaligned
# patches at odd sector offsets (direct), then buffered writes made durable with
# sync. After dmuserd stops (and the device is gone), the file equals the model.
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

tmp=$(dmu_tmpdir)
name=dmu-test-data
size=$((64 << 20))
dev=/dev/mapper/$name
dmu_load

head -c "$size" /dev/urandom >"$tmp/model"
truncate -s "$size" "$tmp/backing"
dmu_daemon_start "$name" "$tmp/backing" "$size" --threads 3

log "whole device, 1 MiB direct writes"
dd if="$tmp/model" of="$dev" bs=1M oflag=direct status=none

# patch SECTOR COUNT: write COUNT sectors of fresh random data at SECTOR, to the
# device (direct) and to the model.
patch_at() {
	head -c $(($2 * 512)) /dev/urandom >"$tmp/patch"
	dd if="$tmp/patch" of="$dev" bs=512 seek="$1" oflag=direct status=none
	dd if="$tmp/patch" of="$tmp/model" bs=512 seek="$1" conv=notrunc status=none
}
log "patches at odd sector offsets"
patch_at 1 1
patch_at 7 9
patch_at 4095 3
patch_at 77777 255
patch_at $((size / 512 - 1)) 1

log "buffered writes, then sync"
head -c $((3 << 20)) /dev/urandom >"$tmp/buffered"
dd if="$tmp/buffered" of="$dev" bs=64k seek=160 status=none
dd if="$tmp/buffered" of="$tmp/model" bs=64k seek=160 conv=notrunc status=none
sync "$dev"

log "read back through the device"
cmp "$tmp/model" "$dev" || die "the device reads back differently from what was written"

dmu_daemon_stop
! dmu_dm_exists "$name" || die "$name still exists after the daemon stopped"
cmp "$tmp/model" "$tmp/backing" || die "the backing file differs from what was written"
assert_eq "$(stat -c %s "$tmp/backing")" "$size" "backing file size"

dmu_unload
