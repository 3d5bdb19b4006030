#!/bin/bash
# timeout: 180
# Issue 14, item 1: timeout_ms turned on at run time.  A request times out
# by its age (from map) against the timeout_ms in force now, whenever that
# was set.
#  A. A device created without options, served by dmuserd that takes 3 s per
#     request.  A 4k O_DIRECT write is in flight when `dmsetup message ...
#     timeout_ms 10000` arrives: the write is 3 s old when answered, well
#     inside 10 s, so it succeeds and no timeout is counted.
#     Fails on the old module: map() set no deadline while timeout_ms was 0,
#     so the request's per-bio deadline is whatever the memory held (zeroed
#     memory: jiffies 0, long past), and the first tick after the message
#     fails the write with EIO and counts a timeout.
#  B. The converse: a request held by a stalling client for 6 s, then
#     `message timeout_ms 5000`: it is already older than that, so it fails
#     with EIO (timeouts=1) at the next tick, well before the 5 s a clock
#     started at the message would give it.
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

client=$DMU_ROOT/build/tools/dmu-client
[[ -x $client ]] || die "test tool not built: $client (run make)"
tmp=$(dmu_tmpdir)
name=dmu-test-tmorun
sectors=8192
size=$((sectors * 512))
dev=/dev/mapper/$name
dmu_load

field() { dmsetup status "$name" | awk -v n="$1" '{ print $n }'; }
in_flight_is() { [[ $(field 6) == "$1" ]]; }

log "A. timeout_ms set while a request is in flight, after its map"
dmsetup create --noudevsync "$name" --table "0 $sectors user 0 $sectors $name"
dmsetup mknodes "$name"
truncate -s "$size" "$tmp/backing"
dmu_bg "$DMU_DAEMON" --file "$tmp/backing" --name "$name" --attach --threads 1 \
	--inject-delay-us 3000000 --ready-file "$tmp/ready"
daemon=$DMU_BG_PID
wait_for_path "$tmp/ready" 30 || die "dmuserd --attach did not start"
head -c 4096 /dev/urandom >"$tmp/p"
dmu_bg dd if="$tmp/p" of="$dev" bs=4k count=1 oflag=direct status=none
writer=$DMU_BG_PID
wait_until 30 in_flight_is 1 || die "the write never reached dmuserd: $(dmsetup status "$name")"
dmsetup message "$name" 0 timeout_ms 10000
log "timeout_ms 10000 set with the write in flight: $(dmsetup status "$name")"
wait_until 60 dmu_not_running "$writer" || die "the write did not end within 60 s"
rc=0
wait "$writer" || rc=$?
log "write exit $rc; status $(dmsetup status "$name")"
assert_eq "$(field 9)" 0 "timeouts counted for a write 3 s old under timeout_ms 10000"
assert_eq "$rc" 0 "exit status of a write answered after 3 s under timeout_ms 10000 (set after its map)"
cmp -n 4096 "$tmp/p" "$tmp/backing" || die "the write did not reach the backing file"
dmu_daemon_stop "$daemon"
dmsetup remove --noudevsync "$name"

log "B. timeout_ms set below the age of a held request"
dmsetup create --noudevsync "$name" --table "0 $sectors user 0 $sectors $name"
dmsetup mknodes "$name"
dmu_bg "$client" serve "/dev/dm-user/$name" "$size" --stall --ready "$tmp/stall.ready"
stalled=$DMU_BG_PID
wait_for_path "$tmp/stall.ready" 10 || die "dmu-client did not start"
dmu_bg dd if="$dev" of=/dev/null bs=4k count=1 iflag=direct status=none 2>"$tmp/dd.err"
reader=$DMU_BG_PID
wait_until 30 in_flight_is 1 || die "the read never reached the client: $(dmsetup status "$name")"
held=$SECONDS
# Let it age past the timeout about to be set (this is the condition under
# test, not synchronisation): at least 6 s since it was seen in flight.
aged() { ((SECONDS - held >= 6)); }
wait_until 30 aged
dmu_running "$reader" || die "the held read ended before any timeout was set"
t0=${EPOCHREALTIME/[.,]/}
dmsetup message "$name" 0 timeout_ms 5000
wait_until 60 dmu_not_running "$reader" || die "the held read did not end within 60 s of timeout_ms 5000"
t1=${EPOCHREALTIME/[.,]/}
rc=0
wait "$reader" || rc=$?
ms=$(((10#$t1 - 10#$t0) / 1000))
log "read exit $rc $ms ms after the message; status $(dmsetup status "$name")"
((rc != 0)) || die "a read held past timeout_ms succeeded"
grep -q "Input/output error" "$tmp/dd.err" || die "expected EIO, got: $(cat "$tmp/dd.err")"
assert_eq "$(field 9)" 1 "timeouts"
# By age it is due at the first tick (at most 1 s); a clock started at the
# message would need 5 s.
((ms < 5000)) || die "the held read (older than 6 s) ended $ms ms after timeout_ms 5000: timed from the message, not from map"
dmu_stop "$stalled" 10 || true
dmsetup remove --noudevsync "$name"
dmu_unload
