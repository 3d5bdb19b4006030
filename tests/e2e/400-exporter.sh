#!/bin/bash
# timeout: 300
# bpf/dmuser-exporter, against real devices and fio:
#   - without the module it says so and exits 1; bad --listen is exit 2; with a
#     module older than 1.3.0 (its dm_user_complete format without the stage
#     latencies, bind-mounted in a private mount namespace) it says so, exit 1;
#   - it serves Prometheus text that `promtool check metrics` passes with no
#     problem and whose histograms are cumulative with +Inf == _count
#     (tests/unit/prom-check.py), and JSON with the same numbers;
#   - after fio jobs with known numbers of 4k writes and reads on device A, the
#     per-op request and byte counters grew by exactly fio's totals, and each
#     stage histogram's _count by the same number (each stage is recorded once
#     per request, at completion, from what the module measured: queue and
#     daemon for every request a daemon answered, here all); device B's load
#     is counted under B only, and an exporter started with -d A shows no B;
#   - the queued and in-flight histograms have exactly one sample per request
#     mapped on A;
#   - dmuserd's own view of the kernel's counts (dmuser_kernel_requests_total,
#     _errors_total, _timeouts_total from the target's status) equals the
#     exporter's for A: one name, one number;
#   - the exporter reads every user target's status line: A and B are there
#     before any I/O (dmuser_kernel_status_up, the 1.5.0 target's
#     dmuser_kernel_queued_requests_hwm), and after fio A's high-water marks,
#     requeues, stalls and depth waits equal dmuserd's (the device idle);
#     the JSON's target.fields agree;
#   - GET / is the live page, unknown paths 404, other methods 405;
#   - it pins the module while it runs and leaves nothing attached after
#     SIGTERM (exit 0), SIGINT too: rmmod works.
. "$(dirname "$0")/lib.sh"
. "$DMU_ROOT/dashboards/tests/lib.sh"

obs_require fio jq curl promtool python3 bpftool
tmp=$(dmu_tmpdir)
a=dmu-test-exp-a
b=dmu-test-exp-b
ip link set lo up

log "without the module"
[[ ! -d /sys/module/dm_user ]] || dmu_unload
rc=0
out=$("$OBS_EXPORTER" 2>&1) || rc=$?
assert_eq "$rc" 1 "exit status without the module"
assert_eq "$out" "dmuser-exporter: dm-user module not loaded (no /sys/module/dm_user)" "message"
rc=0
"$OBS_EXPORTER" --listen nope:x >/dev/null 2>&1 || rc=$?
assert_eq "$rc" 2 "exit status of a bad --listen"

dmu_load
rc=0
# (timeout: should it not refuse, it would serve until killed)
out=$(dmu_old_format timeout 30 "$OBS_EXPORTER" --listen 0) || rc=$?
assert_eq "$rc" 1 "exit status with a 1.2 format"
assert_eq "$out" "dmuser-exporter: dm-user module too old: dm_user_complete has no total_ns (need target version >= 1.3.0)" \
	"message with a 1.2 format"

obs_daemon "$b" "$tmp/disk-b" 64M
dev_b=$OBS_DEV
daemon_b=$DMU_DAEMON_PID
obs_daemon "$a" "$tmp/disk-a" 64M --threads 2
dev_a=$OBS_DEV
daemon_a=$DMU_DAEMON_PID
daemon_a_url=$OBS_DAEMON_URL/metrics
base_ref=$(cat /sys/module/dm_user/refcnt) # the devices and channels hold some

obs_exporter "$tmp/exp.out"
exp=$OBS_EXPORTER_PID
url=$OBS_EXPORTER_URL/metrics
obs_exporter "$tmp/exp-a.out" -d "$a"
exp_a=$OBS_EXPORTER_PID
url_a=$OBS_EXPORTER_URL/metrics
log "exporters up: $(head -1 "$tmp/exp.out")"
(($(cat /sys/module/dm_user/refcnt) > base_ref)) || die "the exporter does not pin the module"

# prom FILE 'series{labels}' -> value (0 when absent, as for a counter not yet seen)
prom() { awk -v k="$2" '$1 == k { v = $2 } END { print v + 0 }' "$1"; }
scrape() { curl -sf "$url?format=prometheus" >"$1" || die "GET $url?format=prometheus failed"; }

scrape "$tmp/p0.prom"
for d in "$a" "$b"; do
	assert_eq "$(prom "$tmp/p0.prom" "dmuser_kernel_status_up{device=\"$d\"}")" 1 "$d's status before any I/O"
	grep -q "^dmuser_kernel_queued_requests_hwm{device=\"$d\"} " "$tmp/p0.prom" ||
		die "no dmuser_kernel_queued_requests_hwm of $d before any I/O"
