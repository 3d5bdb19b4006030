#!/bin/bash
# timeout: 900
# soak-timeout: 3600
# Daemon crash recovery: dmuserd is killed with SIGKILL 3 times (50 in
# `make soak`) while fio --verify writes and then verifies the device, and
# is restarted each time with --attach inside the target's recovery window.
# fio must see no I/O error and no verify error, and the target must count no
# failed request: every request the dead daemon held was requeued and
# answered by its successor.
. "$(dirname "$0")/lib.sh"

tmp=$(dmu_tmpdir)
name=dmu-test-kill
kills=$(dmu_scale 3 50)
dmu_load
truncate -s 128M "$tmp/backing"
# Each request stays 1 ms in the daemon, so a kill finds requests in flight
# even on a one-vCPU guest, where the test only runs while the daemon waits.
delay=(--inject-delay-us 1000)
dmu_daemon_start "$name" "$tmp/backing" 128M --threads 2 "${delay[@]}"
dmsetup message "$name" 0 recovery_ms 30000
dev=/dev/mapper/$name

field() { dmsetup status "$name" | awk -v n="$1" '{ print $n }'; }
progressed() { (($(field 7) > $1)); }
inflight() { (($(field 6) > 0)); }

fio_round() {
	fio --name=kill9 --filename="$dev" --rw=randwrite --bssplit=4k/50:32k/30:128k/20 \
		--size=64M --iodepth=16 --ioengine=libaio --direct=1 --verify=crc32c \
		--do_verify=1 --verify_fatal=1 --verify_state_save=0 --output="$tmp/fio.out"
}

fio_running() { kill -0 "$fio_pid" 2>/dev/null; }
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
	# Kill while the daemon holds requests, when there are any to hold.
	wait_until 5 inflight || true
	kill -KILL "$DMU_DAEMON_PID"
	wait "$DMU_DAEMON_PID" 2>/dev/null || true
	dmu_daemon_start "$name" "$tmp/backing" 128M --threads 2 --attach "${delay[@]}"
	i=$((i + 1))
done
log "$kills kills over $rounds fio rounds; waiting for the last round"
wait "$fio_pid" || die "fio failed: $(cat "$tmp/fio.out")"
grep -q "err= 0" "$tmp/fio.out" || die "fio reported errors: $(cat "$tmp/fio.out")"

status=$(dmsetup status "$name")
log "status: $status"
read -r _ _ _ _ _ _ _ errors _ requeues <<<"$status"
assert_eq "$errors" 0 "failed requests"
((requeues > 0)) || die "no request was requeued: the kills never hit a request in flight"
dmu_daemon_stop
# An --attach daemon leaves the device in place.
dmsetup remove --noudevsync "$name"
dmu_unload
