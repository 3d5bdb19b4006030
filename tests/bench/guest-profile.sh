#!/bin/bash
# Runs INSIDE the guest (started by tests/bench/bench.sh --profile through tests/vm/run.sh):
# profile dm-user under fio 4k randread iodepth 32 with dmuserd at 1 and at N
# threads. For each thread count, while one fio runs:
#   1. perf record -a -g (cpu-clock: TCG has no PMU) for PROF_SECS, then
#      perf report: top kernel+user symbols, and the callers of the spin-lock
#      slow path;
#   2. perf stat for PROF_SECS: the daemon's syscalls (by tracepoint) and context
#      switches, and system-wide wakeups; the daemon's request counter (metrics)
#      read before and after gives syscalls and wakeups per request;
#   3. bpf/dmuser-lat -S all for PROF_SECS: queue / daemon / total histograms.
# Results go to $DMU_OUT/<threads>/ as text files.
#
# Environment: PROF_THREADS (N, default 4), PROF_SECS (5), PROF_SIZE (512M).
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/../e2e/lib.sh"

n=${PROF_THREADS:-4} secs=${PROF_SECS:-5} size=${PROF_SIZE:-512M}
name=dmu-bench
out=${DMU_OUT:?}

command -v perf >/dev/null || die "perf not found (Debian package linux-perf)"
dmu_load
tmp=$(dmu_tmpdir)
file=$tmp/backing.img
fallocate -l "$size" "$file"
{
	echo "kernel $(uname -r), $(nproc) vCPUs, $(perf --version)"
	echo "fio randread bs=4k iodepth=32 libaio direct=1 on /dev/mapper/$name, file $size on tmpfs"
} >"$out/env.txt"

requests() { curl -sf "http://$1/metrics" | jq '[.ops[].requests] | add'; }
loaded() { (($(requests "$1") > 1000)); }

syscalls=raw_syscalls:sys_enter
for s in read write pread64 pwrite64 readv writev preadv pwritev futex ppoll epoll_wait io_uring_enter; do
	[[ -d /sys/kernel/tracing/events/syscalls/sys_enter_$s ]] && syscalls+=,syscalls:sys_enter_$s
done

for t in 1 "$n"; do
	d=$out/$t
	mkdir -p "$d"
	log "dmuserd --threads $t"
	dmu_daemon_start "$name" "$file" "$size" --threads "$t" --metrics 0
	addr=$(sed -n 's/^metrics=//p' "$DMU_DAEMON_READY")
	dev=/dev/mapper/$name
	wait_for_path "$dev" 10 || dmsetup mknodes "$name"

	dmu_bg fio --name=randread-4k-qd32 --filename="$dev" --rw=randread --bs=4k --iodepth=32 \
		--ioengine=libaio --direct=1 --norandommap --randrepeat=0 --time_based --runtime=300 \
		--eta=never --output-format=json --output="$d/fio.json"
	fio_pid=$DMU_BG_PID
	# Steady state: the daemon has answered requests since fio started.
	wait_until 30 loaded "$addr" || die "no load on $dev"

	log "perf record -a -g, ${secs}s"
	perf record -q -a -g -F 499 -e cpu-clock --no-buildid --no-buildid-cache -o "$d/perf.data" -- sleep "$secs" 2>"$d/perf-record.err"
	log "perf stat, ${secs}s"
	r0=$(requests "$addr")
	perf stat -x, -e "$syscalls,context-switches,cpu-migrations" -p "$DMU_DAEMON_PID" \
		-o "$d/perf-stat-daemon.csv" -- sleep "$secs" &
	p1=$!
	perf stat -x, -a -e sched:sched_wakeup,sched:sched_switch,context-switches \
		-o "$d/perf-stat-system.csv" -- sleep "$secs"
	wait "$p1"
	r1=$(requests "$addr")
	echo "$((r1 - r0))" >"$d/requests-during-perf-stat.txt"

	log "dmuser-lat -S all, ${secs}s"
	"$DMU_ROOT/bpf/dmuser-lat" -S all -Q -d "$name" "$secs" 1 >"$d/dmuser-lat.txt" 2>&1

	# fio exits 1 when a signal ends it: judge its report instead.
	kill -INT "$fio_pid"
	wait_until 30 dmu_not_running "$fio_pid" || die "fio ignored SIGINT"
	dmu_stop "$fio_pid" || true
	# (it also writes "fio: terminating on signal 2" before the JSON)
	[[ $(sed -n '/^{/,$p' "$d/fio.json" | jq '[.jobs[].error] | add') == 0 ]] ||
		die "fio failed: see $d/fio.json"
	dmu_daemon_stop

	# Symbols from the running kernel's kallsyms: perf would otherwise take
	# /lib/modules/<kver>/build/vmlinux (the headers' copy) and resolve nothing.
	log "perf report"
	report=(perf report -i "$d/perf.data" --kallsyms=/proc/kallsyms --ignore-vmlinux --stdio
		--no-children)
	"${report[@]}" --sort sym -g none --percent-limit 0.3 \
		>"$d/perf-top-symbols.txt" 2>/dev/null
	"${report[@]}" --sort comm,dso -g none \
		>"$d/perf-comm-dso.txt" 2>/dev/null
	"${report[@]}" --sort sym \
		--symbols native_queued_spin_lock_slowpath -g caller,0.5,callee,function,percent \
		>"$d/perf-spinlock-callers.txt" 2>/dev/null || true
	"${report[@]}" --sort comm,sym -g none \
		--percent-limit 0.5 >"$d/perf-comm-symbols.txt" 2>/dev/null
	rm -f "$d/perf.data"
done
dmu_unload
