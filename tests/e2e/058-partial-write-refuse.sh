#!/bin/bash
# timeout: 120
# Issue 14, item 8: a write() that applied some replies and then met one
# the channel refuses returns the bytes it applied; the next call fails
# with EIO.
# A client reads three 4k WRITEs and sends, in one write(), SUCCESS replies
# to the first two followed by a reply to a seq nobody issued.  That write()
# returns 80 (the two valid replies), the next write() on the channel fails
# with EIO, and the two writes the valid replies answered succeed.  Once
# the client has gone, the third write has failed (no recovery_ms): status
# completed 3, errors 1.
# Fails on the old module: the refusal's EINVAL replaced the count, so the
# daemon was told nothing was applied although two requests had completed.
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

tmp=$(dmu_tmpdir)
name=dmu-test-partial
sectors=8192
dev=/dev/mapper/$name
export PYTHONDONTWRITEBYTECODE=1
dmu_load

field() { dmsetup status "$name" | awk -v n="$1" '{ print $n }'; }
finish() { # PID: wait for PID to end by itself (30 s); its exit status
	wait_until 30 dmu_not_running "$1" || return 124
	wait "$1"
}

cat >"$tmp/client.py" <<'EOF'
import errno, os, sys
sys.path.insert(0, os.environ['DMU_ROOT'] + '/tests/tools')
import dmuproto as p

name, tmp = sys.argv[1], sys.argv[2]
fd = p.open_ctl(name)
p.put(tmp + '/ready')
held = [p.read_request(fd)[0] for _ in range(3)]
bogus = p.Msg(1 << 62, p.SUCCESS, 0, 0, 0).pack()
try:
    first = os.write(fd, held[0].reply() + held[1].reply() + bogus)
except OSError as e:
    first = errno.errorcode[e.errno]
out = 'answered %d %d\n' % (held[0].sector, held[1].sector)
out += 'first %s\n' % first
out += 'next %s\n' % p.errno_of(os.write, fd, held[2].reply())
p.put(tmp + '/result', out)
p.wait_file(tmp + '/exit', 120)
EOF

dmsetup create --noudevsync "$name" --table "0 $sectors user 0 $sectors $name"
dmsetup mknodes "$name"
dmu_bg python3 "$tmp/client.py" "$name" "$tmp"
client=$DMU_BG_PID
wait_for_path "$tmp/ready" 30 || die "the client did not start"
head -c 4096 /dev/urandom >"$tmp/p"
pids=()
for blk in 1 2 3; do
	dmu_bg dd if="$tmp/p" of="$dev" bs=4k seek="$blk" count=1 oflag=direct status=none
	pids[blk]=$DMU_BG_PID
done
wait_for_path "$tmp/result" 60 || die "the client did not answer"
log "client: $(tr '\n' ' ' <"$tmp/result")"
read -r _ s1 s2 < <(grep '^answered ' "$tmp/result")
assert_eq "$(sed -n 's/^first //p' "$tmp/result")" 80 "write() of two valid replies and a bad one (bytes applied)"
assert_eq "$(sed -n 's/^next //p' "$tmp/result")" EIO "the next write() on the refused channel"
held=""
for blk in 1 2 3; do
	if ((blk * 8 == s1 || blk * 8 == s2)); then
		rc=0
		finish "${pids[blk]}" || rc=$?
		assert_eq "$rc" 0 "exit status of the write at block $blk, answered before the bad reply (124: still running)"
	else
		held=${pids[blk]}
	fi
done
[[ -n $held ]] || die "the client answered sectors $s1 and $s2, not two of the three writes"

: >"$tmp/exit"
finish "$client" || die "the client failed"
rc=0
finish "$held" || rc=$?
((rc != 0 && rc != 124)) || die "the write the refused channel held: exit status $rc after the client left (want a failure; 124: still running)"
log "status: $(dmsetup status "$name")"
assert_eq "$(field 7) $(field 8)" "3 1" "completed errors"
dmsetup remove --noudevsync "$name"
dmu_unload
