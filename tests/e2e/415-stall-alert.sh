#!/bin/bash
# timeout: 300
# Issue 20: a stalled request raises DmUserRequestStalled in a live
# Prometheus (Debian's package, on loopback with dashboards/prometheus/'s
# configuration and rules, scraping every 2 s and evaluating every second,
# as in 410) that scrapes dmuser-exporter.
# A device with stall_ms 200 is served by a python client
# (tests/tools/dmuproto.py): it answers a first read at once, so the
# exporter has the device and Prometheus scrapes its
# dmuser_kernel_stalls_total as 0; the recording rule then says 0 and no
# DmUserRequestStalled is pending or firing.  The client then holds a
# second read: the target fires dm_user_stall once it is held 200 ms, the
# exporter counts 1, and the alert fires (it has no for:, so nothing of the
# rules file is rewritten for the test), once, with device = the dm name,
# host = the exporter's address without its port, severity warning;
# DmUserRequestStuck (30 s for 1 minute) does not.  Then the client
# answers, and the read completes.
# Kernel-independent like 410 (Prometheus over the exporter's metrics; 097
# checks the stall event and the status fields on every kernel): among
# Debian's stock kernels it runs on 6.12 (410 on 6.1: make check splits
# these between its two guests by time); it runs on every kernel of the
# debug lane.
. "$(dirname "$0")/lib.sh"
. "$DMU_ROOT/dashboards/tests/lib.sh"

dmu_kernel_independent --on 6.12 "Prometheus' alert over the exporter's stall count, which 097's status fields check here"

obs_require prometheus promtool jq curl python3
tmp=$(dmu_tmpdir)
name=dmu-test-stall-alert
sectors=8192
dev=/dev/mapper/$name
export PYTHONDONTWRITEBYTECODE=1
ip link set lo up

dmu_load
dmsetup create --noudevsync "$name" --table "0 $sectors user 0 $sectors $name 2 stall_ms 200"
dmsetup mknodes "$name"
[[ -b $dev ]] || die "$dev is not a block device"

obs_exporter "$tmp/exp.out"
e_addr=${OBS_EXPORTER_URL#http://}
port=$((20000 + SRANDOM % 20000))
obs_prometheus "$tmp/prom" "$port" "dmuser-exporter=$e_addr"
prom=$OBS_PROM_URL
log "Prometheus ready at $prom, scraping dmuser-exporter at $e_addr"

# The client: answers the first request, holds the second until told.
cat >"$tmp/client.py" <<'EOF'
import os, sys
sys.path.insert(0, os.environ['DMU_ROOT'] + '/tests/tools')
import dmuproto as p

name, tmp = sys.argv[1], sys.argv[2]
disk = p.RamDisk(8192 * 512)
fd = p.open_ctl(name)
m, payload = p.read_request(fd)
p.write_all(fd, disk.answer(m, payload))
m, payload = p.read_request(fd)
p.put(tmp + '/held', '%d\n' % m.seq)
p.wait_file(tmp + '/release', 60)
p.write_all(fd, disk.answer(m, payload))
p.put(tmp + '/answered')
p.wait_file(tmp + '/exit', 60)
os.close(fd)
EOF
dmu_bg python3 "$tmp/client.py" "$name" "$tmp"
client=$DMU_BG_PID
dd if="$dev" of=/dev/null bs=4k count=1 iflag=direct status=none || die "the first read failed"

# value EXPR: the first sample's value, "none" without one
value() {
	curl -sf --get --data-urlencode "query=$1" "$prom/api/v1/query" |
		jq -r '.data.result[0].value[1] // "none"'
}
# alerts NAME: "state host device severity" of each alert NAME, one a line
alerts() {
	curl -sf "$prom/api/v1/alerts" |
		jq -r --arg a "$1" '.data.alerts[] | select(.labels.alertname == $a) |
			"\(.state) \(.labels.host) \(.labels.device) \(.labels.severity)"'
}
stalls_is() { [[ $(value "dmuser_kernel_stalls_total{job=\"dmuser-exporter\", device=\"$name\"}") == "$1" ]]; }
rule_is() { [[ $(value "host_device:dmuser_kernel_stalls:increase5m{device=\"$name\"}") == "$1" ]]; }

# Before the stall: a 0 scraped, the rule evaluated over it, no alert.
wait_until 60 stalls_is 0 ||
	die "no dmuser_kernel_stalls_total 0 for $name in Prometheus: $(curl -s "$OBS_EXPORTER_URL/metrics?format=prometheus" | grep -E 'stall|^# HELP dmuser_kernel_requests' | head)"
wait_until 30 rule_is 0 ||
	die "host_device:dmuser_kernel_stalls:increase5m{device=\"$name\"} is $(value "host_device:dmuser_kernel_stalls:increase5m{device=\"$name\"}"), not 0"
assert_eq "$(alerts DmUserRequestStalled)" "" "DmUserRequestStalled before any stall"

# The stall: the second read, held by the client.
dmu_bg dd if="$dev" of=/dev/null bs=4k count=1 skip=1 iflag=direct status=none
dd_pid=$DMU_BG_PID
wait_for_path "$tmp/held" 30 || die "the client did not read the second request"
log "held: seq $(<"$tmp/held")"
firing() { [[ $(alerts DmUserRequestStalled) == *firing* ]]; }
wait_until 60 firing || {
	read -r -a st <<<"$(dmsetup status "$name" | cut -d' ' -f4-)"
	die "DmUserRequestStalled not firing (dmsetup status stalls ${st[11]:-?}; exporter's count $(value "dmuser_kernel_stalls_total{device=\"$name\"}")): $(curl -s "$prom/api/v1/alerts")"
}
assert_eq "$(alerts DmUserRequestStalled)" "firing 127.0.0.1 $name warning" \
	"DmUserRequestStalled (state host device severity)"
assert_eq "$(value "dmuser_kernel_stalls_total{job=\"dmuser-exporter\", device=\"$name\"}")" 1 \
	"stalls the exporter counted"
assert_eq "$(alerts DmUserRequestStuck)" "" "DmUserRequestStuck for a request held a few seconds"

# Let go: the read completes as usual.
: >"$tmp/release"
dmu_wait "$dd_pid" 30 || die "the held read failed once answered"
wait_for_path "$tmp/answered" 10 || die "the client did not answer"
: >"$tmp/exit"
wait_until 60 dmu_not_running "$client" || die "the client did not exit"
dmu_stop "$client" || die "the client failed"

obs_stop "$OBS_PROM_PID" TERM
obs_stop "$OBS_EXPORTER_PID" TERM
dmsetup remove --noudevsync "$name"
dmu_unload
