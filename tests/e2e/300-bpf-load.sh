#!/bin/bash
# timeout: 300
# The BPF tools (bpf/dmuser-lat, bpf/dmuser-top) on this kernel:
#   - without the module they say exactly that and exit 1;
#   - with a module older than 1.3.0 they say that and exit 1: its
#     dm_user_complete format, without queue_ns, daemon_ns and total_ns, is
#     bind-mounted over the real one in a private mount namespace;
#   - the module's BTF has the btf_trace_dm_user_* typedefs, so auto mode picks tp_btf;
#   - every program loads and passes the verifier in each attach mode (tp_btf,
#     raw_tp, tracepoint), forced by --attach= or DMUSER_ATTACH=; so do
#     dmuser-lat's daemon-stage programs (--binary libdmuser.so.1), and their
#     USDT probes attach;
#   - auto mode falls back tp_btf -> raw_tp -> tracepoint (DMUSER_ATTACH_SKIP);
#   - the tools pin the module while attached and detach on every way out
#     (SIGINT, SIGTERM, interval count reached), so rmmod works afterwards;
#   - what they attach: dmuser-lat one program, on dm_user_complete (and one on
#     dm_user_map with -Q only), dmuser-top one, on dm_user_complete; none on
#     dm_user_read or dm_user_write.
. "$(dirname "$0")/lib.sh"
. "$DMU_ROOT/bpf/tests/lib.sh"

bpf_require
tmp=$(dmu_tmpdir)
lib=$DMU_ROOT/lib/libdmuser.so.1
[[ -e $lib ]] || die "not built: $lib (make)"

log "without the module"
[[ ! -d /sys/module/dm_user ]] || dmu_unload
for tool in dmuser-lat dmuser-top; do
	rc=0
	out=$("$BPF_DIR/$tool" 1 1 2>&1) || rc=$?
	assert_eq "$rc" 1 "$tool exit status without the module"
	assert_eq "$out" "$tool: dm-user module not loaded (no /sys/module/dm_user)" "$tool message"
done

dmu_load
log "module BTF"
[[ -r /sys/kernel/btf/dm_user ]] || die "no module BTF: /sys/kernel/btf/dm_user"
bpftool btf dump file /sys/kernel/btf/dm_user >"$tmp/btf" || die "bpftool cannot read the module BTF"
for ev in map read write complete; do
	grep -q "TYPEDEF 'btf_trace_dm_user_$ev'" "$tmp/btf" || die "module BTF has no btf_trace_dm_user_$ev"
done

log "a module older than 1.3.0"
for tool in dmuser-lat dmuser-top; do
	rc=0
	out=$(dmu_old_format "$BPF_DIR/$tool" 1 1) || rc=$?
	assert_eq "$rc" 1 "$tool exit status with a 1.2 format"
	assert_eq "$out" "$tool: dm-user module too old: dm_user_complete has no total_ns (need target version >= 1.3.0)" \
		"$tool message with a 1.2 format"
done

refcnt() { cat /sys/module/dm_user/refcnt; }
base=$(refcnt)
# programs of ours still loaded (names start with dmu_)
our_progs() { bpftool prog show 2>/dev/null | grep -c ' name dmu_' || true; }
# the events our loaded programs are on, sorted: dmu_complete_btf -> complete
# (the kernel keeps 15 characters of a name: dmu_complete_bt)
our_events() {
	bpftool -j prog show | jq -r '.[].name // empty | select(startswith("dmu_"))' |
		sed 's/^dmu_//; s/_[a-z]*$//' | sort | paste -sd' '
}
assert_eq "$(our_progs)" 0 "BPF programs loaded before the test"

