#!/bin/bash
# timeout: 240
# Issue 14, item 5: every late reply is tolerated, however many requests
# timed out on the channel.
# With timeout_ms 5000, one client reads 100 4k READs (fio, iodepth 100) and
# holds them until all have timed out (status: timeouts 100), then answers
# each, newest first, with SUCCESS and its 4096 bytes of data.  Every one of
# those write()s must return its full length (4136), the channel must stay
# open (status channels 1, nothing refused in the kernel log), and it then
# serves a new read.
# Fails on the old module: a channel remembered only its last 32 timeouts
# (DMU_EXPIRED_SLOTS): the 32 newest late replies were accepted, the 33rd
# was "a request not outstanding on this channel", EINVAL, and the channel
# was refused (EIO for the rest).
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

tmp=$(dmu_tmpdir)
name=dmu-test-late
sectors=8192
size=$((sectors * 512))
dev=/dev/mapper/$name
nreq=100
export PYTHONDONTWRITEBYTECODE=1
dmu_load
mark=$(dmu_kmsg_mark)

field() { dmsetup status "$name" | awk -v n="$1" '{ print $n }'; }
timeouts_are() { [[ $(field 9) == "$1" ]]; }

cat >"$tmp/client.py" <<'EOF'
import errno, os, sys
sys.path.insert(0, os.environ['DMU_ROOT'] + '/tests/tools')
import dmuproto as p

name, tmp, size, nreq = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
fd = p.open_ctl(name)
p.put(tmp + '/ready')
held = [p.read_request(fd)[0] for _ in range(nreq)]
bad = [m for m in held if m.type != p.READ or m.len != 4096]
if bad:
    sys.exit('expected 4k READs, got %r' % bad[0])
p.put(tmp + '/held')
p.wait_file(tmp + '/go', 150)
out = ''
for i, m in enumerate(reversed(held)):
    try:
        r = os.write(fd, m.reply(p.SUCCESS) + bytes(m.len))
    except OSError as e:
        r = errno.errorcode[e.errno]
    out += 'reply %d seq %d: %s\n' % (i + 1, m.seq, r)
p.put(tmp + '/replies', out)
disk = p.RamDisk(size)
while True:
    try:
        disk.serve_one(fd)
    except OSError as e:
        if e.errno == errno.ENOTBLK:
            break
        raise
EOF

dmsetup create --noudevsync "$name" --table "0 $sectors user 0 $sectors $name 2 timeout_ms 5000"
dmsetup mknodes "$name"
dmu_bg python3 "$tmp/client.py" "$name" "$tmp" "$size" "$nreq"
client=$DMU_BG_PID
wait_for_path "$tmp/ready" 30 || die "the client did not start"

log "$nreq reads, held by the client until they time out"
dmu_bg fio --name=late --filename="$dev" --rw=randread --bs=4k --ioengine=libaio \
	--direct=1 --iodepth="$nreq" --number_ios="$nreq" --output="$tmp/fio.out" 2>"$tmp/fio.err"
fio_pid=$DMU_BG_PID
wait_for_path "$tmp/held" 60 || die "the client did not get $nreq requests: $(dmsetup status "$name")"
wait_until 60 timeouts_are "$nreq" || die "not all $nreq requests timed out: $(dmsetup status "$name")"
wait_until 30 dmu_not_running "$fio_pid" || die "fio did not end after the timeouts"
rc=0
wait "$fio_pid" || rc=$?
((rc != 0)) || die "fio saw no error although every read timed out"
log "all timed out: $(dmsetup status "$name")"

log "the late replies, newest first"
: >"$tmp/go"
wait_for_path "$tmp/replies" 60 || die "the client did not answer"
bad=$(grep -vc ': 4136$' "$tmp/replies" || true)
if ((bad)); then
	die "$bad of $nreq late replies were not accepted whole (write() must return 4136), first: $(grep -v ': 4136$' "$tmp/replies" | head -n 1); last accepted: $(grep ': 4136$' "$tmp/replies" | tail -n 1)"
fi
assert_eq "$(field 4)" 1 "channels after the late replies"
if dmu_dmesg_since "$mark" | grep refused >/dev/null; then
	die "a late reply refused the channel: $(dmu_dmesg_since "$mark" | grep refused | head -n 1)"
fi
timeout 30 dd if="$dev" of=/dev/null bs=4k count=1 iflag=direct status=none ||
	die "the channel does not serve a read after the late replies"

rc=0
timeout 30 dmsetup remove --noudevsync "$name" || rc=$?
assert_eq "$rc" 0 "dmsetup remove exit status"
wait_until 30 dmu_not_running "$client" || die "the client did not see the target go"
dmu_stop "$client" 10 || die "the client failed"
dmu_unload
