#!/bin/bash
# Runs INSIDE the guest (started by tests/demo/demo.sh through tests/vm/run.sh):
# load dm-user, serve a 256 MiB file on tmpfs with the reference daemon, run fio
# on the device while the BPF tools watch it (dmuser-top, dmuser-lat), show
# fio's result and the daemon's metrics, stop the daemon and unload the module.
# run.sh powers off.
#
# Knobs (environment): DMU_DEMO_SIZE (256M), DMU_DEMO_RUNTIME (10 s of fio).
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/../e2e/lib.sh"

size=${DMU_DEMO_SIZE:-256M}
runtime=${DMU_DEMO_RUNTIME:-10}
name=demo
dev=/dev/mapper/$name

banner() { printf '\n==== %s ====\n' "$*"; }

banner "dm-user demo on $(uname -r)"
log "insmod $DMU_KO"
dmu_load

tmp=$(dmu_tmpdir)
backing=$tmp/backing.img
truncate -s "$size" "$backing"
log "backing file $backing ($size, tmpfs)"

banner "starting the daemon"
log "$DMU_DAEMON --file $backing --name $name --size $size"
dmu_daemon_start "$name" "$backing" "$size" --threads 2 --metrics 0
log "daemon pid $DMU_DAEMON_PID is serving; ready file says:"
sed 's/^/    /' "$DMU_DAEMON_READY"
wait_for_path "$dev" 10 || dmsetup mknodes "$name"
[[ -b $dev ]] || die "$dev is not a block device"
log "$(dmsetup table "$name")"
addr=$(sed -n 's/^metrics=//p' "$DMU_DAEMON_READY")
url=http://$addr/metrics
log "metrics: $url (JSON), $url?format=prometheus (Prometheus text)"

banner "fio: 4k random read/write, iodepth 16, ${runtime}s, O_DIRECT on $dev"
dmu_bg fio --name=demo --filename="$dev" --rw=randrw --bs=4k --iodepth=16 \
	--ioengine=libaio --direct=1 --runtime="$runtime" --time_based \
	--group_reporting --eta=never --output="$tmp/fio.txt"
fio_pid=$DMU_BG_PID

banner "live view: dmuser-top -b, and dmuser-lat histograms per stage, while fio runs"
"$DMU_ROOT/bpf/demo.sh" "$name" $((runtime / 2)) || die "the BPF tools failed"

wait "$fio_pid" || die "fio failed: $(cat "$tmp/fio.txt")"
banner "fio result"
cat "$tmp/fio.txt"

banner "the daemon's metrics ($url)"
curl -sf "$url" | jq -M -c '{uptime_seconds, in_flight,
	read: .ops.read | {requests, bytes, errors},
	write: .ops.write | {requests, bytes, errors}}' || die "metrics unavailable"
log "Prometheus text (excerpt):"
curl -sf "$url?format=prometheus" | grep -E '^dmuser_(requests|request_bytes)_total' | sed 's/^/    /'
log "dmsetup status: $(dmsetup status "$name")"
log "(channels queued in_flight completed errors timeouts requeues)"

banner "stopping the daemon"
log "SIGTERM to pid $DMU_DAEMON_PID"
dmu_daemon_stop
wait_for_gone "$dev" 10 || die "the daemon left $dev behind"
if dmu_dm_exists "$name"; then die "dm device $name still exists after the daemon stopped"; fi
log "daemon exited 0; $name removed"

log "rmmod dm_user"
dmu_unload
banner "demo finished"
