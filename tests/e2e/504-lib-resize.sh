#!/bin/bash
# timeout: 600
# libdmuser's device calls from another process while
# examples/dmu-passthrough serves: dmu_device_attach reads back the table
# options, dmu_device_resize grows the device under fio (reload + resume
# with the same options: no request fails, the channel stays); the
# serving process refuses the new end until it reads the table again
# (dmu_device_refresh, on SIGHUP), then serves it; and
# dmu_device_set_timeout_ms changes the live table.
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"
dmu_kernel_independent "libdmuser and its examples over the protocol, which 030, 170 and 200 check with dmuserd here"

tmp=$(dmu_tmpdir)
name=dmu-test-resize
dev=/dev/mapper/$name
prog=$DMU_ROOT/examples/dmu-passthrough
ctl=$DMU_ROOT/build/tools/dmu-libctl
[[ -x $prog && -x $ctl ]] || die "not built: $prog or $ctl (make)"
dmu_load

modprobe loop || die "no loop module"
truncate -s 96M "$tmp/backing"
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

dmu_bg "$prog" -q 16 -r 20000 -T 60000 -x 128 -s $((64 << 20)) "$name" "$loop" >"$tmp/out"
pid=$DMU_BG_PID
wait_for_path "$dev" 30 || die "$dev did not appear: $(cat "$tmp/out")"

"$ctl" info "$name" >"$tmp/info"
log "info: $(tr '\n' ' ' <"$tmp/info")"
grep -qx "size=$((64 << 20))" "$tmp/info" || die "attach read a wrong size"
grep -qx "control=/dev/dm-user/$name" "$tmp/info" || die "attach read a wrong control path"
grep -qx "max_io=$((128 << 10))" "$tmp/info" || die "attach read a wrong max_io_len"
read -r maj min < <(dmsetup info -c --noheadings -o major,minor --separator ' ' "$name")
grep -qx "devt=$(((maj << 20) | min))" "$tmp/info" || die "devt is not major << 20 | minor"

fio --name=resize --filename="$dev" --rw=randwrite --bs=16k --size=64M --iodepth=8 \
	--ioengine=libaio --direct=1 --rate_iops=300 --runtime=$((10 * ${DMU_TIMEOUT_SCALE:-1})) --time_based \
	--verify=crc32c --do_verify=0 --output-format=json --output="$tmp/fio.json" &
fio_pid=$!
completed_past() { (($(dmsetup status "$name" | awk '{ print $7 }') >= $1)); }
wait_until 120 completed_past 300 || die "no I/O"
"$ctl" resize "$name" $((96 << 20)) || die "resize failed"
# (10 s of fio, 30 s on the debug lane: the resize comes about 4 s in; it was
# 30 s, 25 of them idle after the checks)
kill -0 "$fio_pid" 2>/dev/null || die "fio had ended before the resize was done: it was not under load"
assert_eq "$(blockdev --getsize64 "$dev")" $((96 << 20)) "size after the resize"
table=$(dmsetup table "$name")
log "table: $table"
[[ $table == "0 196608 user 0 196608 $name 6 timeout_ms 60000 recovery_ms 20000 max_io_len 256" ]] ||
	die "the options did not survive the resize: $table"
rc=0
wait "$fio_pid" || rc=$?
assert_eq "$rc" 0 "fio exit status across the resize"
assert_eq "$(jq '.jobs[0].error' "$tmp/fio.json")" 0 "fio error across the resize"

# past the old end: refused (EIO) by the server that does not know the new
# size, served once it read the table again
errors() { dmsetup status "$name" | awk '{ print $8 }'; }
assert_eq "$(errors)" 0 "requests failed during the resize"
dd if=/dev/urandom of="$tmp/chunk" bs=1M count=1 status=none
! dd if="$tmp/chunk" of="$dev" bs=1M seek=80 oflag=direct status=none 2>/dev/null ||
	die "a write past the size the server knows succeeded"
refused=$(errors)
((refused > 0)) || die "the refused write failed no request"
kill -HUP "$pid"
refreshed() { grep -qx "size=$((96 << 20))" "$tmp/out"; }
wait_until 10 refreshed || die "no refresh after SIGHUP: $(cat "$tmp/out")"
dd if="$tmp/chunk" of="$dev" bs=1M seek=80 oflag=direct status=none
cmp <(dd if="$dev" bs=1M skip=80 count=1 iflag=direct status=none) "$tmp/chunk" ||
	die "the grown part does not read back"
"$ctl" status "$name" >"$tmp/status"
grep -qx "errors=$refused" "$tmp/status" || die "requests failed besides the refused ones: $(cat "$tmp/status")"
grep -qx "channels=1" "$tmp/status" || die "the channel did not survive the resize: $(cat "$tmp/status")"

"$ctl" timeout "$name" 45000
dmsetup table "$name" | grep -q 'timeout_ms 45000' || die "timeout_ms not set: $(dmsetup table "$name")"

rc=0
dmu_stop "$pid" 30 || rc=$?
assert_eq "$rc" 0 "dmu-passthrough exit status after SIGTERM"
! dmu_dm_exists "$name" || die "$name still exists after SIGTERM"
dmu_unload
