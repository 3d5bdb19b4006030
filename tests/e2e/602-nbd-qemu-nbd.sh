#!/bin/bash
# timeout: 900
# soak-timeout: 2400
# dmuserd --backend nbd+unix:// against a second NBD server, qemu-nbd (Debian's
# qemu-utils) on a unix socket, serving a raw file; its trace of
# nbd_co_receive_request_decode_type names each NBD command it decodes:
#  - dd + cmp, and fio --verify=crc32c at iodepth 32 with two threads (two
#    connections);
#  - an fsync of the device reaches qemu-nbd as NBD_CMD_FLUSH;
#  - the server killed (SIGKILL) under fio and started again on the same
#    socket and file within the reconnect window (the table's recovery_ms,
#    30 s here): dmuserd holds the requests, reconnects, replays them; fio
#    sees no error and verifies; the metrics count the reconnects
#    (backend.reconnects, dmuser_backend_reconnects_total);
#  - the window lowered to 1 s (dmsetup message + SIGHUP, which dmuserd reads
#    again) and the server killed for longer: a write fails with EIO within
#    the window and some slack, not a hang; dmuserd says why; the server
#    back, the device serves again, and the failed write is not there.
# Kernel-independent (dmuserd's backend; the kernel sees a file backend's
# requests): runs on 6.1 and in the debug lane.
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

dmu_kernel_independent "dmuserd's NBD backend against qemu-nbd; the kernel's side is the file backend's"
command -v qemu-nbd >/dev/null || die "qemu-nbd is not installed: Debian package qemu-utils (make deps)"
tmp=$(dmu_tmpdir)
name=dmu-test-qnbd
dev=/dev/mapper/$name
MiB=$((1024 * 1024))
ip link set lo up # the metrics listen on 127.0.0.1
dmu_load

truncate -s 64M "$tmp/disk.raw"
sock=$tmp/q.sock
uri="nbd+unix:///?socket=$sock"
# -t: stays up after a client goes; --shared: dmuserd's two connections
qemu_start() {
	rm -f "$sock"
	dmu_bg qemu-nbd -f raw -t --shared=8 --cache=writeback --socket="$sock" \
		--trace nbd_co_receive_request_decode_type "$tmp/disk.raw" 2>>"$tmp/qemu-nbd.log"
	qemu_pid=$DMU_BG_PID
	wait_for_path "$sock" 30 || die "qemu-nbd did not create its socket: $(cat "$tmp/qemu-nbd.log")"
}
qemu_kill() {
	kill -KILL "$qemu_pid"
	wait "$qemu_pid" 2>/dev/null || true
}
# NBD commands of a kind (write, flush, ...) qemu-nbd decoded
qemu_cmds() { grep -c "Decoding type: .* ($1)" "$tmp/qemu-nbd.log" || true; }
qemu_start

DMU_DAEMON_ERR=$tmp/dmuserd.err
dmu_daemon_run "$name" --backend "$uri" --threads 2 --metrics 0 --recovery-ms 30000
daemon=$DMU_DAEMON_PID
assert_eq "$(blockdev --getsize64 "$dev")" $((64 * MiB)) "size of $dev (the export's)"
grep -q "nbd: a lost server is waited for 30000 ms (the table's recovery_ms)" "$tmp/dmuserd.err" ||
	die "dmuserd did not take its reconnect window from the table: $(cat "$tmp/dmuserd.err")"
url=http://127.0.0.1:$(sed -n 's/^metrics=127\.0\.0\.1://p' "$DMU_DAEMON_READY")/metrics

log "dd + cmp: 8 MiB of random data, O_DIRECT"
head -c $((8 * MiB)) /dev/urandom >"$tmp/data"
dd if="$tmp/data" of="$dev" bs=1M oflag=direct status=none
dd if="$dev" of="$tmp/back" bs=1M count=8 iflag=direct status=none
cmp "$tmp/data" "$tmp/back" || die "the data read back differ from those written"

# shellcheck disable=SC2120 # the options are optional
fio_verify() {
	fio --name=qnbd-verify --filename="$dev" --rw=randwrite \
		--bssplit=4k/40:8k/10:16k/15:32k/10:64k/10:128k/15 --size=32M --offset=16M \
		--iodepth=32 --ioengine=libaio --direct=1 "$@" \
		--verify=crc32c --do_verify=1 --verify_fatal=1 --verify_state_save=0 \
		--output-format=json --output="$tmp/fio.json"
}
fio_ok() {
	local err written verified wms rms
	read -r err written verified wms rms <<<"$(jq -r '.jobs[0] | "\(.error) \(.write.io_bytes) \(.read.io_bytes) \(.write.runtime) \(.read.runtime)"' "$tmp/fio.json")"
	log "$1: writes $wms ms, verifying reads $rms ms"
	assert_eq "$err" 0 "fio error ($1)"
	((written > 0 && verified == written)) || die "$1: verified $verified bytes of $written written"
}
log "fio verify, iodepth 32"
fio_verify || die "fio verify failed: $(cat "$tmp/fio.json")"
fio_ok "fio verify"

