#!/bin/bash
# timeout: 900
# dmuserd --backend rbd: against a one-node Ceph cluster inside the guest
# (tests/ceph/cluster.sh: one mon, one memstore OSD, on 127.0.0.1), an image
# of 64 MiB with the default features (exclusive-lock among them), two
# worker threads:
#  - the device has the image's size; dd of random data + cmp, O_DIRECT;
#  - fio --verify=crc32c at iodepth 32 with mixed block sizes;
#  - mkfs.ext4, a file tree copied in, fsck.ext4 -fn clean, remounted, the
#    tree compares equal;
#  - flush and FUA reach librbd (RBD has no FUA: dmuserd writes, then calls
#    rbd_aio_flush): the image's librbd counters in dmuserd's admin socket
#    count two flushes per O_DSYNC write (its FUA, and its fsync's flush) and
#    one for an fsync, and the OSD counts
#    the writes (osd.op_w); blkdiscard is a librbd discard and reads back as
#    zeroes;
#  - the metrics say backend "rbd" (JSON device.backend, dmuser_info);
#  - the OSD stopped (SIGSTOP) for 5 s under fio, less than the client's
#    rados_osd_op_timeout (10 s here, from the client's conf; 30 s is
#    dmuserd's default): librados holds the requests, none is started
#    again; then for 15 s, more than the timeout and less than the reconnect
#    window (the table's recovery_ms, 60 s): requests time out and dmuserd
#    starts them again (backend.requests_replayed > 0, said once); fio sees
#    no error and verifies, the target counts no failed request;
#  - dmuserd stops on SIGTERM (exit 0, device removed, no watcher left on
#    the image);
#  - the window set to 0 (dmsetup message recovery_ms 0, SIGHUP), the OSD
#    killed (SIGKILL) under writes: the writer gets an error within the
#    timeout and some slack, not a hang; dmuserd says the cluster did not
#    answer, stays up, and still stops on SIGTERM, removing the device.
#    Last: memstore keeps the data in the OSD's memory, so it is gone.
# The stalls rely on the cluster's read lease of 80 s (tests/ceph/cluster.sh),
# which the test checks: with Ceph's default of 16 s, the OSD stopped for
# 15 s at times came back with a PG "laggy" for good (Ceph 16.2; every op to
# it "waiting for readable" at the OSD), and librbd's write timed out every
# 10 s until dmuserd's window ended and it answered EIO, as designed (CI
# twice; 4 times in 16 stalls repeated in one guest).  On a failure the
# message gives fio's error, dmuserd's counters and log, and where the OSD's
# ops wait.
# The remote lane (make check-remote, on 6.12): the kernel sees the file
# backend's requests; what differs is dmuserd's backend.
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/../e2e/lib.sh"
# shellcheck source=tests/remote/ceph.sh
. "$(dirname "$0")/ceph.sh"

command -v ceph-mon >/dev/null || die "ceph-mon is not installed: Debian packages ceph-mon ceph-osd ceph-common (make deps)"
tmp=$(dmu_tmpdir)
name=dmu-test-rbd
dev=/dev/mapper/$name
MiB=$((1024 * 1024))
ip link set lo up # Ceph and the metrics are on 127.0.0.1
dmu_load
ceph_start "$tmp/ceph"
rbd -c "$ceph_conf" create --size 64M rbd/img || die "rbd create failed"
# the client's conf: the cluster's, and a shorter op timeout than dmuserd's
# default (which it sets only when the conf sets none)
{ cat "$ceph_conf"; printf '[client]\nrados osd op timeout = 10\n'; } >"$tmp/client.conf"
uri="rbd:rbd/img?conf=$tmp/client.conf"

DMU_DAEMON_ERR=$tmp/dmuserd.err
daemon_start() {
	: >"$DMU_DAEMON_ERR"
	dmu_daemon_run "$name" --backend "$uri" --threads 2 --metrics 0 --recovery-ms 60000
	daemon=$DMU_DAEMON_PID
	url=http://127.0.0.1:$(sed -n 's/^metrics=127\.0\.0\.1://p' "$DMU_DAEMON_READY")/metrics
}
log "dmuserd --backend $uri, 2 threads"
daemon_start
[[ -b $dev ]] || die "$dev is not a block device"
assert_eq "$(blockdev --getsize64 "$dev")" $((64 * MiB)) "size of $dev (the image's)"
grep -q "requests time out after 10 s" "$DMU_DAEMON_ERR" ||
	die "dmuserd did not take rados_osd_op_timeout from the conf: $(cat "$DMU_DAEMON_ERR")"

log "dd + cmp: 8 MiB of random data, O_DIRECT"
head -c $((8 * MiB)) /dev/urandom >"$tmp/data"
dd if="$tmp/data" of="$dev" bs=1M oflag=direct status=none
dd if="$dev" of="$tmp/back" bs=1M count=8 iflag=direct status=none
cmp "$tmp/data" "$tmp/back" || die "the data read back differ from those written"

