#!/bin/bash
# shellcheck source-path=SCRIPTDIR/../vm
# `make bench`: boot ONE guest on the newest installed kernel (or --kernel KVER),
# run the same fio jobs on one tmpfs-backed file through every path (the file,
# loop, nbd + nbdkit, dm-user at 1 and N daemon threads, dm-user with the BPF
# collectors attached; or another BENCH_SET: nbd, rbd), then the stages pass (BENCH_STAGES: per PATH:JOB, the path
# set up afresh and that job run once with bpf/dmuser-lat -p <daemon> -S all
# --json attached: where the time goes), then, on one dm-user device, BENCH_BPF_PAIRS pairs of
# randread-4k-qd32 runs without and with the BPF collectors (their cost in CPU
# time, from kernel.bpf_stats_enabled and /proc/stat, and in IOPS),
# and, on another, BENCH_INFLIGHT_PAIRS pairs without and with bpf/dmuser-inflight
# polled 10 times a second (the in-flight table's paired cost), and, with
# BENCH_BASE_REF set, BENCH_MODULE_PAIRS pairs with the module of that git ref (A,
# built here into build/bench/base/) and the module under test (B, build/kmod/),
# swapped between runs (the module's paired cost); then write
# build/bench/results.{json,md,png} on the host and print the Markdown table.
#
#   tests/bench/bench.sh [--kernel KVER] [--out DIR] [--timeout SECONDS]
#   tests/bench/bench.sh --profile [--kernel KVER] [--out DIR] [--timeout SECONDS]
#
# --profile instead profiles dm-user under 4k randread iodepth 32 with dmuserd at
# 1 and N threads (tests/bench/guest-profile.sh says what is measured) into
# DIR/profile/<threads>/; PROF_THREADS (4), PROF_SECS (5), PROF_SIZE (512M).
#
# Environment (see tests/bench/README.md):
#   BENCH_RUNTIME  seconds of each fio job (2)     BENCH_RAMP     ramp seconds (1)
#   BENCH_REPEAT   repetitions, >= 1 (3)           BENCH_THREADS  N of dmuser-N (4)
#   BENCH_SET      a set of paths: local (the default), nbd, rbd or remote (path_sets below)
#   BENCH_PATHS    paths to run (BENCH_SET's)      BENCH_JOBS     jobs to run (all; rbd: job_sets)
#   BENCH_SIZE     backing file size (1G; remote: 512M)          BENCH_MEM      guest MiB (3072)
#   BENCH_SMP      the guest's vCPUs (2)
#   BENCH_STAGES   PATH:JOB entries of the stages pass, space-separated; "" for none
#                  (local: dmuser-1:randread-4k-qd1 dmuser-1:randwrite-4k-qd1;
#                  nbd: dmuser-nbd:randread-4k-qd32 dmuser-nbd:randwrite-4k-qd32;
#                  rbd: dmuser-rbd:randread-4k-qd32 dmuser-rbd:randwrite-4k-qd32;
#                  remote: rbd's and nbd's)
#   BENCH_BPF_PAIRS  pairs of runs without/with the BPF collectors, 0 for none (8)
#   BENCH_BPF_RUNTIME  seconds each paired run is measured (4)
#   BENCH_INFLIGHT_PAIRS  pairs of runs without/with dmuser-inflight polled, 0 for none (4)
#   BENCH_BASE_REF  git ref of the base module for the module A/B pairs (none: no such pairs)
#   BENCH_MODULE_PAIRS  pairs of runs with the base module / the module under test (12)
#
# Exit status: 0 when every path ran every job (a missed goal is reported, not an
# error); 1 when a path or a job failed to run, or the guest failed; 2 on bad usage.
set -euo pipefail

# shellcheck source=../vm/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/../vm/common.sh"

