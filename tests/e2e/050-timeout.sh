#!/bin/bash
# timeout: 180
# timeout_ms: a request no daemon answers in time fails with EIO and is
# counted; a daemon that answers late is not punished (its late replies are
# accepted, its channel stays open); `dmsetup message` changes timeout_ms and
# recovery_ms at run time, `dmsetup table` prints them, bad messages fail.
. "$(dirname "$0")/lib.sh"

client=$DMU_ROOT/build/tools/dmu-client
tmp=$(dmu_tmpdir)
name=dmu-test-tmo
sectors=8192
size=$((sectors * 512))
dmu_load
mark=$(dmu_kmsg_mark)

field() { dmsetup status "$name" | awk -v n="$1" '{ print $n }'; }

log "a daemon that never answers: EIO after timeout_ms"
dmsetup create --noudevsync "$name" --table "0 $sectors user 0 $sectors $name 2 timeout_ms 1000"
dmsetup mknodes "$name"
assert_eq "$(dmsetup table "$name")" "0 $sectors user 0 $sectors $name 2 timeout_ms 1000" "table with timeout_ms"
dmu_bg "$client" serve "/dev/dm-user/$name" "$size" --stall --ready "$tmp/ready"
stalled=$DMU_BG_PID
wait_for_path "$tmp/ready" 10
start=$SECONDS
if dd if="/dev/mapper/$name" of=/dev/null bs=4k count=1 iflag=direct status=none 2>"$tmp/dd.err"; then
	die "a read nobody answered succeeded"
fi
grep -q "Input/output error" "$tmp/dd.err" || die "expected EIO, got: $(cat "$tmp/dd.err")"
((SECONDS - start <= 10)) || die "the timeout took $((SECONDS - start)) s for timeout_ms 1000"
assert_eq "$(field 9)" 1 "timeouts in status"
assert_eq "$(field 8)" 1 "errors in status"
dmu_stop "$stalled" 10 || true

log "a daemon that answers late: its channel stays usable"
rm -f "$tmp/ready"
dmu_bg "$client" serve "/dev/dm-user/$name" "$size" --delay-ms 1500 --ready "$tmp/ready"
slow=$DMU_BG_PID
wait_for_path "$tmp/ready" 10
if dd if="/dev/mapper/$name" of=/dev/null bs=4k count=1 iflag=direct status=none 2>/dev/null; then
	die "a read answered after timeout_ms succeeded"
fi
assert_eq "$(field 9)" 2 "timeouts in status after the slow read"
log "raise the timeout at run time; the late reply was accepted, the channel serves"
dmsetup message "$name" 0 timeout_ms 20000
assert_eq "$(dmsetup table "$name")" "0 $sectors user 0 $sectors $name 2 timeout_ms 20000" "table after message"
head -c 4096 /dev/urandom >"$tmp/p"
dd if="$tmp/p" of="/dev/mapper/$name" bs=4k oflag=direct status=none ||
	die "the late daemon's channel no longer serves"
cmp -n 4096 "$tmp/p" "/dev/mapper/$name" || die "data differs"
assert_eq "$(field 4)" 1 "channels (the late daemon was not refused)"
if dmu_dmesg_since "$mark" | grep refused >/dev/null; then
	die "a late reply refused a channel: $(dmu_dmesg_since "$mark" | grep refused | tail -n 1)"
fi

log "recovery_ms by message; bad messages fail"
dmsetup message "$name" 0 recovery_ms 5000
assert_eq "$(dmsetup table "$name")" "0 $sectors user 0 $sectors $name 4 timeout_ms 20000 recovery_ms 5000" "table with both"
assert_fails dmsetup message "$name" 0 timeout_ms
assert_fails dmsetup message "$name" 0 timeout_ms -1
assert_fails dmsetup message "$name" 0 timeout_ms 12abc
assert_fails dmsetup message "$name" 0 frobnicate 1
dmsetup message "$name" 0 timeout_ms 0
dmsetup message "$name" 0 recovery_ms 0
assert_eq "$(dmsetup table "$name")" "0 $sectors user 0 $sectors $name" "table back at defaults"

dmsetup remove --noudevsync "$name"
dmu_stop "$slow" 10 || die "slow dmu-client did not exit cleanly"
dmu_unload
