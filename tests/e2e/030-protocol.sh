#!/bin/bash
# timeout: 300
# The wire protocol, driven by tests/tools/dmu-client (an in-memory server), in
# each way a daemon may speak it:
#   default     header + payload in one read(), reply + data in one writev()
#   piecewise   header alone, then payload and reply data 4 KiB at a time
#               (the original dm-user test daemon's pattern)
#   batch       up to 16 requests read before any is answered, answered in
#               reverse order (out of order on one channel)
#   nonblock    O_NONBLOCK reads with poll(), batches of 8
#   kbatch      DM_USER_CHANNEL_BATCH: as many requests per read() as fit, all
#               those of one read() answered, in reverse order, by one writev()
#   splice      splice(2) from the channel into a pipe, one request per call
#               (a WRITE's payload by page reference), read from the pipe;
#               each reply spliced to the channel from a pipe (target 1.6.0)
#   ksplice     splice with DM_USER_CHANNEL_BATCH: as many whole requests per
#               splice as fit, never one cut in two (dmu-client dies if so)
# Each mode: data written through the device reads back identical, fio verify
# passes, and read, write, flush and discard all reach the daemon (counted in
# the dm_user tracepoints) and complete without error.
# From dmu-client's read() statistics (--stats): without the flag no read()
# returns more than one request (the client also dies if one does), and in
# the default mode, whose buffer has room for many, every read() returns
# exactly one; with it, under fio at iodepth 16, some read() returns several.
# The same holds of a splice() ("read" below counts splices in those modes).
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

# stats_read: dmu-client's statistics from $stats into st_reads, st_requests,
# st_max (most requests one read() returned), st_multi (read() calls with
# more than one)
stats_read() {
	local k1 k2 k3 k4
	read -r k1 st_reads k2 st_requests k3 st_max k4 st_multi <"$stats"
	assert_eq "$k1 $k2 $k3 $k4" "reads requests max_per_read multi_reads" "$mode: stats format"
}
# stats_now: have the running dmu-client write its statistics now (SIGUSR1)
stats_now() {
	rm -f "$stats"
	kill -USR1 "$pid"
	wait_for_path "$stats" 10 || die "$mode: dmu-client wrote no statistics on SIGUSR1"
	stats_read
}

for mode in default piecewise batch nonblock kbatch splice ksplice; do
	case $mode in
	default) args=() ;;
	piecewise) args=(--piecewise) ;;
	batch) args=(--batch 16) ;;
	nonblock) args=(--nonblock --batch 8) ;;
	kbatch) args=(--kbatch) ;;
	splice) args=(--splice) ;;
	ksplice) args=(--splice --kbatch) ;;
	esac
	stats=$tmp/stats.$mode
	log "mode $mode: create $name"
	dmsetup create --noudevsync "$name" --table "0 $sectors user 0 $sectors $name"
	dmsetup mknodes "$name"
	dev=/dev/mapper/$name

	echo >"$trace/trace"
	echo 1 >"$trace/events/dm_user/enable"

	rm -f "$tmp/ready"
	dmu_bg "$client" serve "/dev/dm-user/$name" "$size" "${args[@]}" --ready "$tmp/ready" --stats "$stats"
	pid=$DMU_BG_PID
	wait_for_path "$tmp/ready" 10 || die "dmu-client did not start"

	# 8 MiB at a 1 MiB offset, 64 KiB direct writes; read back in 1 MiB reads.
	dd if="$tmp/pattern" of="$dev" bs=64k seek=16 oflag=direct status=none
	dd if="$dev" of="$tmp/back" bs=1M skip=1 count=8 iflag=direct status=none
	cmp "$tmp/pattern" "$tmp/back" || die "$mode: data read back differs from data written"

	stats_now
	fio_reads0=$st_reads fio_requests0=$st_requests fio_multi0=$st_multi
	fio --name=verify --filename="$dev" --rw=randwrite --bssplit=4k/50:16k/25:128k/25 \
		--size=32M --offset=32M --iodepth=16 --ioengine=libaio --direct=1 \
		--verify=crc32c --do_verify=1 --verify_fatal=1 --verify_state_save=0 \
		--output="$tmp/fio.$mode" || die "$mode: fio verify failed: $(cat "$tmp/fio.$mode")"
	stats_now
	fio_reads=$((st_reads - fio_reads0)) fio_requests=$((st_requests - fio_requests0))
	fio_multi=$((st_multi - fio_multi0))
	log "$mode: under fio: $fio_reads read() calls, $fio_requests requests, $fio_multi read() calls with several"
	if [[ $mode == kbatch || $mode == ksplice ]]; then
		((fio_multi > 0)) || die "$mode: no read() returned more than one request under fio at iodepth 16"
	else
		assert_eq "$fio_multi" 0 "$mode: read() calls that returned several requests without the flag, under fio"
	fi

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

	rm -f "$stats"
	dmsetup remove --noudevsync "$name"
	# It exits by itself on ENOTBLK, writing its final statistics.
	wait_until 10 dmu_not_running "$pid" || die "$mode: dmu-client still runs 10 s after remove"
	dmu_stop "$pid" 10 || die "$mode: dmu-client did not exit cleanly after remove"
	[[ -e $stats ]] || die "$mode: dmu-client wrote no statistics at exit"
	stats_read
	log "$mode: dmu-client: $(<"$stats")"
	((st_requests >= reads + writes + flushes + discards)) ||
		die "$mode: dmu-client read $st_requests requests, fewer than the $((reads + writes + flushes + discards)) traced"
	case $mode in
	kbatch | ksplice) ((st_max > 1)) || die "$mode: no read() returned more than one request" ;;
	default | splice)
		assert_eq "$st_max" 1 "$mode: most requests one read() returned"
		assert_eq "$st_reads" "$st_requests" "$mode: read() calls (each must return exactly one request)"
		;;
	*) assert_eq "$st_max $st_multi" "1 0" "$mode: most requests per read(), read() calls with several" ;;
	esac
done

dmu_unload
