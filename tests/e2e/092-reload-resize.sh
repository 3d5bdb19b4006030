#!/bin/bash
# timeout: 600
# Issue 14, item 4: a live device is resized by reloading its table with the
# same control name, under load, and its daemon keeps serving.
# A 64 MiB device served by `dmuserd --attach --threads 2`; fio writes its
# first 32 MiB with --verify=crc32c throughout.  Meanwhile:
#  - grow to 128 MiB with `dmuserd --name N --resize 128M --file BACKING`
#    (grows the file, reloads the live table, resumes): blockdev --getsize64
#    says 128 MiB, the table keeps its options (recovery_ms), and 1 MiB
#    written at 100 MiB, beyond the size dmuserd started with, reads back
#    identical;
#  - shrink to 96 MiB with plain `dmsetup reload` + `dmsetup resume`: the
#    size follows, and I/O at 80 MiB still works.
# fio completes without error and every block verifies, dmuserd serves
# throughout on the same channels (never restarted, 2 channels at the end),
# and no request failed.
# Fails on the old module: a reload with the control name of the live
# table failed in ctr ("Control name already in use", EBUSY), so a live
# device could not change size at all.
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

tmp=$(dmu_tmpdir)
name=dmu-test-resize
sectors=131072 # 64 MiB
dev=/dev/mapper/$name
dmu_load
truncate -s $((sectors * 512)) "$tmp/backing"

# block-layer completions of the dm device (reads + writes): unlike the
# target's counters, they survive a table swap
ios() {
	local st
	read -r -a st <"$stat"
	echo $((st[0] + st[4]))
}
fio_running() { kill -0 "$fio_pid" 2>/dev/null; }
moved_or_done() { (($(ios) >= $1)) || ! fio_running; }
# progress MSG: 200 more completions, or fio's end (whose result the end
# of the test judges: on a slow kernel, the debug lane's, fio may finish
# its writes and verification before 200 more); a stall fails either way
progress() {
	local target=$(($(ios) + 200))
	wait_until 120 moved_or_done "$target" ||
		die "$1: no I/O progress in 120 s, fio still running; status $(dmsetup status "$name")"
	fio_running || log "$1: fio has ended ($(ios) completions)"
}
# under_load MSG: fio is still running, so the step before was under load
under_load() { fio_running || die "$1: fio had already ended: the step was not under load"; }
# io_at MIB: 1 MiB O_DIRECT written at MIB MiB, read back identical
io_at() {
	head -c $((1 << 20)) /dev/urandom >"$tmp/p"
	timeout 60 dd if="$tmp/p" of="$dev" bs=1M seek="$1" count=1 oflag=direct status=none ||
		die "write at $1 MiB failed"
	timeout 60 dd if="$dev" of="$tmp/back" bs=1M skip="$1" count=1 iflag=direct status=none ||
		die "read at $1 MiB failed"
	cmp "$tmp/p" "$tmp/back" || die "data at $1 MiB differs"
}

dmsetup create --noudevsync "$name" --table "0 $sectors user 0 $sectors $name 2 recovery_ms 30000"
dmsetup mknodes "$name"
stat=/sys/dev/block/$(dmsetup info -c --noheadings -o major,minor --separator : "$name")/stat
[[ -r $stat ]] || die "no $stat"
dmu_bg "$DMU_DAEMON" --file "$tmp/backing" --name "$name" --attach --threads 2 \
	--ready-file "$tmp/ready"
daemon=$DMU_BG_PID
wait_for_path "$tmp/ready" 30 || die "dmuserd --attach did not start"

# The writes are paced so that fio outlasts the steps below; the debug lane's
# kernel (DMU_TIMEOUT_SCALE > 1) does those steps that many times slower, so it
# paces them that many times slower too.
fio --name=verify --filename="$dev" --rw=randwrite --bssplit=4k/50:16k/25:64k/25 \
	--size=32M --iodepth=16 --ioengine=libaio --direct=1 \
	--rate_iops=,$((600 / ${DMU_TIMEOUT_SCALE:-1})) \
	--verify=crc32c --do_verify=1 --verify_fatal=1 --verify_state_save=0 \
	--output-format=json --output="$tmp/fio.json" &
fio_pid=$!
progress "before the resize"

log "grow to 128 MiB with dmuserd --resize, under fio"
rc=0
"$DMU_DAEMON" --name "$name" --resize 128M --file "$tmp/backing" 2>"$tmp/resize.err" || rc=$?
under_load "the grow"
assert_eq "$rc" 0 "dmuserd --resize 128M exit status ($(cat "$tmp/resize.err"))"
assert_eq "$(blockdev --getsize64 "$dev")" $((128 << 20)) "size after the grow"
assert_eq "$(stat -c %s "$tmp/backing")" $((128 << 20)) "backing file size after the grow"
assert_eq "$(dmsetup table "$name")" "0 262144 user 0 262144 $name 2 recovery_ms 30000" "table after the grow"
io_at 100
dmu_running "$daemon" || die "dmuserd stopped"
progress "after the grow"

log "shrink to 96 MiB with dmsetup reload + resume, under fio"
dmsetup reload "$name" --table "0 196608 user 0 196608 $name 2 recovery_ms 30000"
dmsetup resume --noudevsync "$name"
under_load "the shrink"
assert_eq "$(blockdev --getsize64 "$dev")" $((96 << 20)) "size after the shrink"
assert_eq "$(stat -c %s "$tmp/backing")" $((128 << 20)) "backing file size after the shrink (never shrunk)"
io_at 80
progress "after the shrink"

rc=0
wait "$fio_pid" || rc=$?
read -r err written verified <<<"$(jq -r '.jobs[0] | "\(.error) \(.write.io_bytes) \(.read.io_bytes)"' "$tmp/fio.json")"
log "fio exit $rc, error $err, written $written, verified $verified; status $(dmsetup status "$name")"
assert_eq "$rc $err" "0 0" "fio exit status and error across the reloads"
((written > 0 && verified == written)) || die "verified $verified bytes of $written written"
read -r _ _ _ channels _ _ _ errors _ <<<"$(dmsetup status "$name")"
assert_eq "$channels $errors" "2 0" "channels and errors at the end"
dmu_running "$daemon" || die "dmuserd stopped"
dmu_daemon_stop "$daemon"
dmsetup remove --noudevsync "$name"
dmu_unload
