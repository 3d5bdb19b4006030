#!/bin/bash
# timeout: 300
# Errors and timeouts by op: a dm-user device that no daemon serves, with
# timeout_ms 200, fails each read after 200 ms (dm_user_complete with how 2 =
# timeout and a negative errno).  Three such reads show up as:
#   - dmuser-lat --json: .ops read: ios 3, errors 3, timeouts 3; three total-stage
#     samples of at least 200 ms (slot 17 = 131072 -> 262143 us or above) and no
#     queue or daemon samples: no daemon ever took them, so the module hands
#     over queue_ns and daemon_ns 0, which are not recorded;
#   - dmuser-lat text: "op = read: 3 errors, 3 timeouts";
#   - dmuser-top --json: errors_total 3, timeouts_total 3.
. "$(dirname "$0")/lib.sh"
. "$DMU_ROOT/bpf/tests/lib.sh"

bpf_require
tmp=$(dmu_tmpdir)
name=dmu-test-timeout

dmu_load
dmsetup create --noudevsync "$name" --table "0 2048 user 0 2048 $name 2 timeout_ms 200"
dmsetup mknodes "$name"

bpf_tool_spawn "$tmp/lat.json" dmuser-lat --json -S all -O -d "$name"
p1=$BPF_TOOL_PID
bpf_tool_spawn "$tmp/lat.txt" dmuser-lat -O -d "$name"
p2=$BPF_TOOL_PID
bpf_tool_spawn "$tmp/top.json" dmuser-top --json -d "$name" -i 0.5
p3=$BPF_TOOL_PID
bpf_tool_ready "$tmp/lat.json" "$p1"
bpf_tool_ready "$tmp/lat.txt" "$p2"
bpf_tool_ready "$tmp/top.json" "$p3"

for i in 1 2 3; do
	assert_fails dd if="/dev/mapper/$name" of=/dev/null bs=4k count=1 skip="$i" iflag=direct status=none
done
sleep 1 # one more dmuser-top interval
bpf_tool_stop "$p1"
bpf_tool_stop "$p2"
bpf_tool_stop "$p3"
log "dmuser-lat: $(cat "$tmp/lat.txt")"

ops=$(jq -c '.ops[] | select(.op == "read")' "$tmp/lat.json")
[[ -n $ops ]] || die "no read in .ops: $(cat "$tmp/lat.json")"
for f in ios errors timeouts; do
	assert_eq "$(jq -r ".$f" <<<"$ops")" 3 "read $f"
done
assert_eq "$(jq -r .reply <<<"$ops")" 0 "reads answered by a daemon"
total=$(bpf_json_lat "$tmp/lat.json" total read)
assert_eq "$(bpf_hist_count <<<"$total")" 3 "total-stage samples"
min=$(jq -r '[.buckets | to_entries[] | select(.value.count > 0) | .key] | min' <<<"$total")
((min >= 17)) || die "a timed-out read took under 131 ms: $total"
[[ -z $(bpf_json_lat "$tmp/lat.json" queue read) ]] || die "queue-stage samples without a daemon"
[[ -z $(bpf_json_lat "$tmp/lat.json" daemon read) ]] || die "daemon-stage samples without a daemon"

grep -q '^op = read: 3 errors, 3 timeouts ' "$tmp/lat.txt" || die "text summary: $(cat "$tmp/lat.txt")"

last=$(tail -1 "$tmp/top.json")
assert_eq "$(jq -r --arg d "$name" '.devices[] | select(.device == $d) | "\(.errors_total) \(.timeouts_total)"' <<<"$last")" \
	"3 3" "dmuser-top errors_total and timeouts_total"

dmsetup remove --noudevsync "$name"
dmu_unload
