#!/bin/bash
# timeout: 240
# Issue 14, item 7: REQ_NOWAIT I/O.  The target declares DM_TARGET_NOWAIT,
# so device-mapper lets RWF_NOWAIT I/O through to it:
#  A. on an idle served device, 20 of 20 preadv2(RWF_NOWAIT) O_DIRECT 4k
#     reads succeed;
#  B. with queue_depth 1 and that one request held by a stalled client, a
#     RWF_NOWAIT read fails with EAGAIN (try again later), not EOPNOTSUPP,
#     while a blocking read waits (asleep in the kernel) and completes once
#     the held request is served (recovery_ms hands it to a new client).
# Fails on the old module: without DM_TARGET_NOWAIT the dm device does not
# support REQ_NOWAIT, and the block layer fails every RWF_NOWAIT bio with
# EOPNOTSUPP before it reaches the target (20 of 20 on 6.1 and 6.12).
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

client=$DMU_ROOT/build/tools/dmu-client
[[ -x $client ]] || die "test tool not built: $client (run make)"
tmp=$(dmu_tmpdir)
name=dmu-test-nowait
sectors=8192
size=$((sectors * 512))
dev=/dev/mapper/$name
dmu_load

field() { dmsetup status "$name" | awk -v n="$1" '{ print $n }'; }
in_flight_is() { [[ $(field 6) == "$1" ]]; }
# nowait_reads N FIRST_BLOCK: N RWF_NOWAIT O_DIRECT 4k reads; prints
# "ok N" / "EAGAIN N" ... sorted by name
nowait_reads() {
	python3 - "$dev" "$1" "$2" <<'EOF'
import errno, mmap, os, sys
dev, n, first = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
fd = os.open(dev, os.O_RDONLY | os.O_DIRECT)
buf = mmap.mmap(-1, 4096)
counts = {}
for i in range(n):
    try:
        r = os.preadv(fd, [buf], (first + i) * 4096, os.RWF_NOWAIT)
        k = 'ok' if r == 4096 else 'short'
    except OSError as e:
        k = errno.errorcode[e.errno]
    counts[k] = counts.get(k, 0) + 1
print(' '.join('%s %d' % kv for kv in sorted(counts.items())))
EOF
}
# finish PID SECS: wait for PID to end by itself; its exit status (1 if it runs on)
finish() {
	wait_until "$2" dmu_not_running "$1" || return 1
	wait "$1"
}
# asleep PID: PID waits in the kernel (D, or I for TASK_IDLE)
asleep() {
	local st
	st=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
	st=${st##*) }
	[[ ${st%% *} == [DI] ]]
}

log "A. RWF_NOWAIT reads of an idle served device"
dmsetup create --noudevsync "$name" --table "0 $sectors user 0 $sectors $name"
dmsetup mknodes "$name"
dmu_bg "$client" serve "/dev/dm-user/$name" "$size" --ready "$tmp/ready"
server=$DMU_BG_PID
wait_for_path "$tmp/ready" 10 || die "dmu-client did not start"
res=$(nowait_reads 20 0)
log "20 RWF_NOWAIT reads: $res"
assert_eq "$res" "ok 20" "results of 20 RWF_NOWAIT O_DIRECT 4k reads of an idle served device"
dmsetup remove --noudevsync "$name"
dmu_stop "$server" 10 || die "dmu-client failed"

log "B. queue_depth 1, full: RWF_NOWAIT gets EAGAIN, a blocking read waits"
dmsetup create --noudevsync "$name" --table "0 $sectors user 0 $sectors $name 4 queue_depth 1 recovery_ms 60000"
dmsetup mknodes "$name"
rm -f "$tmp/ready"
dmu_bg "$client" serve "/dev/dm-user/$name" "$size" --stall --ready "$tmp/ready"
stalled=$DMU_BG_PID
wait_for_path "$tmp/ready" 10 || die "dmu-client --stall did not start"
dmu_bg dd if="$dev" of=/dev/null bs=4k count=1 iflag=direct status=none
held=$DMU_BG_PID
wait_until 30 in_flight_is 1 || die "the first read never reached the client: $(dmsetup status "$name")"
res=$(nowait_reads 1 8)
log "RWF_NOWAIT read with the queue full: $res"
assert_eq "$res" "EAGAIN 1" "result of a RWF_NOWAIT read with queue_depth 1 taken"
dmu_bg dd if="$dev" of=/dev/null bs=4k count=1 skip=16 iflag=direct status=none
blocked=$DMU_BG_PID
wait_until 30 asleep "$blocked" || die "the blocking read did not wait in the kernel"
dmu_running "$blocked" || die "the blocking read ended while the queue was full"
log "the blocking read waits; hand the held request to a new client"
rm -f "$tmp/ready"
dmu_bg "$client" serve "/dev/dm-user/$name" "$size" --ready "$tmp/ready"
server=$DMU_BG_PID
wait_for_path "$tmp/ready" 10 || die "dmu-client did not start"
kill -KILL "$stalled"
dmu_stop "$stalled" 10 || true
finish "$held" 30 || die "the held read did not complete after recovery"
finish "$blocked" 30 || die "the blocking read did not complete"
assert_eq "$(field 8)" 0 "errors"
dmsetup remove --noudevsync "$name"
dmu_stop "$server" 10 || die "dmu-client failed"
dmu_unload