log "load (verifier) and attach in every mode"
for tool in dmuser-lat dmuser-top; do
	for mode in tp_btf raw_tp tracepoint; do
		out=$("$BPF_DIR/$tool" --load-only --attach="$mode" 2>&1) || die "$tool --attach=$mode: $out"
		assert_eq "$out" "$tool: loaded and attached with $mode" "$tool --attach=$mode"
		out=$(DMUSER_ATTACH=$mode "$BPF_DIR/$tool" --load-only 2>&1) || die "$tool DMUSER_ATTACH=$mode: $out"
		assert_eq "$out" "$tool: loaded and attached with $mode" "$tool DMUSER_ATTACH=$mode"
	done
	out=$("$BPF_DIR/$tool" --load-only 2>&1) || die "$tool auto: $out"
	assert_eq "$out" "$tool: loaded and attached with tp_btf" "$tool auto mode"
	out=$(DMUSER_ATTACH_SKIP=tp_btf "$BPF_DIR/$tool" --load-only 2>&1) || die "$tool skip tp_btf: $out"
	assert_eq "$out" "$tool: loaded and attached with raw_tp" "$tool auto mode without tp_btf"
	out=$(DMUSER_ATTACH_SKIP=tp_btf,raw_tp "$BPF_DIR/$tool" --load-only 2>&1) ||
		die "$tool skip tp_btf,raw_tp: $out"
	assert_eq "$out" "$tool: loaded and attached with tracepoint" "$tool auto mode, last resort"
	rc=0
	out=$(DMUSER_ATTACH_SKIP=tp_btf,raw_tp,tracepoint "$BPF_DIR/$tool" --load-only 2>&1) || rc=$?
	assert_eq "$rc" 1 "$tool exit status with no mode left"
	[[ $out == *"cannot attach to the dm-user tracepoints"* ]] || die "$tool with no mode left: $out"
	# every option combination of dmuser-lat changes rodata, hence the verified code
	if [[ $tool == dmuser-lat ]]; then
		for opts in "-D -O -Q" "-m -S all" "-o write -d 254:0" "-Q -o read -D"; do
			# shellcheck disable=SC2086 # word splitting wanted
			out=$("$BPF_DIR/$tool" --load-only $opts 2>&1) || die "$tool $opts: $out"
		done
		# the daemon stages: pipeline() and the USDT programs load only with -p/--binary
		for mode in tp_btf raw_tp tracepoint; do
			for opts in "" "-D -O -Q -m"; do
				# shellcheck disable=SC2086 # word splitting wanted
				out=$("$BPF_DIR/$tool" --load-only --attach="$mode" --binary "$lib" $opts 2>&1) ||
					die "$tool --attach=$mode --binary $opts: $out"
				assert_eq "$out" "$tool: loaded and attached with $mode and USDT" \
					"$tool --attach=$mode --binary $lib $opts"
			done
		done
	fi
done
assert_eq "$(refcnt)" "$base" "module refcnt after the --load-only runs"
assert_eq "$(our_progs)" 0 "BPF programs left loaded"

log "the tools pin the module while attached and let go on exit"
for mode in tp_btf raw_tp tracepoint; do
	export DMUSER_ATTACH=$mode
	bpf_tool_start "$tmp/lat" dmuser-lat
	(($(refcnt) > base)) || die "$mode: dmuser-lat attached but the module refcnt is $(refcnt)"
	assert_eq "$(our_events)" "complete" "$mode: events of dmuser-lat's programs"
	assert_fails rmmod dm_user
	bpf_tool_stop "$BPF_TOOL_PID" INT
	assert_eq "$(refcnt)" "$base" "$mode: refcnt after dmuser-lat got SIGINT"

	bpf_tool_start "$tmp/lat" dmuser-lat -Q
	assert_eq "$(our_events)" "complete map" "$mode: events of dmuser-lat -Q's programs"
	bpf_tool_stop "$BPF_TOOL_PID" INT

	bpf_tool_start "$tmp/top" dmuser-top -b
	(($(refcnt) > base)) || die "$mode: dmuser-top attached but the module refcnt is $(refcnt)"
	assert_eq "$(our_events)" "complete" "$mode: events of dmuser-top's programs"
	bpf_tool_stop "$BPF_TOOL_PID" TERM
	assert_eq "$(refcnt)" "$base" "$mode: refcnt after dmuser-top got SIGTERM"

	bpf_tool_start "$tmp/top" dmuser-top --json -i 0.2 -n 2
	wait_until 30 _dmu_not_running "$BPF_TOOL_PID" || die "dmuser-top -n 2 did not stop"
	bpf_tool_stop "$BPF_TOOL_PID"
	assert_eq "$(wc -l <"$tmp/top")" 2 "$mode: JSON lines of dmuser-top -n 2"
	jq -e . "$tmp/top" >/dev/null || die "dmuser-top --json output is not JSON: $(cat "$tmp/top")"

	bpf_tool_start "$tmp/lat" dmuser-lat --json 1 2
	wait_until 30 _dmu_not_running "$BPF_TOOL_PID" || die "dmuser-lat 1 2 did not stop"
	bpf_tool_stop "$BPF_TOOL_PID"
	assert_eq "$(wc -l <"$tmp/lat")" 2 "$mode: JSON lines of dmuser-lat --json 1 2"
	assert_eq "$(jq -r .attach "$tmp/lat" | sort -u)" "$mode" "$mode: attach mode reported"
	assert_eq "$(refcnt)" "$base" "$mode: refcnt after the tools stopped by themselves"
done
unset DMUSER_ATTACH
assert_eq "$(our_progs)" 0 "BPF programs left loaded"

dmu_unload
