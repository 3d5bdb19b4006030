#!/bin/bash
# timeout: 900
# soak-timeout: 2400
# dmuserd --backend nbd+unix:// against an nbdkit memory server on a unix
# socket inside the guest (nbdkit's log filter records each NBD command):
#  - dd of random data onto /dev/mapper with O_DIRECT, read back, cmp;
#  - fio --verify=crc32c at iodepth 32 with two worker threads (two NBD
#    connections, 32 requests in flight on each);
#  - O_DSYNC writes reach the server as writes with FUA, an fsync of the
#    device as FLUSH, blkdiscard as TRIM;
#  - blkdiscard -z (BLKZEROOUT) reaches the server as plain writes covering
#    the range, and no NBD_CMD_WRITE_ZEROES: dm-user does not advertise
#    write-zeroes (write_zeroes_max_bytes is 0, module/README.md: dm cannot for
#    a target without an underlying device), so the block layer writes pages
#    of zeroes instead.  The daemon's WRITE_ZEROES mapping (NO_HOLE for
#    NOUNMAP) is covered by tests/unit/test_backend_nbd.c, not here;
#  - dmuserd stops on SIGTERM while the server still serves (exit 0, device
#    removed, nbdkit sees the connections close): nbdkit does not exit on
#    SIGTERM while a client is connected, so the client must go first;
#  - the metrics say backend "nbd" (JSON device.backend, dmuser_info{backend});
#  - the server killed under I/O: the writer gets EIO within seconds, not a
#    hang; dmuserd says the connection was lost and still stops on SIGTERM,
#    removing the device.
# Kernel-independent (the kernel sees the same requests as with a file; what
# differs is dmuserd's backend, in userspace): among Debian's stock kernels it
# runs on 6.12 (make check splits these tests between its two guests by
# time), and on every kernel of the debug lane.
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

dmu_kernel_independent --on 6.12 "dmuserd's NBD backend; the kernel's side is the file backend's"
command -v nbdkit >/dev/null || skip "nbdkit is not installed (Debian package nbdkit)"
tmp=$(dmu_tmpdir)
size=$(dmu_scale 64M 512M)
name=dmu-test-nbd
dev=/dev/mapper/$name
MiB=$((1024 * 1024))
ip link set lo up # the metrics listen on 127.0.0.1
dmu_load

# ---- the server ------------------------------------------------------------
dmu_bg nbdkit -f -U "$tmp/nbd.sock" --filter=log memory size="$size" logfile="$tmp/nbd.log"
nbd_pid=$DMU_BG_PID
wait_for_path "$tmp/nbd.sock" 30 || die "nbdkit did not create its socket"
uri="nbd+unix:///?socket=$tmp/nbd.sock"

# NBD commands of a kind (Write, Flush, Trim, Zero) in the log, with every word given
nbd_cmds() {
	local kind=$1
	shift
	awk -v k=" $kind id=" -v w="$*" '
		BEGIN { n = split(w, ws, " ") }
		index($0, k) && !index($0, "return=") {
			for (i = 1; i <= n; i++) if (!index($0, ws[i])) next
			c++
		}
		END { print c + 0 }' "$tmp/nbd.log"
}

# Bytes that NBD Write commands after log line FROM wrote inside [LO, LO+LEN)
# (a write reaching outside the range does not count)
nbd_written_in() {
	local from=$1 lo=$2 len=$3 off cnt sum=0
	while read -r off cnt; do
		if ((off >= lo && off + cnt <= lo + len)); then
			sum=$((sum + cnt))
		fi
	done < <(awk -v n="$from" 'NR > n && index($0, " Write id=") {
		o = c = ""
		for (i = 1; i <= NF; i++) {
			if ($i ~ /^offset=/) o = substr($i, 8)
			if ($i ~ /^count=/) c = substr($i, 7)
		}
		print o, c }' "$tmp/nbd.log")
	echo "$sum"
}
nbd_log_tail() { printf '\nlast lines of nbdkit log:\n'; tail -n 12 "$tmp/nbd.log"; }

# ---- dmuserd ---------------------------------------------------------------
log "dmuserd --backend $uri, 2 threads"
DMU_DAEMON_ERR=$tmp/dmuserd.err
daemon_start() {
	: >"$DMU_DAEMON_ERR"
	dmu_daemon_run "$name" --backend "$uri" --threads 2 --metrics 0
	daemon=$DMU_DAEMON_PID
}
daemon_start
[[ -b $dev ]] || die "$dev is not a block device"
assert_eq "$(blockdev --getsize64 "$dev")" "$((${size%M} * MiB))" "size of $dev (the export's)"
url=http://127.0.0.1:$(sed -n 's/^metrics=127\.0\.0\.1://p' "$DMU_DAEMON_READY")/metrics

log "dd + cmp: 8 MiB of random data, O_DIRECT"
head -c $((8 * MiB)) /dev/urandom >"$tmp/data"
dd if="$tmp/data" of="$dev" bs=1M oflag=direct status=none
dd if="$dev" of="$tmp/back" bs=1M count=8 iflag=direct status=none
cmp "$tmp/data" "$tmp/back" || die "the data read back differ from those written"

