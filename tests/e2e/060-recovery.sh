#!/bin/bash
# timeout: 180
# recovery_ms: a daemon killed with requests read but unanswered; a new daemon
# started inside the window completes them with no error reaching the
# submitter. With no daemon past the window, they fail with EIO.
. "$(dirname "$0")/lib.sh"

client=$DMU_ROOT/build/tools/dmu-client
tmp=$(dmu_tmpdir)
name=dmu-test-rec
sectors=8192
size=$((sectors * 512))
dmu_load

field() { dmsetup status "$name" | awk -v n="$1" '{ print $n }'; }
inflight_ge() { (($(field 6) >= $1)); }

dmsetup create --noudevsync "$name" --table "0 $sectors user 0 $sectors $name 2 recovery_ms 30000"
dmsetup mknodes "$name"
dev=/dev/mapper/$name

log "daemon dies holding requests; a new one completes them"
dmu_bg "$client" serve "/dev/dm-user/$name" "$size" --stall --ready "$tmp/ready"
stalled=$DMU_BG_PID
wait_for_path "$tmp/ready" 10
head -c 65536 /dev/urandom >"$tmp/p"
dmu_bg dd if="$tmp/p" of="$dev" bs=4k oflag=direct conv=fsync status=none
writer=$DMU_BG_PID
wait_until 10 inflight_ge 1 || die "the write never reached the daemon"
kill -KILL "$stalled"
wait "$stalled" 2>/dev/null || true
rm -f "$tmp/ready"
dmu_bg "$client" serve "/dev/dm-user/$name" "$size" --ready "$tmp/ready"
server=$DMU_BG_PID
rc=0
dmu_wait "$writer" 30 || rc=$?
((rc != 124)) || die "the write did not end within 30 s of a daemon coming back"
assert_eq "$rc" 0 "exit status of the write (a daemon came back inside the window)"
cmp -n 65536 "$tmp/p" "$dev" || die "data differs after recovery"
((($(field 10)) >= 1)) || die "no requeue counted: $(dmsetup status "$name")"
assert_eq "$(field 8)" 0 "errors after recovery"

log "no daemon past the window: EIO"
dmsetup message "$name" 0 recovery_ms 1000
dmu_stop "$server" 10 || true
# The server exited cleanly; the target is now recovering with no channel.
start=$SECONDS
if dd if="$dev" of=/dev/null bs=4k count=1 iflag=direct status=none 2>/dev/null; then
	die "I/O succeeded with no daemon past the recovery window"
fi
((SECONDS - start <= 10)) || die "the recovery window took $((SECONDS - start)) s for 1000 ms"
((($(field 8)) >= 1)) || die "no error counted"

dmsetup remove --noudevsync "$name"
dmu_unload
