#!/bin/bash
# Runs INSIDE the guest (started by tests/demo/demo.sh through tests/vm/run.sh):
# load dm-user, serve a 256 MiB file on tmpfs with the reference daemon, run fio
# on the device while the BPF tools watch it (dmuser-top, dmuser-lat,
# dmuser-exporter), print the URLs of the daemon's metrics, its live page and
# the exporter, show fio's result and the metrics, stop the daemon and unload
# the module.
# run.sh powers off.
#
# Knobs (environment): DMU_DEMO_SIZE (256M), DMU_DEMO_RUNTIME (10 s of fio).
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/../e2e/lib.sh"
# shellcheck source=dashboards/tests/lib.sh
. "$DMU_ROOT/dashboards/tests/lib.sh"

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

banner "dmuser-exporter: the kernel's tracepoints over HTTP, for any daemon"
ip link set lo up
obs_exporter "$tmp/exporter.out"
exp_url=$OBS_EXPORTER_URL
log "$(cat "$tmp/exporter.out")"

banner "URLs (inside the guest, while the demo runs)"
log "dmuserd metrics:         $url (JSON), $url?format=prometheus (Prometheus text)"
log "dmuserd live page:       http://$addr/"
log "dmuser-exporter metrics: $exp_url/metrics (JSON), $exp_url/metrics?format=prometheus"
log "dmuser-exporter page:    $exp_url/"
log "Grafana dashboard and Prometheus rules for them: dashboards/"

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
log "dmuser-exporter, Prometheus text (excerpt, $exp_url/metrics):"
curl -sf "$exp_url/metrics?format=prometheus" |
	grep -E '^dmuser_(kernel_requests_total|stage_latency_seconds_count)\{device="'"$name"'"' |
	sed 's/^/    /'
log "the live page is $(curl -sf "$exp_url/" | wc -c) bytes of HTML built into both binaries"
log "dmsetup status: $(dmsetup status "$name")"
log "(channels queued in_flight completed errors timeouts requeues)"

banner "stopping dmuser-exporter and the daemon"
obs_stop "$OBS_EXPORTER_PID" TERM
log "$(tail -1 "$tmp/exporter.out.err")"
log "SIGTERM to pid $DMU_DAEMON_PID"
dmu_daemon_stop
wait_for_gone "$dev" 10 || die "the daemon left $dev behind"
if dmu_dm_exists "$name"; then die "dm device $name still exists after the daemon stopped"; fi
log "daemon exited 0; $name removed"

log "rmmod dm_user"
dmu_unload
banner "demo finished"
