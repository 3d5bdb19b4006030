#!/bin/bash
# timeout: 900
# soak-timeout: 6000
# A hostile client (tests/tools/dmu-hostile) serves one target correctly while
# sending malformed messages between answers: random bytes, short headers,
# never-issued and duplicate seqs, oversized payloads, replies on the wrong
# channel, ioctl abuse (unknown flag bits: EINVAL; bad pointers: EFAULT;
# unknown numbers: ENOTTY; flags unchanged, channel not refused). 20000 of
# them (10^6 in `make soak`). Half its serving channels set
# DM_USER_CHANNEL_BATCH and read each request in pieces smaller than a header,
# none past the request's end. The kernel must refuse exactly
# the offending channel each time (dmu-hostile checks EINVAL, then EIO and
# POLLERR on that channel), requeue what that channel held (recovery_ms), and
# stay clean: fio --verify passes on the hostile target and on a second target
# served by a well-behaved client at the same time, with no I/O error.
. "$(dirname "$0")/lib.sh"

tools=$DMU_ROOT/build/tools
tmp=$(dmu_tmpdir)
sectors=65536 # 32 MiB each
size=$((sectors * 512))
count=$(dmu_scale 20000 1000000)
dmu_load

dmsetup create --noudevsync dmu-test-bad --table "0 $sectors user 0 $sectors dmu-test-bad 2 recovery_ms 60000"
dmsetup create --noudevsync dmu-test-good --table "0 $sectors user 0 $sectors dmu-test-good"
dmsetup mknodes

dmu_bg "$tools/dmu-hostile" /dev/dm-user/dmu-test-bad "$size" "$count" "$RANDOM" \
	--ready "$tmp/ready-bad" --done "$tmp/done"
hostile=$DMU_BG_PID
dmu_bg "$tools/dmu-client" serve /dev/dm-user/dmu-test-good "$size" --batch 8 --ready "$tmp/ready-good"
good=$DMU_BG_PID
wait_for_path "$tmp/ready-bad" 10
wait_for_path "$tmp/ready-good" 10

log "fio --verify rounds on both targets until $count malformed messages are sent"
fio_job() { # NAME DEV
	fio --name="$1" --filename="$2" --rw=randwrite --bssplit=4k/60:64k/40 --size=16M \
		--iodepth=8 --ioengine=libaio --direct=1 --verify=crc32c --do_verify=1 \
		--verify_fatal=1 --verify_state_save=0 --output="$tmp/fio.$1"
}
deadline=$((SECONDS + $(dmu_scale 600 5400)))
rounds=0
while [[ ! -e $tmp/done ]]; do
	((SECONDS < deadline)) || die "dmu-hostile did not finish its $count messages in time"
	fio_job bad /dev/mapper/dmu-test-bad &
	fio_bad=$!
	fio_job good /dev/mapper/dmu-test-good || die "fio on the well-behaved target failed: $(cat "$tmp/fio.good")"
	wait "$fio_bad" || die "fio on the hostile target failed: $(cat "$tmp/fio.bad")"
	rounds=$((rounds + 1))
done
log "$rounds fio rounds verified on each target"
status_bad=$(dmsetup status dmu-test-bad)
status_good=$(dmsetup status dmu-test-good)
log "hostile: $status_bad"
log "good:    $status_good"
read -r _ _ _ _ _ _ _ errors _ requeues _ <<<"$status_bad"
assert_eq "$errors" 0 "requests failed on the hostile target"
((requeues > 0)) || die "no request was requeued from a refused channel"
read -r _ _ _ channels _ _ _ errors _ _ <<<"$status_good"
assert_eq "$channels $errors" "1 0" "good target: channels and errors"

dmsetup remove --noudevsync dmu-test-bad
dmsetup remove --noudevsync dmu-test-good
dmu_stop "$hostile" 30 || die "dmu-hostile failed (see its messages above)"
dmu_stop "$good" 10 || die "dmu-client failed"
dmu_unload
