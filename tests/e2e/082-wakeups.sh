#!/bin/bash
# timeout: 300
# More daemon threads do not mean more wakeups: dmuserd --threads 4 under one
# fio (4k random reads at iodepth 32) makes at most twice the voluntary context
# switches of --threads 1 under the same load, plus one per 10 requests.  A reader busy with requests it
# took, and not blocked, is counted on to take what map() queues meanwhile,
# and when all readers sleep the one that took last is woken, so a load that
# one thread keeps up with stays on it (module/README.md, Design).  Before
# that, each request that found the readers asleep woke the next in turn:
# 0.4 to 1 switch per request against 0.01 to 0.27 for one thread (1 and 2
# vCPUs, 6.1 and 6.12), and about half the IOPS of one thread.
# The requests are counted by the target (dmsetup status), the switches from
# /proc/PID/task/*/status, over the fio run only.
. "$(dirname "$0")/lib.sh"

tmp=$(dmu_tmpdir)
name=dmu-test-wake
size=$((256 * 1024 * 1024))
truncate -s "$size" "$tmp/backing"
dmu_load

# switches PID: voluntary context switches of every thread of PID, summed
switches() {
	local f n=0 v
	for f in /proc/"$1"/task/*/status; do
		v=$(awk '/^voluntary_ctxt_switches:/ { print $2 }' "$f") || continue
		n=$((n + v))
	done
	echo "$n"
}
completed() { dmsetup status "$name" | awk '{ print $7 }'; }

# measure THREADS: prints "requests switches"
measure() {
	local pid s0 s1 r0 r1
	dmu_daemon_start "$name" "$tmp/backing" "$size" --threads "$1" --metrics 0
	pid=$DMU_DAEMON_PID
	dmsetup mknodes "$name"
	s0=$(switches "$pid") r0=$(completed)
	fio --name=wake --filename="/dev/mapper/$name" --rw=randread --bs=4k --iodepth=32 \
		--ioengine=libaio --direct=1 --norandommap --io_size=64M \
		--output="$tmp/fio" >/dev/null || die "fio failed: $(cat "$tmp/fio")"
	s1=$(switches "$pid") r1=$(completed)
	dmu_daemon_stop "$pid"
	echo "$((r1 - r0)) $((s1 - s0))"
}

read -r req1 sw1 <<<"$(measure 1)"
log "1 thread: $sw1 voluntary switches over $req1 requests"
read -r req4 sw4 <<<"$(measure 4)"
log "4 threads: $sw4 voluntary switches over $req4 requests"
((req1 >= 16384 && req4 >= 16384)) || die "fewer requests than fio's 16384: $req1, $req4"
# At most twice the one thread's, plus one per 10 requests: the old wakeups
# made 1.4 to 14 times that bound, under 1 and 2 vCPUs, on 6.1 and 6.12.
((sw4 <= 2 * sw1 + req4 / 10)) ||
	die "4 threads made $sw4 voluntary switches over $req4 requests, 1 thread $sw1 over $req1: more than twice, plus one per 10 requests"
dmu_unload
