#!/bin/bash
# timeout: 900
# soak-timeout: 3600
# Crash recovery with the asynchronous API: a device created by
# examples/dmu-passthrough with a recovery window (-r) outlives the
# example's SIGKILL, 3 times (20 in `make soak`) while fio --verify
# writes; each time a new dmu-passthrough -a attaches to it (dmu_device_attach)
# and takes over.  fio sees no error, every block verifies, the target
# failed no request, and requests held by the dead daemon were requeued.
# The backing device is a loop device behind dm-delay (3 ms), so that the
# backend holds requests when the kill comes.
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

tmp=$(dmu_tmpdir)
name=dmu-test-uring-kill
dev=/dev/mapper/$name
prog=$DMU_ROOT/examples/dmu-passthrough
kills=$(dmu_scale 3 20)
[[ -x $prog ]] || die "not built: $prog (make)"
dmu_load

modprobe loop || die "no loop module"
truncate -s 64M "$tmp/backing"
loop=$(losetup --find --show "$tmp/backing")
slow=dmu-test-slow
# lib.sh's EXIT trap stops the example and removes the devices (the delay
# device may refuse while the other still uses it); the rest goes after.
detach_on_exit() {
	local rc=$?
	dmu_cleanup
	dmsetup remove --noudevsync "$slow" 2>/dev/null || true
	losetup -d "$loop" 2>/dev/null || true
	(exit "$rc")
	_dmu_on_exit
}
trap detach_on_exit EXIT
dmsetup create --noudevsync "$slow" --table "0 $((64 << 11)) delay $loop 0 3"
dmsetup mknodes "$slow"

field() { dmsetup status "$name" | awk -v n="$1" '{ print $n }'; }
channels() { field 4; }
one_channel() { (($(channels) == 1)); }
completed_past() { (($(field 7) >= $1)); }
inflight() { (($(field 6) > 0)); }

dmu_bg "$prog" -q 32 -r 30000 "$name" "/dev/mapper/$slow" >"$tmp/out"
pid=$DMU_BG_PID
wait_for_path "$dev" 30 || die "$dev did not appear: $(cat "$tmp/out")"
dmsetup table "$name" | grep -q 'recovery_ms 30000' || die "no recovery_ms: $(dmsetup table "$name")"

# Paced, so that every kill falls inside the run however fast the guest is.
fio --name=kill9 --filename="$dev" --rw=randwrite --bssplit=4k/50:32k/30:128k/20 \
	--size=64M --iodepth=16 --ioengine=libaio --direct=1 --rate_iops=400 \
	--verify=crc32c --do_verify=1 --verify_fatal=1 --verify_state_save=0 \
	--output-format=json --output="$tmp/fio.json" &
fio_pid=$!

for ((i = 1; i <= kills; i++)); do
	target=$(($(field 7) + 500))
	wait_until 300 completed_past "$target" || die "kill $i: no progress: $(dmsetup status "$name")"
	kill -0 "$fio_pid" 2>/dev/null || die "kill $i: fio ended before the kill"
	wait_until 5 inflight || true	# kill while requests are out, when there are
	kill -KILL "$pid"
	wait "$pid" 2>/dev/null || true
	log "kill $i: $(dmsetup status "$name")"
	dmu_bg "$prog" -a -q 32 "$name" "/dev/mapper/$slow" >"$tmp/out"
	pid=$DMU_BG_PID
	wait_until 30 one_channel || die "kill $i: the attached example opened no channel: $(cat "$tmp/out")"
done

rc=0
wait "$fio_pid" || rc=$?
read -r err written verified <<<"$(jq -r '.jobs[0] | "\(.error) \(.write.io_bytes) \(.read.io_bytes)"' "$tmp/fio.json")"
status=$(dmsetup status "$name")
log "fio exit $rc, error $err, written $written, verified $verified; status $status"
assert_eq "$rc" 0 "fio exit status across the kills"
assert_eq "$err" 0 "fio error across the kills"
((written > 0 && verified == written)) || die "verified $verified bytes of $written written"
read -r _ _ _ _ _ _ _ errors _ requeues <<<"$status"
assert_eq "$errors" 0 "requests the target failed"
((requeues > 0)) || die "no request was requeued: no kill hit a request in flight"

# -a leaves the device on SIGTERM
rc=0
dmu_stop "$pid" 30 || rc=$?
assert_eq "$rc" 0 "dmu-passthrough -a exit status after SIGTERM"
dmu_dm_exists "$name" || die "dmu-passthrough -a removed $name"
dmsetup remove --noudevsync "$name"
dmsetup remove --noudevsync "$slow"
dmu_unload
