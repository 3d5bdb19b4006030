#!/bin/bash
# timeout: 600
# dmuser-lat's daemon stages (-p PID, --binary PATH): libdmuser's USDT probes
# joined per request with the kernel's tracepoints.  examples/dmu-null (built
# on libdmuser.so.1, which has the probes) serves a device; fio does exactly
# 1024 4k direct I/Os (4 MiB randrw); two tools trace it at once, one with
# -p (the library found in the process's maps), one with --binary (the
# library, every process).  In each, for reads and for writes, every stage
# (queue, handoff, pickup, backend, reply, total) counts exactly fio's
# requests; every completion is "observed" (none untimed, unanswered, without
# daemon probe, partial or misordered; a third tool prints the same in
# text); USDT reply_sent fired once per
# request; the stages' exact sums (ns) add up to the total's, each stage's sum
# is > 0 and no stage has a sample in a bucket above the total's last one.
# A daemon without the probes (the test tool dmu-client, which speaks the
# protocol by hand) is refused with a clear message and exit 1 before any
# uprobe is attached or anything traced (the tracepoint programs, attached
# first, are detached on the way out).  dmuserd, which links libdmuser.a,
# has the probes in its own executable: -p finds them there, and 64 reads
# are observed in every stage.
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"
. "$DMU_ROOT/bpf/tests/lib.sh"

bpf_require
tmp=$(dmu_tmpdir)
name=dmu-test-usdt
dev=/dev/mapper/$name
prog=$DMU_ROOT/examples/dmu-null
lib=$DMU_ROOT/lib/libdmuser.so.1
[[ -x $prog ]] || die "not built: $prog (make)"
stages=(queue handoff pickup backend reply total)

dmu_load

# --- a daemon without the probes: a clear error, exit 1 -------------------------
# (the test tool dmu-client speaks the protocol by hand, without libdmuser)
client=$DMU_ROOT/build/tools/dmu-client
[[ -x $client ]] || die "test tool not built: $client (run make)"
plain_name=dmu-test-usdt-plain
dmsetup create --noudevsync "$plain_name" --table "0 32768 user 0 32768 $plain_name"
dmsetup mknodes "$plain_name"
dmu_bg "$client" serve "/dev/dm-user/$plain_name" $((32768 * 512)) --ready "$tmp/plain.ready"
plain=$DMU_BG_PID
wait_for_path "$tmp/plain.ready" 10 || die "dmu-client did not start"
rc=0
"$BPF_LAT" -p "$plain" >"$tmp/plain.out" 2>"$tmp/plain.err" || rc=$?
log "dmuser-lat -p <dmu-client>: exit $rc: $(cat "$tmp/plain.err")"
assert_eq "$rc" 1 "dmuser-lat -p <dmu-client> exit status"
grep -q "^dmuser-lat: $client (pid $plain) has no dmuser USDT probe (not linked with libdmuser.so, and no libdmuser.a with probes in it): the daemon stages need libdmuser's probes" \
	"$tmp/plain.err" || die "unexpected message for dmu-client: $(cat "$tmp/plain.err")"
! grep -q Tracing "$tmp/plain.out" || die "dmuser-lat -p <dmu-client> started tracing"
dmsetup remove --noudevsync "$plain_name"
dmu_stop "$plain" 10 || die "dmu-client failed"

# --- dmuserd: libdmuser.a linked in, the probes in its own executable -----------
bpf_device dmu-test-usdt-static "$tmp/disk" 16M
dmuserd=$DMU_DAEMON_PID
bpf_tool_spawn "$tmp/static.json" dmuser-lat --json -O -d dmu-test-usdt-static -p "$dmuserd"
static_tool=$BPF_TOOL_PID
bpf_tool_ready "$tmp/static.json" "$static_tool"
grep -q "daemon stages: USDT" "$tmp/static.json.err" || die "dmuserd: no daemon-stage banner: $(cat "$tmp/static.json.err")"
dd if=/dev/mapper/dmu-test-usdt-static of=/dev/null bs=4k count=64 iflag=direct status=none
bpf_tool_stop "$static_tool"
req=$(jq -sc '[.[].requests] | last' "$tmp/static.json")
log "dmuser-lat -p <dmuserd>: requests $req"
assert_eq "$(jq .observed <<<"$req")" 64 "dmuserd: 64 reads observed in every stage"
dmu_daemon_stop "$dmuserd"

# --- dmu-null, two tools, fio ---------------------------------------------------
dmu_bg "$prog" -t 2 "$name" 64 >"$tmp/null.out"
pid=$DMU_BG_PID
wait_for_path "$dev" 30 || die "$dev did not appear"

