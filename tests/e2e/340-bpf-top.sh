#!/bin/bash
# timeout: 300
# dmuser-top in batch (-b), automatic batch (stdout not a TTY) and --json modes,
# while fio runs randrw 4k on device A and device B sits idle:
#   - one row per dm-user device, the idle one included (found through the DM
#     ioctls), the busy one first when sorted by IOPS;
#   - A's read and write IOPS are plausible: within a factor of 3 of the rates
#     in A's block-layer statistics (/sys/dev/block/M:m/stat) over the same time; MB/s = IOPS x 4096 bytes; latency percentiles present, p50 <= p99;
#     queue depth > 0, and QD + INFL (time averages) at most 4.2 at iodepth 4
#     and within [1/3, 1.5] of the block layer's aqu-sz (windows differ a
#     little); no errors;
#   - -d shows only the named device;
#   - the curses view starts, draws its title and the devices, and ends after -n
#     (on a pseudo-terminal from script(1));
#   - exact totals: with a known load (fio with number_ios=1000 on A, nothing
#     else), --json's read_ios_total, write_ios_total and their bytes at exit
#     equal fio's reads, writes and bytes, and B's stay 0.
# The rates above are checked within a factor of 3 because the tool's
# intervals and the block layer's differ in where they start; the totals are
# exact.
. "$(dirname "$0")/lib.sh"
. "$DMU_ROOT/bpf/tests/lib.sh"

bpf_require
tmp=$(dmu_tmpdir)
a=dmu-test-top-a
b=dmu-test-top-b

dmu_load
bpf_device "$b" "$tmp/disk-b" 32M
daemon_b=$DMU_DAEMON_PID
bpf_device "$a" "$tmp/disk-a" 64M --threads 2

# reads and writes completed by the dm device, and the time its requests spent
# in it (time_in_queue, ms), from its block-layer statistics
stat_file=/sys/dev/block/$(dmsetup info -c --noheadings -o major,minor --separator : "$a")/stat
dm_stat() { awk '{ print $1, $5, $11 }' "$stat_file"; }
# fio has completed I/O on $a (read without a fork: this is polled)
fio_going() { local s; read -ra s <"$stat_file"; ((s[0] + s[4] > 0)); }

log "fio randrw 4k iodepth 4 on $a"
dmu_bg fio --name=top --filename="/dev/mapper/$a" --ioengine=libaio --direct=1 --bs=4k \
	--rw=randrw --iodepth=4 --time_based --runtime=600 --output=/dev/null
fio_pid=$DMU_BG_PID
wait_until 60 fio_going || die "fio completed no I/O on $a in 60 s"

# Attaching patches kernel text, which stalls I/O in a TCG guest, and each
# attached tool slows the I/O it watches.  So the format-only tools run first,
# then each measured tool alone, and its reference is the block layer's rate
# over exactly that tool's run.
bpf_tool_spawn "$tmp/auto" dmuser-top -s lat -i 1 -n 2
p3=$BPF_TOOL_PID
bpf_tool_spawn "$tmp/only-b" dmuser-top -b -d "$b" -i 0.5 -n 2
p4=$BPF_TOOL_PID
bpf_tool_ready "$tmp/auto" "$p3"
bpf_tool_ready "$tmp/only-b" "$p4"
for p in "$p3" "$p4"; do
	wait_until 60 _dmu_not_running "$p" || die "dmuser-top (pid $p) did not stop after -n"
	bpf_tool_stop "$p"
done

# measured NAME ARGS...: run one dmuser-top alone; sets ref_r and ref_w to the
# block layer's rates from its first interval to its exit, and ref_q to its
# average number of requests in the device (iostat's aqu-sz)
measured() {
	local out=$tmp/$1 pid r0 w0 q0 r1 w1 q1 t0 t1
	shift
	bpf_tool_spawn "$out" dmuser-top "$@"
	pid=$BPF_TOOL_PID
	bpf_tool_ready "$out" "$pid"
	read -r r0 w0 q0 < <(dm_stat)
	t0=$EPOCHREALTIME
	wait_until 60 _dmu_not_running "$pid" || die "dmuser-top (pid $pid) did not stop after -n"
	read -r r1 w1 q1 < <(dm_stat)
	t1=$EPOCHREALTIME
	bpf_tool_stop "$pid"
	ref_r=$(awk -v n=$((r1 - r0)) -v a="$t0" -v b="$t1" 'BEGIN { print n / (b - a) }')
	ref_w=$(awk -v n=$((w1 - w0)) -v a="$t0" -v b="$t1" 'BEGIN { print n / (b - a) }')
	ref_q=$(awk -v n=$((q1 - q0)) -v a="$t0" -v b="$t1" 'BEGIN { print n / 1000 / (b - a) }')
}
measured json --json 1 4
ref_json_r=$ref_r ref_json_w=$ref_w ref_json_q=$ref_q
measured batch -b -i 1 -n 4
_dmu_running "$fio_pid" || die "fio ended early"
dmu_stop "$fio_pid" || true

