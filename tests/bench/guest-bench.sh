#!/bin/bash
# Runs INSIDE the guest (started by tests/bench/bench.sh through tests/vm/run.sh).
# On one tmpfs-backed file, for each repetition and each path: set the path up,
# run the fio jobs of tests/bench/jobs.fio on it (one fio, JSON output), tear the
# path down. Repetitions are interleaved across paths (rep 1 of every path, then
# rep 2, ...), and each repetition starts one path further along the list, so slow
# drift of the shared host and position effects fall on every path alike.
#
# With an RBD path (krbd, rbd-nbd, dmuser-rbd: BENCH_SET=rbd; dmuser-rbd-N) the
# paths serve one RBD image instead of the file: before the repetitions, once,
# tests/ceph/cluster.sh starts a one-mon one-OSD (memstore) cluster in a tmpfs
# directory, rbd/dmu-bench of BENCH_SIZE is created (layering only) and written
# through with 4 MiB sequential writes (checked: every object exists); each path
# maps or opens it per repetition; the cluster is stopped after the last run.
# The file is made only when a path other than those needs it.
#
# Then the stages pass (BENCH_STAGES, space-separated PATH:JOB entries; empty for
# none): for each entry whose PATH is in BENCH_PATHS and JOB in BENCH_JOBS (else a
# meta stages_skipped line says why not), PATH is set up afresh, `bpf/dmuser-lat
# -p <daemon pid> -S all --json -d dmu-bench` is attached (libdmuser's USDT
# stages of that daemon), that one fio job runs (same section, runtime and ramp
# as in the repetitions), dmuser-lat is stopped with SIGINT (it then prints its
# one JSON object) and the path is torn down. A failed stages run is on its
# stage line; it does not change the exit status.
#
# Then the paired measurement of the BPF collectors' cost (when BENCH_BPF_PAIRS > 0,
# dmuser-N and dmuser-N-bpf are both in BENCH_PATHS and randread-4k-qd32 is in
# BENCH_JOBS): dmuser-N is set up once, and on that one device randread-4k-qd32
# runs BENCH_BPF_PAIRS pairs of times (BENCH_BPF_RUNTIME seconds each), without
# ("off") and with ("on") dmuser-lat and dmuser-top attached, in ABBA order (pair 1
# off then on, pair 2 on then off, ...), so drift within the pairs cancels.  In the
# pairs fio runs on vCPU 0 and dmuserd's threads on vCPU 1, in both modes. Each
# pair run also records the guest's busy CPU time and the device's I/Os over its
# fio run, and each "on" run, with kernel.bpf_stats_enabled=1, the run time and
# run count of the collectors' BPF programs over it (their cost in CPU time).
#
# Then, the same way, the in-flight table's cost (when BENCH_INFLIGHT_PAIRS > 0,
# dmuser-N is in BENCH_PATHS and randread-4k-qd32 in BENCH_JOBS): on a new dmuser-N
# device, BENCH_INFLIGHT_PAIRS pairs of runs without ("off") and with ("on") a
# poller beside fio that runs `bpf/dmuser-inflight -d dmu-bench` and sleeps 0.1 s,
# over and over (as `watch -n 0.1` would), for the whole fio run; the run fails if
# any dmuser-inflight exits non-zero.
#
# Then the module A/B pairs (when BENCH_BASE_REF is set, BENCH_MODULE_PAIRS > 0,
# dmuser-N is in BENCH_PATHS and randread-4k-qd32 in BENCH_JOBS): BENCH_MODULE_PAIRS
# pairs of runs in ABBA order, "base" with the module BENCH_BASE_KO (built by bench.sh
# from BENCH_BASE_REF), "head" with $DMU_KO (the module under test). Each run
# unloads dm_user (no dm-user device may exist), insmods its module, checks that
# the loaded module's build ID is that file's, sets dmuser-N up afresh (daemon on
# vCPU 1, fio on vCPU 0), runs randread-4k-qd32 and tears the device down; beside
# fio's IOPS it records the guest's busy CPU time over the fio run and the I/Os
# the device completed in it (CPU per request). After the pairs $DMU_KO is loaded
# again.
#
# Every fio runs without address-space randomisation (setarch -R): under TCG a
# process's speed depends on where its pages land, and one fio on one device gave
# 41167 to 89266 IOPS over six runs with ASLR, 74147 to 81028 without.
#
# Writes to $DMU_OUT: manifest.tsv (tab-separated, read by tests/bench/report.py):
#   meta <key> <value>              the run's parameters and environment (with an
#                                   RBD path also ceph_start_s, ceph, rbd_fill_s,
#                                   rbd_image, mem_avail_kib_after_fill, ceph_stopped)
#   note <path> <key> <value>       what a path really used (O_DIRECT, loop dio, ...)
#   run <rep> <path> ok|failed <fio json file> <message>
#   stage <path> <job> ok|failed <json file> <message>
#                                   one run of the stages pass: <json file> is
#                                   stages/<path>-<job>.json, dmuser-lat's JSON
#                                   (its fio's is fio/stage-<path>-<job>.json)
#   pair <p> off|on ok|failed <fio json file> <message>
#                                   one run of pair p, in the order run
#   pairs ok|failed <message>       the pairs' shared dmuser-N device: whether its
#                                   set-up and teardown succeeded (after the pairs)
#   ipair <p> off|on ok|failed <fio json file> <message>
#                                   one run of in-flight pair p, in the order run
#   ipoll <p> <polls> <lines>       the "on" run of in-flight pair p: dmuser-inflight
#                                   ran <polls> times (all exited 0 unless the run
#                                   failed) and printed <lines> request lines in all
#                                   (before that run's ipair line)
#   ipairs ok|failed <message>      as "pairs", for the in-flight pairs' device
#   pcpu <p> off|on <busy> <ios>    that BPF pair run's busy CPU time over its fio
#                                   run, in USER_HZ ticks (meta bpf_pairs_clk_tck)
#                                   over all CPUs (/proc/stat user+nice+system+irq+
#                                   softirq+steal), and the reads+writes the dm
#                                   device completed meanwhile; before its pair line
#   pbpf <p> <id> <name> <ns> <cnt> the "on" run of BPF pair p: one of the
#                                   collectors' BPF programs (bpftool's id and name),
#                                   its run_time_ns and run_cnt over the fio run
#                                   (kernel.bpf_stats_enabled=1); before its pcpu line
#   mpair <p> base|head ok|failed <fio json file> <message>
#                                   one run of module pair p, in the order run
#   mcpu <p> base|head <busy> <ios> that run's busy CPU time over its fio run, in
#                                   USER_HZ ticks (meta module_pairs_clk_tck) summed
#                                   over all CPUs (/proc/stat user+nice+system+irq+
#                                   softirq), and the reads+writes the dm device
#                                   completed meanwhile (its sysfs stat file);
#                                   before that run's mpair line
#   mpairs ok|failed <message>      the module pairs as a whole: whether the
#                                   module under test ($DMU_KO) was loaded again after
#                                   them
# plus fio/<rep>-<path>.json (fio's output) and logs/<rep>-<path>.log (with an RBD
# path also logs/ceph-start.log and logs/rbd-fill.log); for the
# stages pass stages/<path>-<job>.json, fio/stage-<path>-<job>.json,
# logs/stage-<path>-<job>.log and logs/stage-<path>-<job>.lat.err (dmuser-lat's
# stderr); for the
# pairs fio/pair-<p>-<off|on>.json, logs/pair-<p>-<off|on>.log and logs/pairs.log
# (the shared device's set-up and teardown), and for their "on" runs
# logs/pair-<p>-on.progs-{pre,before,after}.json (bpftool -j prog show before the
# collectors start, right before fio, right after it) and logs/pair-<p>-on.progs.tsv
# (the pbpf lines' fields); for the in-flight pairs the same with
# ipair/ipairs, and logs/ipair-<p>-on.inflight.txt (every poll's output) and
# logs/ipair-<p>-on.polls (the poller's counts); for the module pairs the same
# with mpair/mpairs (each run's log has its module swap and device set-up).
#
# Environment (set by bench.sh): BENCH_RUNTIME, BENCH_RAMP (seconds), BENCH_REPEAT,
# BENCH_PATHS, BENCH_JOBS (space-separated), BENCH_THREADS (N of dmuser-N),
# BENCH_SIZE (file or RBD image size, fallocate syntax), BENCH_STAGES (PATH:JOB entries of the
# stages pass, may be empty), BENCH_BPF_PAIRS (pairs, 0 for none),
# BENCH_BPF_RUNTIME (seconds of each paired run, BPF and in-flight alike),
# BENCH_INFLIGHT_PAIRS (in-flight pairs, 0 for none), BENCH_MODULE_PAIRS (module
# pairs, 0 for none), BENCH_BASE_REF (empty: no module pairs), BENCH_BASE_KO (its
# module, built by bench.sh), BENCH_BASE_COMMIT, BENCH_HEAD_COMMIT (for the manifest).
# Exits 0 when every run succeeded, 1 otherwise (the manifest says which failed).
# shellcheck source=tests/e2e/lib.sh disable=SC2317 # setup_* and teardown are called indirectly
. "$(dirname "$0")/../e2e/lib.sh"

