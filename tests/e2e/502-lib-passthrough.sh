#!/bin/bash
# timeout: 900
# examples/dmu-passthrough (libdmuser's asynchronous API, io_uring, O_DIRECT)
# on a loop device: fio --verify=crc32c at iodepth 32 (requests complete
# out of order), then the dm device and its backing device are
# byte-identical; flush, FUA and discard reach the backing store; SIGTERM
# removes the device and the example exits 0.
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"
dmu_kernel_independent "libdmuser and its examples over the protocol, which 030, 170 and 200 check with dmuserd here"

tmp=$(dmu_tmpdir)
name=dmu-test-uring
dev=/dev/mapper/$name
prog=$DMU_ROOT/examples/dmu-passthrough
[[ -x $prog ]] || die "not built: $prog (make)"
dmu_load

# A block device takes O_DIRECT on every kernel (tmpfs does only from 6.6).
modprobe loop || die "no loop module"
truncate -s 128M "$tmp/backing"
loop=$(losetup --find --show "$tmp/backing")
# lib.sh's EXIT trap stops the example and removes the device; the loop
# device goes after them.
detach_on_exit() {
	local rc=$?
	dmu_cleanup
	losetup -d "$loop" 2>/dev/null || true
	(exit "$rc")
	_dmu_on_exit
}
trap detach_on_exit EXIT

dmu_bg "$prog" -q 32 "$name" "$loop" >"$tmp/out"
pid=$DMU_BG_PID
wait_for_path "$dev" 30 || die "$dev did not appear: $(cat "$tmp/out")"
assert_eq "$(blockdev --getsize64 "$dev")" $((128 << 20)) "device size"

fio --name=uring --filename="$dev" --rw=randwrite --bssplit=4k/40:16k/20:64k/20:256k/20 \
	--size=128M --iodepth=32 --ioengine=libaio --direct=1 \
	--verify=crc32c --do_verify=1 --verify_fatal=1 --verify_state_save=0 \
	--output-format=json --output="$tmp/fio.json" || die "fio failed: $(cat "$tmp/fio.json")"
read -r err written verified <<<"$(jq -r '.jobs[0] | "\(.error) \(.write.io_bytes) \(.read.io_bytes)"' "$tmp/fio.json")"
log "fio: error $err, written $written, verified $verified"
assert_eq "$err" 0 "fio error"
((written > 0 && verified == written)) || die "verified $verified bytes of $written written"

# What the device says is what the backing device holds.
cmp "$dev" "$loop" || die "$dev and $loop differ"

# FUA and flush: a write with O_DSYNC, a flush with sync(1) on the device
dd if=/dev/urandom of="$tmp/chunk" bs=64k count=1 status=none
dd if="$tmp/chunk" of="$dev" bs=64k seek=10 oflag=direct,dsync status=none
sync "$dev"
cmp <(dd if="$loop" bs=64k skip=10 count=1 iflag=direct status=none) "$tmp/chunk" ||
	die "the FUA write did not reach the backing device"
# discard: the range reads back as zeroes on both
blkdiscard -o $((8 << 20)) -l $((1 << 20)) "$dev"
cmp -s <(dd if="$dev" bs=1M skip=8 count=1 iflag=direct status=none) <(head -c 1M /dev/zero) ||
	die "a discarded range does not read back as zeroes"

rc=0
dmu_stop "$pid" 30 || rc=$?
assert_eq "$rc" 0 "dmu-passthrough exit status after SIGTERM"
! dmu_dm_exists "$name" || die "$name still exists after SIGTERM"
dmu_unload