done
log "fio on A: 4096 random 4k writes, then 2048 random 4k reads; B busy meanwhile"
fio --name=b --filename="$dev_b" --rw=randread --bs=4k --size=8M --iodepth=4 \
	--ioengine=libaio --direct=1 --output-format=json --output="$tmp/b.json" &
fio_b=$!
fio --name=w --filename="$dev_a" --rw=randwrite --bs=4k --size=16M --iodepth=8 \
	--ioengine=libaio --direct=1 --output-format=json --output="$tmp/w.json"
fio --name=r --filename="$dev_a" --rw=randread --bs=4k --size=8M --offset=32M --iodepth=8 \
	--ioengine=libaio --direct=1 --output-format=json --output="$tmp/r.json"
wait "$fio_b" || die "fio on B failed"
scrape "$tmp/p1.prom"
curl -sf "$url" >"$tmp/m1.json" || die "GET $url (JSON) failed"
curl -sf -H 'Accept: text/plain;version=0.0.4' -D "$tmp/hdr" "$url" >/dev/null
grep -qi '^Content-Type: text/plain; version=0.0.4' "$tmp/hdr" ||
	die "Accept: text/plain did not give Prometheus text: $(cat "$tmp/hdr")"

log "promtool check metrics"
promtool check metrics <"$tmp/p1.prom" >"$tmp/promtool.out" 2>&1 ||
	die "promtool check metrics: $(cat "$tmp/promtool.out")"
[[ ! -s $tmp/promtool.out ]] || die "promtool check metrics reports: $(cat "$tmp/promtool.out")"
"$DMU_ROOT/tests/unit/prom-check.py" "$tmp/p1.prom" --require dmuser_kernel_requests_total \
	dmuser_kernel_request_bytes_total dmuser_kernel_errors_total dmuser_kernel_timeouts_total \
	dmuser_stage_latency_seconds dmuser_kernel_queued_requests_at_map dmuser_kernel_in_flight_requests_at_map ||
	die "the exporter's Prometheus text is inconsistent"

log "counts against fio"
delta() { echo $(($(prom "$tmp/p1.prom" "$1") - $(prom "$tmp/p0.prom" "$1"))); }
fw=$(jq '.jobs[0].write.total_ios' "$tmp/w.json")
fwb=$(jq '.jobs[0].write.io_bytes' "$tmp/w.json")
fr=$(jq '.jobs[0].read.total_ios' "$tmp/r.json")
frb=$(jq '.jobs[0].read.io_bytes' "$tmp/r.json")
fb=$(jq '.jobs[0].read.total_ios' "$tmp/b.json")
assert_eq "$fw" 4096 "fio writes"
assert_eq "$fr" 2048 "fio reads"
assert_eq "$(delta "dmuser_kernel_requests_total{device=\"$a\",op=\"write\"}")" "$fw" "A writes"
assert_eq "$(delta "dmuser_kernel_request_bytes_total{device=\"$a\",op=\"write\"}")" "$fwb" "A write bytes"
assert_eq "$(delta "dmuser_kernel_requests_total{device=\"$a\",op=\"read\"}")" "$fr" "A reads"
assert_eq "$(delta "dmuser_kernel_request_bytes_total{device=\"$a\",op=\"read\"}")" "$frb" "A read bytes"
assert_eq "$(delta "dmuser_kernel_requests_total{device=\"$b\",op=\"read\"}")" "$fb" "B reads"
assert_eq "$(delta "dmuser_kernel_requests_total{device=\"$b\",op=\"write\"}")" 0 "B writes"
for op in read write; do
	n=$fw
	[[ $op == read ]] && n=$fr
	for stage in queue daemon total; do
		assert_eq "$(delta "dmuser_stage_latency_seconds_count{device=\"$a\",op=\"$op\",stage=\"$stage\"}")" \
			"$n" "A $op $stage latency samples"
	done
	assert_eq "$(prom "$tmp/p1.prom" "dmuser_kernel_errors_total{device=\"$a\",op=\"$op\"}")" 0 "A $op errors"
	assert_eq "$(prom "$tmp/p1.prom" "dmuser_kernel_timeouts_total{device=\"$a\",op=\"$op\"}")" 0 "A $op timeouts"
done
assert_eq "$(delta "dmuser_kernel_queued_requests_at_map_count{device=\"$a\"}")" "$((fw + fr))" \
	"queue-depth samples: one per request mapped on A"
assert_eq "$(delta "dmuser_kernel_in_flight_requests_at_map_count{device=\"$a\"}")" "$((fw + fr))" \
	"in-flight samples: one per request mapped on A"
(($(prom "$tmp/p1.prom" "dmuser_kernel_queued_requests_at_map_sum{device=\"$a\"}") > 0)) || die "queue depth always 0 at iodepth 8"

