#!/bin/bash
# timeout: 600
# soak-timeout: 1800
# dmsetup suspend/resume with I/O in flight: 5 cycles (100 in `make soak`)
# while fio --verify runs; every cycle completes, fio sees no error.
# `dmsetup remove` while a daemon is attached works (the daemon sees ENOTBLK
# and exits cleanly); `rmmod` while a target exists fails with EBUSY, as for
# any dm target, and succeeds once it is gone.
. "$(dirname "$0")/lib.sh"

client=$DMU_ROOT/build/tools/dmu-client
tmp=$(dmu_tmpdir)
name=dmu-test-sus
sectors=65536
size=$((sectors * 512))
cycles=$(dmu_scale 5 100)
dmu_load

dmsetup create --noudevsync "$name" --table "0 $sectors user 0 $sectors $name"
dmsetup mknodes "$name"
dmu_bg "$client" serve "/dev/dm-user/$name" "$size" --batch 8 --ready "$tmp/ready"
server=$DMU_BG_PID
wait_for_path "$tmp/ready" 10

fio --name=sus --filename="/dev/mapper/$name" --rw=randwrite --bs=4k --size=16M --loops=1000 \
	--time_based --runtime=3600 --iodepth=16 --ioengine=libaio --direct=1 \
	--verify=crc32c --verify_backlog=256 --verify_fatal=1 --verify_state_save=0 \
	--output="$tmp/fio" &
fio_pid=$!
completed() { dmsetup status "$name" | awk '{ print $7 }'; }
progressed() { (($(completed) > $1)); }

for ((i = 1; i <= cycles; i++)); do
	before=$(completed)
	wait_until 30 progressed "$before" || die "cycle $i: no I/O completed before suspend"
	dmsetup suspend "$name" || die "cycle $i: suspend failed"
	read -r _ _ _ _ queued inflight _ <<<"$(dmsetup status "$name")"
	assert_eq "$queued $inflight" "0 0" "cycle $i: queued and in flight while suspended"
	dmsetup resume "$name" || die "cycle $i: resume failed"
done
log "$cycles suspend/resume cycles done"
kill -INT "$fio_pid"
rc=0
wait "$fio_pid" || rc=$?
grep -q "err= 0" "$tmp/fio" || die "fio reported errors (exit $rc): $(cat "$tmp/fio")"
assert_eq "$(dmsetup status "$name" | awk '{ print $8 }')" 0 "errors in status"

log "rmmod with a target present fails with EBUSY"
if rmmod dm_user 2>"$tmp/rmmod.err"; then die "rmmod succeeded with a target present"; fi
grep -qi "in use\|busy" "$tmp/rmmod.err" || die "unexpected rmmod error: $(cat "$tmp/rmmod.err")"

log "remove with the daemon attached"
dmsetup remove --noudevsync "$name"
dmu_stop "$server" 10 || die "the daemon did not exit cleanly after remove"
dmu_unload
