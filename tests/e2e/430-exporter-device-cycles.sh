#!/bin/bash
# timeout: 600
# soak-timeout: 1800
# dmuser-exporter while dm-user devices come and go: 48 create/read/remove
# cycles (1000 under make soak) under one running exporter whose BPF map has
# room for 8 (device, op) records (--max-records 8), so that records it did
# not delete would fill it 6 times over (125 under make soak).  Each device is
# served by nobody and has timeout_ms 50: its one 4k read ends by timeout, which
# the exporter counts (dm_user_complete).  Every 16 cycles, and at the end:
#   - the scrape passes promtool check metrics (no duplicate series: one shared
#     "unknown" label past the devices the exporter had room for made
#     Prometheus reject the whole scrape);
#   - no series is labelled "unknown" or with a bare MAJ:MIN: a removed
#     device's series end under its name, they are never relabelled;
#   - at most the devices alive have series: removed devices are pruned;
#   - dmuser_exporter_untracked_requests_total is 0: no completion was lost to
#     a full map.
# After the cycles a new device is there before any I/O (its target's status
# line), and its reads are counted exactly, under its name.
. "$(dirname "$0")/lib.sh"
. "$DMU_ROOT/dashboards/tests/lib.sh"

obs_require jq curl promtool
tmp=$(dmu_tmpdir)
ip link set lo up
cycles=$(dmu_scale 48 1000)

dmu_load
obs_exporter "$tmp/exp.out" --max-records 8
exp=$OBS_EXPORTER_PID
url=$OBS_EXPORTER_URL/metrics

scrape() { curl -sf "$url?format=prometheus" >"$1" || die "GET $url?format=prometheus failed"; }
prom() { awk -v k="$2" '$1 == k { v = $2 } END { print v + 0 }' "$1"; }

# check_scrape FILE WHEN: the properties above, on one scrape
check_scrape() {
	local f=$1 when=$2 labels n
	promtool check metrics <"$f" >"$tmp/promtool.out" 2>&1 ||
		die "$when: promtool check metrics: $(head -20 "$tmp/promtool.out")"
	[[ ! -s $tmp/promtool.out ]] || die "$when: promtool check metrics reports: $(head -20 "$tmp/promtool.out")"
	labels=$(grep -o 'device="[^"]*"' "$f" | sort -u || true)
	! grep -qE 'device="(unknown|[0-9]+:[0-9]+)"' <<<"$labels" ||
		die "$when: series labelled unknown or by MAJ:MIN: $(grep -E 'unknown|[0-9]+:[0-9]+' <<<"$labels" | head)"
	n=$(grep -c . <<<"$labels" || true)
	((n <= 1)) || die "$when: $n devices have series, at most one is alive: $labels"
	assert_eq "$(prom "$f" dmuser_exporter_untracked_requests_total)" 0 "$when: untracked completions"
}

# one_cycle NAME: create, one read that times out, remove
one_cycle() {
	local name=$1
	dmsetup create --noudevsync "$name" --table "0 2048 user 0 2048 $name 2 timeout_ms 50" ||
		die "dmsetup create $name failed"
	dmsetup mknodes "$name"
	! dd if="/dev/mapper/$name" of=/dev/null bs=4k count=1 iflag=direct 2>/dev/null ||
		die "a read of $name (served by nobody) succeeded"
	dmsetup remove --noudevsync "$name" || die "dmsetup remove $name failed"
}

log "$cycles create/read/remove cycles under the exporter (--max-records 8)"
for ((i = 1; i <= cycles; i++)); do
	one_cycle "dmu-test-cyc-$i"
	if ((i % 16 == 0)); then
		scrape "$tmp/c.prom"
		check_scrape "$tmp/c.prom" "after cycle $i"
	fi
done
log "cycles done"

# a device alive during a scrape is named; removed, its series are gone, not relabelled
name=dmu-test-cyc-last
dmsetup create --noudevsync "$name" --table "0 2048 user 0 2048 $name 2 timeout_ms 50"
dmsetup mknodes "$name"
scrape "$tmp/new.prom"
check_scrape "$tmp/new.prom" "with $name new, no I/O yet"
assert_eq "$(prom "$tmp/new.prom" "dmuser_kernel_status_up{device=\"$name\"}")" 1 "$name before any I/O"
for i in 1 2 3; do
	! dd if="/dev/mapper/$name" of=/dev/null bs=4k count=1 skip="$i" iflag=direct 2>/dev/null ||
		die "a read of $name succeeded"
done
scrape "$tmp/last.prom"
check_scrape "$tmp/last.prom" "with $name alive"
assert_eq "$(prom "$tmp/last.prom" "dmuser_kernel_requests_total{device=\"$name\",op=\"read\"}")" 3 \
	"reads of $name after $cycles cycles"
assert_eq "$(prom "$tmp/last.prom" "dmuser_kernel_timeouts_total{device=\"$name\",op=\"read\"}")" 3 \
	"timeouts of $name"
dmsetup remove --noudevsync "$name"
scrape "$tmp/gone.prom"
check_scrape "$tmp/gone.prom" "after $name was removed"
! grep -q 'device="' "$tmp/gone.prom" || die "series of removed devices remain: $(grep -m5 'device="' "$tmp/gone.prom")"

obs_stop "$exp"
! grep -q "warning" "$tmp/exp.out.err" || die "the exporter warned: $(cat "$tmp/exp.out.err")"
dmu_unload