log "dmuserd's view of the kernel's counts is the exporter's"
curl -sf "$daemon_a_url?format=prometheus" >"$tmp/d1.prom" || die "GET $daemon_a_url failed"
exp_total=0
for op in read write flush discard write_zeroes; do
	exp_total=$((exp_total + $(prom "$tmp/p1.prom" "dmuser_kernel_requests_total{device=\"$a\",op=\"$op\"}")))
done
assert_eq "$exp_total" "$((fw + fr))" "the exporter's completions on A"
assert_eq "$(prom "$tmp/d1.prom" dmuser_kernel_requests_total)" "$exp_total" \
	"dmuserd's dmuser_kernel_requests_total against the exporter's"
assert_eq "$(grep -c '^# TYPE dmuser_kernel_requests_total counter$' "$tmp/d1.prom")" 1 "dmuserd: a counter"
assert_eq "$(prom "$tmp/d1.prom" dmuser_kernel_errors_total)" 0 "dmuserd's dmuser_kernel_errors_total"
assert_eq "$(prom "$tmp/d1.prom" dmuser_kernel_timeouts_total)" 0 "dmuserd's dmuser_kernel_timeouts_total"
for m in dmuser_kernel_queued_requests_hwm dmuser_kernel_in_flight_requests_hwm \
	dmuser_kernel_requeues_total dmuser_kernel_stalls_total dmuser_kernel_depth_waits_total \
	dmuser_kernel_channels; do
	grep -q "^$m " "$tmp/d1.prom" || die "dmuserd has no $m"
	assert_eq "$(prom "$tmp/p1.prom" "$m{device=\"$a\"}")" "$(prom "$tmp/d1.prom" "$m")" \
		"the exporter's $m of A against dmuserd's"
done
(($(prom "$tmp/p1.prom" "dmuser_kernel_in_flight_requests_hwm{device=\"$a\"}") >= 1)) ||
	die "A's in-flight high-water mark is 0 after fio at iodepth 8"

log "JSON agrees"
jdev() { jq --arg d "$a" ".devices[] | select(.device == \$d) | $1" "$tmp/m1.json"; }
assert_eq "$(jdev .ops.write.requests)" "$(prom "$tmp/p1.prom" "dmuser_kernel_requests_total{device=\"$a\",op=\"write\"}")" "JSON write requests"
assert_eq "$(jdev .ops.read.latency_us.total.count)" "$(prom "$tmp/p1.prom" "dmuser_stage_latency_seconds_count{device=\"$a\",op=\"read\",stage=\"total\"}")" "JSON read total latency count"
assert_eq "$(jdev .queue_depth.sum)" "$(prom "$tmp/p1.prom" "dmuser_kernel_queued_requests_at_map_sum{device=\"$a\"}")" "JSON queue depth sum"
assert_eq "$(jdev .target.available)" true "JSON target.available"
assert_eq "$(jdev .target.fields.hwm_in_flight)" "$(prom "$tmp/p1.prom" "dmuser_kernel_in_flight_requests_hwm{device=\"$a\"}")" "JSON target.fields.hwm_in_flight"
assert_eq "$(jq -r .attach "$tmp/m1.json")" tp_btf "attach mode"

log "-d A sees A only"
curl -sf "$url_a?format=prometheus" >"$tmp/pa.prom" || die "GET $url_a failed"
! grep -q "device=\"$b\"" "$tmp/pa.prom" || die "-d $a exports $b: $(grep -m3 "device=\"$b\"" "$tmp/pa.prom")"
assert_eq "$(prom "$tmp/pa.prom" "dmuser_kernel_requests_total{device=\"$a\",op=\"write\"}")" \
	"$(prom "$tmp/p1.prom" "dmuser_kernel_requests_total{device=\"$a\",op=\"write\"}")" "-d A: A's writes"

log "routes"
code() { curl -s -o "$tmp/body" -w '%{http_code} %{content_type}' "$@"; }
assert_eq "$(code "$OBS_EXPORTER_URL/")" "200 text/html; charset=utf-8" "GET /"
grep -q 'data-points' "$tmp/body" || die "GET / is not the live page"
assert_eq "$(code "$OBS_EXPORTER_URL/nope")" "404 text/plain; charset=utf-8" "GET /nope"
assert_eq "$(code -X POST -d x "$url")" "405 text/plain; charset=utf-8" "POST /metrics"

log "stop: SIGTERM and SIGINT, nothing left attached"
obs_stop "$exp" TERM
obs_stop "$exp_a" INT
grep -q 'detached' "$tmp/exp.out.err" || die "no exit message: $(cat "$tmp/exp.out.err")"
assert_eq "$(cat /sys/module/dm_user/refcnt)" "$base_ref" "module references after the exporters exit"
assert_eq "$(bpftool prog show 2>/dev/null | grep -c ' name dmu_' || true)" 0 "BPF programs left loaded"
dmu_daemon_stop "$daemon_a"
dmu_daemon_stop "$daemon_b"
dmu_unload