all_paths="file loop nbd dmuser-1 dmuser-N dmuser-1-nopoll dmuser-N-nopoll dmuser-1-copy dmuser-N-bpf dmuser-uring dmuser-nbd krbd rbd-nbd dmuser-rbd dmuser-rbd-N"
# The sets of paths BENCH_SET names (BENCH_PATHS, if given, wins):
#   local   the default: dm-user on a local file against the file, loop and nbd
#   nbd     one NBD export (nbdkit's file plugin on the same file) through the
#           kernel's nbd client and through dmuserd's NBD backend
#   rbd     one RBD image on a Ceph cluster in the guest (tests/ceph/cluster.sh)
#           through the kernel's RBD client, rbd-nbd and dmuserd's RBD backend
#   remote  rbd's and nbd's paths in one guest run: every remote goal (#17) in
#           one results.md; 512M by default (an image and a file in the guest's RAM)
declare -A path_sets=(
	[local]="file loop nbd dmuser-1 dmuser-N dmuser-N-bpf dmuser-uring"
	[nbd]="nbd dmuser-nbd"
	[rbd]="krbd rbd-nbd dmuser-rbd"
	[remote]="krbd rbd-nbd dmuser-rbd nbd dmuser-nbd"
)
# BENCH_SIZE's default of a set, when not 1G
declare -A size_sets=(
	[remote]=512M
)
# The jobs of a set, when BENCH_JOBS is unset (all jobs for a set not here): for
# rbd the remote goals' jobs and the iodepth-1 latencies (a round trip to the OSD).
declare -A job_sets=(
	[rbd]="randread-4k-qd1 randread-4k-qd32 randwrite-4k-qd1 randwrite-4k-qd32"
	[remote]="randread-4k-qd1 randread-4k-qd32 randwrite-4k-qd1 randwrite-4k-qd32"
)
# The stages pass's entries (PATH:JOB) of each set, when BENCH_STAGES is unset:
# iodepth 1 for the local set (#19: where dm-user's latency goes next to loop's),
# the remote goals' jobs for nbd (#17).
declare -A stage_sets=(
	[local]="dmuser-1:randread-4k-qd1 dmuser-1:randwrite-4k-qd1"
	[nbd]="dmuser-nbd:randread-4k-qd32 dmuser-nbd:randwrite-4k-qd32"
	[rbd]="dmuser-rbd:randread-4k-qd32 dmuser-rbd:randwrite-4k-qd32"
	[remote]="dmuser-rbd:randread-4k-qd32 dmuser-rbd:randwrite-4k-qd32 dmuser-nbd:randread-4k-qd32 dmuser-nbd:randwrite-4k-qd32"
)
# The paths whose daemon has libdmuser's USDT probes (dmuser-lat -p): dmuserd,
# and examples/dmu-passthrough.
stage_paths="dmuser-1 dmuser-N dmuser-1-nopoll dmuser-N-nopoll dmuser-1-copy dmuser-nbd dmuser-rbd dmuser-rbd-N dmuser-uring"
# The paths on the RBD image: the guest starts a Ceph cluster for them.
rbd_paths="krbd rbd-nbd dmuser-rbd dmuser-rbd-N"
all_jobs=$(sed -n 's/^\[\(.*\)\]$/\1/p' "$DMU_ROOT/tests/bench/jobs.fio" | grep -vx global | paste -sd' ')

kernel="" out=$DMU_ROOT/build/bench timeout="" profile=0
while (($#)); do
	case $1 in
	--profile) profile=1; shift ;;
	--kernel) kernel=${2:?}; shift 2 ;;
	--out) out=${2:?}; shift 2 ;;
	--timeout) timeout=${2:?}; shift 2 ;;
	-h | --help) sed -n '3,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; exit 0 ;;
	*) vm_log "unknown argument '$1' (try --help)"; exit 2 ;;
	esac
done

kver=$(if [[ -n $kernel ]]; then vm_resolve_kernel "$kernel"; else vm_kernels | tail -n1; fi)
[[ -n $kver ]] || vm_die "no installed generic -amd64 kernel with headers"
[[ -f $(vm_ko_path "$kver") ]] || vm_die "module not built for $kver (run make)"
for b in daemon/dmuserd bpf/dmuser-lat bpf/dmuser-top bpf/dmuser-inflight; do
	[[ -x $DMU_ROOT/$b ]] || vm_die "$b not built (run make)"
done
for c in fio nbdkit nbd-client gnuplot python3 perf bpftool jq; do
	command -v "$c" >/dev/null || vm_die "$c not found (run make deps)"
done

if ((profile)); then
	rm -rf "$out/profile"
	mkdir -p "$out/profile"
	exec "$DMU_ROOT/tests/vm/run.sh" -v --kernel "$kver" --smp 2 --timeout "${timeout:-420}" \
		--out "$out/profile" --env "PROF_THREADS=${PROF_THREADS:-4}" \
		--env "PROF_SECS=${PROF_SECS:-5}" --env "PROF_SIZE=${PROF_SIZE:-512M}" \
		-- tests/bench/guest-profile.sh
