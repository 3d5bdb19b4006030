#!/bin/bash
# timeout: 300
# dmuser-lat against a daemon that sleeps 4 ms before answering each request
# (dmuserd --inject-delay-us 4000), under fio randrw 4k at iodepth 1.
#
# The sleep lies between the daemon's read of a request and its reply, which is
# what the module measures as daemon_ns (dm_user_read -> dm_user_write) and
# hands over in dm_user_complete, where dmuser-lat records it: every request is
# answered once, so there is one daemon-stage sample per request, and each is at
# least 4000 us.  The log2 buckets are [2^i, 2^(i+1)):
#   in msecs (-m): 4.0 .. 7.99 ms is bucket "4 -> 7" (slot 2).  The mode must be
#     exactly that slot: the overhead of the sleep, pread/pwrite and the two
#     syscalls would have to reach 4 ms for most requests to leave it.
#   in usecs: 4000 us lies in "2048 -> 4095" (slot 11), 96 us under its top, so
#     the mode is slot 11 if the overhead stays under 96 us, else slot 12
#     ("4096 -> 8191").  Both are accepted; no sample may be below slot 11.
# The total stage (map -> complete) contains the daemon stage, so its mode is in
# the same bucket or above, and so is every sample: no total below slot 11 either.
. "$(dirname "$0")/lib.sh"
. "$DMU_ROOT/bpf/tests/lib.sh"

bpf_require
tmp=$(dmu_tmpdir)
name=dmu-test-delay
delay_us=4000

dmu_load
bpf_device "$name" "$tmp/disk" 64M --inject-delay-us "$delay_us"

bpf_tool_spawn "$tmp/ms.json" dmuser-lat --json -m -S all -O -d "$name"
ms_pid=$BPF_TOOL_PID
bpf_tool_spawn "$tmp/us.json" dmuser-lat --json -S all -O -d "$name"
us_pid=$BPF_TOOL_PID
bpf_tool_ready "$tmp/ms.json" "$ms_pid"
bpf_tool_ready "$tmp/us.json" "$us_pid"

log "fio randrw 4k, iodepth 1, 1 MiB (256 requests), ${delay_us} us daemon delay"
bpf_fio "$tmp/fio.json" "$BPF_DEV" --rw=randrw --size=1M --iodepth=1
bpf_tool_stop "$ms_pid"
bpf_tool_stop "$us_pid"
log "dmuser-lat -m: $(cat "$tmp/ms.json")"

# slot index of the minimum non-empty bucket
hist_min() { jq -r '[.buckets | to_entries[] | select(.value.count > 0) | .key] | min'; }

for op in read write; do
	n=$(bpf_fio_ios "$tmp/fio.json" "$op")
	((n > 0)) || die "fio issued no ${op}s"

	d=$(bpf_json_lat "$tmp/ms.json" daemon "$op")
	t=$(bpf_json_lat "$tmp/ms.json" total "$op")
	[[ -n $d && -n $t ]] || die "no $op daemon/total histograms in: $(cat "$tmp/ms.json")"
	dmode=$(bpf_hist_mode <<<"$d")
	tmode=$(bpf_hist_mode <<<"$t")
	log "$op msecs: daemon mode slot $dmode, total mode slot $tmode"
	assert_eq "$dmode" 2 "$op daemon-stage mode (msecs), expected slot 2 = 4 -> 7 ms: $d"
	((tmode >= dmode)) || die "$op total-stage mode slot $tmode below the daemon's $dmode: $t"
	(($(hist_min <<<"$d") >= 2)) || die "$op daemon sample under 4 ms: $d"

	d=$(bpf_json_lat "$tmp/us.json" daemon "$op")
	t=$(bpf_json_lat "$tmp/us.json" total "$op")
	[[ -n $d && -n $t ]] || die "no $op daemon/total histograms in: $(cat "$tmp/us.json")"
	dmode=$(bpf_hist_mode <<<"$d")
	tmode=$(bpf_hist_mode <<<"$t")
	log "$op usecs: daemon mode slot $dmode, total mode slot $tmode"
	[[ $dmode == 11 || $dmode == 12 ]] ||
		die "$op daemon-stage mode (usecs) slot $dmode, expected 11 (2048 -> 4095) or 12 (4096 -> 8191): $d"
	((tmode >= dmode)) || die "$op total-stage mode slot $tmode below the daemon's $dmode: $t"
	(($(hist_min <<<"$d") >= 11)) || die "$op daemon sample under 2048 us: $d"
	(($(hist_min <<<"$t") >= 11)) || die "$op total sample under 2048 us: $t"
	assert_eq "$(bpf_hist_count <<<"$d")" "$n" "$op daemon-stage count vs fio's ${op}s"
done

dmu_daemon_stop
dmu_unload
