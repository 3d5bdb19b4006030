#!/bin/bash
# Runs INSIDE the guest (started by tests/demo/demo.sh through tests/vm/run.sh):
# load dm-user, serve a 256 MiB file on tmpfs with the reference daemon, run fio
# on the device, stop the daemon and unload the module. run.sh powers off.
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
dmu_daemon_start "$name" "$backing" "$size"
log "daemon pid $DMU_DAEMON_PID is serving; ready file says:"
sed 's/^/    /' "$DMU_DAEMON_READY"
wait_for_path "$dev" 10 || dmsetup mknodes "$name"
[[ -b $dev ]] || die "$dev is not a block device"
log "$(dmsetup table "$name")"

# ---- HOOK(bpf): start the BPF tools here, in the background, e.g.
#      dmu_bg "$DMU_ROOT/build/bpf/dmuser-top" --interval 2
#      dmu_bg "$DMU_ROOT/build/bpf/dmuser-lat" ...
#      and stop them (dmu_stop "$pid") after fio, so their output lands below.
# ---- HOOK(metrics): print the metrics URLs here (the "metrics=" line of
#      "$DMU_DAEMON_READY" once the daemon is started with --metrics), and
#      fetch /metrics before and after fio.

banner "fio: 4k random read/write, iodepth 16, ${runtime}s, O_DIRECT on $dev"
fio --name=demo --filename="$dev" --rw=randrw --bs=4k --iodepth=16 \
	--ioengine=libaio --direct=1 --runtime="$runtime" --time_based \
	--group_reporting || die "fio failed"

# ---- HOOK(bpf): stop dmuser-top / dmuser-lat here and show their summaries.
# ---- HOOK(metrics): show the daemon's counters here.

banner "stopping the daemon"
log "SIGTERM to pid $DMU_DAEMON_PID"
dmu_daemon_stop
wait_for_gone "$dev" 10 || die "the daemon left $dev behind"
if dmu_dm_exists "$name"; then die "dm device $name still exists after the daemon stopped"; fi
log "daemon exited 0; $name removed"

log "rmmod dm_user"
dmu_unload
banner "demo finished"
