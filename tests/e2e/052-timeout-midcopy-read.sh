#!/bin/bash
# timeout: 180
# Issue 14, item 2a: a request held part-way through the copy to the daemon
# still times out, and the channel stays in sync.
# With timeout_ms 1000, a client reads only the 40-byte header of a 4k WRITE
# (its payload is left for the next read()) and stalls.  The write fails
# with EIO and counts as a timeout (dm_user_complete: how 2, no earlier than
# timeout_ms after map), so `dmsetup suspend` finishes.  Then the client's
# next read() returns the rest of that WRITE's payload (4096 bytes) as
# zeroes, its reply to the timed-out seq is accepted as late (write()
# returns 40, the channel is not refused), and it serves the next requests
# as usual; `dmsetup remove` finishes.
# Fails on the old module: a message mid-copy (READING, the channel's
# rd_cur) was left to "end with that call or with that channel", so the
# clock skipped it, the write never ended, and `dmsetup suspend` was still
# waiting after 30 s.
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

tmp=$(dmu_tmpdir)
name=dmu-test-midrd
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
if m.type != p.WRITE or m.len != 4096:
    sys.exit('expected the header of a 4k WRITE, got %r' % m)
p.put(tmp + '/header', repr(m) + '\n')
p.wait_file(tmp + '/go', 150)
# The rest of that WRITE: one read() with room for much more.
rest = os.read(fd, 1 << 20)
out = 'rest_len %d rest_zero %d\n' % (len(rest), rest == bytes(len(rest)))
try:
    out += 'late_write %d\n' % os.write(fd, m.reply(p.SUCCESS))
except OSError as e:
    out += 'late_write %s\n' % errno.errorcode[e.errno]
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

head -c 4096 /dev/urandom >"$tmp/p"
start=$SECONDS
dmu_bg dd if="$tmp/p" of="$dev" bs=4k count=1 oflag=direct status=none 2>"$tmp/dd.err"
writer=$DMU_BG_PID
wait_for_path "$tmp/header" 30 || die "the client got no header"
log "the client holds the header of $(cat "$tmp/header")"

log "suspend with the WRITE held mid-copy"
rc=0
timeout 30 dmsetup suspend --noudevsync "$name" || rc=$?
assert_eq "$rc" 0 "dmsetup suspend exit status (124: still waiting for the held write after 30 s)"
wait_until 30 dmu_not_running "$writer" || die "the held write did not end"
rc=0
wait "$writer" || rc=$?
log "write exit $rc after $((SECONDS - start)) s; status $(dmsetup status "$name")"
((rc != 0)) || die "the write held mid-copy succeeded"
grep -q "Input/output error" "$tmp/dd.err" || die "expected EIO, got: $(cat "$tmp/dd.err")"
((SECONDS - start <= 15)) || die "the timeout took $((SECONDS - start)) s for timeout_ms 1000"
assert_eq "$(field 9)" 1 "timeouts"
dmsetup resume --noudevsync "$name"
echo 0 >"$trace/events/dm_user/dm_user_complete/enable"
line=$(grep 'dm_user_complete:' "$trace/trace" | head -n 1)
log "trace: $line"
[[ $line =~ op\ 1\ .*error\ -5\ how\ 2\ .*total_ns\ ([0-9]+) ]] || die "the write did not end as a timeout: $line"
((BASH_REMATCH[1] >= 1000000000)) || die "the write timed out ${BASH_REMATCH[1]} ns after map, before timeout_ms 1000"

log "the channel goes on: the rest of the payload, a late reply, then new requests"
: >"$tmp/go"
wait_for_path "$tmp/late" 30 || die "the client did not get past the rest of the payload"
log "client: $(tr '\n' ' ' <"$tmp/late")"
assert_eq "$(cat "$tmp/late")" $'rest_len 4096 rest_zero 1\nlate_write 40' \
	"the next read() (the rest of the timed-out WRITE, as zeroes), and write() of the late reply"
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
