#!/bin/bash
# timeout: 180
# splice(2) on a channel (target 1.6.0), at its edges; 030's splice modes
# carry the data under fio.  A python client, with the test writing and
# reading through the device:
#  1. A 128 KiB WRITE does not fit a default pipe (16 buffers: it needs 33):
#     splice() fails with EMSGSIZE and moves nothing.  A pipe whose read
#     end is closed: EPIPE.  Each time the request stays queued: a splice
#     into a 256 KiB pipe then moves it whole, 40 + 131072 bytes, and the
#     payload read from the pipe is the data written.
#  2. A request whose header alone was read(): splice() fails with EBUSY;
#     read() gets the rest.
#  3. Nothing queued: splice(SPLICE_F_NONBLOCK) fails with EAGAIN.
#  4. A READ answered by a splice from a pipe (header written into it, the
#     data after it): the reader gets those bytes.
# Every write completes, the status shows no error, and the kernel log is
# clean.
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

tmp=$(dmu_tmpdir)
name=dmu-test-splice
sectors=8192
dev=/dev/mapper/$name
export PYTHONDONTWRITEBYTECODE=1
dmu_load

field() { dmsetup status "$name" | awk -v n="$1" '{ print $n }'; }

cat >"$tmp/client.py" <<'EOF'
import errno, fcntl, os, sys
sys.path.insert(0, os.environ['DMU_ROOT'] + '/tests/tools')
import dmuproto as p

name, tmp = sys.argv[1], sys.argv[2]
fd = p.open_ctl(name)
out = []


def splice_err(src, dst, n, flags=0):
    try:
        return os.splice(src, dst, n, flags=flags)
    except OSError as e:
        return errno.errorcode[e.errno]


def pipe(size=None):
    r, w = os.pipe()
    if size:
        fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, size)
    return r, w


def answer_spliced(m, data=b''):
    r, w = pipe(1 << 20)
    p.write_all(w, m.reply() + data)
    n = os.splice(r, fd, p.HDR_SIZE + len(data))
    out.append('reply %d' % n)
    os.close(r)
    os.close(w)


p.put(tmp + '/ready')
# 1. a 128 KiB write: not into a default pipe, nor one nobody reads
p.wait_file(tmp + '/big')
small_r, small_w = pipe()
out.append('small %s' % splice_err(fd, small_w, 1 << 20))
out.append('small-left %d' % len(os.read(small_r, 1 << 20) if p.readable(small_r, 0) else b''))
dead_r, dead_w = pipe(256 << 10)
os.close(dead_r)
out.append('dead %s' % splice_err(fd, dead_w, 1 << 20))
big_r, big_w = pipe(256 << 10)
out.append('big %s' % splice_err(fd, big_w, 1 << 20))
m = p.Msg.unpack(p.read_exact(big_r, p.HDR_SIZE))
payload = p.read_exact(big_r, m.len)
out.append('big-req type %d len %d same %d' % (
    m.type, m.len, payload == open(tmp + '/pattern', 'rb').read()))
answer_spliced(m)
# 2. header read, then splice
p.wait_file(tmp + '/small-write')
m = p.read_header(fd)
out.append('busy %s' % splice_err(fd, big_w, 1 << 20))
payload = p.read_exact(fd, m.len)
p.write_all(fd, m.reply())
# 3. nothing queued
out.append('nonblock %s' % splice_err(fd, big_w, 1 << 20, os.SPLICE_F_NONBLOCK))
p.put(tmp + '/result', '\n'.join(out) + '\n')
# 4. a READ answered by splice
p.wait_file(tmp + '/read')
n = os.splice(fd, big_w, 1 << 20)
m = p.Msg.unpack(p.read_exact(big_r, p.HDR_SIZE))
out.append('read-req %d type %d len %d' % (n, m.type, m.len))
answer_spliced(m, bytes(range(256)) * (m.len // 256))
p.put(tmp + '/result2', '\n'.join(out) + '\n')
p.wait_file(tmp + '/exit', 120)
EOF

dmsetup create --noudevsync "$name" --table "0 $sectors user 0 $sectors $name"
dmsetup mknodes "$name"
dmu_bg python3 "$tmp/client.py" "$name" "$tmp"
client=$DMU_BG_PID
wait_for_path "$tmp/ready" 30 || die "the client did not start"

head -c $((128 << 10)) /dev/urandom >"$tmp/pattern"
dmu_bg dd if="$tmp/pattern" of="$dev" bs=128k count=1 oflag=direct status=none
big=$DMU_BG_PID
: >"$tmp/big"
dmu_wait "$big" 60 || die "the 128 KiB write failed or hangs"
dmu_bg dd if="$tmp/pattern" of="$dev" bs=4k seek=64 count=1 oflag=direct status=none
small=$DMU_BG_PID
: >"$tmp/small-write"
dmu_wait "$small" 60 || die "the 4 KiB write failed or hangs"
wait_for_path "$tmp/result" 60 || die "the client gave no result"
log "client: $(tr '\n' ';' <"$tmp/result")"
r=$tmp/result
assert_eq "$(sed -n 's/^small //p' "$r")" EMSGSIZE "splice of a 128 KiB write into a default pipe"
assert_eq "$(sed -n 's/^small-left //p' "$r")" 0 "bytes the failed splice left in the pipe"
assert_eq "$(sed -n 's/^dead //p' "$r")" EPIPE "splice into a pipe with no reader"
assert_eq "$(sed -n 's/^big //p' "$r")" $((40 + 131072)) "splice of the same write into a 256 KiB pipe (bytes)"
assert_eq "$(sed -n 's/^big-req //p' "$r")" "type 1 len 131072 same 1" "the spliced request, and its payload against the data written"
assert_eq "$(sed -n 's/^busy //p' "$r")" EBUSY "splice after a read() took a header alone"
assert_eq "$(sed -n 's/^nonblock //p' "$r")" EAGAIN "splice with SPLICE_F_NONBLOCK and nothing queued"

: >"$tmp/read"
dd if="$dev" of="$tmp/back" bs=8k count=1 skip=100 iflag=direct status=none || die "the 8 KiB read failed"
python3 -c 'import sys; sys.stdout.buffer.write(bytes(range(256)) * 32)' >"$tmp/want"
cmp "$tmp/back" "$tmp/want" || die "the data of a READ answered by splice differ from what the client sent"
wait_for_path "$tmp/result2" 30 || die "the client gave no second result"
assert_eq "$(sed -n 's/^read-req //p' "$tmp/result2")" "40 type 0 len 8192" "the spliced READ request (bytes, type, len)"
assert_eq "$(grep -c '^reply ' "$tmp/result2")" 2 "replies spliced"

: >"$tmp/exit"
dmu_wait "$client" 30 || die "the client failed"
log "status: $(dmsetup status "$name")"
assert_eq "$(field 7) $(field 8)" "3 0" "completed errors"
dmsetup remove --noudevsync "$name"
dmu_unload
