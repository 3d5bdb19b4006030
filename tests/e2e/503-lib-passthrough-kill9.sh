#!/bin/bash
# timeout: 900
# soak-timeout: 3600
# Crash recovery with the asynchronous API: a device created by
# examples/dmu-passthrough with a recovery window (-r) outlives the
# example's SIGKILL, 3 times (20 in `make soak`) while fio --verify
# writes; each time a new dmu-passthrough -a attaches to it (dmu_device_attach)
# and takes over.  fio sees no error, every block verifies, the target
# failed no request, and every kill requeued requests the dead daemon held.
# The backing device is a loop device behind dm-delay (3 ms; a dm-linear on
# a kernel without dm-delay, the debug lane's).  Before each
# kill the test suspends it, so that the example's backend I/O stops there,
# and waits until the example's metrics show requests it read and has not
# answered: the kill is sure to find requests held (with dm-delay alone, 2
# of 3 kills found none in one run).
# The kill waits in the example's exit (io_uring waits for its I/O) until
# the test resumes the backing device.  fio runs 1 loop (8 under make soak)
# so that the kills, 200 completions apart, all fall inside it.
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"
dmu_kernel_independent "libdmuser and its examples over the protocol, which 030, 170 and 200 check with dmuserd here"

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
	dmsetup resume "$slow" 2>/dev/null || true
	dmu_cleanup
	dmsetup remove --noudevsync "$slow" 2>/dev/null || true
	losetup -d "$loop" 2>/dev/null || true
	(exit "$rc")
	_dmu_on_exit
}
trap detach_on_exit EXIT
# dm-delay where the kernel has it; the debug lane's kernel has not, and
# there a dm-linear does: the suspend before each kill is what holds the I/O
if modprobe dm-delay 2>/dev/null; then
	slow_table="0 $((64 << 11)) delay $loop 0 3"
else
	slow_table="0 $((64 << 11)) linear $loop 0"
fi
log "backing: ${slow_table#* * }"
dmsetup create --noudevsync "$slow" --table "$slow_table"
dmsetup mknodes "$slow"

field() { dmsetup status "$name" | awk -v n="$1" '{ print $n }'; }
channels() { field 4; }
one_channel() { (($(channels) == 1)); }
completed_past() { (($(field 7) >= $1)); }
# requests the running example read and has not answered (its JSON metrics)
metrics_addr() { sed -n 's/^metrics=//p' "$tmp/out"; }
has_metrics() { [[ -n $(metrics_addr) ]]; }
held() { (($(curl -sf "http://$(metrics_addr)/metrics" | jq '.in_flight') > 0)); }

ip link set lo up
dmu_bg "$prog" -q 32 -r 30000 -m localhost:0 "$name" "/dev/mapper/$slow" >"$tmp/out"
pid=$DMU_BG_PID
wait_for_path "$dev" 30 || die "$dev did not appear: $(cat "$tmp/out")"
dmsetup table "$name" | grep -q 'recovery_ms 30000' || die "no recovery_ms: $(dmsetup table "$name")"

# The writes paced, so that every kill falls inside them however fast the
# guest is; the verifying reads after them are not.
fio --name=kill9 --filename="$dev" --rw=randwrite --bssplit=4k/50:32k/30:128k/20 \
	--size=64M --loops="$(dmu_scale 1 8)" --iodepth=16 --ioengine=libaio --direct=1 --rate_iops=,400 \
	--verify=crc32c --do_verify=1 --verify_fatal=1 --verify_state_save=0 \
	--output-format=json --output="$tmp/fio.json" &
fio_pid=$!

for ((i = 1; i <= kills; i++)); do
	target=$(($(field 7) + 200))
	wait_until 300 completed_past "$target" || die "kill $i: no progress: $(dmsetup status "$name")"
	kill -0 "$fio_pid" 2>/dev/null || die "kill $i: fio ended before the kill"
	requeued=$(field 10)
	dmsetup suspend "$slow" || die "kill $i: suspending $slow failed"
	wait_until 30 has_metrics || die "kill $i: the example serves no metrics: $(cat "$tmp/out")"
	wait_until 30 held || die "kill $i: the example holds no request: $(dmsetup status "$name")"
	kill -KILL "$pid"
	dmsetup resume "$slow" || die "kill $i: resuming $slow failed"
	wait "$pid" 2>/dev/null || true
	log "kill $i: $(dmsetup status "$name")"
	(($(field 10) > requeued)) || die "kill $i: no request was requeued: $(dmsetup status "$name")"
	dmu_bg "$prog" -a -q 32 -m localhost:0 "$name" "/dev/mapper/$slow" >"$tmp/out"
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
read -r _ _ _ _ _ _ _ errors _ _ <<<"$status"
assert_eq "$errors" 0 "requests the target failed"

# -a leaves the device on SIGTERM
rc=0
dmu_stop "$pid" 30 || rc=$?
assert_eq "$rc" 0 "dmu-passthrough -a exit status after SIGTERM"
dmu_dm_exists "$name" || die "dmu-passthrough -a removed $name"
dmsetup remove --noudevsync "$name"
dmsetup remove --noudevsync "$slow"
dmu_unload
