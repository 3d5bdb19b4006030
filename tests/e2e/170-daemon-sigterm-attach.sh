#!/bin/bash
# timeout: 900
# soak-timeout: 1800
# Stopping dmuserd under load loses no acknowledged write.
#  1. A device with a recovery window (recovery_ms), served by `dmuserd --attach`:
#     while fio writes with --verify=crc32c, the daemon is stopped with SIGTERM
#     three times (it answers the requests in hand, exits 0 and leaves the device)
#     and restarted with --attach. fio sees no error and every block verifies.
#  2. A device dmuserd created, held open: SIGTERM cannot remove it, so dmuserd
#     says the device is busy and keeps serving; once closed, the next SIGTERM
#     removes it and dmuserd exits 0.
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

tmp=$(dmu_tmpdir)
name=dmu-test-attach
sectors=$(($(dmu_scale 48 128) << 11)) # MiB: 48, 128 in `make soak`
size=$((sectors * 512))
dev=/dev/mapper/$name
dmu_load
truncate -s "$size" "$tmp/backing"

# start_attached: start `dmuserd --attach` on $name; pid in $pid
start_attached() {
	rm -f "$tmp/ready"
	dmu_bg "$DMU_DAEMON" --file "$tmp/backing" --name "$name" --attach --threads 2 \
		--ready-file "$tmp/ready"
	pid=$DMU_BG_PID
	wait_for_path "$tmp/ready" 30 || die "dmuserd --attach did not start"
}
completed() { dmsetup status "$name" | awk '{ print $7 }'; }
completed_past() { (($(completed) >= $1)); }

log "1. $name with recovery_ms 30000, served by dmuserd --attach"
dmsetup create --noudevsync "$name" --table "0 $sectors user 0 $sectors $name 2 recovery_ms 30000"
dmsetup mknodes "$name"
start_attached

# The writes are paced (about 4500 at 300 a second; 12000 in soak), so that the
# three restarts, 500 completed requests apart (1000 in soak), always fall inside
# them however fast the guest is; the reads that verify them, after the last
# restart, are not.
fio --name=verify --filename="$dev" --rw=randwrite --bssplit=4k/50:16k/25:64k/25 \
	--size="$size" --iodepth=16 --ioengine=libaio --direct=1 --rate_iops=,300 \
	--verify=crc32c --do_verify=1 --verify_fatal=1 --verify_state_save=0 \
	--output-format=json --output="$tmp/fio.json" &
fio_pid=$!

step=$(dmu_scale 500 1000)
for cycle in 1 2 3; do
	target=$(($(completed) + step))
	wait_until 300 completed_past "$target" || die "cycle $cycle: I/O made no progress"
	kill -0 "$fio_pid" 2>/dev/null || die "cycle $cycle: fio ended before the restart"
	at=$(completed)
	log "cycle $cycle: SIGTERM at $at completed requests"
	rc=0
	dmu_stop "$pid" 30 || rc=$?
	assert_eq "$rc" 0 "cycle $cycle: dmuserd --attach exit status after SIGTERM"
	dmu_dm_exists "$name" || die "cycle $cycle: dmuserd --attach removed $name"
	log "cycle $cycle: status without daemon: $(dmsetup status "$name")"
	start_attached
done

rc=0
wait "$fio_pid" || rc=$?
read -r err written verified nwrites <<<"$(jq -r '.jobs[0] | "\(.error) \(.write.io_bytes) \(.read.io_bytes) \(.write.total_ios)"' "$tmp/fio.json")"
# the device is new: its completions before the verifying reads are fio's writes
((at < nwrites)) || die "the last restart came after the writes ($at completed requests, $nwrites writes)"
log "fio exit $rc, error $err, written $written, verified $verified; status $(dmsetup status "$name")"
assert_eq "$rc" 0 "fio exit status across the restarts"
assert_eq "$err" 0 "fio error across the restarts"
((written > 0 && verified == written)) || die "verified $verified bytes of $written written"
read -r _ _ _ _ _ _ _ errors _ <<<"$(dmsetup status "$name")"
assert_eq "$errors" 0 "requests the target ended with an error"

rc=0
dmu_stop "$pid" 30 || rc=$?
assert_eq "$rc" 0 "last dmuserd --attach exit status"
dmsetup remove --noudevsync "$name"

log "2. SIGTERM while the device is open"
name=dmu-test-busy
dev=/dev/mapper/$name
rm -f "$tmp/ready"
dmu_bg "$DMU_DAEMON" --file "$tmp/backing" --name "$name" --ready-file "$tmp/ready" 2>"$tmp/busy.err"
pid=$DMU_BG_PID
wait_for_path "$tmp/ready" 30 || die "dmuserd did not start"
exec 3<"$dev"
kill -TERM "$pid"
said_busy() { grep -q "is busy" "$tmp/busy.err"; }
wait_until 60 said_busy || die "dmuserd did not report the busy device: $(cat "$tmp/busy.err")"
kill -0 "$pid" || die "dmuserd exited although it could not remove the device"
dd if="$dev" of=/dev/null bs=1M count=4 iflag=direct status=none || die "I/O failed after the refused removal"
exec 3<&-
rc=0
dmu_stop "$pid" 30 || rc=$?
assert_eq "$rc" 0 "dmuserd exit status after the second SIGTERM"
! dmu_dm_exists "$name" || die "$name still exists"
dmu_unload
