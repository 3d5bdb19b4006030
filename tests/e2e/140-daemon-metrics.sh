#!/bin/bash
# timeout: 600
# dmuserd's metrics endpoint against a real device:
#  - GET /metrics is JSON that validates against daemon/metrics.schema.json, and
#    reports the device, the threads and the target's own status;
#  - after fio jobs with known numbers of 4k writes and reads, the request and
#    byte counts grew by exactly fio's own totals, with no errors;
#  - ?format=prometheus and Accept: text/plain give Prometheus text 0.0.4 whose
#    histograms are cumulative with +Inf == _count, and whose counters agree with
#    the JSON;
#  - GET / is the live page (text/html); unknown paths give 404, other methods 405;
#  - scraping in a tight loop while fio runs does not disturb the I/O.
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

tmp=$(dmu_tmpdir)
name=dmu-test-metrics
size=$((64 << 20))
dev=/dev/mapper/$name
schema=$DMU_ROOT/daemon/metrics.schema.json
validate=$DMU_ROOT/tests/unit/validate-schema.py

ip link set lo up # the metrics listen on 127.0.0.1
dmu_load
truncate -s "$size" "$tmp/backing"
dmu_bg "$DMU_DAEMON" --file "$tmp/backing" --name "$name" --threads 2 \
	--metrics 0 --ready-file "$tmp/ready"
pid=$DMU_BG_PID
wait_for_path "$tmp/ready" 30 || die "dmuserd did not start"
port=$(sed -n 's/^metrics=127\.0\.0\.1://p' "$tmp/ready")
[[ $port =~ ^[1-9][0-9]*$ ]] || die "no 127.0.0.1 port in the ready file: $(cat "$tmp/ready")"
url=http://127.0.0.1:$port/metrics

# snapshot FILE [validate]: GET /metrics into FILE; with "validate", check it
# against the schema (python is slow to start in the guest: not every time)
snapshot() {
	curl -sf "$url" >"$1" || die "GET $url failed"
	[[ ${2:-} != validate ]] || "$validate" "$schema" "$1" ||
		die "$1 does not match $schema: $(head -c 2000 "$1")"
}
# field FILE JQ-PATH
field() { jq -r "$2" "$1"; }

log "first scrape"
snapshot "$tmp/m0.json" validate
assert_eq "$(field "$tmp/m0.json" .device.name)" "$name" "device.name"
assert_eq "$(field "$tmp/m0.json" .device.size_bytes)" "$size" "device.size_bytes"
assert_eq "$(field "$tmp/m0.json" .device.control_path)" "/dev/dm-user/$name" "device.control_path"
assert_eq "$(field "$tmp/m0.json" .threads)" 2 "threads"
assert_eq "$(field "$tmp/m0.json" .target.available)" true "target.available"
assert_eq "$(field "$tmp/m0.json" .target.fields.channels)" 2 "target.fields.channels"

log "fio: 4096 random 4k writes, then 2048 random 4k reads"
fio --name=w --filename="$dev" --rw=randwrite --bs=4k --size=16M --iodepth=8 \
	--ioengine=libaio --direct=1 --output-format=json --output="$tmp/w.json"
fio --name=r --filename="$dev" --rw=randread --bs=4k --size=8M --offset=32M --iodepth=8 \
	--ioengine=libaio --direct=1 --output-format=json --output="$tmp/r.json"
snapshot "$tmp/m1.json"

# delta JQ-PATH: growth of a counter from m0 to m1
delta() { echo $(($(field "$tmp/m1.json" "$1") - $(field "$tmp/m0.json" "$1"))); }
fio_w_ios=$(field "$tmp/w.json" '.jobs[0].write.total_ios')
fio_w_bytes=$(field "$tmp/w.json" '.jobs[0].write.io_bytes')
fio_r_ios=$(field "$tmp/r.json" '.jobs[0].read.total_ios')
fio_r_bytes=$(field "$tmp/r.json" '.jobs[0].read.io_bytes')
log "fio: $fio_w_ios writes ($fio_w_bytes bytes), $fio_r_ios reads ($fio_r_bytes bytes)"
assert_eq "$fio_w_ios" 4096 "fio write count"
assert_eq "$fio_r_ios" 2048 "fio read count"
assert_eq "$(delta .ops.write.requests)" "$fio_w_ios" "write requests counted"
assert_eq "$(delta .ops.write.bytes)" "$fio_w_bytes" "write bytes counted"
assert_eq "$(delta .ops.read.requests)" "$fio_r_ios" "read requests counted"
assert_eq "$(delta .ops.read.bytes)" "$fio_r_bytes" "read bytes counted"
assert_eq "$(delta .ops.write.latency_ns.count)" "$fio_w_ios" "write latency samples"
assert_eq "$(delta .ops.read.latency_ns.count)" "$fio_r_ios" "read latency samples"
assert_eq "$(field "$tmp/m1.json" '[.ops[].errors] | add')" 0 "errors"
assert_eq "$(field "$tmp/m1.json" .in_flight)" 0 "in_flight when idle"
(($(field "$tmp/m1.json" .ops.write.latency_ns.sum) > 0)) || die "no write latency recorded"

