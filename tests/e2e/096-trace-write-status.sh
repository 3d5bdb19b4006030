#!/bin/bash
# timeout: 120
# Issue 14, item 8: the dm_user_write tracepoint reports a reply's status as
# the daemon sent it, all 64 bits.
# A client answers a 4k READ with status 0x100000001 (an unknown status:
# the read fails with EIO); the event's format declares `u64 status`, and
# /sys/kernel/tracing shows "status 4294967297" for that seq.
# Fails on the old module: the field was a u32, so the event said status 1
# (ERROR), which is not what the daemon sent.
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

tmp=$(dmu_tmpdir)
name=dmu-test-tpstat
sectors=8192
dev=/dev/mapper/$name
trace=/sys/kernel/tracing
export PYTHONDONTWRITEBYTECODE=1
dmu_load

cat >"$tmp/client.py" <<'EOF'
import os, sys
sys.path.insert(0, os.environ['DMU_ROOT'] + '/tests/tools')
import dmuproto as p

name, tmp = sys.argv[1], sys.argv[2]
fd = p.open_ctl(name)
p.put(tmp + '/ready')
m, _ = p.read_request(fd)
p.write_all(fd, m.reply(0x100000001))
p.put(tmp + '/answered', '%d\n' % m.seq)
p.wait_file(tmp + '/exit', 60)
EOF

dmsetup create --noudevsync "$name" --table "0 $sectors user 0 $sectors $name"
dmsetup mknodes "$name"
echo >"$trace/trace"
echo 1 >"$trace/events/dm_user/dm_user_write/enable"
dmu_bg python3 "$tmp/client.py" "$name" "$tmp"
client=$DMU_BG_PID
wait_for_path "$tmp/ready" 30 || die "the client did not start"
if timeout 30 dd if="$dev" of=/dev/null bs=4k count=1 iflag=direct status=none 2>"$tmp/dd.err"; then
	die "a read answered with status 0x100000001 succeeded"
fi
grep -q "Input/output error" "$tmp/dd.err" || die "expected EIO, got: $(cat "$tmp/dd.err")"
wait_for_path "$tmp/answered" 10 || die "the client did not answer"
echo 0 >"$trace/events/dm_user/dm_user_write/enable"
seq=$(cat "$tmp/answered")
line=$(grep "dm_user_write: .* seq $seq " "$trace/trace" || true)
log "trace: $line"
[[ $line =~ status\ ([0-9]+) ]] || die "no dm_user_write event for seq $seq: $(cat "$trace/trace")"
assert_eq "${BASH_REMATCH[1]}" 4294967297 "dm_user_write status for a reply of type 0x100000001"
grep -q 'field:u64 status;' "$trace/events/dm_user/dm_user_write/format" ||
	die "dm_user_write's status is not a u64: $(grep 'status;' "$trace/events/dm_user/dm_user_write/format")"

# The client exits by itself once it sees the file: wait for that, then
# collect its status (dmu_stop would SIGTERM it if it has not looked yet).
: >"$tmp/exit"
wait_until 60 dmu_not_running "$client" || die "the client did not exit"
dmu_stop "$client" || die "the client failed"
dmsetup remove --noudevsync "$name"
dmu_unload
