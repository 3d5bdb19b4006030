#!/bin/bash
# timeout: 600
# Every bpftrace program in bpf/oneliners/ runs against live I/O and prints
# non-empty output of its expected shape, and the ones that count print
# exactly the numbers of a known load:
#   - the normal load: fio randrw 4k, iodepth 8, number_ios=600 (fio says how
#     many were reads and writes), on a 2-thread daemon that takes 1 ms per
#     request (so dmu-slow.bt 1 has requests to show); each group of programs
#     gets its own load, and each counting program must report that load's
#     reads R and writes W exactly: requests by op (dmu-ops), bytes (dmu-bytes,
#     its size histogram), completions and KiB in total (dmu-iostat; its
#     intervals, printed then cleared, within 5 % below), requests per channel
#     and per reader
#     thread (dmu-channels, dmu-daemon-threads), samples of every histogram
#     (dmu-qdepth, dmu-stages, dmu-latency-by-op, dmu-total-by-op), and one
#     line per request (dmu-snoop);
#   - dmu-errors.bt gets a device nobody serves, with timeout_ms 200: its reads
#     time out;
#   - dmu-stall.bt gets a device with stall_ms 100 whose daemon (1 thread)
#     sleeps 400 ms before each answer: each of its 3 reads fires one
#     dm_user_stall while the thread is blocked in clock_nanosleep, so the
#     script prints exactly 3 stall lines, each with "blocked in the kernel"
#     and a kernel stack through do_nanosleep or hrtimer_nanosleep.
# dmu-total-by-op.bt reads the latency the module measured (dm_user_complete's
# total_ns): besides its shape, every sample must be at least the daemon's 1 ms.
# Starting bpftrace (LLVM) is most of the cost in an emulated guest, so the
# programs that share a load run in groups of $group at once: each runs
# "bpftrace -c WAIT", and bpftrace starts WAIT only once its probes are
# attached.  WAIT marks itself ready and blocks on a lock the test holds; when
# every program of the group is ready the test runs the load once, then lets
# go of the lock: each WAIT exits, and its bpftrace prints its maps and ends.
# Exact means exact unless the kernel itself skipped program runs during the
# load (recursion_misses, summed over the loaded programs, see prog_misses):
# then a count may fall short by at most that many events, and the test says
# so.  Stock kernels skipped none in any run; the debug lane's fully
# preemptible kernel skipped some.
# A new .bt file without an entry in "expect" below fails the test.
# The outputs are kept in $DMU_OUT/bpf-oneliners/ when DMU_OUT is set.
. "$(dirname "$0")/lib.sh"
. "$DMU_ROOT/bpf/tests/lib.sh"

bpf_require
tmp=$(dmu_tmpdir)
name=dmu-test-bt
noserve=dmu-test-bt-noserve
stalldev=dmu-test-bt-stall
keep=${DMU_OUT:+$DMU_OUT/bpf-oneliners}
[[ -z $keep ]] || mkdir -p "$keep"

dmu_load
bpf_device "$name" "$tmp/disk" 64M --threads 2 --inject-delay-us 1000
dev=$BPF_DEV
main_daemon=$DMU_DAEMON_PID
# the daemon of dmu-stall.bt's device: holds each request 400 ms, 4 times
# stall_ms (the target checks every stall_ms / 4)
bpf_device "$stalldev" "$tmp/stall-disk" 4M --threads 1 --inject-delay-us 400000
stall_daemon=$DMU_DAEMON_PID
dmsetup message "$stalldev" 0 stall_ms 100

# the loads, run by the test while a group of programs is attached; $1 is
# where fio writes its JSON
load() {
	bpf_fio "$1" "$dev" --rw=randrw --iodepth=8 --number_ios=600 --size=64M
}
# reads of a device nobody serves, each ended by the 200 ms timeout
timeouts() {
	local i
	echo '{"jobs":[{"read":{"total_ios":3},"write":{"total_ios":0}}]}' >"$1"
	for i in 1 2 3; do
		! dd if="/dev/mapper/$noserve" of=/dev/null bs=4k count=1 skip="$i" iflag=direct 2>/dev/null ||
			die "a read of $noserve succeeded"
	done
}
# reads of a device whose daemon holds each one past stall_ms
stalls() {
	local i
	echo '{"jobs":[{"read":{"total_ios":3},"write":{"total_ios":0}}]}' >"$1"
	for i in 1 2 3; do
		dd if="/dev/mapper/$stalldev" of=/dev/null bs=4k count=1 skip="$i" iflag=direct status=none ||
			die "a read of $stalldev failed"
	done
}
# WAIT: "/bin/sh FILE NAME" (bpftrace -c splits its command on spaces, and
# /tmp may be noexec)
cat >"$tmp/wait.sh" <<EOF
: >"$tmp/ready.\$1"
exec flock "$tmp/go.lock" true
EOF
dmsetup create --noudevsync "$noserve" --table "0 2048 user 0 2048 $noserve 2 timeout_ms 200"
dmsetup mknodes "$noserve"