log "Prometheus text"
curl -sf -D "$tmp/prom.hdr" "$url?format=prometheus" >"$tmp/prom.txt"
grep -qi '^Content-Type: text/plain; version=0.0.4' "$tmp/prom.hdr" ||
	die "wrong Prometheus content type: $(cat "$tmp/prom.hdr")"
curl -sf -H 'Accept: text/plain;version=0.0.4;q=0.3,*/*;q=0.1' -D "$tmp/accept.hdr" "$url" >/dev/null
grep -qi '^Content-Type: text/plain; version=0.0.4' "$tmp/accept.hdr" ||
	die "Accept: text/plain did not select Prometheus text: $(cat "$tmp/accept.hdr")"
snapshot "$tmp/m2.json" # no I/O since the Prometheus scrape: the numbers agree

awk '
	/^#/ { next }
	/^dmuser_request_duration_seconds_bucket\{/ {
		match($0, /op="[a-z_]+"/); op = substr($0, RSTART + 4, RLENGTH - 5)
		if ($0 ~ /le="\+Inf"/) { inf[op] = $2; next }
		if ($2 < last[op]) { print "bucket decreases: " $0; bad = 1 }
		last[op] = $2; next
	}
	/^dmuser_request_duration_seconds_count\{/ {
		match($0, /op="[a-z_]+"/); count[substr($0, RSTART + 4, RLENGTH - 5)] = $2
	}
	!/^dmuser_/ { print "bad line: " $0; bad = 1 }
	END {
		n = 0
		for (op in count) {
			n++
			if (inf[op] != count[op]) { print op ": +Inf " inf[op] " != _count " count[op]; bad = 1 }
			if (inf[op] < last[op]) { print op ": +Inf below the last bucket"; bad = 1 }
		}
		if (n != 7) { print "expected 7 ops, found " n; bad = 1 }
		exit bad
	}' "$tmp/prom.txt" || die "Prometheus histograms are inconsistent"

prom() { awk -v k="$1" '$1 == k { print $2 }' "$tmp/prom.txt"; }
assert_eq "$(prom 'dmuser_requests_total{op="write"}')" "$(field "$tmp/m2.json" .ops.write.requests)" "Prometheus write requests"
assert_eq "$(prom 'dmuser_request_bytes_total{op="read"}')" "$(field "$tmp/m2.json" .ops.read.bytes)" "Prometheus read bytes"
assert_eq "$(prom 'dmuser_request_duration_seconds_count{op="write"}')" "$(field "$tmp/m2.json" .ops.write.latency_ns.count)" "Prometheus write latency count"
assert_eq "$(prom dmuser_threads)" 2 "Prometheus threads"
assert_eq "$(prom dmuser_kernel_channels)" 2 "Prometheus target channels"

log "routes"
code() { curl -s -o /dev/null -w '%{http_code}' "$@"; }
assert_eq "$(code "http://127.0.0.1:$port/")" 200 "GET / (the live page)"
assert_eq "$(curl -s -o /dev/null -w "%{content_type}" "http://127.0.0.1:$port/")" "text/html; charset=utf-8" "GET / content type"
assert_eq "$(code -X POST -d x "http://127.0.0.1:$port/")" 405 "POST /"
assert_eq "$(code "http://127.0.0.1:$port/nope")" 404 "GET /nope"
assert_eq "$(code -X POST -d x "$url")" 405 "POST /metrics"
assert_eq "$(code -X DELETE "$url")" 405 "DELETE /metrics"
assert_eq "$(code "$url?format=xml")" 400 "GET /metrics?format=xml"
assert_eq "$(code -I "$url")" 200 "HEAD /metrics"

log "scrapes during I/O"
fio --name=rw --filename="$dev" --rw=randrw --bs=4k --size=32M --iodepth=16 \
	--ioengine=libaio --direct=1 --output-format=json --output="$tmp/rw.json" &
fio_pid=$!
scrapes=0
while kill -0 "$fio_pid" 2>/dev/null; do
	curl -sf "$url" >/dev/null || die "a JSON scrape failed during I/O"
	curl -sf "$url?format=prometheus" >/dev/null || die "a Prometheus scrape failed during I/O"
	scrapes=$((scrapes + 2))
done
wait "$fio_pid" || die "fio failed while being scraped"
assert_eq "$(field "$tmp/rw.json" '.jobs[0].error')" 0 "fio error while scraped"
log "$scrapes scrapes during fio"
((scrapes > 0)) || die "no scrape happened during fio"
snapshot "$tmp/m3.json" validate
assert_eq "$(field "$tmp/m3.json" '[.ops[].errors] | add')" 0 "errors after scraping"

rc=0
dmu_stop "$pid" 30 || rc=$?
assert_eq "$rc" 0 "dmuserd exit status after SIGTERM"
! dmu_dm_exists "$name" || die "$name still exists after the daemon stopped"
dmu_unload
