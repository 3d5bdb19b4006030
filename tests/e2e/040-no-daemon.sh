#!/bin/bash
# timeout: 180
# Userspace never hangs a BIO forever, with the default table (no recovery):
#  1. I/O issued before any daemon attaches waits for one.  With the device
#     held open by that I/O, `dmsetup remove --force` (which swaps in an error
#     table, so suspends the target) fails it with EIO instead of hanging, and
#     leaves nothing behind.
#  2. A daemon killed with a request read but unanswered: that request fails
#     with EIO, and so does new I/O while no daemon is attached.
#  3. A new daemon on the same device serves I/O again.
. "$(dirname "$0")/lib.sh"

client=$DMU_ROOT/build/tools/dmu-client
tmp=$(dmu_tmpdir)
name=dmu-test-nod
sectors=8192
size=$((sectors * 512))
dmu_load

create() {
	dmsetup create --noudevsync "$name" --table "0 $sectors user 0 $sectors $name"
	dmsetup mknodes "$name"
}

# status_field N: the Nth field of dmsetup status (1 = start)
status_field() { dmsetup status "$name" | awk -v n="$1" '{ print $n }'; }
queued_is() { [[ $(status_field 5) == "$1" ]]; }
inflight_is() { [[ $(status_field 6) == "$1" ]]; }

log "1. I/O before any daemon, then remove --force with no daemon"
create
dmu_bg dd if="/dev/mapper/$name" of=/dev/null bs=4k count=1 iflag=direct status=none
reader=$DMU_BG_PID
wait_until 10 queued_is 1 || die "the read was not queued: $(dmsetup status "$name")"
# A plain remove refuses: the device is open (as for every dm target).
assert_fails dmsetup remove --noudevsync "$name"
dmsetup remove --noudevsync --force --retry "$name" ||
	die "dmsetup remove --force failed with I/O queued and no daemon"
rc=0
dmu_wait "$reader" 10 || rc=$?
((rc != 124)) || die "a read queued with no daemon did not end within 10 s of remove --force"
((rc != 0)) || die "a read queued with no daemon succeeded after remove"
! dmu_dm_exists "$name" || die "$name left behind"
[[ ! -e /dev/dm-user/$name ]] || die "/dev/dm-user/$name left behind"

log "2. daemon killed with a request in flight"
create
dmu_bg "$client" serve "/dev/dm-user/$name" "$size" --stall --ready "$tmp/ready"
stalled=$DMU_BG_PID
wait_for_path "$tmp/ready" 10
dmu_bg dd if="/dev/mapper/$name" of=/dev/null bs=4k count=1 iflag=direct status=none
reader=$DMU_BG_PID
wait_until 10 inflight_is 1 || die "the read never reached the daemon: $(dmsetup status "$name")"
kill -KILL "$stalled"
rc=0
wait "$stalled" || true
dmu_wait "$reader" 10 || rc=$?
((rc != 124)) || die "a read whose daemon died did not end within 10 s"
((rc != 0)) || die "a read whose daemon died succeeded"
errors=$(status_field 8)
((errors >= 1)) || die "status counts no error: $(dmsetup status "$name")"
if dd if="/dev/mapper/$name" of=/dev/null bs=4k count=1 iflag=direct status=none 2>/dev/null; then
	die "I/O with no daemon attached succeeded"
fi

log "3. a new daemon serves the same device"
rm -f "$tmp/ready"
dmu_bg "$client" serve "/dev/dm-user/$name" "$size" --ready "$tmp/ready"
server=$DMU_BG_PID
wait_for_path "$tmp/ready" 10
head -c 65536 /dev/urandom >"$tmp/p"
dd if="$tmp/p" of="/dev/mapper/$name" bs=64k oflag=direct status=none
cmp -n 65536 "$tmp/p" "/dev/mapper/$name" || die "data differs after the daemon came back"
dmsetup remove --noudevsync "$name"
dmu_stop "$server" 10 || die "dmu-client did not exit cleanly"
dmu_unload
