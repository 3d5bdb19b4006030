#!/bin/bash
# timeout: 120
# Issue 14, item 8: a FLUSH request carries sector 0 and len 0, whatever
# sector the user target starts at in its table.
# The table is "0 2048 zero" followed by "2048 2048 user 0 2048 <ctl>".  A
# 4k write to the user range, then fsync() of the dm device: the write
# reaches the client at sector 0 (the target's own start), and the flush
# arrives as a FLUSH request with sector 0 and len 0.
# Fails on the old module: map() computed a flush's sector like any other,
# begin + (bi_sector - target start), and an empty flush BIO has bi_sector
# 0, so the FLUSH said sector 2^64 - 2048 (18446744073709549568).
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

tmp=$(dmu_tmpdir)
name=dmu-test-flush
dev=/dev/mapper/$name
export PYTHONDONTWRITEBYTECODE=1
dmu_load

cat >"$tmp/client.py" <<'EOF'
import errno, os, sys
sys.path.insert(0, os.environ['DMU_ROOT'] + '/tests/tools')
import dmuproto as p

name, tmp, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
fd = p.open_ctl(name)
p.put(tmp + '/ready')
disk = p.RamDisk(size)
log = open(tmp + '/requests', 'w', buffering=1)
while True:
    try:
        m, payload = p.read_request(fd)
    except OSError as e:
        if e.errno == errno.ENOTBLK:
            break
        raise
    log.write('type %d sector %d len %d flags %#x\n' % (m.type, m.sector, m.len, m.flags))
    if m.type in (p.READ, p.WRITE) and m.sector * 512 + m.len > size:
        p.write_all(fd, m.reply(p.ERROR))
    else:
        p.write_all(fd, disk.answer(m, payload))
EOF

dmsetup create --noudevsync "$name" <<EOF
0 2048 zero
2048 2048 user 0 2048 $name
EOF
dmsetup mknodes "$name"
dmu_bg python3 "$tmp/client.py" "$name" "$tmp" $((2048 * 512))
client=$DMU_BG_PID
wait_for_path "$tmp/ready" 30 || die "the client did not start"

log "a write to the user range, then fsync() of the device"
python3 - "$dev" <<'EOF'
import os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
os.pwrite(fd, b'\xa5' * 4096, 2048 * 512)
os.fsync(fd)
os.close(fd)
EOF
log "requests the client saw: $(tr '\n' ';' <"$tmp/requests")"
grep -q '^type 1 sector 0 len 4096 ' "$tmp/requests" || die "the write did not reach the client at sector 0 len 4096"
grep -q '^type 2 ' "$tmp/requests" || die "no FLUSH reached the client"
bad=$(grep '^type 2 ' "$tmp/requests" | grep -v '^type 2 sector 0 len 0 ' || true)
[[ -z $bad ]] || die "FLUSH requests not at sector 0 len 0: $(echo "$bad" | tr '\n' ';')"

rc=0
timeout 30 dmsetup remove --noudevsync "$name" || rc=$?
assert_eq "$rc" 0 "dmsetup remove exit status"
wait_until 30 dmu_not_running "$client" || die "the client did not see the target go"
dmu_stop "$client" 10 || die "the client failed"
dmu_unload