num='[0-9]+'
dev_re="$num, $num"
hist_row='^\[[0-9]+[KMG]?, [0-9]+[KMG]?\) +[0-9]+ \|@*'
lhist_row='^\[[0-9]+, [0-9]+\) +[0-9]+ \|@*'
# script -> "load|arg|regex;regex;..." (each regex must match at least one line)
declare -A expect=(
	[dmu-ops.bt]="load||^@requests\[$dev_re, read\]: $num\$;^@requests\[$dev_re, write\]: $num\$"
	[dmu-latency-by-op.bt]="load||^@usecs\[read\]: ?\$;^@usecs\[write\]: ?\$;$hist_row"
	[dmu-total-by-op.bt]="load||^@usecs\[read\]: ?\$;^@usecs\[write\]: ?\$;$hist_row"
	[dmu-daemon-threads.bt]="load||^@usecs\[[^,]+, $num\]: ?\$;^@requests\[[^,]+, $num\]: $num\$;$hist_row"
	[dmu-qdepth.bt]="load||^@queued: ?\$;^@in_flight: ?\$;$lhist_row"
	[dmu-slow.bt]="load|1|^TIME +DEV +SEQ +OP;^[0-9:]{8} +$num:$num +$num +[01] +$num +4096 +$num +$num +$num +0 +0\$"
	[dmu-errors.bt]="timeouts||^TIME +COMM;^[0-9:]{8} .* complete +$num +0 +timeout +-$num\$;^@failed\[timeout, 0, -$num\]: $num\$"
	[dmu-bytes.bt]="load||^@bytes\[read\]: $num\$;^@bytes\[write\]: $num\$;^@size\[read\]: ?\$;$hist_row"
	[dmu-channels.bt]="load||^@requests\[$dev_re, $num\]: $num\$;^@readers\[$num, [^,]+, $num\]: $num\$"
	[dmu-stages.bt]="load||^@queue_us: ?\$;^@daemon_us: ?\$;^@total_us: ?\$;$hist_row"
	[dmu-iostat.bt]="load||^[0-9]{2}:[0-9]{2}:[0-9]{2}\$;^@ios\[$dev_re, [01]\]: $num\$;^@kib\[$dev_re, [01]\]: $num\$"
	[dmu-stall.bt]="stalls||^TIME +DEV +SEQ +OP +CHAN +PID +TID +AGE_ms +HELD_ms\$;^[0-9:]{8} +$num:$num +$num +0 +0 +$num +$num +$num +$num\$;^ +tid $num \([^)]+\) blocked in the kernel for $num ms:\$;^[[:space:]]+(do|hrtimer)_nanosleep\+$num\$"
	[dmu-snoop.bt]="load||^TIME\(ms\) +DEV;^$num +$num:$num +[01] +$num +4096 +[^ ]+ +$num +$num +$num 0\$"
)

