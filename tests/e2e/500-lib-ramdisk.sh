#!/bin/bash
# timeout: 600
# examples/dmu-ramdisk (libdmuser's blocking loop, a RAM disk): fio
# --verify=crc32c over the whole device through libaio with O_DIRECT; a
# discarded range reads back as zeroes; SIGTERM removes the device and the
# example exits 0.
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"
dmu_kernel_independent "libdmuser and its examples over the protocol, which 030, 170 and 200 check with dmuserd here"

tmp=$(dmu_tmpdir)
name=dmu-test-ram
dev=/dev/mapper/$name
prog=$DMU_ROOT/examples/dmu-ramdisk
[[ -x $prog ]] || die "not built: $prog (make)"
dmu_load

dmu_bg "$prog" "$name" 64
pid=$DMU_BG_PID
wait_for_path "$dev" 30 || die "$dev did not appear"

fio --name=ram --filename="$dev" --rw=randwrite --bssplit=4k/40:16k/20:64k/20:256k/20 \
	--size=64M --iodepth=16 --ioengine=libaio --direct=1 \
	--verify=crc32c --do_verify=1 --verify_fatal=1 --verify_state_save=0 \
	--output-format=json --output="$tmp/fio.json" || die "fio failed: $(cat "$tmp/fio.json")"
read -r err written verified <<<"$(jq -r '.jobs[0] | "\(.error) \(.write.io_bytes) \(.read.io_bytes)"' "$tmp/fio.json")"
log "fio: error $err, written $written, verified $verified"
assert_eq "$err" 0 "fio error"
((written > 0 && verified == written)) || die "verified $verified bytes of $written written"

# discard 1 MiB at 4 MiB: it reads back as zeroes, its neighbours do not
blkdiscard -o $((4 << 20)) -l $((1 << 20)) "$dev"
cmp -s <(dd if="$dev" bs=1M skip=4 count=1 iflag=direct status=none) <(head -c 1M /dev/zero) ||
	die "a discarded range does not read back as zeroes"
! cmp -s <(dd if="$dev" bs=1M skip=5 count=1 iflag=direct status=none) <(head -c 1M /dev/zero) ||
	die "the range after the discard was zeroed too"

rc=0
dmu_stop "$pid" 30 || rc=$?
assert_eq "$rc" 0 "dmu-ramdisk exit status after SIGTERM"
! dmu_dm_exists "$name" || die "$name still exists after SIGTERM"
dmu_unload