bpf_tool_spawn "$tmp/p.json" dmuser-lat --json -O -d "$name" -p "$pid"
p_tool=$BPF_TOOL_PID
bpf_tool_spawn "$tmp/bin.json" dmuser-lat --json -O -d "$name" --binary "$lib"
bin_tool=$BPF_TOOL_PID
bpf_tool_spawn "$tmp/text.out" dmuser-lat -d "$name" -p "$pid"
text_tool=$BPF_TOOL_PID
bpf_tool_ready "$tmp/p.json" "$p_tool"
bpf_tool_ready "$tmp/bin.json" "$bin_tool"
bpf_tool_ready "$tmp/text.out" "$text_tool"
grep -q "daemon stages: USDT" "$tmp/p.json.err" || die "no daemon-stage banner: $(cat "$tmp/p.json.err")"

bpf_fio "$tmp/fio.json" "$dev" --rw=randrw --size=4M --iodepth=8
nr=$(bpf_fio_ios "$tmp/fio.json" read)
nw=$(bpf_fio_ios "$tmp/fio.json" write)
((nr > 100 && nw > 100)) || die "fio did only $nr reads and $nw writes"
bpf_tool_stop "$p_tool"
bpf_tool_stop "$bin_tool"
bpf_tool_stop "$text_tool"
log "fio: $nr reads, $nw writes"
cat "$tmp/text.out"
# the text form: every stage, and the requests line with the same counts
for s in "${stages[@]}"; do
	grep -qx "stage = $s" "$tmp/text.out" || die "text: no stage = $s"
done
grep -q "^requests: $((nr + nw)) completed: $((nr + nw)) observed in every stage; not in the stages: 0 untimed, 0 unanswered, 0 no daemon probe, 0 partial, 0 misordered; $((nr + nw)) replies sent" \
	"$tmp/text.out" || die "text: wrong requests line"

for out in "$tmp/p.json" "$tmp/bin.json"; do
	tool=$(basename "$out" .json)
	! grep -H "missed\|map inserts" "$out.err" || die "$tool: the tool reported lost events (above)"
	jq -e . "$out" >/dev/null || die "$tool: not JSON: $(cat "$out")"
	# one jq per file and op (each jq start costs about half a second under TCG):
	# the requests line's fields, then per stage "STAGE COUNT SUM_NS LAST_SLOT"
	# of the stage's last histogram ("STAGE none" when there is none)
	jq -sr '[.[].requests] | last | "requests \(tojson)",
		([.completed, .observed, .untimed, .unanswered, .no_daemon, .partial,
		  .misordered, .replies_sent] | map(tostring) | join(" "))' "$out" >"$tmp/req.txt"
	log "$tool: $(head -n1 "$tmp/req.txt")"
	read -r completed observed untimed unanswered no_daemon partial misordered replies_sent \
		< <(sed -n 2p "$tmp/req.txt")
	assert_eq "$completed" $((nr + nw)) "$tool: completed"
	assert_eq "$observed" $((nr + nw)) "$tool: observed in every stage"
	for c in untimed unanswered no_daemon partial misordered; do
		assert_eq "${!c}" 0 "$tool: $c"
	done
	assert_eq "$replies_sent" $((nr + nw)) "$tool: USDT reply_sent"
	for op in read write; do
		n=$nr
		[[ $op == write ]] && n=$nw
		line=""
		sum=0
		jq -sr --arg o "$op" '[.[].latency[] | select(.op == $o)] as $l | $ARGS.positional[] as $s
			| ([$l[] | select(.stage == $s)] | last) as $h
			| if $h == null then "\($s) none"
			  else "\($s) \($h.count) \($h.sum_ns)"
			    + " \([($h.buckets // []) | to_entries[] | select(.value.count > 0) | .key] | max)" end' \
			"$out" --args "${stages[@]}" >"$tmp/stages.txt"
		for s in "${stages[@]}"; do
			read -r _ got ns last < <(grep "^$s " "$tmp/stages.txt")
			[[ -n $got && $got != none ]] || die "$tool: no $s histogram for ${op}s: $(cat "$out")"
			line+=" $s=$got/$((ns / got))ns"
			assert_eq "$got" "$n" "$tool: $s count of ${op}s (fio's)"
			((ns > 0)) || die "$tool: $s of ${op}s sums to $ns ns"
			if [[ $s == total ]]; then
				total=$ns
				tmax=$last
			else
				sum=$((sum + ns))
				printf -v "max_$s" %s "$last"
			fi
		done
		log "$tool $op: count/mean$line"
		# the stages tile the total, request by request: their sums are equal
		assert_eq "$sum" "$total" "$tool: ${op}s' stage sums (ns) vs their total's"
		for s in queue handoff pickup backend reply; do
			m=max_$s
			((${!m} <= tmax)) ||
				die "$tool: ${op}s' $s has a sample in slot ${!m}, above total's last ($tmax)"
		done
	done
done

rc=0
dmu_stop "$pid" 30 || rc=$?
assert_eq "$rc" 0 "dmu-null exit status after SIGTERM"
! dmu_dm_exists "$name" || die "$name still exists after SIGTERM"
dmu_unload
