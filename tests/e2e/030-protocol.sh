#!/bin/bash
# timeout: 240
# The wire protocol, driven by tests/tools/dmu-client (an in-memory server), in
# each way a daemon may speak it:
#   default     header + payload in one read(), reply + data in one writev()
#   piecewise   header alone, then payload and reply data 4 KiB at a time
#               (the original dm-user test daemon's pattern)
#   batch       up to 16 requests read before any is answered, answered in
#               reverse order (out of order on one channel)
#   nonblock    O_NONBLOCK reads with poll(), batches of 8
# Each mode: data written through the device reads back identical, fio verify
# passes, and read, write, flush and discard all reach the daemon (counted in
# the dm_user tracepoints) and complete without error.
. "$(dirname "$0")/lib.sh"

client=$DMU_ROOT/build/tools/dmu-client
[[ -x $client ]] || die "test tool not built: $client (run make)"
tmp=$(dmu_tmpdir)
name=dmu-test-proto
sectors=131072 # 64 MiB
size=$((sectors * 512))
trace=/sys/kernel/tracing

dmu_load
head -c $((8 << 20)) /dev/urandom >"$tmp/pattern"

# count_ops OP: dm_user_complete events for op OP with error 0 since the last reset
count_ok() {
	grep -c "dm_user_complete: .* op $1 .* error 0 how 0" "$tmp/trace" || true
}

for mode in default piecewise batch nonblock; do
	case $mode in
	default) args=() ;;
	piecewise) args=(--piecewise) ;;
	batch) args=(--batch 16) ;;
	nonblock) args=(--nonblock --batch 8) ;;
	esac
	log "mode $mode: create $name"
	dmsetup create --noudevsync "$name" --table "0 $sectors user 0 $sectors $name"
	dmsetup mknodes "$name"
	dev=/dev/mapper/$name

	echo >"$trace/trace"
	echo 1 >"$trace/events/dm_user/enable"

	rm -f "$tmp/ready"
	dmu_bg "$client" serve "/dev/dm-user/$name" "$size" "${args[@]}" --ready "$tmp/ready"
	pid=$DMU_BG_PID
	wait_for_path "$tmp/ready" 10 || die "dmu-client did not start"

	# 8 MiB at a 1 MiB offset, 64 KiB direct writes; read back in 1 MiB reads.
	dd if="$tmp/pattern" of="$dev" bs=64k seek=16 oflag=direct status=none
	dd if="$dev" of="$tmp/back" bs=1M skip=1 count=8 iflag=direct status=none
	cmp "$tmp/pattern" "$tmp/back" || die "$mode: data read back differs from data written"

	fio --name=verify --filename="$dev" --rw=randwrite --bssplit=4k/50:16k/25:128k/25 \
		--size=32M --offset=32M --iodepth=16 --ioengine=libaio --direct=1 \
		--verify=crc32c --do_verify=1 --verify_fatal=1 --verify_state_save=0 \
		--output="$tmp/fio.$mode" || die "$mode: fio verify failed: $(cat "$tmp/fio.$mode")"

	blkdiscard -o $((2 << 20)) -l $((1 << 20)) "$dev"
	cmp -n $((1 << 20)) "$dev" /dev/zero -i $((2 << 20)):0 ||
		die "$mode: discarded range does not read back as zeroes"
	blockdev --flushbufs "$dev"
	sync "$dev"

	echo 0 >"$trace/events/dm_user/enable"
	cat "$trace/trace" >"$tmp/trace"
	reads=$(count_ok 0) writes=$(count_ok 1) flushes=$(count_ok 2) discards=$(count_ok 3)
	errors=$(grep -c 'dm_user_complete: .* error -' "$tmp/trace" || true)
	log "$mode: completed ok: read $reads write $writes flush $flushes discard $discards; errors $errors"
	((reads > 0 && writes > 0)) || die "$mode: no reads or writes traced"
	((flushes > 0)) || die "$mode: no flush reached the daemon"
	((discards > 0)) || die "$mode: no discard reached the daemon"
	assert_eq "$errors" 0 "$mode: requests completed with an error"

	# The status counters agree with the trace: nothing queued, nothing in flight.
	read -r _ _ _ channels queued inflight completed errs _ <<<"$(dmsetup status "$name")"
	assert_eq "$channels $queued $inflight $errs" "1 0 0 0" "$mode: channels queued in_flight errors"
	((completed >= reads + writes + flushes + discards)) ||
		die "$mode: status completed $completed < traced $((reads + writes + flushes + discards))"

	dmsetup remove --noudevsync "$name"
	dmu_stop "$pid" 10 || die "$mode: dmu-client did not exit cleanly after remove"
done

dmu_unload
