#!/bin/bash
# timeout: 600
# examples/dmu-null (two channels, the library's metrics over HTTP):
# writes succeed and are dropped, and fio then verifies that the whole
# device reads as zeroes; the JSON metrics count the requests of a
# known dd run exactly and the Prometheus text agrees, and names the
# kernel's numbers dmuser_kernel_* as dmuserd does; bpftrace sees the
# library's USDT probes fire exactly once per request; SIGTERM removes the device.
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"
dmu_kernel_independent "libdmuser and its examples over the protocol, which 030, 170 and 200 check with dmuserd here"

tmp=$(dmu_tmpdir)
name=dmu-test-null
dev=/dev/mapper/$name
prog=$DMU_ROOT/examples/dmu-null
[[ -x $prog ]] || die "not built: $prog (make)"
dmu_load

dmu_bg "$prog" -t 2 -m localhost:0 "$name" 64 >"$tmp/out"
pid=$DMU_BG_PID
wait_for_path "$dev" 30 || die "$dev did not appear"
has_metrics() { grep -q '^metrics=' "$tmp/out"; }
wait_until 10 has_metrics || die "no metrics= line: $(cat "$tmp/out")"
addr=$(sed -n 's/^metrics=//p' "$tmp/out")
log "metrics on $addr"

fio --name=null-write --filename="$dev" --rw=randwrite --bs=16k --size=64M --iodepth=16 \
	--ioengine=libaio --direct=1 --output="$tmp/fio-w.out" || die "fio write failed: $(cat "$tmp/fio-w.out")"
fio --name=null-verify --filename="$dev" --rw=randwrite --bs=64k --size=64M --iodepth=16 \
	--ioengine=libaio --direct=1 --verify=pattern --verify_pattern=0x00 --verify_only=1 \
	--verify_fatal=1 --output="$tmp/fio-v.out" || die "the device does not read as zeroes: $(cat "$tmp/fio-v.out")"

json() { curl -sf "http://$addr/metrics"; }
reads_before=$(json | jq '.ops.read.requests')
dd if="$dev" of=/dev/null bs=4k count=300 iflag=direct status=none
doc=$(json)
reads=$(($(jq '.ops.read.requests' <<<"$doc") - reads_before))
log "metrics: $reads reads for 300 dd reads; threads $(jq .threads <<<"$doc"), batched channels $(jq .channels_batched <<<"$doc")"
assert_eq "$reads" 300 "reads counted for dd's 300 reads"
assert_eq "$(jq .threads <<<"$doc")" 2 "threads (channels)"
assert_eq "$(jq .target.available <<<"$doc")" true "target status in the metrics"
assert_eq "$(jq .ops.read.errors <<<"$doc")" 0 "read errors"
curl -sf "http://$addr/metrics?format=prometheus" >"$tmp/lib.prom" || die "no Prometheus text"
prom_reads=$(awk '$1 == "dmuser_requests_total{op=\"read\"}" { print $2 }' "$tmp/lib.prom")
(( prom_reads >= reads_before + 300 )) || die "Prometheus counts $prom_reads reads"
# The kernel's numbers under the names dmuserd and dmuser-exporter give them
# (README.md, "Metric names"); the library rendered the pre-0.2 dmuser_target_*
# gauges until issue 16.
"$DMU_ROOT/tests/unit/prom-check.py" "$tmp/lib.prom" --require dmuser_kernel_status_up \
	dmuser_kernel_channels dmuser_kernel_requests_total dmuser_kernel_errors_total ||
	die "the library's Prometheus text fails prom-check.py"
sample() { awk -v n="$1" '$1 == n { print $2 }' "$tmp/lib.prom"; }
assert_eq "$(sample dmuser_kernel_status_up)" 1 "dmuser_kernel_status_up"
assert_eq "$(sample dmuser_kernel_channels)" 2 "dmuser_kernel_channels"
grep -q '^# TYPE dmuser_kernel_requests_total counter$' "$tmp/lib.prom" ||
	die "dmuser_kernel_requests_total is not a counter"
! grep -q '^dmuser_target_' "$tmp/lib.prom" || die "pre-0.2 dmuser_target_* names in the library's text"

# The USDT probes, through the shared library the example loaded.  BEGIN
# runs once every probe is attached, so its line is the signal to start the
# load; dd's exit makes bpftrace exit and print its maps.  No signal stops
# it: with bpftrace 0.17 a SIGINT sent right after "Attaching" was lost (it
# slept on in epoll_wait for the 600 s of the test, on both kernels in CI),
# and a SIGTERM sent after BEGIN once went unanswered for 30 s.
so=$DMU_ROOT/lib/libdmuser.so.1
dmu_bg bpftrace -p "$pid" -e "BEGIN { printf(\"ready\\n\"); }
	usdt:$so:dmuser:request_received { @rx = count(); }
	usdt:$so:dmuser:reply_sent { @tx = count(); }
	usdt:$so:dmuser:backend_done { @finished = count(); }
	tracepoint:sched:sched_process_exit /comm == \"dd\"/ { exit(); }" >"$tmp/bt.out" 2>&1
bt=$DMU_BG_PID
attached() {
	grep -qx ready "$tmp/bt.out" && return 0
	_dmu_running "$bt" || die "bpftrace ended before attaching: $(cat "$tmp/bt.out")"
	return 1
}
wait_until 120 attached || die "bpftrace did not attach: $(cat "$tmp/bt.out")"
dd if="$dev" of=/dev/null bs=4k count=200 iflag=direct status=none
wait_until 120 _dmu_not_running "$bt" || die "bpftrace did not exit after dd did: $(cat "$tmp/bt.out")"
rc=0
dmu_stop "$bt" || rc=$?
assert_eq "$rc" 0 "bpftrace exit status"
log "bpftrace: $(tr '\n' ' ' <"$tmp/bt.out")"
for probe in rx tx finished; do
	n=$(sed -n "s/^@$probe: //p" "$tmp/bt.out")
	assert_eq "${n:-none}" 200 "USDT dmuser probe @$probe fires for 200 reads"
done

rc=0
dmu_stop "$pid" 30 || rc=$?
assert_eq "$rc" 0 "dmu-null exit status after SIGTERM"
! dmu_dm_exists "$name" || die "$name still exists after SIGTERM"
dmu_unload