log "fio verify, iodepth 32"
# fio_verify SIZE [FIO ARGS...]
fio_verify() {
	local size=$1
	shift
	fio --name=rbd-verify --filename="$dev" --rw=randwrite \
		--bssplit=4k/40:8k/10:16k/15:32k/10:64k/10:128k/15 --size="$size" \
		--iodepth=32 --ioengine=libaio --direct=1 "$@" \
		--verify=crc32c --do_verify=1 --verify_fatal=1 --verify_state_save=0 \
		--output-format=json --output="$tmp/fio.json"
}
fio_checked() {
	local err written verified
	read -r err written verified <<<"$(jq -r '.jobs[0] | "\(.error) \(.write.io_bytes) \(.read.io_bytes)"' "$tmp/fio.json")"
	assert_eq "$err" 0 "fio error"
	((written > 0 && verified == written)) || die "fio verified $verified bytes of $written written"
}
fio_verify 32M || die "fio verify failed: $(cat "$tmp/fio.json")"
fio_checked

log "ext4: mkfs, a tree copied in, fsck, remount, compare"
mkdir "$tmp/ext4"
dmu_ext4_round_trip "$dev" "$tmp/ext4"

log "FUA, flush and discard at librbd and the OSD"
flush0=$(ceph_rbd_counter "$daemon" flush)
wr0=$(ceph_rbd_counter "$daemon" wr)
opw0=$(ceph_perf osd.0 .osd.op_w)
dd if="$tmp/data" of="$dev" bs=4k count=16 oflag=direct,dsync status=none
flushes=$(($(ceph_rbd_counter "$daemon" flush) - flush0))
writes=$(($(ceph_rbd_counter "$daemon" wr) - wr0))
opw=$(($(ceph_perf osd.0 .osd.op_w) - opw0))
log "16 O_DSYNC writes: librbd counted $writes writes and $flushes flushes, the OSD $opw writes"
((writes == 16)) || die "16 O_DSYNC writes of 4 KiB made $writes librbd writes"
# each is a write with FUA (a write, then a flush, at librbd) and then the
# flush of the write's fsync (blkdev_write_iter's generic_write_sync): 2
((flushes >= 32)) || die "16 O_DSYNC writes made $flushes librbd flushes, not 2 each (FUA is a write, then a flush; then the fsync's)"
((opw >= 16)) || die "16 O_DSYNC writes made $opw writes at the OSD"
flush0=$(ceph_rbd_counter "$daemon" flush)
python3 -c 'import os, sys; fd = os.open(sys.argv[1], os.O_RDWR); os.fsync(fd)' "$dev"
(($(ceph_rbd_counter "$daemon" flush) > flush0)) || die "an fsync of $dev made no librbd flush"
discard0=$(ceph_rbd_counter "$daemon" discard)
blkdiscard -o "$MiB" -l $((4 * MiB)) "$dev"
(($(ceph_rbd_counter "$daemon" discard) > discard0)) || die "blkdiscard made no librbd discard"
cmp -n $((4 * MiB)) <(dd if="$dev" bs=1M skip=1 count=4 iflag=direct status=none) /dev/zero ||
	die "the discarded range does not read back as zeroes"

log "metrics: the backend label"
assert_eq "$(curl -sf "$url" | jq -r .device.backend)" rbd "JSON device.backend"
prom=$(curl -sf "$url?format=prometheus") || die "GET $url?format=prometheus failed"
grep -q "^dmuser_info{.*backend=\"rbd\"} 1$" <<<"$prom" ||
	die "no dmuser_info{backend=\"rbd\"}: $(grep dmuser_info <<<"$prom")"