runtime=${BENCH_RUNTIME:?} ramp=${BENCH_RAMP:?} repeat=${BENCH_REPEAT:?}
threads=${BENCH_THREADS:?} size=${BENCH_SIZE:?} pairs=${BENCH_BPF_PAIRS:?}
pair_runtime=${BENCH_BPF_RUNTIME:?} ipairs=${BENCH_INFLIGHT_PAIRS:?}
mpairs=${BENCH_MODULE_PAIRS:-0} base_ko=${BENCH_BASE_KO:-}
read -r -a paths <<<"${BENCH_PATHS:?}"
read -r -a jobs <<<"${BENCH_JOBS:?}"
jobfile=$DMU_ROOT/tests/bench/jobs.fio
name=dmu-bench
out=${DMU_OUT:?}
manifest=$out/manifest.tsv
mkdir -p "$out/fio" "$out/logs" "$out/stages"
: >"$manifest"

meta() { printf 'meta\t%s\t%s\n' "$1" "$2" >>"$manifest"; }
note() { printf 'note\t%s\t%s\t%s\n' "$1" "$2" "$3" >>"$manifest"; }

tmp=$(dmu_tmpdir)
file=$tmp/backing.img
# The RBD set's paths (BENCH_SET=rbd): one RBD image on a Ceph cluster in this
# guest; the other paths use the file.
rbd_paths=" krbd rbd-nbd dmuser-rbd dmuser-rbd-N "
use_rbd=0 use_file=0
for p in "${paths[@]}"; do
	if [[ $rbd_paths == *" $p "* ]]; then use_rbd=1; else use_file=1; fi
done
bytes=$(numfmt --from=iec "$size")
if ((use_file)); then
	# Allocated up front: writes then measure the path, not tmpfs page allocation.
	fallocate -l "$size" "$file"
	bytes=$(stat -c %s "$file")
fi

meta kernel "$(uname -r)"
meta cpus "$(nproc)"
meta mem_kib "$(awk '/^MemTotal:/ { print $2 }' /proc/meminfo)"
meta cpu_model "$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
meta fio "$(fio --version)"
meta nbdkit "$(nbdkit --version)"
if ((use_file)); then
	meta file "$file ($(stat -f -c %T "$file"), $bytes bytes)"
else
	meta file "none: the RBD image rbd/$name ($bytes bytes) is the backing store"
fi
meta file_bytes "$bytes"
meta runtime_s "$runtime"
meta ramp_s "$ramp"
meta repeat "$repeat"
meta threads "$threads"
meta paths "${paths[*]}"
meta jobs "${jobs[*]}"
meta order "interleaved: repetition r runs every path, starting at path index (r-1) mod ${#paths[@]}"
meta aslr "off for fio (setarch -R)"
meta clocksource "$(cat /sys/devices/system/clocksource/clocksource0/current_clocksource)"

# The stages pass: the entries of BENCH_STAGES whose path and job run here.
read -r -a stage_entries <<<"${BENCH_STAGES:-}"
stages=() stages_skipped=()
for e in "${stage_entries[@]}"; do
	if [[ " ${paths[*]} " != *" ${e%%:*} "* ]]; then
		stages_skipped+=("$e (BENCH_PATHS lacks ${e%%:*})")
	elif [[ " ${jobs[*]} " != *" ${e#*:} "* ]]; then
		stages_skipped+=("$e (BENCH_JOBS lacks ${e#*:})")
	else
		stages+=("$e")
	fi
