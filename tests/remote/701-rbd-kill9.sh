#!/bin/bash
# timeout: 900
# soak-timeout: 3600
# dmuserd with the RBD backend killed with SIGKILL under I/O, 3 times (20 in
# `make soak`), and each time a new dmuserd --attach to the same device and
# the same image, within the target's recovery window: no acknowledged write
# is lost.  As 601 does for NBD:
#  - the cluster: tests/ceph/cluster.sh in the guest; an image of 64 MiB with
#    the default features, so the new dmuserd must take the image's
#    exclusive lock from the dead one (librbd breaks it: the dead client
#    no longer answers);
#  - before each kill the test stops the OSD (SIGSTOP), so that dmuserd's
#    requests stay in flight, waits until dmuserd's metrics show requests
#    read and not answered, kills dmuserd, and lets the OSD go on (SIGCONT).
#    Every kill must requeue requests;
#  - the writes of known content (tests/e2e/acked.py): 64 KiB chunks, one
#    write at a time with O_DIRECT|O_DSYNC, each logged once acknowledged,
#    until the kills are done and each chunk was written;
#    afterwards each chunk reads back as its last acknowledged write, through
#    the device and in the image (rbd export);
#  - meanwhile fio --verify=crc32c writes (paced) another part of the device:
#    it still runs when the kills are done, then no I/O error, no verify
#    error;
#  - the target counts no failed request.
# The remote lane (make check-remote, on 6.12).
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/../e2e/lib.sh"
# shellcheck source=tests/remote/ceph.sh
. "$(dirname "$0")/ceph.sh"

command -v ceph-mon >/dev/null || die "ceph-mon is not installed: Debian packages ceph-mon ceph-osd ceph-common (make deps)"
tmp=$(dmu_tmpdir)
name=dmu-test-rbdkill
dev=/dev/mapper/$name
kills=$(dmu_scale 3 20)
MiB=$((1024 * 1024))
chunk=$((64 * 1024))
chunks=64 # 4 MiB at 32 MiB, after fio's 5 MiB (15 MiB on the debug lane)
ip link set lo up # Ceph and the metrics are on 127.0.0.1
dmu_load
ceph_start "$tmp/ceph"
rbd -c "$ceph_conf" create --size 64M rbd/img || die "rbd create failed"
osd=$(cat "$ceph_dir/run/osd.0.pid")
uri="rbd:rbd/img?conf=$ceph_conf"

DMU_DAEMON_ERR=$tmp/dmuserd.err
daemon_start() { dmu_daemon_run "$name" --backend "$uri" --threads 2 --metrics 0 "$@"; }
daemon_start --recovery-ms 60000
assert_eq "$(blockdev --getsize64 "$dev")" $((64 * MiB)) "size of $dev"

field() { dmsetup status "$name" | awk -v n="$1" '{ print $n }'; }
held() {
	local port
	port=$(sed -n 's/^metrics=127\.0\.0\.1://p' "$DMU_DAEMON_READY")
	(($(curl -sf "http://127.0.0.1:$port/metrics" | jq '.in_flight') > 0))
}

head -c $(((chunks + 1) * chunk)) /dev/urandom >"$tmp/data"
: >"$tmp/acked"
dmu_bg "$DMU_ROOT/tests/e2e/acked.py" write "$dev" "$tmp/data" "$tmp/acked" "$tmp/stop" "$chunks" "$chunk" $((32 * MiB))
writer_pid=$DMU_BG_PID
dmu_bg fio --name=rbd-kill9 --filename="$dev" --rw=randwrite --bssplit=4k/50:32k/30:128k/20 \
	--size=$((5 * ${DMU_TIMEOUT_SCALE:-1}))M --iodepth=16 --ioengine=libaio --direct=1 --rate_iops=,50 --verify=crc32c \
	--do_verify=1 --verify_fatal=1 --verify_state_save=0 --output="$tmp/fio.out"
fio_pid=$DMU_BG_PID

for ((i = 1; i <= kills; i++)); do
	before=$(field 10)
	kill -STOP "$osd"
	wait_until 60 held || { kill -CONT "$osd"; die "kill $i: dmuserd holds no request: $(dmsetup status "$name")"; }
	kill -KILL "$DMU_DAEMON_PID"
	wait "$DMU_DAEMON_PID" 2>/dev/null || true
	kill -CONT "$osd"
	requeued=$(($(field 10) - before))
	log "kill $i: requeued $requeued requests; $(wc -l <"$tmp/acked") chunks acknowledged"
	((requeued > 0)) || die "kill $i: no request was requeued: $(dmsetup status "$name")"
	t0=$SECONDS
	acked0=$(wc -l <"$tmp/acked")
	daemon_start --attach
	acked_more() { (($(wc -l <"$tmp/acked") > acked0)); }
	wait_until 120 acked_more || die "kill $i: no write acknowledged within 120 s of the new dmuserd: $(cat "$DMU_DAEMON_ERR")"
	log "kill $i: writes acknowledged again $((SECONDS - t0)) s after the new dmuserd started"
done
dmu_running "$fio_pid" || die "fio ended before the kills were done: they did not all land in its writes"
# every chunk written at least once (each write is a write and a flush
# at the cluster: fewer than 64 may be done by now)
all_chunks() { (($(wc -l <"$tmp/acked") >= chunks)); }
wait_until 300 all_chunks || die "only $(wc -l <"$tmp/acked") writes of known chunks acknowledged in 300 s, fewer than the $chunks chunks"
touch "$tmp/stop"
log "kills done, every chunk written; waiting for the writer and fio"
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
status=$(dmsetup status "$name")
log "status: $status"
read -r _ _ _ _ _ _ _ errors _ <<<"$status"
assert_eq "$errors" 0 "failed requests"
dmu_daemon_stop
# An --attach daemon leaves the device in place.
dmsetup remove --noudevsync "$name"
rbd -c "$ceph_conf" export rbd/img "$tmp/img.raw" >/dev/null 2>&1 || die "rbd export failed"
dd if="$tmp/img.raw" of="$tmp/back.raw" bs="$MiB" skip=32 count=$((chunks / 16)) status=none
"$DMU_ROOT/tests/e2e/acked.py" check "$tmp/data" "$tmp/acked" "$chunks" "$chunk" "$tmp/back" "$tmp/back.raw" ||
	die "acknowledged writes lost (back: through the device; back.raw: the image, rbd export)"
dmu_unload