log "fio verify, iodepth 32"
fio --name=nbd-verify --filename="$dev" --rw=randwrite \
	--bssplit=4k/40:8k/10:16k/15:32k/10:64k/10:128k/15 --size="$size" \
	--iodepth=32 --ioengine=libaio --direct=1 \
	--verify=crc32c --do_verify=1 --verify_fatal=1 --verify_state_save=0 \
	--output-format=json --output="$tmp/fio.json" ||
	die "fio verify failed: $(cat "$tmp/fio.json")"
read -r err written verified <<<"$(jq -r '.jobs[0] | "\(.error) \(.write.io_bytes) \(.read.io_bytes)"' "$tmp/fio.json")"
assert_eq "$err" 0 "fio error"
((written > 0 && verified == written)) || die "verified $verified bytes of $written written"

log "FUA, flush, discard, write-zeroes at the server"
fua0=$(nbd_cmds Write fua=1)
dd if="$tmp/data" of="$dev" bs=4k count=16 oflag=direct,dsync status=none
fua=$(($(nbd_cmds Write fua=1) - fua0))
log "writes with FUA at the server: $fua"
((fua >= 16)) || die "16 O_DSYNC writes made $fua FUA writes at the server"
flush0=$(nbd_cmds Flush)
python3 -c 'import os, sys; fd = os.open(sys.argv[1], os.O_RDWR); os.fsync(fd)' "$dev"
(($(nbd_cmds Flush) > flush0)) || die "an fsync of $dev sent no FLUSH"
blkdiscard -o "$MiB" -l $((4 * MiB)) "$dev"
(($(nbd_cmds Trim) >= 1)) || die "blkdiscard sent no TRIM: $(tail -5 "$tmp/nbd.log")"
queue=/sys/dev/block/$((16#$(stat -c %t "$dev")))":"$((16#$(stat -c %T "$dev")))/queue
assert_eq "$(cat "$queue/write_zeroes_max_bytes")" 0 \
	"$queue/write_zeroes_max_bytes (dm-user does not advertise write-zeroes)"
zero0=$(nbd_cmds Zero)
line0=$(wc -l <"$tmp/nbd.log")
blkdiscard -z -o $((8 * MiB)) -l "$MiB" "$dev"
zw=$(nbd_written_in "$line0" $((8 * MiB)) "$MiB")
log "blkdiscard -z of 1 MiB: $zw bytes of Write in its range at the server"
assert_eq "$zw" "$MiB" "bytes written at the server in the range blkdiscard -z zeroed$(nbd_log_tail)"
assert_eq "$(nbd_cmds Zero)" "$zero0" "WRITE_ZEROES commands after blkdiscard -z (write-zeroes is not advertised)$(nbd_log_tail)"
cmp -n "$MiB" <(dd if="$dev" bs=1M skip=8 count=1 iflag=direct status=none) /dev/zero ||
	die "the range blkdiscard -z zeroed does not read back as zeroes"

log "metrics: the backend label"
assert_eq "$(curl -sf "$url" | jq -r .device.backend)" nbd "JSON device.backend"
# read whole, then matched: with pipefail, "curl | grep -q" fails whenever grep
# exits at its match before curl has written the rest (SIGPIPE)
prom=$(curl -sf "$url?format=prometheus") || die "GET $url?format=prometheus failed"
grep -q "^dmuser_info{.*backend=\"nbd\"} 1$" <<<"$prom" ||
	die "no dmuser_info{backend=\"nbd\"}: $(grep dmuser_info <<<"$prom")"

log "dmuserd stops on SIGTERM while the server serves"
dmu_daemon_stop "$daemon"
! dmu_dm_exists "$name" || die "$name still exists after dmuserd stopped"
nbd_all_closed() {
	local conn disc
	conn=$(grep -c ' Connect export=' "$tmp/nbd.log" || true)
	disc=$(grep -c ' Disconnect ' "$tmp/nbd.log" || true)
	((conn >= 2 && disc == conn))
}
wait_until 10 nbd_all_closed ||
	die "nbdkit still has dmuserd's connections open after it stopped$(nbd_log_tail)"
daemon_start

log "the server killed under I/O"
dmu_bg dd if=/dev/zero of="$dev" bs=64k count=100000 oflag=direct status=none
writer=$DMU_BG_PID
wait_until 30 grep -q ' Write id=' "$tmp/nbd.log" || die "no write reached the server"
kill -KILL "$nbd_pid"
rc=0
dmu_wait "$writer" 60 || rc=$?
((rc != 124)) || die "the writer still runs 60 s after the server was killed (a hang)"
((rc != 0)) || die "the writer succeeded although the server was killed"
log "the writer ended with status $rc"
grep -q "nbd: connection [0-9]* to $uri lost" "$tmp/dmuserd.err" ||
	die "dmuserd did not say the connection was lost: $(cat "$tmp/dmuserd.err")"
dmu_running "$daemon" || die "dmuserd exited when the server went"
dmu_daemon_stop "$daemon"
! dmu_dm_exists "$name" || die "$name still exists after dmuserd stopped"

dmu_unload
