#!/bin/bash
# timeout: 180
# Issue 14, item 8: the table option `max_io_len <sectors>` (default 2048,
# 1 MiB) bounds the size of every request the daemon gets
# (dm_set_target_max_io_len).
#  - Without the option, a 4 MiB O_DIRECT write from a buffer of huge pages
#    (hugetlb or THP, so the block layer can build BIOs larger than 1 MiB;
#    a kernel with neither gets 4 KiB pages, see HUGE) reaches the
#    daemon as requests of at most 1 MiB (the dm_user_map tracepoint's
#    bytes), and reads back identical.
#  - With `2 max_io_len 64`, `dmsetup table` prints the option, and a 1 MiB
#    O_DIRECT write reaches the daemon as requests of at most 32 KiB, and
#    reads back identical.
# Fails on the old module: it has no such option ("Unknown optional
# argument"), and it set no max_io_len at all.
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

client=$DMU_ROOT/build/tools/dmu-client
[[ -x $client ]] || die "test tool not built: $client (run make)"
tmp=$(dmu_tmpdir)
name=dmu-test-maxio
sectors=32768 # 16 MiB
size=$((sectors * 512))
dev=/dev/mapper/$name
trace=/sys/kernel/tracing
dmu_load

# max_bytes OP: the largest dm_user_map bytes of op OP since the trace was cleared
max_bytes() {
	grep -o "op $1 flags [^ ]* sector [0-9]* bytes [0-9]*" "$trace/trace" |
		awk 'BEGIN { m = 0 } { if ($NF > m) m = $NF } END { print m }'
}
# Huge pages, so that one O_DIRECT call can become a BIO above 1 MiB (with
# 4 KiB pages a BIO holds at most 256 of them, 1 MiB): hugetlb pages when the
# kernel has them (3 more in the pool for this test, given back at its end),
# else transparent ones (madvise). The debug lane's kernel has neither: there
# the default case is only checked for data and for requests <= 1 MiB, and
# says so. HUGE is hugetlb, thp or none.
huge_pool=""
if [[ -w /proc/sys/vm/nr_hugepages ]]; then
	huge_pool=$(</proc/sys/vm/nr_hugepages)
	echo $((huge_pool + 3)) >/proc/sys/vm/nr_hugepages
	got=$(</proc/sys/vm/nr_hugepages)
	((got >= huge_pool + 3)) || die "the hugetlb pool grew to $got pages, not $((huge_pool + 3))"
	HUGE=hugetlb
elif [[ -e /sys/kernel/mm/transparent_hugepage/enabled ]]; then
	HUGE=thp
else
	HUGE=none
fi
log "huge pages: $HUGE"
# direct_io write|read FILE BYTES: O_DIRECT I/O of BYTES at offset 0 between
# the device and FILE, in one call, from a 2 MiB-aligned buffer (of huge
# pages unless HUGE=none)
direct_io() {
	python3 - "$1" "$dev" "$2" "$3" "$HUGE" <<'EOF'
import ctypes, mmap, os, sys
op, dev, path, n, kind = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
huge = 2 << 20
if kind == 'hugetlb':
    MAP_HUGETLB = 0x40000  # x86-64; Python 3.11's mmap module does not name it
    mm = mmap.mmap(-1, n, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | MAP_HUGETLB)
    off = 0
else:
    mm = mmap.mmap(-1, n + huge)
    off = -ctypes.addressof(ctypes.c_char.from_buffer(mm)) % huge
    if kind == 'thp':
        mm.madvise(mmap.MADV_HUGEPAGE, off, n)
buf = memoryview(mm)[off:off + n]
fd = os.open(dev, (os.O_WRONLY if op == 'write' else os.O_RDONLY) | os.O_DIRECT)
if op == 'write':
    buf[:] = open(path, 'rb').read()
    r = os.pwritev(fd, [buf], 0)
else:
    r = os.preadv(fd, [buf], 0)
    open(path, 'wb').write(buf)
if r != n:
    sys.exit('%s returned %d of %d bytes' % (op, r, n))
os.close(fd)
buf.release()
EOF
}

run() { # BYTES LIMIT TABLE-OPTIONS...: write and read back BYTES; no request above LIMIT
	local bytes=$1 limit=$2 pid wmax rmax
	shift 2
	dmsetup create --noudevsync "$name" --table "0 $sectors user 0 $sectors $name $*"
	dmsetup mknodes "$name"
	rm -f "$tmp/ready"
	dmu_bg "$client" serve "/dev/dm-user/$name" "$size" --ready "$tmp/ready"
	pid=$DMU_BG_PID
	wait_for_path "$tmp/ready" 10 || die "dmu-client did not start"
	head -c "$bytes" /dev/urandom >"$tmp/p"
	echo >"$trace/trace"
	echo 1 >"$trace/events/dm_user/dm_user_map/enable"
	direct_io write "$tmp/p" "$bytes"
	direct_io read "$tmp/back" "$bytes"
	echo 0 >"$trace/events/dm_user/dm_user_map/enable"
	cmp "$tmp/p" "$tmp/back" || die "${*:-default}: data read back differs"
	wmax=$(max_bytes 1) rmax=$(max_bytes 0)
	log "${*:-default}: $bytes bytes written in requests of at most $wmax bytes, read in at most $rmax"
	((wmax > 0 && rmax > 0)) || die "${*:-default}: no request traced"
	((wmax <= limit)) || die "${*:-default}: a write request of $wmax bytes, above $limit"
	((rmax <= limit)) || die "${*:-default}: a read request of $rmax bytes, above $limit"
	dmsetup remove --noudevsync "$name"
	dmu_stop "$pid" 10 || die "dmu-client failed"
}

log "default"
run $((4 << 20)) $((1 << 20))
log "max_io_len 64"
dmsetup create --noudevsync "$name" --table "0 $sectors user 0 $sectors $name 2 max_io_len 64" ||
	die "a table with max_io_len 64 was refused: $(dmesg | grep 'user:' | tail -n 1)"
assert_eq "$(dmsetup table "$name")" "0 $sectors user 0 $sectors $name 2 max_io_len 64" "table with max_io_len"
dmsetup remove --noudevsync "$name"
run $((1 << 20)) 32768 2 max_io_len 64
[[ -z $huge_pool ]] || echo "$huge_pool" >/proc/sys/vm/nr_hugepages
dmu_unload