log "the OSD stopped for 5 s under fio (the op timeout is 10 s), then 15 s (the window is 60 s)"
osd=$(cat "$ceph_dir/run/osd.0.pid")
# the PGs' read lease outlasts the stalls (see above): 4 x 20 s
osd_conf() { ceph --admin-daemon "$(_ceph_asok osd.0)" config get "$1" | jq -r ".$1"; }
lease=$(jq -n "$(osd_conf osd_pool_default_read_lease_ratio) * $(osd_conf osd_heartbeat_grace)")
# (Ceph's default, 16 s, is renewed only every few seconds: a 15-s stall can
# outlast what is left of it)
log "the PGs' read lease: $lease s"
((${lease%.*} >= 60)) || die "the OSD's read lease is $lease s, not the 80 s of tests/ceph/cluster.sh: a 15-s stall can outlast it"
# where the OSD's ops wait, for a failure's message: {"waiting for readable": 12}
osd_ops() { ceph --admin-daemon "$(_ceph_asok osd.0)" dump_ops_in_flight | jq -c '[.ops[].type_data.flag_point] | group_by(.) | map({(.[0]): length}) | add'; }
held() { (($(curl -sf "$url" | jq '.in_flight') > 0)); }
dmu_bg fio_verify 16M --rate_iops=,50
fio_pid=$DMU_BG_PID
opw0=$(ceph_perf osd.0 .osd.op_w)
osd_wrote() { (($(ceph_perf osd.0 .osd.op_w) > opw0)); }
wait_until 60 osd_wrote || die "fio's writes do not reach the OSD"
kill -STOP "$osd"
wait_until 30 held || { kill -CONT "$osd"; die "dmuserd holds no request with the OSD stopped"; }
sleep 5 # the stall under test, not a wait for an event
dmu_running "$fio_pid" || { kill -CONT "$osd"; die "fio ended while the OSD was stopped"; }
kill -CONT "$osd"
assert_eq "$(curl -sf "$url" | jq .backend.requests_replayed)" 0 "requests started again after a stall shorter than the op timeout"
# longer than the op timeout: requests time out and are started again
opw0=$(ceph_perf osd.0 .osd.op_w)
wait_until 60 osd_wrote || { dmu_running "$fio_pid" || die "fio ended before the second stall"; die "fio's writes do not reach the OSD"; }
kill -STOP "$osd"
wait_until 30 held || { kill -CONT "$osd"; die "dmuserd holds no request with the OSD stopped"; }
sleep 15 # the stall under test
dmu_running "$fio_pid" || { kill -CONT "$osd"; die "fio ended while the OSD was stopped for 15 s"; }
kill -CONT "$osd"
rc=0
dmu_wait "$fio_pid" 300 || rc=$?
# on a failure, what fio and dmuserd said (the whole fio JSON would bury it)
((rc == 0)) || die "fio across the OSD's stall ended with status $rc (124: still running after 300 s):" \
	"fio: $(jq -c '.jobs[0] | {error, write: {total_ios: .write.total_ios, io_bytes: .write.io_bytes}}' "$tmp/fio.json" 2>&1);" \
	"the target: $(dmsetup status "$name");" \
	"dmuserd's metrics: $(curl -sf "$url" | jq -c .backend);" \
	"the OSD's ops in flight: $(osd_ops 2>&1);" \
	"dmuserd said: $(cat "$DMU_DAEMON_ERR")"
fio_checked
read -r _ _ _ _ _ _ _ errors _ <<<"$(dmsetup status "$name")"
assert_eq "$errors" 0 "failed requests after the OSD's stall"
replayed=$(curl -sf "$url" | jq .backend.requests_replayed)
log "requests started again after the 15 s stall: $replayed"
((replayed > 0)) || die "no request was started again after a stall longer than the op timeout"
assert_eq "$(curl -sf "$url" | jq .backend.requests_failed)" 0 "backend.requests_failed"
grep -q "requests are started again until it answers, for up to 60000 ms" "$DMU_DAEMON_ERR" ||
	die "dmuserd did not say it starts requests again: $(cat "$DMU_DAEMON_ERR")"

log "dmuserd stops on SIGTERM"
dmu_daemon_stop "$daemon"
! dmu_dm_exists "$name" || die "$name still exists after dmuserd stopped"
watchers=$(rbd -c "$ceph_conf" status rbd/img --format json | jq '.watchers | length')
assert_eq "$watchers" 0 "watchers left on the image after dmuserd stopped"
daemon_start

log "the window to 0 (the table's recovery_ms, SIGHUP), the OSD killed under writes"
dmsetup message "$name" 0 recovery_ms 0
kill -HUP "$daemon"
window_0() { grep -q "rbd: a lost server is waited for 0 ms (the table's recovery_ms)" "$DMU_DAEMON_ERR"; }
wait_until 10 window_0 || die "dmuserd did not take the window of 0: $(cat "$DMU_DAEMON_ERR")"
dmu_bg dd if=/dev/zero of="$dev" bs=64k count=100000 oflag=direct status=none
writer=$DMU_BG_PID
opw0=$(ceph_perf osd.0 .osd.op_w)
wait_until 60 osd_wrote || die "the writer's writes do not reach the OSD"
kill -KILL "$osd"
t0=$SECONDS
rc=0
dmu_wait "$writer" 60 || rc=$?
((rc != 124)) || die "the writer still runs 60 s after the OSD was killed (a hang)"
((rc != 0)) || die "the writer succeeded although the OSD was killed"
log "the writer ended with status $rc after $((SECONDS - t0)) s"
grep -q "rbd: rbd/img: the cluster did not answer within rados_osd_op_timeout (10 s)" "$DMU_DAEMON_ERR" ||
	die "dmuserd did not say that the cluster did not answer: $(cat "$DMU_DAEMON_ERR")"
dmu_running "$daemon" || die "dmuserd exited when the OSD went"
dmu_daemon_stop "$daemon"
! dmu_dm_exists "$name" || die "$name still exists after dmuserd stopped"
dmu_unload