# run_group LOAD SCRIPT...: the scripts attached at once around one LOAD
declare -A pid=()
_all_ready() {
	local base
	for base in "$@"; do
		[[ -e $tmp/ready.$base ]] || { _dmu_running "${pid[$base]}" || die "$base: bpftrace ended before attaching: $(cat "$tmp/$base.out.err")"; return 1; }
	done
}
declare -A fio_of=() misses_of=()
# prog_misses: the runs the kernel skipped, summed over every loaded BPF
# program (bpf_prog_info.recursion_misses; 0 where the kernel does not
# count them).  A tracepoint program is skipped when another one is active
# on its CPU (bpf_prog_active), which a fully preemptible kernel (the
# debug lane's) allows inside a bpf() map syscall: a bpftrace reading its
# maps (dmu-iostat's interval) preempted by the daemon completing a request.
prog_misses() { bpftool prog show -j | jq '[.[].recursion_misses // 0] | add // 0'; }
groups=0
run_group() {
	local load=$1 base arg rc fio m0 m
	shift
	groups=$((groups + 1))
	fio=$tmp/fio.$groups.json
	log "attaching: $*"
	exec 9>"$tmp/go.lock"
	flock 9
	for base in "$@"; do
		IFS='|' read -r _ arg _ <<<"${expect[$base]}"
		# shellcheck disable=SC2086 # $arg is empty or one word
		dmu_bg bpftrace -c "/bin/sh $tmp/wait.sh $base" "$BPF_DIR/oneliners/$base" $arg \
			>"$tmp/$base.out" 2>"$tmp/$base.out.err" 9>&-
		pid[$base]=$DMU_BG_PID
	done
	wait_until 300 _all_ready "$@" || die "not attached within 300 s: $*"
	log "all attached; load: $load"
	m0=$(prog_misses)
	"$load" "$fio"
	m=$(($(prog_misses) - m0))
	((m == 0)) || log "the kernel skipped $m program run(s) during the load (recursion_misses)"
	for base in "$@"; do fio_of[$base]=$fio misses_of[$base]=$m; done
	flock -u 9
	exec 9>&-
	for base in "$@"; do
		wait_until 120 _dmu_not_running "${pid[$base]}" || die "$base: bpftrace did not end"
		rc=0
		dmu_stop "${pid[$base]}" || rc=$?
		((rc == 0)) || die "$base: bpftrace failed (exit $rc): $(cat "$tmp/$base.out.err")"
	done
}

group=6
n=0
for load in load timeouts stalls; do
	scripts=()
	for bt in "$BPF_DIR"/oneliners/*.bt; do
		base=$(basename "$bt")
		[[ -n ${expect[$base]:-} ]] || die "$base has no expected output in $0"
		if [[ ${expect[$base]%%|*} == "$load" ]]; then
			scripts+=("$base")
		fi
	done
	for ((i = 0; i < ${#scripts[@]}; i += group)); do
		run_group "$load" "${scripts[@]:i:group}"
	done
done

for bt in "$BPF_DIR"/oneliners/*.bt; do
	base=$(basename "$bt")
	IFS='|' read -r _ _ regexes <<<"${expect[$base]}"
	out=$tmp/$base.out
	[[ -z $keep ]] || cp "$out" "$keep/$base.out"
	[[ -s $out ]] || die "$base: no output"
	IFS=';' read -ra res <<<"$regexes"
	for re in "${res[@]}"; do
		grep -Eq -- "$re" "$out" || die "$base: no line matches /$re/ in:
$(head -40 "$out")"
	done
	log "$base: $(wc -l <"$out") lines, ok"
	n=$((n + 1))
done
((n >= 8)) || die "only $n one-liners in bpf/oneliners"

# --- exact counts --------------------------------------------------------------------
# bt_sum FILE ERE: the sum of the values of the lines "@map[...]: N" matching ERE
bt_sum() { awk -v re="$2" '$0 ~ re { s += $NF } END { print s + 0 }' "$1"; }
# bt_hist FILE HEADER: the sum of the counts of the histogram under the line HEADER
bt_hist() {
	awk -v h="$2" '$0 == h || $0 == h " " { on = 1; next }
		on && /^\[/ { sub(/^\[[^])]*[])] */, ""); s += $1; next }
		on { on = 0 } END { print s + 0 }' "$1"
}
# exact SCRIPT WHAT GOT WANT [UNIT]: GOT is WANT; only when the kernel
# skipped program runs during the script's load (misses_of) may GOT fall
# short, by at most that many events of UNIT each
exact() {
	local m=${misses_of[$1]:-0} unit=${5:-1}
	[[ $3 == "$4" ]] && return
	if ((m > 0 && $3 < $4 && $4 - $3 <= m * unit)); then
		log "$1: $2 is $3 of $4: $((($4 - $3) / unit)) event(s) short, within the $m run(s) the kernel skipped"
		return
	fi
	die "$1: $2 is $3, not $4 (fio: ${fio_r} reads, ${fio_w} writes; the kernel skipped $m program run(s)):
$(head -60 "$tmp/$1.out")"
}
# fio's reads and writes per load, asked of jq once per load, not per script
declare -A ios_of
for f in "${fio_of[@]}"; do
	[[ -n ${ios_of[$f]:-} ]] || ios_of[$f]="$(bpf_fio_ios "$f" read) $(bpf_fio_ios "$f" write)"