done
meta stages "${stages[*]}"
if ((${#stages_skipped[@]} > 0)); then
	printf -v e '%s; ' "${stages_skipped[@]}"
	meta stages_skipped "${e%; }"
fi
((${#stage_entries[@]} > 0)) || meta stages_skipped "BENCH_STAGES is empty"
meta stages_how "bpf/dmuser-lat -p <daemon pid> -S all --json -d $name over one fio of the job on the path set up afresh; stopped with SIGINT"

# The paired measurement of the collectors' cost: its job, and why it may not run.
pair_job=randread-4k-qd32
pairs_skipped=""
if ((pairs == 0)); then
	pairs_skipped="BENCH_BPF_PAIRS=0"
elif [[ " ${paths[*]} " != *" dmuser-N "* || " ${paths[*]} " != *" dmuser-N-bpf "* ]]; then
	pairs_skipped="BENCH_PATHS lacks dmuser-N or dmuser-N-bpf"
elif [[ " ${jobs[*]} " != *" $pair_job "* ]]; then
	pairs_skipped="BENCH_JOBS lacks $pair_job"
fi
if [[ -n $pairs_skipped ]]; then
	pairs=0
	meta bpf_pairs 0
	meta bpf_pairs_skipped "no paired runs: $pairs_skipped"
else
	meta bpf_pairs "$pairs"
	meta bpf_pairs_order "$pair_job on one dmuser-N device, without (off) and with (on) both collectors; ABBA: odd pairs off then on, even pairs on then off"
	meta bpf_pairs_runtime_s "$pair_runtime"
	meta bpf_pairs_cpus "fio on vCPU 0, dmuserd on vCPU 1"
	meta bpf_pairs_clk_tck "$(getconf CLK_TCK)"
	meta bpf_pairs_cpu "/proc/stat cpu line, all vCPUs: user+nice+system+irq+softirq+steal, over each fio run"
	meta bpf_pairs_stats "kernel.bpf_stats_enabled=1 around each on run (was $(sysctl -n kernel.bpf_stats_enabled)); bpftool -j prog show right before and after fio"
	meta bpf_pairs_progs "the programs bpftool lists right before fio and did not list before the collectors started"
fi
# The in-flight table's paired cost: the same job, and dmuser-N alone.
ipairs_skipped=""
if ((ipairs == 0)); then
	ipairs_skipped="BENCH_INFLIGHT_PAIRS=0"
elif [[ " ${paths[*]} " != *" dmuser-N "* ]]; then
	ipairs_skipped="BENCH_PATHS lacks dmuser-N"
elif [[ " ${jobs[*]} " != *" $pair_job "* ]]; then
	ipairs_skipped="BENCH_JOBS lacks $pair_job"
fi
if [[ -n $ipairs_skipped ]]; then
	ipairs=0
	meta inflight_pairs 0
	meta inflight_pairs_skipped "no paired runs: $ipairs_skipped"
else
	meta inflight_pairs "$ipairs"
	meta inflight_pairs_order "$pair_job on one dmuser-N device, without (off) and with (on) the poller; ABBA: odd pairs off then on, even pairs on then off"
	meta inflight_pairs_runtime_s "$pair_runtime"
	meta inflight_pairs_cpus "fio on vCPU 0, dmuserd on vCPU 1, the poller unpinned"
	meta inflight_pairs_poll "bpf/dmuser-inflight -d $name, then sleep 0.1, over and over for the whole fio run"
fi
# The module A/B pairs: the same job, dmuser-N alone, and a base module.
mpairs_skipped=""
if [[ -z ${BENCH_BASE_REF:-} ]]; then
	mpairs_skipped="BENCH_BASE_REF not set"
elif ((mpairs == 0)); then
	mpairs_skipped="BENCH_MODULE_PAIRS=0"
elif [[ " ${paths[*]} " != *" dmuser-N "* ]]; then
	mpairs_skipped="BENCH_PATHS lacks dmuser-N"
elif [[ " ${jobs[*]} " != *" $pair_job "* ]]; then
	mpairs_skipped="BENCH_JOBS lacks $pair_job"
elif [[ ! -f $base_ko ]]; then
	die "the base module of BENCH_BASE_REF ${BENCH_BASE_REF} is missing: '$base_ko'"
fi
if [[ -n $mpairs_skipped ]]; then
	mpairs=0
	meta module_pairs 0
	meta module_pairs_skipped "no paired runs: $mpairs_skipped"
else
	meta module_pairs "$mpairs"
	meta module_pairs_order "$pair_job on a dmuser-N device set up afresh for each run, after dm_user is unloaded and the run's module loaded: base (A) or head (B); ABBA: odd pairs base then head, even pairs head then base"
	meta module_pairs_runtime_s "$pair_runtime"
	meta module_pairs_cpus "fio on vCPU 0, dmuserd on vCPU 1"
	meta module_pairs_clk_tck "$(getconf CLK_TCK)"
	meta module_base_ref "${BENCH_BASE_REF:-?}"
	meta module_base_commit "${BENCH_BASE_COMMIT:-?}"
	meta module_head_commit "${BENCH_HEAD_COMMIT:-?}"
	meta module_base_ko "$base_ko"
	meta module_head_ko "$DMU_KO"
fi

dmu_load
modprobe loop || die "modprobe loop failed"
modprobe nbd || die "modprobe nbd failed"

# ---- the RBD set: one Ceph cluster and one image for the whole run --------------

ceph_dir=$tmp/ceph ceph_conf=$tmp/ceph/ceph.conf rbd_image=rbd/$name
# Seconds since $1 (date +%s.%N), one decimal.
secs_since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }
# tests/ceph/cluster.sh's one-mon one-OSD cluster on 127.0.0.1 (memstore: the
# image lives in this guest's RAM), then the image, BENCH_SIZE, written through
# once with 4 MiB sequential writes (every object exists, so reads read data from
# the OSD, as the local set's file is allocated up front). Only the layering
# feature: no exclusive lock to hand over between the paths' clients, and no
# object map to update; krbd, rbd-nbd and librbd all take such an image.
start_rbd() {
	local t0 objects want
	modprobe rbd || die "modprobe rbd failed"
	ip link set lo up # init does it; the cluster needs 127.0.0.1
	t0=$(date +%s.%N)
	"$DMU_ROOT/tests/ceph/cluster.sh" start "$ceph_dir" >"$out/logs/ceph-start.log" 2>&1 ||
		die "the Ceph cluster did not start: $(tail -n 5 "$out/logs/ceph-start.log")"
	meta ceph_start_s "$(secs_since "$t0")"
	meta ceph "$(ceph --version), tests/ceph/cluster.sh: 1 mon, 1 OSD (memstore), pool rbd size 1, auth none, msgr v1"
	((bytes % 4194304 == 0)) || die "BENCH_SIZE $size is not a whole number of 4 MiB RBD objects"
	rbd -c "$ceph_conf" create --size "$((bytes / 1048576))" --image-feature layering "$rbd_image" ||
		die "rbd create $rbd_image failed"
	t0=$(date +%s.%N)
	rbd -c "$ceph_conf" bench --io-type write --io-pattern seq --io-size 4M --io-threads 8 \
		--io-total "$bytes" "$rbd_image" >"$out/logs/rbd-fill.log" 2>&1 ||
		die "filling $rbd_image failed: $(tail -n 5 "$out/logs/rbd-fill.log")"
	meta rbd_fill_s "$(secs_since "$t0")"
	objects=$(rados -c "$ceph_conf" -p rbd ls | grep -c '^rbd_data\.' || true)
	want=$((bytes / 4194304))
	((objects == want)) || die "$rbd_image has $objects data objects after the fill, not $want"
	meta rbd_image "$rbd_image: $bytes bytes, layering only, $objects objects of 4 MiB written (rbd bench, sequential 4 MiB writes)"
	meta mem_avail_kib_after_fill "$(awk '/^MemAvailable:/ { print $2 }' /proc/meminfo)"
}
stop_rbd() {
	"$DMU_ROOT/tests/ceph/cluster.sh" stop "$ceph_dir" || die "stopping the Ceph cluster failed"
}
if ((use_rbd)); then
	log "rbd: starting the Ceph cluster and filling $rbd_image ($bytes bytes)"
	start_rbd
	log "rbd: cluster up in $(awk -F'\t' '$2 == "ceph_start_s" { print $3 }' "$manifest") s, image filled in $(awk -F'\t' '$2 == "rbd_fill_s" { print $3 }' "$manifest") s"
fi

# ---- paths: setup_<path> sets target and direct, and pushes undo commands -----

undo=()
target="" direct=1 metrics_url=""
# the pid of the path's daemon (libdmuser's USDT probes: the stages pass), if any
daemon_pid=""

teardown() {
	local i rc=0
	for ((i = ${#undo[@]} - 1; i >= 0; i--)); do
		eval "${undo[i]}" || rc=1
	done
	undo=()
	return "$rc"
}

# Whether the file takes O_DIRECT (tmpfs does from 6.6 on).
file_takes_direct() {
	dd if="$file" of=/dev/null bs=4096 count=1 iflag=direct status=none 2>/dev/null
}

setup_file() {
	target=$file
	if file_takes_direct; then
		direct=1
	else
		direct=0
		echo "the file refuses O_DIRECT: fio runs buffered (direct=0) on it"
	fi
	note file direct "$direct"
}

setup_loop() {
	local dev
	dev=$(losetup --direct-io=on --find --show "$file") || return 1
	undo+=("losetup -d $dev")
	target=$dev
	note loop device "$dev"
	note loop dio "$(cat "/sys/block/${dev#/dev/}/loop/dio")"
}

# The kernel's nbd client over a unix socket to nbdkit's file plugin.
setup_nbd() {
	local sock=$tmp/nbd.sock dev=/dev/nbd0
	rm -f "$sock"
	dmu_bg nbdkit --foreground --unix "$sock" file file="$file"
	undo+=("dmu_stop $DMU_BG_PID")
	wait_for_path "$sock" 30 || return 1
	nbd-client -unix "$sock" "$dev" -block-size 4096 || return 1
	undo+=("nbd-client -d $dev >/dev/null")
	wait_until 10 nbd_connected "$dev" || { echo "$dev has no size after nbd-client"; return 1; }
	target=$dev
	note nbd device "$dev"
	note nbd server "nbdkit file plugin, unix socket, 1 connection"
}
nbd_connected() { (($(cat "/sys/block/${1#/dev/}/size") > 0)); }

# dmuserd's NBD backend (libnbd, asynchronous) on the nbd path's export: the
# same nbdkit file plugin on a unix socket, and one connection (--threads 1:
# one libnbd handle per worker), as nbd-client has.
setup_dmuser-nbd() {
	local sock=$tmp/nbd.sock
	rm -f "$sock"
	dmu_bg nbdkit --foreground --unix "$sock" file file="$file"
	undo+=("dmu_stop $DMU_BG_PID")
	wait_for_path "$sock" 30 || return 1
	dmu_daemon_run "$name" --backend "nbd+unix:///?socket=$sock" --threads 1 --metrics 0
	dmuserd_device
	note dmuser-nbd server "nbdkit file plugin, unix socket; dmuserd --backend nbd+unix, 1 thread, 1 connection"
}

# After dmu_daemon_run: its stop on undo, its pid, metrics URL and device.
dmuserd_device() {
	undo+=("dmu_daemon_stop $DMU_DAEMON_PID")
	daemon_pid=$DMU_DAEMON_PID
	metrics_url=http://$(sed -n 's/^metrics=//p' "$DMU_DAEMON_READY")/metrics
	target=/dev/mapper/$name
	wait_for_path "$target" 10 || dmsetup mknodes "$name"
	[[ -b $target ]] || { echo "$target is not a block device"; return 1; }
}

# dmuserd on the file, with $1 worker threads (and any more options).
setup_dmuser_threads() {
	dmu_daemon_start "$name" "$file" "$bytes" --threads "$@" --metrics 0
	dmuserd_device
}

# The kernel's RBD client on the image. Auth none, so no key: the cluster's
# ceph.conf gives rbd its mon address. -o noudev: the guest runs no udev, and
# without it rbd map (and unmap) waits for udev's event that never comes; the
# node comes from devtmpfs. No ms_mode: legacy (msgr v1) is the kernel's
# default, and the cluster speaks only v1.
setup_krbd() {
	local dev
	dev=$(rbd -c "$ceph_conf" map -o noudev "$rbd_image") || return 1
	undo+=("rbd -c $ceph_conf unmap -o noudev $dev")
	wait_for_path "$dev" 10 || return 1
	target=$dev
	note krbd device "$dev"
	note krbd client "rbd map -o noudev (kernel rbd.ko, msgr v1)"
}

# rbd-nbd on the image: librbd in a daemon, served to the kernel's nbd client.
# librbd's cache off, as dmuserd's RBD backend has it (every write answered once
# the OSD has it). rbd-nbd map returns once the device is set up; unmap
# disconnects it and waits for the daemon to exit.
setup_rbd-nbd() {
	local dev
	dev=$(rbd-nbd -c "$ceph_conf" --rbd-cache=false map "$rbd_image") || return 1
	undo+=("rbd-nbd -c $ceph_conf unmap $dev")
	target=$dev
	note rbd-nbd device "$dev"
	note rbd-nbd client "rbd-nbd map, rbd_cache=false"
}

# dmuserd's RBD backend (librbd, asynchronous, cache off) on the image, with $1
# worker threads. dmuser-rbd has one: it has 32 slots, the qd32 jobs' depth, and
# every worker shares the one image handle, so more workers add only the
# hand-off between them; dmuser-rbd-N (not in the set: BENCH_PATHS) measures N.
setup_dmuser_rbd_threads() {
	dmu_daemon_run "$name" --backend "rbd:$rbd_image?conf=$ceph_conf" --threads "$1" --metrics 0
	dmuserd_device
	note "$path" server "dmuserd --backend rbd (librbd aio, rbd_cache=false), $1 thread(s)"
}
setup_dmuser-rbd() { setup_dmuser_rbd_threads 1; }
setup_dmuser-rbd-N() { setup_dmuser_rbd_threads "$threads"; }
setup_dmuser-1() {
	setup_dmuser_threads 1
	note dmuser-1 threads 1
}
setup_dmuser-N() {
	setup_dmuser_threads "$threads"
	note dmuser-N threads "$threads"
}
# The same without busy polling (dmuserd's --poll-us 0): what it buys.
setup_dmuser-1-nopoll() {
	setup_dmuser_threads 1 --poll-us 0
	note dmuser-1-nopoll threads "1, --poll-us 0"
}
setup_dmuser-N-nopoll() {
	setup_dmuser_threads "$threads" --poll-us 0
	note dmuser-N-nopoll threads "$threads, --poll-us 0"
}
# The same without splice (dmuserd's --no-splice): data through the
# worker's buffer, two copies; what splicing buys.
setup_dmuser-1-copy() {
	setup_dmuser_threads 1 --no-splice
	note dmuser-1-copy threads "1, --no-splice"
}

# examples/dmu-passthrough on the file: libdmuser's asynchronous API, one
# channel and one thread, io_uring with O_DIRECT (the file must take it:
# tmpfs does from 6.6).  It creates the device, and removes it on SIGTERM.
setup_dmuser-uring() {
	file_takes_direct || { echo "the file refuses O_DIRECT, which dmu-passthrough needs"; return 1; }
	dmu_bg "$DMU_ROOT/examples/dmu-passthrough" -q 64 "$name" "$file"
	undo+=("uring_stop $DMU_BG_PID")
	daemon_pid=$DMU_BG_PID
	target=/dev/mapper/$name
	wait_for_path "$target" 30 || { echo "dmu-passthrough did not create $target"; return 1; }
	note dmuser-uring server "examples/dmu-passthrough -q 64: async API, io_uring, O_DIRECT, 1 thread"
}
uring_stop() {
	local rc=0
	dmu_stop "$1" 30 || rc=$?
	((rc == 0)) || echo "dmu-passthrough exited $rc after SIGTERM"
	! dmu_dm_exists "$name" || { echo "dmu-passthrough left $name behind"; return 1; }
	return "$rc"
}

# dmuser-N with both BPF collectors attached for the whole fio run.
setup_dmuser-N-bpf() {
	setup_dmuser_threads "$threads"
	start_collectors "$out/logs/$rep-dmuser-N-bpf"
	note dmuser-N-bpf threads "$threads"
	note dmuser-N-bpf collectors "dmuser-lat -S all -d $name; dmuser-top -b -d $name -i 1"
}
# Both BPF collectors on the device $name, their output in $1.lat.txt and
# $1.top.txt; returns once both have attached. Their stops (which fail unless
# they exit 0) go on undo.
start_collectors() {
	local logs=$1
	dmu_bg "$DMU_ROOT/bpf/dmuser-lat" -S all -d "$name" >"$logs.lat.txt" 2>&1
	undo+=("collector_stop $DMU_BG_PID dmuser-lat")
	dmu_bg "$DMU_ROOT/bpf/dmuser-top" -b -d "$name" -i 1 >"$logs.top.txt" 2>&1
	undo+=("collector_stop $DMU_BG_PID dmuser-top")
	wait_until 60 grep -q 'Tracing dm-user request latency' "$logs.lat.txt" ||
		{ echo "dmuser-lat did not attach: $(cat "$logs.lat.txt")"; return 1; }
	wait_until 60 grep -q 'Tracing dm-user devices' "$logs.top.txt" ||
		{ echo "dmuser-top did not attach: $(cat "$logs.top.txt")"; return 1; }
}
collector_stop() {
	local rc=0
	dmu_stop "$1" 30 || rc=$?
	((rc == 0)) || echo "$2 exited $rc"
	return "$rc"
}

# After a dmuser path's fio: how many requests one read() of the control device
# returned, on average over the whole fio run (dmuserd's own counters).
note_batching() {
	local m
	m=$(curl -sf "$metrics_url") || { echo "cannot fetch $metrics_url"; return 1; }
	note "$path" "requests per read() (rep $rep)" "$(jq -r \
		'if .channel_reads > 0 then (.channel_requests_read / .channel_reads * 100 | round / 100)
		 else "no reads" end' <<<"$m")"
}

# ---- running and recording -----------------------------------------------------

# fio on $target, only the jobs $2..., its JSON output to $1; without ASLR (see
# the top), measured for $fio_runtime seconds (BENCH_RUNTIME unless set), under
# the command prefix $fio_prefix (none unless set).
fio_runtime="" fio_prefix=""
run_fio() {
	local json=$1 section=() j
	shift
	for j in "$@"; do section+=("--section=$j"); done
	# shellcheck disable=SC2086 # $fio_prefix is words
	BENCH_TARGET=$target BENCH_DIRECT=$direct BENCH_RUNTIME=${fio_runtime:-$runtime} \
		BENCH_RAMP=$ramp $fio_prefix setarch -R \
		fio --output-format=json --output="$json" "${section[@]}" "$jobfile"
}

# The last non-empty line of log $1 that is not a "from f() at" line of lib.sh's
# error trace, tabs turned to spaces (a manifest message).
last_line() {
	{ grep -Ev '^[[:space:]]*$|^    from [^ ]+\(\) at ' "$1" || true; } | tail -n 1 | tr '\t' ' '
}

# run_logged "KIND A B" BASE CMD...: runs CMD in a background subshell (errexit
# applies there, and CMD's EXIT trap tears down) with its output in logs/BASE.log,
# then appends "KIND<TAB>A<TAB>B<TAB>ok|failed<TAB>fio/BASE.json<TAB>message" to
# the manifest (another file than fio/BASE.json with rl_json=FILE set). On failure it prints the log to the console (fd 3) and sets failed=1.
# (Its locals are seen by CMD: none may shadow a global such as $name.)
run_logged() {
	local rl_fields=${1// /$'\t'} rl_label=$1 rl_base=$2 rl_rc=0
	local rl_log=$out/logs/$rl_base.log rl_file=${rl_json:-fio/$2.json}
	shift 2
	"$@" >"$rl_log" 2>&1 &
	wait $! || rl_rc=$?
	if ((rl_rc == 0)); then
		printf '%s\tok\t%s\t\n' "$rl_fields" "$rl_file" >>"$manifest"
	else
		failed=1
		log "$rl_label FAILED (exit $rl_rc):" >&3
		sed 's/^/    /' "$rl_log" >&3
		printf '%s\tfailed\t%s\t%s\n' "$rl_fields" "$rl_file" \
			"exit $rl_rc: $(last_line "$rl_log")" >>"$manifest"
	fi
}

# ---- one repetition of one path ----------------------------------------------

# In a background subshell (run_logged): errexit applies, and the EXIT trap tears down.
run_one() {
	trap 'rc=$?; teardown || rc=1; exit $rc' EXIT
	"setup_$path"
	run_fio "$out/fio/$rep-$path.json" "${jobs[@]}"
	[[ -z $metrics_url ]] || note_batching
}

# ---- the stages pass: where the time goes ----------------------------------------

# One stages run (in a background subshell, run_logged): $path set up afresh,
# dmuser-lat -p <its daemon> -S all --json on the device, fio's job $job alone,
# dmuser-lat stopped with SIGINT (its JSON to stages/$path-$job.json, which must
# have a latency array), the path torn down.
run_stage() {
	local base=$path-$job lat_pid
	lat_stopped=0
	trap 'rc=$?; teardown || rc=1; exit $rc' EXIT
	"setup_$path"
	[[ -n $daemon_pid ]] || { echo "path $path has no daemon with libdmuser's USDT probes"; return 1; }
	dmu_bg "$DMU_ROOT/bpf/dmuser-lat" -p "$daemon_pid" -S all --json -d "$name" \
		>"$out/stages/$base.json" 2>"$out/logs/stage-$base.lat.err"
	lat_pid=$DMU_BG_PID
	undo+=("((lat_stopped)) || stage_lat_stop $lat_pid")
	# with --json its banner goes to stderr, after the USDT probes are attached
	wait_until 60 lat_started "$out/logs/stage-$base.lat.err" "$lat_pid" ||
		{ echo "dmuser-lat did not attach within 60 s"; return 1; }
	dmu_running "$lat_pid" ||
		{ echo "dmuser-lat exited before fio: $(cat "$out/logs/stage-$base.lat.err")"; return 1; }
	cat "$out/logs/stage-$base.lat.err"
	run_fio "$out/fio/stage-$base.json" "$job"
	stage_lat_stop "$lat_pid"
	cat "$out/logs/stage-$base.lat.err"
	jq -e '.latency | type == "array" and length > 0' "$out/stages/$base.json" >/dev/null ||
		{ echo "dmuser-lat's output has no stage: $(head -c 300 "$out/stages/$base.json")"; return 1; }
	echo "dmuser-lat's stages: $(jq -c '[.latency[] | {stage, count, p50, p99}], .requests' "$out/stages/$base.json")"
}
lat_started() { grep -qs 'Tracing dm-user request latency' "$1" || ! dmu_running "$2"; }
# SIGINT to dmuser-lat $1 (it prints its JSON then); fails unless it exits 0
# within 30 s (then SIGTERM and SIGKILL).
stage_lat_stop() {
	local rc=0
	# shellcheck disable=SC2034 # read by run_stage's undo command
	lat_stopped=1
	kill -INT "$1" 2>/dev/null || true
	dmu_wait "$1" 30 || rc=$?
	if ((rc == 124)); then
		echo "dmuser-lat ignored SIGINT for 30 s"
		dmu_stop "$1" 5 || true
	elif ((rc != 0)); then
		echo "dmuser-lat exited $rc"
	fi
	return "$rc"
}

# ---- the paired measurements: the collectors' and the in-flight table's cost ----

# run_pairs KIND N LABEL EXTRA: in a background subshell, dmuser-N once, then N
# pairs on that one device, each run in its own subshell (run_logged "KIND p mode",
# output fio/KIND-p-mode.json, by run_KIND p mode); LABEL and EXTRA (what "on"
# adds) are for the console. KIND mpair has no shared device (each run sets up its
# own, under its own module; modes base and head instead of off and on), and loads
# $DMU_KO again after the pairs.
# Exits non-zero only when the shared device's set-up or teardown failed (mpair:
# when $DMU_KO could not be loaded again); a failed run is on its own KIND line.
run_pairs() {
	local rp_kind=$1 rp_n=$2 rp_label=$3 rp_extra=$4 p mode order modes=(off on)
	trap 'rc=$?; teardown || rc=1; exit $rc' EXIT
	if [[ $rp_kind == mpair ]]; then
		modes=(base head)
	else
		setup_dmuser_threads "$threads"
		# the pairs' fio on vCPU 0 and the daemon on vCPU 1: fewer placement swings
		taskset -a -p -c 1 "$DMU_DAEMON_PID" >/dev/null
	fi
	fio_prefix="taskset -c 0" fio_runtime=$pair_runtime
	for ((p = 1; p <= rp_n; p++)); do
		order=("${modes[@]}")
		((p % 2)) || order=("${modes[1]}" "${modes[0]}")
		for mode in "${order[@]}"; do
			log "$rp_label $p/$rp_n: $rp_extra $mode" >&3
			run_logged "$rp_kind $p $mode" "$rp_kind-$p-$mode" "run_$rp_kind" "$p" "$mode"
		done
	done
	if [[ $rp_kind == mpair ]]; then
		echo "loading the module under test again: $DMU_KO"
		swap_module "$DMU_KO"
	fi
}

# One run of pair $1 on the shared device: fio's $pair_job alone, with both
# collectors attached when $2 is "on" (started as for dmuser-N-bpf); they stop,
# and must exit 0, when the run ends. Both modes: the busy CPU time (steal
# included) and the device's I/Os over the fio run on a pcpu line. "on" also:
# kernel.bpf_stats_enabled=1 from before the collectors start until after they
# stop (then its old value again), and the run time and run count of each of the
# collectors' BPF programs over the fio run on pbpf lines (before the pcpu line);
# the collectors' programs are those that bpftool lists right before fio and did
# not list before the collectors started.
run_pair() {
	local logs=$out/logs/pair-$1-$2 busy0 busy1 ios0 ios1 dev n
	undo=() # the shared device is run_pairs's to tear down
	trap 'rc=$?; teardown || rc=1; exit $rc' EXIT
	dev=$(dev_sysfs "$target")
	if [[ $2 == on ]]; then
		stats_on
		bpftool -j prog show >"$logs.progs-pre.json"
		start_collectors "$logs"
		bpftool -j prog show >"$logs.progs-before.json"
	fi
	busy0=$(cpu_busy steal)
	ios0=$(dev_ios "$dev")
	run_fio "$out/fio/pair-$1-$2.json" "$pair_job"
	busy1=$(cpu_busy steal)
	ios1=$(dev_ios "$dev")
	echo "busy CPU $((busy1 - busy0)) ticks (steal included), $((ios1 - ios0)) I/Os completed on $target ($dev) during fio"
	if [[ $2 == on ]]; then
		bpftool -j prog show >"$logs.progs-after.json"
		prog_deltas "$logs.progs-pre.json" "$logs.progs-before.json" "$logs.progs-after.json" \
			>"$logs.progs.tsv"
		n=$(wc -l <"$logs.progs.tsv")
		((n > 0)) || { echo "no BPF program of the collectors in bpftool's lists"; return 1; }
		echo "the collectors' BPF programs over fio (id, name, run_time_ns, run_cnt):"
		cat "$logs.progs.tsv"
		awk '{ c += $4 } END { exit !(c > 0) }' "$logs.progs.tsv" ||
			{ echo "the collectors' BPF programs did not run during fio (run_cnt 0: no bpf_stats?)"; return 1; }
		sed "s/^/pbpf\t$1\t/" "$logs.progs.tsv" >>"$manifest"
	fi
	printf 'pcpu\t%s\t%s\t%s\t%s\n' "$1" "$2" $((busy1 - busy0)) $((ios1 - ios0)) >>"$manifest"
}

# kernel.bpf_stats_enabled=1 (BPF programs' run_time_ns and run_cnt), its old
# value again on undo (after the collectors' stops: undo runs backwards). Set
# only while no program of ours is attached and no fio runs (it is a static key:
# see the README on patching under TCG).
stats_on() {
	local was
	was=$(sysctl -n kernel.bpf_stats_enabled)
	sysctl -w kernel.bpf_stats_enabled=1
	undo+=("sysctl -w kernel.bpf_stats_enabled=$was")
}

# The programs of bpftool list $2 (JSON) whose ids list $1 lacks, with their
# run_time_ns and run_cnt in list $3 minus those in $2 (bpftool leaves both out
# while run_time_ns is 0): "id<TAB>name<TAB>ns<TAB>cnt" per program, in id order.
# A program gone by $3 fails (the collectors hold theirs until they stop).
prog_deltas() {
	jq -r --slurpfile pre "$1" --slurpfile before "$2" '
		($pre[0] | map(.id)) as $old
		| (map({key: (.id | tostring), value: .}) | from_entries) as $after
		| $before[0][] | select(.id as $i | $old | index($i) | not)
		| . as $b | ($after[$b.id | tostring]
			// error("BPF program \($b.id) (\($b.name // "?")) is gone after fio")) as $a
		| [$b.id, ($b.name // "?"),
		   (($a.run_time_ns // 0) - ($b.run_time_ns // 0)),
		   (($a.run_cnt // 0) - ($b.run_cnt // 0))] | @tsv' "$3"
}

# One run of in-flight pair $1 on the shared device: fio's $pair_job alone, with
# the poller beside it when $2 is "on" (it has polled once before fio starts; it
# stops, and must exit 0, when the run ends).
run_ipair() {
	undo=() # the shared device is run_pairs's to tear down
	trap 'rc=$?; teardown || rc=1; exit $rc' EXIT
	if [[ $2 == on ]]; then start_poller "$out/logs/ipair-$1-on" "$1"; fi
	run_fio "$out/fio/ipair-$1-$2.json" "$pair_job"
}

# The poller of in-flight pair $2: dmuser-inflight's output in $1.inflight.txt,
# its counts in $1.polls; returns once the first poll is done. Its stop (which
# fails unless it exits 0, and writes the pair's ipoll line) goes on undo.
start_poller() {
	dmu_bg inflight_poller "$1"
	undo+=("poller_stop $DMU_BG_PID $2 $1")
	wait_until 60 poller_started "$1.inflight.txt" "$DMU_BG_PID" ||
		{ echo "the dmuser-inflight poller did not poll within 60 s"; return 1; }
	dmu_running "$DMU_BG_PID" || { echo "the dmuser-inflight poller stopped before fio started"; return 1; }
}
poller_started() { grep -qs '^DEVICE ' "$1" || ! dmu_running "$2"; }

# bpf/dmuser-inflight -d $name, then sleep 0.1, until SIGTERM (a rate, as `watch
# -n 0.1` would poll; no synchronisation): the output to $1.inflight.txt, then
# "<polls> <request lines>" to $1.polls. Exits 0 on SIGTERM; as soon as a
# dmuser-inflight exits non-zero, with its status, and the reason in $1.failed
# (its stderr is on ours).
inflight_poller() {
	local txt=$1.inflight.txt polls=0 lines rc=0 stop=0
	trap - EXIT
	trap 'stop=1' TERM
	: >"$txt"
	while ((!stop)); do
		"$DMU_ROOT/bpf/dmuser-inflight" -d "$name" >>"$txt" || rc=$?
		if ((rc != 0)); then
			echo "dmuser-inflight -d $name exited $rc at poll $((polls + 1))" | tee "$1.failed"
			break
		fi
		polls=$((polls + 1))
		sleep 0.1 || true # the builtin may return early on SIGTERM
	done
	# every poll printed one header line (DEVICE ...), then one line per request
	lines=$(grep -vc '^DEVICE ' "$txt" || true)
	echo "$polls $lines" >"$1.polls"
	echo "$polls polls of dmuser-inflight exited 0, printing $lines request lines"
	exit "$rc"
}
poller_stop() {
	local rc=0 polls lines
	dmu_stop "$1" 30 || rc=$?
	if [[ -s $3.polls ]]; then
		read -r polls lines <"$3.polls"
		printf 'ipoll\t%s\t%s\t%s\n' "$2" "$polls" "$lines" >>"$manifest"
	fi
	if ((rc != 0)); then
		echo "the dmuser-inflight poller exited $rc: $(cat "$3.failed" 2>/dev/null || echo "no reason given")"
	fi
	return "$rc"
}

# One run of module pair $1: dm_user unloaded, the module of mode $2 (base:
# $base_ko, head: $DMU_KO) loaded, dmuser-N set up on it (daemon on vCPU 1), fio's
# $pair_job alone (on vCPU 0), the busy CPU time and the device's I/Os over the
# fio run on an mcpu line; the device is torn down when the run ends (the module
# stays: the next run swaps it).
run_mpair() {
	local ko=$DMU_KO busy0 busy1 ios0 ios1 dev
	[[ $2 == head ]] || ko=$base_ko
	undo=()
	trap 'rc=$?; teardown || rc=1; exit $rc' EXIT
	swap_module "$ko"
	setup_dmuser_threads "$threads"
	taskset -a -p -c 1 "$DMU_DAEMON_PID" >/dev/null
	dev=$(dev_sysfs "$target")
	busy0=$(cpu_busy)
	ios0=$(dev_ios "$dev")
	run_fio "$out/fio/mpair-$1-$2.json" "$pair_job"
	busy1=$(cpu_busy)
	ios1=$(dev_ios "$dev")
	echo "busy CPU $((busy1 - busy0)) ticks, $((ios1 - ios0)) I/Os completed on $target ($dev) during fio"
	printf 'mcpu\t%s\t%s\t%s\t%s\n' "$1" "$2" $((busy1 - busy0)) $((ios1 - ios0)) >>"$manifest"
}

# The busy CPU time of all CPUs so far, in USER_HZ ticks: user, nice, system, irq
# and softirq of /proc/stat's cpu line (not idle, iowait, steal, guest); with $1
# "steal", steal too (as tests/vm/guest-suite.sh's busy_ticks).
cpu_busy() {
	local cpu user nice system irq softirq steal _
	read -r cpu user nice system _ _ irq softirq steal _ </proc/stat
	[[ $cpu == cpu ]] || { echo "unexpected /proc/stat: $cpu" >&2; return 1; }
	[[ ${1:-} == steal ]] || steal=0
	echo $((user + nice + system + irq + softirq + steal))
}
# The sysfs directory of block device $1 (/dev/mapper/NAME is a node, not a
# link, without udev: found by its numbers); fails without a stat file there.
dev_sysfs() {
	local dev
	dev=/sys/dev/block/$((16#$(stat -L -c %t "$1"))):$((16#$(stat -L -c %T "$1")))
	[[ -r $dev/stat ]] || { echo "no $dev/stat for $1" >&2; return 1; }
	echo "$dev"
}
# Reads plus writes completed so far on the block device of sysfs directory $1
# (fields 1 and 5 of its stat).
dev_ios() {
	local r w _
	read -r r _ _ _ w _ <"$1/stat"
	echo $((r + w))
}

# Unload dm_user (whatever module it is) and insmod $1 instead; fails unless no
# dm-user device exists before, and the loaded module is $1 after (its build ID,
# when the kernel shows the loaded module's notes). dm-mod stays loaded.
swap_module() {
	local ko=$1 want have d
	for d in $(dmu_dm_names); do
		if dmsetup table "$d" 2>/dev/null | awk '$3 == "user" { f = 1 } END { exit !f }'; then
			echo "the dm-user device $d still exists: cannot unload dm_user"
			return 1
		fi
	done
	if [[ -d /sys/module/dm_user ]]; then dmu_unload; fi
	DMU_KO=$ko dmu_load
	want=$(readelf -n "$ko" | sed -n 's/^ *Build ID: *//p')
	if [[ -r /sys/module/dm_user/notes/.note.gnu.build-id && -n $want ]]; then
		# the note, 36 bytes: namesz, descsz, type (4 bytes each), "GNU\0", the 20-byte ID
		have=$(od -An -v -tx1 /sys/module/dm_user/notes/.note.gnu.build-id | tr -d ' \n')
		[[ $have == *"$want"* ]] || { echo "loaded dm_user is not $ko (build ID ${have:32}, want $want)"; return 1; }
		echo "loaded $ko (build ID $want)"
	else
		echo "loaded $ko (build ID not checked: ${want:-none in the file}, /sys/module/dm_user/notes/.note.gnu.build-id $([[ -r /sys/module/dm_user/notes/.note.gnu.build-id ]] && echo present || echo absent))"
	fi
}

# run_series KIND N WHAT EXTRA SKIPPED: the N pairs of KIND (pair: the collectors,
# ipair: the in-flight table) on their own dmuser-N device, and the KINDs line
# (their device); not run, and SKIPPED logged, when N is 0. WHAT names the
# series, EXTRA what its "on" runs add (for the console). KIND mpair: the module
# pairs, each run on its own device (see run_pairs).
run_series() {
	local rs_kind=$1 rs_n=$2 rs_what=$3 rs_extra=$4 rs_skipped=$5 rs_log=$out/logs/$1s.log rs_rc=0
	if ((rs_n == 0)); then
		log "$rs_what, paired: not run ($rs_skipped)"
		return 0
	fi
	log "$rs_what, paired: $rs_n pairs of $pair_job on $([[ $rs_kind == mpair ]] && echo "a dmuser-N device per run" || echo "one dmuser-N device")"
	run_pairs "$rs_kind" "$rs_n" "${rs_what%% *} pair" "$rs_extra" >"$rs_log" 2>&1 &
	wait $! || rs_rc=$?
	if ((rs_rc == 0)); then
		printf '%ss\tok\t\n' "$rs_kind" >>"$manifest"
	else
		failed=1
		log "$rs_what pairs: $([[ $rs_kind == mpair ]] && echo "reloading $DMU_KO" || echo "the shared dmuser-N device") FAILED (exit $rs_rc):"
		sed 's/^/    /' "$rs_log"
		printf '%ss\tfailed\t%s\n' "$rs_kind" "exit $rs_rc: $(last_line "$rs_log")" >>"$manifest"
	fi
	# A failed run of a pair is on its line (run_pairs's own failed=1 stayed in it).
	if grep -q "^$rs_kind"$'\t[^\t]*\t[^\t]*\tfailed\t' "$manifest"; then failed=1; fi
}

# ---- main ------------------------------------------------------------------------

exec 3>&1 # the console, for progress from inside logged subshells
failed=0
for ((rep = 1; rep <= repeat; rep++)); do
	for ((k = 0; k < ${#paths[@]}; k++)); do
		path=${paths[(k + rep - 1) % ${#paths[@]}]}
		log "rep $rep/$repeat: $path"
		run_logged "run $rep $path" "$rep-$path" run_one
	done
done

# The stages pass: a failed run is on its stage line and leaves the exit status.
paths_failed=$failed
for e in "${stages[@]}"; do
	path=${e%%:*} job=${e#*:}
	log "stages: $path $job (dmuser-lat -S all -p)"
	rl_json=stages/$path-$job.json run_logged "stage $path $job" "stage-$path-$job" run_stage
done
((${#stages[@]} > 0)) || log "stages: not run (${BENCH_STAGES:+none of BENCH_STAGES runs here}${BENCH_STAGES:-BENCH_STAGES is empty})"
failed=$paths_failed

run_series pair "$pairs" "BPF cost" collectors "$pairs_skipped"
run_series ipair "$ipairs" "In-flight table cost" "dmuser-inflight poller" "$ipairs_skipped"
# Last: it unloads and loads the module between its runs (and $DMU_KO after them).
run_series mpair "$mpairs" "Module A/B" "module" "$mpairs_skipped"

if ((use_rbd)); then
	stop_rbd
	meta ceph_stopped yes
fi
# Every path must be gone before the module goes.
dmu_unload
exit "$failed"
