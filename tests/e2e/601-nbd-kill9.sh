#!/bin/bash
# timeout: 900
# soak-timeout: 3600
# dmuserd with the NBD backend killed with SIGKILL under I/O, 3 times (20 in
# `make soak`), and each time a new dmuserd --attach to the same device and
# the same export, within the target's recovery window: no acknowledged
# write is lost.
#  - the server: qemu-nbd (Debian's qemu-utils) on a unix socket, serving a
#    raw file.  Before each kill the test stops it (SIGSTOP), so that
#    dmuserd's requests stay in flight, waits until dmuserd's metrics show
#    requests read and not answered, kills dmuserd, and lets the server go on
#    (SIGCONT: it answers a closed connection).  Every kill must requeue
#    requests.  Not nbdkit: nbdkit 1.32 (bookworm) aborts ("raw_send_socket:
#    Assertion `sock >= 0' failed") when a client dies with several requests
#    in flight, as here (seen with SIGSTOP and with the delay filter holding
#    the writes);
#  - the writes of known content: 64 KiB chunks, written over and over with
#    other random bytes each round, one write at a time with O_DIRECT|O_DSYNC,
#    each logged once acknowledged, until the kills are done; afterwards each
#    chunk reads back as its last acknowledged write, through the device and
#    in the server's file;
#  - meanwhile fio --verify=crc32c writes (paced: 50 IOPS of its smallest
#    block, 4 KiB, so 200 KiB/s: 25 s for 5 MiB, times DMU_TIMEOUT_SCALE on the
#    debug lane's slower kernels; the kills take about 13 s on a stock one) and
#    verifies another part of the device: it is still writing when the kills
#    are done, then no I/O error, no verify error;
#  - the target counts no failed request.
# Kernel-independent (the kernel's side of a daemon killed and replaced is
# 200-daemon-kill9's, on every kernel): runs on 6.12 and in the debug lane.
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

dmu_kernel_independent --on 6.12 "dmuserd's NBD backend under kill -9; the kernel's side is 200's"
command -v qemu-nbd >/dev/null || die "qemu-nbd is not installed: Debian package qemu-utils (make deps)"
tmp=$(dmu_tmpdir)
name=dmu-test-nbdkill
dev=/dev/mapper/$name
kills=$(dmu_scale 3 20)
MiB=$((1024 * 1024))
chunk=$((64 * 1024))
chunks=64 # 4 MiB at 32 MiB, after fio's 5 MiB (15 MiB on the debug lane)
ip link set lo up # the metrics listen on 127.0.0.1
dmu_load

truncate -s 64M "$tmp/disk.raw"
# -t: stays up after a client goes; --shared: two dmuserds' connections at once
dmu_bg qemu-nbd -f raw -t --shared=8 --socket="$tmp/nbd.sock" "$tmp/disk.raw"
nbd_pid=$DMU_BG_PID
wait_for_path "$tmp/nbd.sock" 30 || die "qemu-nbd did not create its socket"
uri="nbd+unix:///?socket=$tmp/nbd.sock"

DMU_DAEMON_ERR=$tmp/dmuserd.err
daemon_start() { dmu_daemon_run "$name" --backend "$uri" --threads 2 --metrics 0 "$@"; }
daemon_start --recovery-ms 30000
assert_eq "$(blockdev --getsize64 "$dev")" $((64 * MiB)) "size of $dev"

field() { dmsetup status "$name" | awk -v n="$1" '{ print $n }'; }
# requests the running dmuserd read and has not answered (its JSON metrics)
held() {
	local port
	port=$(sed -n 's/^metrics=127\.0\.0\.1://p' "$DMU_DAEMON_READY")
	(($(curl -sf "http://127.0.0.1:$port/metrics" | jq '.in_flight') > 0))
}

head -c $(((chunks + 1) * chunk)) /dev/urandom >"$tmp/data"
: >"$tmp/acked"
# the writes of known chunks, logged once acknowledged (tests/e2e/acked.py)
dmu_bg "$DMU_ROOT/tests/e2e/acked.py" write "$dev" "$tmp/data" "$tmp/acked" "$tmp/stop" "$chunks" "$chunk" $((32 * MiB))
writer_pid=$DMU_BG_PID
dmu_bg fio --name=nbd-kill9 --filename="$dev" --rw=randwrite --bssplit=4k/50:32k/30:128k/20 \
	--size=$((5 * ${DMU_TIMEOUT_SCALE:-1}))M --iodepth=16 --ioengine=libaio --direct=1 --rate_iops=,50 --verify=crc32c \
	--do_verify=1 --verify_fatal=1 --verify_state_save=0 --output="$tmp/fio.out"
fio_pid=$DMU_BG_PID

for ((i = 1; i <= kills; i++)); do
	before=$(field 10)
	kill -STOP "$nbd_pid"
	wait_until 60 held || die "kill $i: dmuserd holds no request: $(dmsetup status "$name")"
	kill -KILL "$DMU_DAEMON_PID"
	wait "$DMU_DAEMON_PID" 2>/dev/null || true
	kill -CONT "$nbd_pid"
	requeued=$(($(field 10) - before))
	log "kill $i: requeued $requeued requests; $(wc -l <"$tmp/acked") chunks acknowledged"
	((requeued > 0)) || die "kill $i: no request was requeued: $(dmsetup status "$name")"
	daemon_start --attach
done
dmu_running "$fio_pid" || die "fio ended before the kills were done: they did not all land in its writes"
touch "$tmp/stop"
log "kills done; waiting for the writer and fio"
rc=0
dmu_wait "$writer_pid" 300 || rc=$?
assert_eq "$rc" 0 "the writer of known chunks (status; 124: still running after 300 s)"
rc=0
dmu_wait "$fio_pid" 300 || rc=$?
assert_eq "$rc" 0 "fio (status; 124: still running after 300 s): $(cat "$tmp/fio.out")"
grep -q "err= 0" "$tmp/fio.out" || die "fio reported errors: $(cat "$tmp/fio.out")"
log "fio: $(grep -E '^ *(READ|WRITE):' "$tmp/fio.out" | tr -s ' ' | tr '\n' ';')"

acked=$(wc -l <"$tmp/acked")
((acked >= chunks)) || die "only $acked writes of known chunks acknowledged, fewer than the $chunks chunks"
log "checking the last of $acked acknowledged writes to each of the $chunks chunks"
dd if="$dev" of="$tmp/back" bs="$MiB" skip=32 count=$((chunks / 16)) iflag=direct status=none
# and in the server's file (qemu-nbd writes it with pwrite: the page cache has it)
dd if="$tmp/disk.raw" of="$tmp/back.raw" bs="$MiB" skip=32 count=$((chunks / 16)) status=none
"$DMU_ROOT/tests/e2e/acked.py" check "$tmp/data" "$tmp/acked" "$chunks" "$chunk" "$tmp/back" "$tmp/back.raw" ||
	die "acknowledged writes lost (back: through the device; back.raw: the server's file)"

status=$(dmsetup status "$name")
log "status: $status"
read -r _ _ _ _ _ _ _ errors _ <<<"$status"
assert_eq "$errors" 0 "failed requests"
dmu_daemon_stop
# An --attach daemon leaves the device in place.
dmsetup remove --noudevsync "$name"
dmu_unload