done
for bt in "$BPF_DIR"/oneliners/*.bt; do
	base=$(basename "$bt")
	out=$tmp/$base.out
	read -r fio_r fio_w <<<"${ios_of[${fio_of[$base]}]}"
	t=$((fio_r + fio_w))
	case $base in
	dmu-ops.bt)
		exact "$base" "reads" "$(bt_sum "$out" '^@requests\[[0-9]+, [0-9]+, read\]:')" "$fio_r"
		exact "$base" "writes" "$(bt_sum "$out" '^@requests\[[0-9]+, [0-9]+, write\]:')" "$fio_w" ;;
	dmu-bytes.bt)
		exact "$base" "read bytes" "$(bt_sum "$out" '^@bytes\[read\]:')" "$((fio_r * 4096))" 4096
		exact "$base" "write bytes" "$(bt_sum "$out" '^@bytes\[write\]:')" "$((fio_w * 4096))" 4096
		exact "$base" "read sizes" "$(bt_hist "$out" '@size[read]:')" "$fio_r" ;;
	dmu-iostat.bt)
		exact "$base" "reads in @ios_total" "$(bt_sum "$out" '^@ios_total\[[0-9]+, [0-9]+, 0\]:')" "$fio_r"
		exact "$base" "writes in @ios_total" "$(bt_sum "$out" '^@ios_total\[[0-9]+, [0-9]+, 1\]:')" "$fio_w"
		exact "$base" "KiB in @kib_total" "$(bt_sum "$out" '^@kib_total\[')" "$((t * 4))" 4
		# the intervals, the last partial one included, miss at most what
		# landed between a print and its clear
		n=$(bt_sum "$out" '^@ios\[')
		((n <= t && n >= t * 95 / 100)) || die "$base: the intervals add up to $n of $t completions"
		;;
	dmu-channels.bt)
		exact "$base" "requests over the channels" "$(bt_sum "$out" '^@requests\[')" "$t"
		exact "$base" "requests over the readers" "$(bt_sum "$out" '^@readers\[')" "$t" ;;
	dmu-daemon-threads.bt)
		exact "$base" "requests over the threads" "$(bt_sum "$out" '^@requests\[')" "$t" ;;
	dmu-qdepth.bt)
		exact "$base" "queued samples" "$(bt_hist "$out" '@queued:')" "$t"
		exact "$base" "in_flight samples" "$(bt_hist "$out" '@in_flight:')" "$t" ;;
	dmu-stages.bt)
		exact "$base" "queue samples" "$(bt_hist "$out" '@queue_us:')" "$t"
		exact "$base" "daemon samples" "$(bt_hist "$out" '@daemon_us:')" "$t"
		exact "$base" "total samples" "$(bt_hist "$out" '@total_us:')" "$t" ;;
	dmu-latency-by-op.bt | dmu-total-by-op.bt)
		exact "$base" "read samples" "$(bt_hist "$out" '@usecs[read]:')" "$fio_r"
		exact "$base" "write samples" "$(bt_hist "$out" '@usecs[write]:')" "$fio_w" ;;
	dmu-snoop.bt)
		exact "$base" "request lines" "$(grep -cE '^[0-9]+ +[0-9]+:[0-9]+ ' "$out")" "$t" ;;
	dmu-errors.bt)
		exact "$base" "timed-out reads" "$(bt_sum "$out" '^@failed\[timeout, 0, -[0-9]+\]:')" 3
		exact "$base" "timeout lines" "$(grep -cE ' complete +[0-9]+ +0 +timeout ' "$out")" 3 ;;
	dmu-slow.bt) ;;	# which requests are slow is not known in advance
	dmu-stall.bt)
		exact "$base" "stall lines" "$(grep -cE '^[0-9:]{8} +[0-9]+:[0-9]+ ' "$out")" 3
		exact "$base" "stalled threads blocked in the kernel" "$(grep -c ' blocked in the kernel for ' "$out")" 3 ;;
	*) die "$base: no exact count in $0 (say why if it has none)" ;;
	esac
	log "$base: exact"
done

# total_ns holds the daemon's 1 ms (--inject-delay-us 1000): no request of the
# load took under 512 us, so no histogram row starts below [512, 1K).  (1000 us
# itself is in [512, 1K): the rows from [1K, 2K) up are not guaranteed.)
out=$tmp/dmu-total-by-op.bt.out
awk -F'[][, )]+' '/^\[/ && $2 !~ /[KMG]/ && $2 + 0 < 512 { bad = 1 } END { exit bad }' "$out" ||
	die "dmu-total-by-op.bt: a total_ns under 512 us with a 1 ms daemon:
$(cat "$out")"

dmsetup remove --noudevsync "$noserve"
dmu_daemon_stop "$stall_daemon"
dmu_daemon_stop "$main_daemon"
dmu_unload
