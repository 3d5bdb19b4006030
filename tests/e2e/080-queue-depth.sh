#!/bin/bash
# timeout: 180
# queue_depth bounds the requests queued plus in flight: with queue_depth 4
# and fio at iodepth 32, every dm_user_map tracepoint shows queued + in_flight
# <= 4, and the I/O still completes and verifies (the submitter waits instead
# of getting errors). Without the option, the same load goes deeper.
. "$(dirname "$0")/lib.sh"

client=$DMU_ROOT/build/tools/dmu-client
tmp=$(dmu_tmpdir)
name=dmu-test-qd
sectors=65536
size=$((sectors * 512))
trace=/sys/kernel/tracing
dmu_load

run() { # TABLE-OPTIONS...: create, serve, fio at iodepth 32, trace; prints max depth
	dmsetup create --noudevsync "$name" --table "0 $sectors user 0 $sectors $name $*"
	dmsetup mknodes "$name"
	rm -f "$tmp/ready"
	dmu_bg "$client" serve "/dev/dm-user/$name" "$size" --batch 32 --delay-ms 1 --ready "$tmp/ready"
	local pid=$DMU_BG_PID
	wait_for_path "$tmp/ready" 10
	echo >"$trace/trace"
	echo 1 >"$trace/events/dm_user/dm_user_map/enable"
	fio --name=qd --filename="/dev/mapper/$name" --rw=randwrite --bs=4k --size=8M \
		--iodepth=32 --ioengine=libaio --direct=1 --verify=crc32c --do_verify=1 \
		--verify_fatal=1 --verify_state_save=0 --output="$tmp/fio" || die "fio failed: $(cat "$tmp/fio")"
	echo 0 >"$trace/events/dm_user/dm_user_map/enable"
	grep -o 'queued [0-9]* in_flight [0-9]*' "$trace/trace" |
		awk 'BEGIN { m = 0 } { d = $2 + $4; if (d > m) m = d } END { print m }' >"$tmp/max"
	[[ $(dmsetup status "$name" | awk '{ print $8 }') == 0 ]] || die "requests failed: $(dmsetup status "$name")"
	dmsetup remove --noudevsync "$name"
	dmu_stop "$pid" 10 || die "dmu-client failed"
}

run 2 queue_depth 4
max=$(cat "$tmp/max")
log "queue_depth 4: deepest queued + in_flight at map: $max"
((max >= 1 && max <= 4)) || die "queue_depth 4 exceeded: $max"
run
max=$(cat "$tmp/max")
log "no queue_depth: deepest queued + in_flight at map: $max"
((max > 4)) || die "without queue_depth the load never went past 4 ($max): the test proves nothing"
dmu_unload