fi

set_name=${BENCH_SET:-local}
[[ -n ${path_sets[$set_name]:-} ]] ||
	{ vm_log "error: unknown BENCH_SET '$set_name' (known: ${!path_sets[*]})"; exit 2; }
runtime=${BENCH_RUNTIME:-2} ramp=${BENCH_RAMP:-1} repeat=${BENCH_REPEAT:-3}
threads=${BENCH_THREADS:-4} size=${BENCH_SIZE:-${size_sets[$set_name]:-1G}} mem=${BENCH_MEM:-3072} smp=${BENCH_SMP:-2}
paths=${BENCH_PATHS:-${path_sets[$set_name]}} jobs=${BENCH_JOBS:-${job_sets[$set_name]:-$all_jobs}} pairs=${BENCH_BPF_PAIRS:-8}
bpf_runtime=${BENCH_BPF_RUNTIME:-4} ipairs=${BENCH_INFLIGHT_PAIRS:-4}
base_ref=${BENCH_BASE_REF:-} mpairs=${BENCH_MODULE_PAIRS:-12}
stages=${BENCH_STAGES-${stage_sets[$set_name]}}

usage_die() { vm_log "error: $*"; exit 2; }
for v in runtime bpf_runtime repeat threads mem smp; do
	[[ ${!v} =~ ^[1-9][0-9]*$ ]] || usage_die "BENCH_${v^^} must be a positive integer, got '${!v}'"
done
[[ $ramp =~ ^[0-9]+$ ]] || usage_die "BENCH_RAMP must be a non-negative integer, got '$ramp'"
[[ $pairs =~ ^(0|[1-9][0-9]*)$ ]] || usage_die "BENCH_BPF_PAIRS must be a non-negative integer, got '$pairs'"
[[ $ipairs =~ ^(0|[1-9][0-9]*)$ ]] ||
	usage_die "BENCH_INFLIGHT_PAIRS must be a non-negative integer, got '$ipairs'"
[[ $mpairs =~ ^(0|[1-9][0-9]*)$ ]] ||
	usage_die "BENCH_MODULE_PAIRS must be a non-negative integer, got '$mpairs'"