log "dmuser-top -b:"
cat "$tmp/batch"
log "dmuser-top --json (first line): $(head -1 "$tmp/json")"
log "block-layer stat of $a while -b ran: $ref_r reads/s, $ref_w writes/s; while --json ran: $ref_json_r, $ref_json_w"

# plausible VALUE REF WHAT: VALUE within a factor of 3 of REF
plausible() {
	awk -v v="$1" -v r="$2" 'BEGIN { exit !(r > 0 && v >= r / 3 && v <= r * 3) }' ||
		die "$3: $1, not within a factor of 3 of the block layer's $2"
}

# --- batch ----------------------------------------------------------------------
assert_eq "$(grep -c '^DEVICE  *R/s  *W/s  *RMB/s  *WMB/s  *Q_p50  *Q_p99  *D_p50  *D_p99  *T_p50  *T_p99  *QD  *INFL  *ERR  *TMO$' "$tmp/batch")" 4 \
	"batch header lines"
assert_eq "$(grep -c "dmuser-top: 2 devices" "$tmp/batch")" 4 "batch: 2 devices in every interval"
# the rows after each header: A first (sorted by IOPS), then B
assert_eq "$(awk '/^DEVICE/ { getline; print $1 }' "$tmp/batch" | sort -u)" "$a" "batch: busiest device first"
assert_eq "$(awk -v d="$b" '$1 == d { print $2 "/" $3 }' "$tmp/batch" | sort -u)" "0.0/0.0" "batch: idle device B"
r=$(awk -v d="$a" '$1 == d { s += $2; n++ } END { print s / n }' "$tmp/batch")
w=$(awk -v d="$a" '$1 == d { s += $3; n++ } END { print s / n }' "$tmp/batch")
plausible "$r" "$ref_r" "batch: average read IOPS of $a"
plausible "$w" "$ref_w" "batch: average write IOPS of $a"
awk -v d="$a" '$1 == d && ($6 == "-" || $11 == "-" || $14 != 0 || $15 != 0) { exit 1 }' "$tmp/batch" ||
	die "batch: $a rows lack latencies or show errors"

# --- json -------------------------------------------------------------------------
assert_eq "$(wc -l <"$tmp/json")" 4 "JSON lines (one per interval) in:
$(cut -c1-200 "$tmp/json")
"
jq -e . "$tmp/json" >/dev/null || die "not JSON: $(cat "$tmp/json")"
assert_eq "$(jq -r '[.devices[].device] | sort | join(" ")' "$tmp/json" | sort -u)" "$a $b" "JSON: devices"
sel=".devices[] | select(.device == \"$a\")"
r=$(jq -s "[.[] | $sel | .read_iops] | add / length" "$tmp/json")
w=$(jq -s "[.[] | $sel | .write_iops] | add / length" "$tmp/json")
plausible "$r" "$ref_json_r" "JSON: average read IOPS of $a"
plausible "$w" "$ref_json_w" "JSON: average write IOPS of $a"
jq -e "$sel | (.read_mbps - .read_iops * 4096 / 1e6 | fabs) < 0.01 + .read_mbps / 100" "$tmp/json" >/dev/null ||
	die "JSON: read MB/s is not read IOPS x 4 KiB"
jq -e "$sel | [.latency_us[] | .count > 0 and .p50 > 0 and .p50 <= .p99] | all" "$tmp/json" >/dev/null ||
	die "JSON: latency percentiles of $a missing or p50 > p99"
jq -e "$sel | .queue_depth > 0 and .errors_total == 0 and .timeouts_total == 0" "$tmp/json" >/dev/null ||
	die "JSON: $a queue depth or errors wrong"
