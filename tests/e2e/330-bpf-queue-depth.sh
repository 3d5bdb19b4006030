#!/bin/bash
# timeout: 300
# dmuser-lat -Q: the queue depth sampled at dm_user_map ("queued" counts the
# request itself).  A one-thread daemon that takes 1 ms per request is slower
# than fio can submit, so at iodepth 32 the queue fills: the largest non-empty
# log2 bucket of "queued" is 16 -> 31 or above (slot >= 4).  At iodepth 1 each
# request is mapped after the previous one completed: queued is 1 and in_flight
# 0, both in the first bucket "0 -> 1" (slot 0).  Every request is sampled once
# (-Q is what attaches dmuser-lat to dm_user_map).
# --no-batch: a batching daemon would take the whole queue in one read(), moving
# the depth from "queued" to "in_flight".
. "$(dirname "$0")/lib.sh"
. "$DMU_ROOT/bpf/tests/lib.sh"

bpf_require
tmp=$(dmu_tmpdir)
name=dmu-test-qd

# qd_hist OUT.json KIND: the queue-depth histogram of KIND (queued, in_flight)
qd_hist() { jq -c --arg k "$2" '.queue_depth[] | select(.kind == $k)' "$1"; }

dmu_load
bpf_device "$name" "$tmp/disk" 64M --threads 1 --no-batch --inject-delay-us 1000

for qd in 32 1; do
	log "fio randread 4k, iodepth $qd, 2 MiB"
	bpf_tool_start "$tmp/qd$qd.json" dmuser-lat --json -Q -d "$name"
	pid=$BPF_TOOL_PID
	bpf_fio "$tmp/fio$qd.json" "$BPF_DEV" --rw=randread --size=2M --iodepth="$qd"
	bpf_tool_stop "$pid"
	n=$(bpf_fio_ios "$tmp/fio$qd.json" read)
	queued=$(qd_hist "$tmp/qd$qd.json" queued)
	inflight=$(qd_hist "$tmp/qd$qd.json" in_flight)
	[[ -n $queued && -n $inflight ]] || die "no queue-depth histograms: $(cat "$tmp/qd$qd.json")"
	log "iodepth $qd: queued $(jq -c '[.buckets[].count]' <<<"$queued"), in_flight $(jq -c '[.buckets[].count]' <<<"$inflight")"
	assert_eq "$(bpf_hist_count <<<"$queued")" "$n" "iodepth $qd: queued samples vs fio's reads"
	assert_eq "$(bpf_hist_count <<<"$inflight")" "$n" "iodepth $qd: in_flight samples vs fio's reads"
	qmax=$(bpf_hist_max <<<"$queued")
	imax=$(bpf_hist_max <<<"$inflight")
	if ((qd == 32)); then
		((qmax >= 4)) || die "iodepth 32: largest queued bucket is slot $qmax (< 16): $queued"
		((imax <= 1)) || die "one daemon thread, yet in_flight reached slot $imax: $inflight"
	else
		assert_eq "$qmax" 0 "iodepth 1: largest queued bucket (slot 0 = 0 -> 1)"
		assert_eq "$imax" 0 "iodepth 1: largest in_flight bucket (slot 0 = 0 -> 1)"
	fi
done

dmu_daemon_stop
dmu_unload