[[ $size =~ ^[1-9][0-9]*[KMG]?$ ]] || usage_die "BENCH_SIZE must be a number with an optional K, M or G, got '$size'"
# Each name must be known; order is kept as given.
check_names() {
	local what=$1 known=" $2 " n
	shift 2
	(($#)) || usage_die "BENCH_${what^^} is empty"
	for n in "$@"; do
		[[ $known == *" $n "* ]] || usage_die "unknown $what '$n' (known:$known)"
	done
}
# shellcheck disable=SC2086 # word splitting of the lists is intended
check_names paths "$all_paths" $paths
# shellcheck disable=SC2086
check_names jobs "$all_jobs" $jobs
read -r -a path_list <<<"$paths"
read -r -a job_list <<<"$jobs"
# BENCH_STAGES: PATH:JOB entries, PATH one with USDT probes, JOB known, no
# duplicates; those whose path or job does not run are skipped in the guest.
read -r -a stage_list <<<"$stages"
stage_runs=0
declare -A stage_seen=()
for e in "${stage_list[@]}"; do
	[[ $e =~ ^([^:]+):([^:]+)$ ]] || usage_die "BENCH_STAGES entry '$e' is not PATH:JOB"
	[[ " $stage_paths " == *" ${BASH_REMATCH[1]} "* ]] ||
		usage_die "BENCH_STAGES entry '$e': path '${BASH_REMATCH[1]}' has no daemon with libdmuser's probes (known: $stage_paths)"
	[[ " $all_jobs " == *" ${BASH_REMATCH[2]} "* ]] ||
		usage_die "BENCH_STAGES entry '$e': unknown job '${BASH_REMATCH[2]}' (known: $all_jobs)"
	[[ -z ${stage_seen[$e]:-} ]] || usage_die "BENCH_STAGES has '$e' twice"
	stage_seen[$e]=1
	if [[ " $paths " == *" ${BASH_REMATCH[1]} "* && " $jobs " == *" ${BASH_REMATCH[2]} "* ]]; then
		stage_runs=$((stage_runs + 1))
	fi
done

# An RBD path: the guest starts the Ceph cluster and fills the image once.
use_rbd=0
for p in "${path_list[@]}"; do
	[[ " $rbd_paths " != *" $p "* ]] || use_rbd=1
done
if ((use_rbd)); then
	for c in ceph-mon ceph-osd ceph rbd rados; do
		command -v "$c" >/dev/null || vm_die "$c not found (run make deps: Ceph is in DEPS)"
	done
	if [[ " $paths " == *" rbd-nbd "* ]]; then
		command -v rbd-nbd >/dev/null || vm_die "rbd-nbd not found (run make bench-deps)"
	fi
	[[ $size =~ ^[1-9][0-9]*[MG]$ ]] ||
		usage_die "BENCH_SIZE must be in M or G with an RBD path (whole 4 MiB objects), got '$size'"
	# The image lives in the OSD's memstore (2 GiB, tests/ceph/cluster.sh; full at
	# 95 %), in the guest's RAM, and takes about twice its size there: after the
	# fill a 3072 MiB guest had used 780 MiB with a 256 MiB image, 2353 MiB with
	# 1 GiB (MemAvailable). Asked for: twice the image and 1 GiB for the rest.
	image_mib=$(($(numfmt --from=iec "$size") / 1048576))
	((image_mib % 4 == 0)) || usage_die "BENCH_SIZE $size is not a whole number of 4 MiB RBD objects"
	((image_mib <= 1536)) ||
		usage_die "BENCH_SIZE $size: an RBD image is at most 1536M (the OSD's memstore holds 2 GiB)"
	# and a path on the tmpfs file too: the file's size more
	need_mib=$((2 * image_mib + 1024))
	for p in "${path_list[@]}"; do
		if [[ " $rbd_paths " != *" $p "* ]]; then
			need_mib=$((need_mib + image_mib))
			break
		fi
	done
	((mem >= need_mib)) ||
		usage_die "BENCH_MEM $mem: an RBD image of $size (and a file of that size if a path needs one) needs at least $need_mib MiB in the guest"
fi

# The guest runs the pairs only with both dmuser-N paths and their job.
pair_runs=0
if [[ " $paths " == *" dmuser-N "* && " $paths " == *" dmuser-N-bpf "* &&
	" $jobs " == *" randread-4k-qd32 "* ]]; then
	pair_runs=$((2 * pairs))
fi
# The in-flight pairs need only dmuser-N and the job.
ipair_runs=0
if [[ " $paths " == *" dmuser-N "* && " $jobs " == *" randread-4k-qd32 "* ]]; then
	ipair_runs=$((2 * ipairs))
fi
# The module pairs need a base ref, dmuser-N and the job.
mpair_runs=0
if [[ -n $base_ref && " $paths " == *" dmuser-N "* && " $jobs " == *" randread-4k-qd32 "* ]]; then
	mpair_runs=$((2 * mpairs))
fi

# Boot and module load take ~30 s; each path set-up and teardown up to ~20 s, as
# does each start of the collectors (every other pair run), whose runs also take
# three bpftool listings; the poller of the in-flight pairs starts in a few
# seconds at most.
runs=$((repeat * ${#path_list[@]}))
if [[ -z $timeout ]]; then
	timeout=$((120 + runs * (${#job_list[@]} * (runtime + ramp + 2) + 20)))
	# each stages run: a path set-up and teardown, dmuser-lat's load and attach, one job
	timeout=$((timeout + stage_runs * (runtime + ramp + 2 + 20 + 15)))
	((pair_runs == 0)) || timeout=$((timeout + 20 + pair_runs * (bpf_runtime + ramp + 2 + 15)))
	((ipair_runs == 0)) || timeout=$((timeout + 20 + ipair_runs * (bpf_runtime + ramp + 2 + 5)))
	# each module run also unloads and loads the module and sets a device up
	((mpair_runs == 0)) || timeout=$((timeout + 20 + mpair_runs * (bpf_runtime + ramp + 2 + 25)))
	# the Ceph cluster's start (cluster.sh's bound: 90 s) and the image's fill,
	# allowed 4 MiB/s (TCG), and its stop
	if ((use_rbd)); then
		timeout=$((timeout + 90 + $(numfmt --from=iec "$size") / 4194304 + 30))
	fi
fi

# The base module: BENCH_BASE_REF's module/ (git archive) built for $kver by the
# top Makefile's own rule for build/kmod/<kver>/dm-user.ko, with ROOT at that
# source and BUILD at $out/base, so into $out/base/kmod/$kver/dm-user.ko.
base_env=()
if ((mpair_runs > 0)); then
	base_commit=$(git -C "$DMU_ROOT" rev-parse --verify -q "$base_ref^{commit}") ||
		usage_die "BENCH_BASE_REF '$base_ref' is not a commit of $DMU_ROOT"
	git -C "$DMU_ROOT" cat-file -e "$base_commit:module/dm-user.c" 2>/dev/null ||
		vm_die "BENCH_BASE_REF $base_ref ($base_commit) has no module/dm-user.c: no module to compare with"
	head_commit=$(git -C "$DMU_ROOT" rev-parse HEAD)
	if [[ -n $(git -C "$DMU_ROOT" status --porcelain -- module) ]]; then
		head_commit+=" (module/ has uncommitted changes)"
	fi
	base=$out/base
	rm -rf "$base"
	mkdir -p "$base/src"
	# (the Makefile reads daemon/version.h under ROOT when it starts)
	# shellcheck disable=SC2046 # the ref's daemon/version.h, or nothing
	git -C "$DMU_ROOT" archive "$base_commit" module \
		$(git -C "$DMU_ROOT" ls-tree --name-only "$base_commit" daemon/version.h) | tar -x -C "$base/src"
	vm_log "building the base module of $base_ref ($base_commit) for $kver in $base/"
	make -s -f "$DMU_ROOT/Makefile" ROOT="$base/src" BUILD="$base" KVERS="$kver" \
		"$base/kmod/$kver/dm-user.ko" ||
		vm_die "building the module of BENCH_BASE_REF $base_ref ($base_commit) for $kver failed"
	base_env=(--env "BENCH_BASE_KO=$base/kmod/$kver/dm-user.ko"
		--env "BENCH_BASE_COMMIT=$base_commit" --env "BENCH_HEAD_COMMIT=$head_commit")
fi

guest=$out/guest
rm -rf "$guest"
mkdir -p "$guest"
vm_log "$kver: ${#path_list[@]} paths x ${#job_list[@]} jobs x $repeat repetitions, $stage_runs stages runs, then $((pair_runs / 2)) BPF, $((ipair_runs / 2)) in-flight and $((mpair_runs / 2)) module pairs of ${bpf_runtime}+${ramp} s, ${runtime}+${ramp} s per job (guest timeout ${timeout} s)"
rc=0
"$DMU_ROOT/tests/vm/run.sh" -v --kernel "$kver" --smp "$smp" --mem "$mem" --timeout "$timeout" \
	--out "$guest" \
	--env "BENCH_RUNTIME=$runtime" --env "BENCH_RAMP=$ramp" --env "BENCH_REPEAT=$repeat" \
	--env "BENCH_THREADS=$threads" --env "BENCH_SIZE=$size" \
	--env "BENCH_PATHS=$paths" --env "BENCH_JOBS=$jobs" --env "BENCH_BPF_PAIRS=$pairs" \
	--env "BENCH_STAGES=$stages" \
	--env "BENCH_BPF_RUNTIME=$bpf_runtime" --env "BENCH_INFLIGHT_PAIRS=$ipairs" \
	--env "BENCH_MODULE_PAIRS=$mpairs" --env "BENCH_BASE_REF=$base_ref" "${base_env[@]}" \
	-- tests/bench/guest-bench.sh || rc=$?

[[ -s $guest/manifest.tsv ]] || vm_die "the guest wrote no manifest (exit $rc; console: $guest/console.log)"
report_rc=0
python3 "$DMU_ROOT/tests/bench/report.py" --guest "$guest" --out "$out" \
	--meta "accel=tcg" --meta "guest_mem_mib=$mem" || report_rc=$?
echo
cat "$out/results.md"
echo
vm_log "results: $out/results.json, $out/results.md, $out/results.png"
if ((rc != 0 || report_rc != 0)); then
	vm_log "error: some runs failed (guest exit $rc, report exit $report_rc): see $guest/logs/"
	exit 1
fi
