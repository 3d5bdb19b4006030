#!/bin/bash
# timeout: 240
# A channel that is open but never read does not hold requests back: map()
# queues on every channel in turn, and a reader whose own queue is empty takes
# over another channel's. Here a second channel is held open by this shell and
# never read while dmu-client serves on one channel, first one request per
# read(), then batched (DM_USER_CHANNEL_BATCH); without the take-over, half of
# the requests would wait on the idle channel forever. fio verifies at iodepth
# 16 with no timeout_ms set, nothing fails, and closing the idle channel loses
# nothing.
. "$(dirname "$0")/lib.sh"

client=$DMU_ROOT/build/tools/dmu-client
[[ -x $client ]] || die "test tool not built: $client (run make)"
tmp=$(dmu_tmpdir)
name=dmu-test-idle
sectors=65536 # 32 MiB
size=$((sectors * 512))
dmu_load

for mode in single kbatch; do
	case $mode in
	single) args=() ;;
	kbatch) args=(--kbatch) ;;
	esac
	dmsetup create --noudevsync "$name" --table "0 $sectors user 0 $sectors $name"
	dmsetup mknodes "$name"
	dev=/dev/mapper/$name

	exec 3<>"/dev/dm-user/$name" # the idle channel
	rm -f "$tmp/ready"
	# The client must not inherit the idle channel, or closing it here closes nothing.
	dmu_bg "$client" serve "/dev/dm-user/$name" "$size" "${args[@]}" --ready "$tmp/ready" 3<&-
	pid=$DMU_BG_PID
	wait_for_path "$tmp/ready" 10 || die "dmu-client did not start"
	read -r _ _ _ channels _ <<<"$(dmsetup status "$name")"
	assert_eq "$channels" 2 "$mode: channels open"

	# fio has no timeout of its own: the test's timeout is the backstop.
	fio --name=idle --filename="$dev" --rw=randrw --bs=4k --size=16M \
		--iodepth=16 --ioengine=libaio --direct=1 --verify=crc32c --do_verify=1 \
		--verify_fatal=1 --verify_state_save=0 --output="$tmp/fio.$mode" ||
		die "$mode: fio failed: $(cat "$tmp/fio.$mode")"
	dd if=/dev/urandom of="$tmp/pattern" bs=1M count=4 status=none
	dd if="$tmp/pattern" of="$dev" bs=4k seek=2048 oflag=direct status=none
	dd if="$dev" of="$tmp/back" bs=4k skip=2048 count=1024 iflag=direct status=none
	cmp "$tmp/pattern" "$tmp/back" || die "$mode: data read back differs"

	read -r _ _ _ channels queued inflight completed errs _ <<<"$(dmsetup status "$name")"
	assert_eq "$channels $queued $inflight $errs" "2 0 0 0" "$mode: channels queued in_flight errors"
	((completed > 4096)) || die "$mode: only $completed requests completed"

	exec 3<&- # closing the idle channel fails nothing: it held nothing
	read -r _ _ _ channels queued inflight _ errs _ <<<"$(dmsetup status "$name")"
	assert_eq "$channels $errs" "1 0" "$mode: channels errors after the idle channel closed"
	log "$mode: $completed requests completed with a second channel never read"

	dmsetup remove --noudevsync "$name"
	dmu_stop "$pid" 10 || die "$mode: dmu-client did not exit cleanly after remove"
done

dmu_unload
