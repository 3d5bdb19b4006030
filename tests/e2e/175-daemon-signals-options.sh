#!/bin/bash
# timeout: 300
# dmuserd's table options and SIGHUP (issue 16).
#  1. --queue-depth, --timeout-ms and --recovery-ms reach the table of the device
#     dmuserd creates (dmsetup table), only those given; with --attach they are a
#     usage error (exit 2), since the table is already there.
#  2. SIGHUP does not stop dmuserd: it re-reads the table and logs one line with it
#     ("SIGHUP: ..."), and goes on serving (data written after it reads back); a
#     second SIGHUP too.  SIGTERM then removes the device and dmuserd exits 0.
#     Before issue 16, SIGHUP killed dmuserd (default action) with no clean-up:
#     the device stayed, unserved, and the ready file too.
#  3. Crash recovery without a hand-written dmsetup line: a device created with
#     --recovery-ms outlives a SIGKILLed dmuserd, and `dmuserd --attach` serves it
#     again, its data intact.
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

tmp=$(dmu_tmpdir)
name=dmu-test-sig
dev=/dev/mapper/$name
sectors=32768 # 16 MiB
dmu_load
truncate -s $((sectors * 512)) "$tmp/backing"

log "1. table options"
rc=0
"$DMU_DAEMON" --file "$tmp/backing" --name "$name" --attach --recovery-ms 1000 \
	2>"$tmp/attach.err" || rc=$?
assert_eq "$rc" 2 "exit status of --attach --recovery-ms"
grep -q -- '--attach' "$tmp/attach.err" || die "no word of --attach: $(cat "$tmp/attach.err")"
! dmu_dm_exists "$name" || die "--attach --recovery-ms left $name behind"

rm -f "$tmp/ready"
dmu_bg "$DMU_DAEMON" --file "$tmp/backing" --name "$name" --threads 2 \
	--queue-depth 32 --timeout-ms 20000 --recovery-ms 30000 \
	--ready-file "$tmp/ready" 2>"$tmp/daemon.err"
pid=$DMU_BG_PID
wait_for_path "$tmp/ready" 30 || die "dmuserd did not start: $(cat "$tmp/daemon.err")"
table=$(dmsetup table "$name")
log "table: $table"
assert_eq "$table" "0 $sectors user 0 $sectors $name 6 queue_depth 32 timeout_ms 20000 recovery_ms 30000" \
	"dmsetup table of a device made with --queue-depth --timeout-ms --recovery-ms"

log "2. SIGHUP"
head -c 1M /dev/urandom >"$tmp/a"
dd if="$tmp/a" of="$dev" bs=1M count=1 oflag=direct status=none || die "write before SIGHUP failed"
hup_lines() { grep -c 'SIGHUP: ' "$tmp/daemon.err" || true; }
hup_logged() { (($(hup_lines) >= $1)); }
for n in 1 2; do
	kill -HUP "$pid"
	wait_until 10 hup_logged "$n" || {
		dmu_running "$pid" || die "SIGHUP $n killed dmuserd"
		die "SIGHUP $n: no 'SIGHUP:' line: $(cat "$tmp/daemon.err")"
	}
	dmu_running "$pid" || die "dmuserd exited after SIGHUP $n"
done
line=$(grep 'SIGHUP: ' "$tmp/daemon.err" | tail -n 1)
log "logged: $line"
[[ $line == *"queue_depth 32 timeout_ms 20000 recovery_ms 30000"* ]] || die "SIGHUP line lacks the table"
[[ $line == *"$((sectors * 512)) bytes"* ]] || die "SIGHUP line lacks the size"
[[ -e $tmp/ready ]] || die "the ready file went after SIGHUP"
head -c 1M /dev/urandom >"$tmp/b"
dd if="$tmp/b" of="$dev" bs=1M seek=1 count=1 oflag=direct status=none || die "write after SIGHUP failed"
dd if="$dev" of="$tmp/back" bs=1M count=2 iflag=direct status=none || die "read after SIGHUP failed"
cat "$tmp/a" "$tmp/b" | cmp - "$tmp/back" || die "data differ after SIGHUP"
rc=0
dmu_stop "$pid" 30 || rc=$?
assert_eq "$rc" 0 "dmuserd exit status after SIGHUP, SIGHUP, SIGTERM"
! dmu_dm_exists "$name" || die "SIGTERM after SIGHUP left $name behind"
[[ ! -e $tmp/ready ]] || die "the ready file is left behind"

log "3. crash recovery with --recovery-ms"
rm -f "$tmp/ready"
dmu_bg "$DMU_DAEMON" --file "$tmp/backing" --name "$name" --recovery-ms 30000 \
	--ready-file "$tmp/ready"
pid=$DMU_BG_PID
wait_for_path "$tmp/ready" 30 || die "dmuserd did not start"
head -c 1M /dev/urandom >"$tmp/c"
dd if="$tmp/c" of="$dev" bs=1M seek=2 count=1 oflag=direct status=none || die "write failed"
kill -KILL "$pid"
dmu_stop "$pid" 10 || true
dmu_dm_exists "$name" || die "$name went with the killed daemon"
rm -f "$tmp/ready"
dmu_bg "$DMU_DAEMON" --file "$tmp/backing" --name "$name" --attach --ready-file "$tmp/ready"
pid=$DMU_BG_PID
wait_for_path "$tmp/ready" 30 || die "dmuserd --attach did not start"
dd if="$dev" of="$tmp/back" bs=1M skip=2 count=1 iflag=direct status=none || die "read after restart failed"
cmp "$tmp/c" "$tmp/back" || die "data differ after the restart"
rc=0
dmu_stop "$pid" 30 || rc=$?
assert_eq "$rc" 0 "dmuserd --attach exit status"
dmsetup remove --noudevsync "$name"
log "ok"
