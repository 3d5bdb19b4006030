#!/bin/bash
# timeout: 900
# soak-timeout: 3600
# Daemon crash recovery: dmuserd is killed with SIGKILL 3 times (50 in
# `make soak`) while fio --verify writes and then verifies the device, and
# is restarted each time with --attach inside the target's recovery window.
# fio must see no I/O error and no verify error, and the target must count no
# failed request: every request the dead daemon held was requeued and
# answered by its successor.  The daemon serves, with --direct, a linear
# device over a loop device; before each kill the test suspends that device,
# so that the daemon's I/O stops there, and waits until the daemon's metrics
# show requests it read and has not answered.  Every kill must then requeue
# requests (with a 1 ms delay injected instead, one run's 3 kills found
# none: in_flight was 0 whenever the test looked).
. "$(dirname "$0")/lib.sh"

tmp=$(dmu_tmpdir)
name=dmu-test-kill
kills=$(dmu_scale 3 50)
dmu_load
ip link set lo up
modprobe loop || die "no loop module"
truncate -s 128M "$tmp/backing"
loop=$(losetup --find --show "$tmp/backing")
back=dmu-test-kill-back
# lib.sh's EXIT trap stops the daemon and removes the devices; the backing
# device first goes back to service, or the daemon could not exit.
cleanup_back() {
	local rc=$?
	dmsetup resume "$back" 2>/dev/null || true
	dmu_cleanup
	dmsetup remove --noudevsync "$back" 2>/dev/null || true
	losetup -d "$loop" 2>/dev/null || true
	(exit "$rc")
	_dmu_on_exit
}
trap cleanup_back EXIT
dmsetup create --noudevsync "$back" --table "0 $((128 << 11)) linear $loop 0"
dmsetup mknodes "$back"
serve=(--threads 2 --direct --metrics 0)
dmu_daemon_start "$name" "/dev/mapper/$back" 128M "${serve[@]}"
dmsetup message "$name" 0 recovery_ms 30000
dev=/dev/mapper/$name

field() { dmsetup status "$name" | awk -v n="$1" '{ print $n }'; }
progressed() { (($(field 7) > $1)); }
# requests the running daemon read and has not answered (its JSON metrics)
held() {
	local port
	port=$(sed -n 's/^metrics=127\.0\.0\.1://p' "$DMU_DAEMON_READY")
	(($(curl -sf "http://127.0.0.1:$port/metrics" | jq '.in_flight') > 0))
}
held_or_idle() { held || ! fio_running; }

fio_round() {
	fio --name=kill9 --filename="$dev" --rw=randwrite --bssplit=4k/50:32k/30:128k/20 \
		--size=64M --iodepth=16 --ioengine=libaio --direct=1 --verify=crc32c \
		--do_verify=1 --verify_fatal=1 --verify_state_save=0 --output="$tmp/fio.out"
}

fio_running() { _dmu_running "$fio_pid"; }
progress_or_idle() { progressed "$1" || ! fio_running; }
next_round() {
	wait "$fio_pid" || die "fio failed in round $rounds: $(cat "$tmp/fio.out")"
	grep -q "err= 0" "$tmp/fio.out" || die "fio reported errors: $(cat "$tmp/fio.out")"
	fio_round &
	fio_pid=$!
	rounds=$((rounds + 1))
}
stuck() {
	die "kill $i: no I/O completed in 60 s; status: $(dmsetup status "$name");" \
		"fio running: $(fio_running && echo yes || echo no); daemon: $(cat "/proc/$DMU_DAEMON_PID/status" 2>/dev/null | grep State)"
}

fio_round &
fio_pid=$!
rounds=1
i=1
while ((i <= kills)); do
	fio_running || next_round
	before=$(field 7)
	wait_until 60 progress_or_idle "$before" || stuck
	progressed "$before" || continue # the round ended first: start the next
	requeued=$(field 10)
	dmsetup suspend "$back" || die "kill $i: suspending $back failed"
	wait_until 30 held_or_idle || die "kill $i: the daemon holds no request: $(dmsetup status "$name")"
	if ! held; then # fio's round ended just before the suspend: start the next
		dmsetup resume "$back" || die "kill $i: resuming $back failed"
		continue
	fi
	kill -KILL "$DMU_DAEMON_PID"
	dmsetup resume "$back" || die "kill $i: resuming $back failed"
	wait "$DMU_DAEMON_PID" 2>/dev/null || true
	(($(field 10) > requeued)) || die "kill $i: no request was requeued: $(dmsetup status "$name")"
	dmu_daemon_start "$name" "/dev/mapper/$back" 128M "${serve[@]}" --attach
	i=$((i + 1))
done
log "$kills kills over $rounds fio rounds; waiting for the last round"
wait "$fio_pid" || die "fio failed: $(cat "$tmp/fio.out")"
grep -q "err= 0" "$tmp/fio.out" || die "fio reported errors: $(cat "$tmp/fio.out")"

status=$(dmsetup status "$name")
log "status: $status"
read -r _ _ _ _ _ _ _ errors _ _ <<<"$status"
assert_eq "$errors" 0 "failed requests"
dmu_daemon_stop
# An --attach daemon leaves the device in place.
dmsetup remove --noudevsync "$name"
dmsetup remove --noudevsync "$back"
losetup -d "$loop"
dmu_unload
