#!/bin/bash
# timeout: 600
# The dashboards against a real Prometheus (Debian's package, started here on
# loopback with dashboards/prometheus/prometheus.yml and dm-user.rules.yml,
# scraping every 2 s and evaluating every second) that scrapes dmuserd and
# dmuser-exporter while fio runs:
#   - both targets are up;
#   - every PromQL expression of dashboards/grafana/dm-user.json (panel targets,
#     heatmaps and template-variable queries), with $instance, $device and
#     $__rate_interval substituted, returns at least one series
#     (dashboards/tests/query-dashboard.py);
#   - the IOPS the dashboard shows for the device is not 0 during fio;
#   - every recording rule returns data, every rule evaluates without error;
#   - stopping dmuserd makes DmUserDaemonDown pending.
# Kernel-independent (Prometheus, the rules and the dashboard's queries over
# the exporter's and dmuserd's metric names; 400 checks the exporter's numbers
# on every kernel): among Debian's stock kernels it runs on 6.1, since 6.12
# already runs 420, the other kernel-independent browser test, and make check
# waits for the slower guest; it runs on every kernel of the debug lane.
. "$(dirname "$0")/lib.sh"
. "$DMU_ROOT/dashboards/tests/lib.sh"

dmu_kernel_independent "Prometheus over the exporter's and dmuserd's metrics, whose numbers 400 checks here"

obs_require prometheus promtool fio jq curl python3
tmp=$(dmu_tmpdir)
name=dmu-test-prom
ip link set lo up

dmu_load
obs_daemon "$name" "$tmp/disk" 64M --threads 2
daemon=$DMU_DAEMON_PID
d_addr=${OBS_DAEMON_URL#http://}
obs_exporter "$tmp/exp.out"
e_addr=${OBS_EXPORTER_URL#http://}

log "Prometheus: dmuserd at $d_addr, dmuser-exporter at $e_addr"
port=$((20000 + SRANDOM % 20000))
# longer than the test can run: it is stopped once the queries are done
# paced: requests to count, not a saturated guest (unpaced, fio took all of
# the emulated CPU from Prometheus, and the test 83 to 170 s)
obs_fio "$tmp/fio.json" "$OBS_DEV" 900 --rate_iops=300,300
fio_pid=$OBS_FIO_PID
obs_prometheus "$tmp/prom" "$port" "dmuserd=$d_addr" "dmuser-exporter=$e_addr"
prom=$OBS_PROM_URL
log "Prometheus ready at $prom"

# query EXPR: the number of series, or -1 on an error
query() {
	curl -sf --get --data-urlencode "query=$1" "$prom/api/v1/query" |
		jq -r 'if .status == "success" then (.data.result | length) else -1 end'
}
value() {
	curl -sf --get --data-urlencode "query=$1" "$prom/api/v1/query" |
		jq -r '.data.result[0].value[1] // "none"'
}
both_up() { [[ $(value 'sum(up{job=~"dmuserd|dmuser-exporter"})') == 2 ]]; }
# 10 s of samples at 2 s: every rate() window of the test has some
has_rate() {
	local v
	v=$(value "sum(rate(dmuser_kernel_requests_total{device=\"$name\"}[10s]))")
	[[ $v != none ]] && awk -v v="$v" 'BEGIN { exit !(v > 0) }'
}
wait_until 60 both_up || die "targets not up: $(curl -s "$prom/api/v1/targets" | head -c 2000)"
wait_until 60 has_rate || die "no I/O rate from the exporter in Prometheus"
dmu_running "$fio_pid" || die "fio ended before the queries"

log "every dashboard expression"
"$OBS_TESTS/query-dashboard.py" "$prom" "$OBS_DASH/grafana/dm-user.json" \
	"$d_addr|$e_addr" "$name" 10s >"$tmp/queries.txt" ||
	die "dashboard expressions without data: $(grep -v '^ok' "$tmp/queries.txt")"
tail -1 "$tmp/queries.txt"
dmu_running "$fio_pid" || die "fio ended before the IOPS query"
iops=$(value "sum(rate(dmuser_kernel_requests_total{instance=~\"$e_addr\", device=~\"$name\"}[10s]))")
log "IOPS panel: $iops"
awk -v v="$iops" 'BEGIN { exit !(v > 0) }' || die "the IOPS panel shows $iops during fio"

log "recording rules"
mapfile -t records < <(awk '$1 == "-" && $2 == "record:" { print $3 }' "$OBS_DASH/prometheus/dm-user.rules.yml")
((${#records[@]} >= 5)) || die "only ${#records[@]} recording rules found"
rec_ok() {
	local r
	for r in "${records[@]}"; do
		(($(query "$r") > 0)) || return 1
	done
}
wait_until 60 rec_ok || {
	for r in "${records[@]}"; do
		echo "$r: $(query "$r") series"
	done
	die "a recording rule returns no data"
}
log "${#records[@]} recording rules return data"
curl -sf "$prom/api/v1/rules" >"$tmp/rules.json"
assert_eq "$(jq '[.data.groups[].rules[]] | length' "$tmp/rules.json")" \
	"$(grep -cE '^ *- (record|alert):' "$OBS_DASH/prometheus/dm-user.rules.yml")" "rules loaded"
assert_eq "$(jq -r '[.data.groups[].rules[] | select(.health != "ok") | .name] | join(" ")' "$tmp/rules.json")" \
	"" "rules whose evaluation failed"
kill -INT "$fio_pid" 2>/dev/null || true
wait "$fio_pid" || true # its numbers are not under test here
sed -i "/^$fio_pid\$/d" "$_DMU_STATE/pids"

log "dmuserd stopped: DmUserDaemonDown pending"
dmu_daemon_stop "$daemon"
pending() {
	curl -sf "$prom/api/v1/alerts" |
		jq -e '[.data.alerts[] | select(.labels.alertname == "DmUserDaemonDown")] | length > 0' >/dev/null
}
wait_until 30 pending || die "DmUserDaemonDown not raised: $(curl -s "$prom/api/v1/alerts")"
obs_stop "$OBS_PROM_PID" TERM
obs_stop "$OBS_EXPORTER_PID" TERM
dmu_unload
