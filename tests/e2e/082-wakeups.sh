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
# The load also stays on few threads: the two busiest of the 4 workers have at
# least 90 % of their CPU time (a reader woken in poll() is busy from then on,
# and a batched reader hands off nothing queued on its own channel: without
# the two, 4 threads spread the same load over all of them, the two busiest
# with 55 to 79 % of it on 2 vCPUs).
# Busy polling (--poll-us): at iodepth 1 with a gap of 200 us between
# requests, a worker that polls 1 s after each request never sleeps (at most
# one switch per 20 requests); without it, it sleeps for most of them.
# The requests are counted by the target (dmsetup status), the switches from
# /proc/PID/task/*/status and the CPU time from /proc/PID/task/*/schedstat,
# over the fio run only.
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
# cpu PID: "ns ns ...", each worker's CPU time (schedstat), in task order
cpu() {
	local t
	for t in /proc/"$1"/task/*; do
		[[ $(cat "$t/comm") == dmuserd-w* ]] && awk '{ printf "%s ", $1 }' "$t/schedstat"
	done
}
# top2 "A..." "B...": the two largest of B - A, per worker, in % of their sum
top2() {
	local -a a b d
	local i
	read -ra a <<<"$1"
	read -ra b <<<"$2"
	for i in "${!b[@]}"; do d+=($((b[i] - a[i]))); done
	printf '%s\n' "${d[@]}" | sort -rn | awk '{ s += $1; if (NR <= 2) t += $1 }
		END { print (s ? int(100 * t / s) : 100) }'
}

# measure THREADS [DMUSERD OPTIONS] [-- FIO OPTIONS]: prints "requests switches
# top-two-share"; default fio: 64 MiB of 4k random reads at iodepth 32
measure() {
	local pid s0 s1 r0 r1 c0 c1 t=$1 d=() f=(--iodepth=32 --io_size=64M)
	shift
	while (($#)) && [[ $1 != -- ]]; do d+=("$1"); shift; done
	(($#)) && shift && f=("$@")
	dmu_daemon_start "$name" "$tmp/backing" "$size" --threads "$t" --metrics 0 "${d[@]}"
	pid=$DMU_DAEMON_PID
	dmsetup mknodes "$name"
	s0=$(switches "$pid") r0=$(completed) c0=$(cpu "$pid")
	fio --name=wake --filename="/dev/mapper/$name" --rw=randread --bs=4k "${f[@]}" \
		--ioengine=libaio --direct=1 --norandommap \
		--output="$tmp/fio" >/dev/null || die "fio failed: $(cat "$tmp/fio")"
	s1=$(switches "$pid") r1=$(completed) c1=$(cpu "$pid")
	dmu_daemon_stop "$pid"
	echo "$((r1 - r0)) $((s1 - s0)) $(top2 "$c0" "$c1")"
}

read -r req1 sw1 _ <<<"$(measure 1 --poll-us 0)"
log "1 thread: $sw1 voluntary switches over $req1 requests"
read -r req4 sw4 top <<<"$(measure 4 --poll-us 0)"
log "4 threads: $sw4 voluntary switches over $req4 requests; the two busiest workers had $top % of their CPU time"
((req1 >= 16384 && req4 >= 16384)) || die "fewer requests than fio's 16384: $req1, $req4"
# At most twice the one thread's, plus one per 10 requests: the old wakeups
# made 1.4 to 14 times that bound, under 1 and 2 vCPUs, on 6.1 and 6.12.
((sw4 <= 2 * sw1 + req4 / 10)) ||
	die "4 threads made $sw4 voluntary switches over $req4 requests, 1 thread $sw1 over $req1: more than twice, plus one per 10 requests"
((top >= 90)) || die "4 threads: the two busiest workers had only $top % of their CPU time: the load spread"

gap=(--iodepth=1 --number_ios=2000 --thinktime=200 --size=64M)
read -r reqp swp _ <<<"$(measure 1 --poll-us 1000000 -- "${gap[@]}")"
log "--poll-us 1000000, iodepth 1, 200 us apart: $swp voluntary switches over $reqp requests"
read -r req0 sw0 _ <<<"$(measure 1 --poll-us 0 -- "${gap[@]}")"
log "--poll-us 0, the same: $sw0 voluntary switches over $req0 requests"
((reqp >= 2000 && req0 >= 2000)) || die "fewer requests than fio's 2000: $reqp, $req0"
((sw0 >= req0 / 2)) || die "without polling only $sw0 switches over $req0 requests: the check below could not see sleeps"
((swp <= reqp / 20)) || die "with --poll-us 1000000 the worker slept $swp times over $reqp requests 200 us apart"
dmu_unload
