#!/bin/bash
# timeout: 180
# Issue 14, item 2b: a request whose reply is held part-way through the
# copy from the daemon still times out, and the channel stays in sync.
# With timeout_ms 1000, a client reads a 4k READ, writes its SUCCESS reply
# header (40 bytes) and stalls before the data.  The read fails with EIO and
# counts as a timeout (dm_user_complete: how 2, no earlier than timeout_ms
# after map), so `dmsetup suspend` finishes.  Then the 4096 data bytes the
# client writes for that reply are consumed and discarded (write() returns
# 4096, the channel is not refused), and it serves the next requests as
# usual; `dmsetup remove` finishes.
# Fails on the old module: a message mid-reply (REPLYING, the channel's
# wr_cur) was left to "end with that call or with that channel", so the
# clock skipped it, the read never ended, and `dmsetup suspend` was still
# waiting after 30 s.
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

tmp=$(dmu_tmpdir)
name=dmu-test-midwr
sectors=8192
size=$((sectors * 512))
dev=/dev/mapper/$name
trace=/sys/kernel/tracing
export PYTHONDONTWRITEBYTECODE=1
dmu_load
mark=$(dmu_kmsg_mark)

field() { dmsetup status "$name" | awk -v n="$1" '{ print $n }'; }

cat >"$tmp/client.py" <<'EOF'
import errno, os, sys
sys.path.insert(0, os.environ['DMU_ROOT'] + '/tests/tools')
import dmuproto as p

name, tmp, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
fd = p.open_ctl(name)
p.put(tmp + '/ready')
m = p.read_header(fd)
if m.type != p.READ or m.len != 4096:
    sys.exit('expected a 4k READ, got %r' % m)
p.write_all(fd, m.reply(p.SUCCESS))
p.put(tmp + '/header', repr(m) + '\n')
p.wait_file(tmp + '/go', 150)
# The data of that reply, after the timeout.
try:
    out = 'late_data %d\n' % os.write(fd, bytes(range(256)) * 16)
except OSError as e:
    out = 'late_data %s\n' % errno.errorcode[e.errno]
p.put(tmp + '/late', out)
disk = p.RamDisk(size)
while True:
    try:
        disk.serve_one(fd)
    except OSError as e:
        if e.errno == errno.ENOTBLK:
            break
        raise
EOF

dmsetup create --noudevsync "$name" --table "0 $sectors user 0 $sectors $name 2 timeout_ms 1000"
dmsetup mknodes "$name"
echo >"$trace/trace"
echo 1 >"$trace/events/dm_user/dm_user_complete/enable"
dmu_bg python3 "$tmp/client.py" "$name" "$tmp" "$size"
client=$DMU_BG_PID
wait_for_path "$tmp/ready" 30 || die "the client did not start"

start=$SECONDS
dmu_bg dd if="$dev" of=/dev/null bs=4k count=1 iflag=direct status=none 2>"$tmp/dd.err"
reader=$DMU_BG_PID
wait_for_path "$tmp/header" 30 || die "the client did not answer with a header"
log "the client sent the reply header of $(cat "$tmp/header") and holds its data"

log "suspend with the READ reply held mid-copy"
rc=0
timeout 30 dmsetup suspend --noudevsync "$name" || rc=$?
assert_eq "$rc" 0 "dmsetup suspend exit status (124: still waiting for the held read after 30 s)"
wait_until 30 dmu_not_running "$reader" || die "the held read did not end"
rc=0
wait "$reader" || rc=$?
log "read exit $rc after $((SECONDS - start)) s; status $(dmsetup status "$name")"
((rc != 0)) || die "the read held mid-reply succeeded"
grep -q "Input/output error" "$tmp/dd.err" || die "expected EIO, got: $(cat "$tmp/dd.err")"
((SECONDS - start <= 15)) || die "the timeout took $((SECONDS - start)) s for timeout_ms 1000"
assert_eq "$(field 9)" 1 "timeouts"
dmsetup resume --noudevsync "$name"
echo 0 >"$trace/events/dm_user/dm_user_complete/enable"
line=$(grep 'dm_user_complete:' "$trace/trace" | head -n 1)
log "trace: $line"
[[ $line =~ op\ 0\ .*error\ -5\ how\ 2\ .*total_ns\ ([0-9]+) ]] || die "the read did not end as a timeout: $line"
((BASH_REMATCH[1] >= 1000000000)) || die "the read timed out ${BASH_REMATCH[1]} ns after map, before timeout_ms 1000"

log "the channel goes on: the reply's data are discarded, then new requests"
: >"$tmp/go"
wait_for_path "$tmp/late" 30 || die "the client did not get past the late data"
log "client: $(cat "$tmp/late")"
assert_eq "$(cat "$tmp/late")" "late_data 4096" "write() of the timed-out reply's data"
head -c 8192 /dev/urandom >"$tmp/q"
timeout 30 dd if="$tmp/q" of="$dev" bs=8k seek=1 oflag=direct status=none ||
	die "the channel does not serve a write after the timeout"
timeout 30 dd if="$dev" of="$tmp/back" bs=8k skip=1 count=1 iflag=direct status=none ||
	die "the channel does not serve a read after the timeout"
cmp "$tmp/q" "$tmp/back" || die "data read back differs"
assert_eq "$(field 4)" 1 "channels (the late reply must not refuse the client)"
if dmu_dmesg_since "$mark" | grep refused >/dev/null; then
	die "a channel was refused: $(dmu_dmesg_since "$mark" | grep refused)"
fi

rc=0
timeout 30 dmsetup remove --noudevsync "$name" || rc=$?
assert_eq "$rc" 0 "dmsetup remove exit status"
wait_until 30 dmu_not_running "$client" || die "the client did not see the target go"
dmu_stop "$client" 10 || die "the client failed"
dmu_unload