# QD and INFL are time averages (Little's law): together at most fio's iodepth
# of 4 (5 % for requests that began in the previous interval), and the part of
# the block layer's aqu-sz (requests in the dm device) spent queued or with the
# daemon, which under TCG is most of it: between a third of it and all of it
qd=$(jq -s "[.[] | $sel | .queue_depth + .in_flight] | add / length" "$tmp/json")
log "JSON: average QD + INFL of $a: $qd; block layer's aqu-sz over the same run: $ref_json_q"
jq -e "$sel | .queue_depth + .in_flight <= 4.2" "$tmp/json" >/dev/null ||
	die "JSON: QD + INFL of $a above fio's iodepth 4: $(jq -c "$sel | [.queue_depth, .in_flight]" "$tmp/json")"
awk -v q="$qd" -v r="$ref_json_q" 'BEGIN { exit !(r > 0 && q >= r / 3 && q <= r * 1.5 + 0.05) }' ||
	die "JSON: average QD + INFL of $a is $qd, not within [1/3, 1.5] of the block layer's aqu-sz $ref_json_q"
jq -e ".devices[] | select(.device == \"$b\") | .read_iops == 0 and .latency_us.total.p50 == null" \
	"$tmp/json" >/dev/null || die "JSON: idle device B shows activity"

# --- automatic batch (stdout is a file here), sorted by latency ---------------------
assert_eq "$(grep -c '^DEVICE' "$tmp/auto")" 2 "automatic batch mode when stdout is not a TTY"
grep -q "sort lat" "$tmp/auto" || die "-s lat not reported: $(cat "$tmp/auto")"

# --- -d: only B ----------------------------------------------------------------------
assert_eq "$(awk '/^DEVICE/ { getline; print $1 }' "$tmp/only-b" | sort -u)" "$b" "-d $b rows"
grep -q "^$a " "$tmp/only-b" && die "-d $b shows $a: $(cat "$tmp/only-b")"

# --- curses, on a pseudo-terminal made by script(1) ------------------------------------
log "curses mode on a pty"
TERM=xterm script -qfec "$BPF_TOP -i 0.3 -n 3" "$tmp/tty.log" >/dev/null </dev/null ||
	die "dmuser-top in curses mode failed: $(cat "$tmp/tty.log")"
grep -aq 'dmuser-top - ' "$tmp/tty.log" || die "no curses title line: $(cat -v "$tmp/tty.log" | head)"
grep -aq "$a" "$tmp/tty.log" || die "curses view lacks $a: $(cat -v "$tmp/tty.log" | head)"

# --- exact totals with a known load -----------------------------------------------------
log "exact totals: dmuser-top --json around fio randrw number_ios=1000 on $a"
bpf_tool_start "$tmp/exact" dmuser-top --json -i 2
pid=$BPF_TOOL_PID
bpf_fio "$tmp/exact-fio.json" "/dev/mapper/$a" --rw=randrw --number_ios=1000 --size=64M --iodepth=4
bpf_tool_stop "$pid"
fr=$(bpf_fio_ios "$tmp/exact-fio.json" read)
fw=$(bpf_fio_ios "$tmp/exact-fio.json" write)
(((fr + fw) >= 1000)) || die "fio did only $((fr + fw)) I/Os with number_ios=1000"
last=$(tail -n 1 "$tmp/exact")
log "fio read $fr, wrote $fw; dmuser-top's last line: $last"
assert_eq "$(jq -r "$sel | .read_ios_total" <<<"$last")" "$fr" "dmuser-top: reads of $a since it started"
assert_eq "$(jq -r "$sel | .write_ios_total" <<<"$last")" "$fw" "dmuser-top: writes of $a since it started"
assert_eq "$(jq -r "$sel | .other_ios_total" <<<"$last")" 0 "dmuser-top: other ops of $a"
assert_eq "$(jq -r "$sel | .read_bytes_total" <<<"$last")" "$((fr * 4096))" "dmuser-top: read bytes of $a"
assert_eq "$(jq -r "$sel | .write_bytes_total" <<<"$last")" "$((fw * 4096))" "dmuser-top: write bytes of $a"
assert_eq "$(jq -r ".devices[] | select(.device == \"$b\") | .read_ios_total + .write_ios_total" <<<"$last")" 0 \
	"dmuser-top: I/Os of idle $b"
# the intervals' counts add up to the same: nothing lost between two readings
assert_eq "$(jq -s "[.[] | $sel | .latency_us.total.count] | add" "$tmp/exact")" "$((fr + fw))" \
	"dmuser-top: total-stage counts of $a over its intervals"

dmu_daemon_stop
dmu_daemon_stop "$daemon_b"
dmu_unload