log "flush at the server"
flush0=$(qemu_cmds flush)
python3 -c 'import os, sys; fd = os.open(sys.argv[1], os.O_RDWR); os.fsync(fd)' "$dev"
(($(qemu_cmds flush) > flush0)) || die "an fsync of $dev sent no FLUSH: $(tail -5 "$tmp/qemu-nbd.log")"

log "qemu-nbd killed under fio and started again within the window"
# Paced (fio paces by its smallest block, 4 KiB: about 3 MB/s, 10 s of writes),
# so that the kill, 50 writes in, and the restart fall inside its writes; it
# had been 200 (41 s of writes, most of them after the restart, idle).
dmu_bg fio_verify --rate_iops=,800
fio_pid=$DMU_BG_PID
writes=$(qemu_cmds write)
more_writes() { (($(qemu_cmds write) > writes + 50)); }
wait_until 60 more_writes || die "fio's writes do not reach qemu-nbd"
qemu_kill
lost() { grep -q "lost (.*): holding .* reconnecting for up to 30000 ms" "$tmp/dmuserd.err"; }
wait_until 30 lost || die "dmuserd did not say it holds requests: $(cat "$tmp/dmuserd.err")"
qemu_start
rc=0
dmu_wait "$fio_pid" 300 || rc=$?
assert_eq "$rc" 0 "fio across the server's restart (status; 124: still running after 300 s): $(cat "$tmp/fio.json")"
fio_ok "fio across the restart"
grep -q "back after .* replaying" "$tmp/dmuserd.err" ||
	die "dmuserd did not say it reconnected: $(cat "$tmp/dmuserd.err")"
json=$(curl -sf "$url") || die "GET $url failed"
reconnects=$(jq .backend.reconnects <<<"$json")
log "metrics after the restart: $(jq -c .backend <<<"$json")"
((reconnects >= 1)) || die "backend.reconnects is $reconnects after a reconnect"
assert_eq "$(jq .backend.requests_failed <<<"$json")" 0 "backend.requests_failed"
prom=$(curl -sf "$url?format=prometheus") || die "GET $url?format=prometheus failed"
grep -q "^dmuser_backend_reconnects_total $reconnects$" <<<"$prom" ||
	die "dmuser_backend_reconnects_total is not $reconnects: $(grep dmuser_backend <<<"$prom")"
read -r _ _ _ _ _ _ _ errors _ <<<"$(dmsetup status "$name")"
assert_eq "$errors" 0 "failed requests at the target"

log "the window lowered to 1 s; the server away longer"
dmsetup message "$name" 0 recovery_ms 1000
kill -HUP "$daemon"
window() { grep -q "nbd: a lost server is waited for 1000 ms" "$tmp/dmuserd.err"; }
wait_until 30 window || die "dmuserd did not take the new window at SIGHUP: $(cat "$tmp/dmuserd.err")"
dd if="$dev" of="$tmp/before" bs=64k count=1 skip=896 iflag=direct status=none
qemu_kill
start=$SECONDS
rc=0
dd if=/dev/urandom of="$dev" bs=64k count=1 seek=896 oflag=direct status=none 2>"$tmp/dd.err" || rc=$?
took=$((SECONDS - start))
log "a write with the server away: status $rc after $took s ($(cat "$tmp/dd.err"))"
((rc != 0)) || die "the write succeeded with the server away"
((took <= 10)) || die "the write failed after $took s, not within the 1 s window and some slack"
grep -q "not back within 1000 ms" "$tmp/dmuserd.err" ||
	die "dmuserd did not say why it failed the requests: $(cat "$tmp/dmuserd.err")"
dmu_running "$daemon" || die "dmuserd exited when the server stayed away"
qemu_start
connected() { (($(curl -sf "$url" | jq .backend.disconnected) == 0)); }
wait_until 30 connected || die "dmuserd did not reconnect once the server was back: $(curl -sf "$url" | jq -c .backend)"
dd if="$dev" of="$tmp/after" bs=64k count=1 skip=896 iflag=direct status=none
cmp "$tmp/before" "$tmp/after" || die "the write that failed is there after all"
dd if="$tmp/data" of="$dev" bs=64k count=1 seek=896 oflag=direct status=none ||
	die "a write after the server came back failed"

dmu_daemon_stop "$daemon"
! dmu_dm_exists "$name" || die "$name still exists after dmuserd stopped"
dmu_unload
