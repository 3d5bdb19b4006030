# shellcheck shell=bash
# bpf/tests/lib.sh: helpers of the BPF e2e tests (tests/e2e/3xx-*.sh).
# Source it after tests/e2e/lib.sh:
#
#     . "$(dirname "$0")/lib.sh"
#     . "$DMU_ROOT/bpf/tests/lib.sh"
#
#   bpf_require                  die unless bpf/dmuser-lat, dmuser-top, bpftrace, fio, jq exist
#   bpf_device NAME FILE SIZE [DAEMON ARGS...]
#                                start dmuserd for /dev/mapper/NAME; sets BPF_DEV
#   bpf_fio OUT.json DEV ARGS... run fio (direct, libaio) on DEV; JSON result in OUT.json
#   bpf_fio_ios OUT.json read|write   I/Os fio issued in that direction
#   bpf_tool_start OUT TOOL ARGS...   start bpf/TOOL in the background (stdout to OUT,
#                                stderr to OUT.err) and wait for its "Tracing" banner;
#                                pid in BPF_TOOL_PID
#   bpf_tool_spawn OUT TOOL ARGS...  the same without waiting; BPF_TOOL_PID
#   bpf_tool_ready OUT PID       wait for the banner of a spawned tool
#   bpf_tool_stop PID [SIG]      send SIG (INT) and die unless the tool exits 0
#   bpf_json_lat OUT.json STAGE OP    the last histogram of STAGE/OP from dmuser-lat --json -O
#   bpf_hist_mode / bpf_hist_count / bpf_hist_max   on such a histogram (JSON on stdin)

BPF_DIR=$DMU_ROOT/bpf
BPF_LAT=$BPF_DIR/dmuser-lat
BPF_TOP=$BPF_DIR/dmuser-top

bpf_require() {
	local t
	for t in "$BPF_LAT" "$BPF_TOP"; do
		[[ -x $t ]] || die "not built: $t (run make -C bpf)"
	done
	for t in bpftrace fio jq bpftool; do
		command -v "$t" >/dev/null || die "$t is not installed"
	done
}

BPF_DEV=""
bpf_device() {
	local name=$1 file=$2 size=$3
	shift 3
	truncate -s "$size" "$file"
	dmu_daemon_start "$name" "$file" "$size" "$@"
	BPF_DEV=/dev/mapper/$name
	[[ -b $BPF_DEV ]] || dmsetup mknodes "$name"
	[[ -b $BPF_DEV ]] || die "$BPF_DEV is not a block device"
}

bpf_fio() {
	local out=$1 dev=$2
	shift 2
	fio --name=bpf --filename="$dev" --ioengine=libaio --direct=1 --bs=4k \
		--output-format=json --output="$out" "$@" >/dev/null ||
		die "fio $* failed: $(cat "$out" 2>/dev/null)"
}

bpf_fio_ios() {
	jq -e ".jobs[0].$2.total_ios" "$1" || die "no $2 total_ios in $1"
}

# (no grep: this runs every poll, and a fork is dear in the guest)
_bpf_started() {
	local f
	for f in "$1" "$1.err"; do
		[[ -r $f && $'\n'$(<"$f") == *$'\nTracing'* ]] && return 0
	done
	! _dmu_running "$2"
}

BPF_TOOL_PID=""
bpf_tool_start() {
	bpf_tool_spawn "$@"
	bpf_tool_ready "$1" "$BPF_TOOL_PID"
}

# bpf_tool_spawn OUT TOOL ARGS...: start without waiting (then bpf_tool_ready OUT PID)
bpf_tool_spawn() {
	local out=$1 tool=$2
	shift 2
	dmu_bg "$BPF_DIR/$tool" "$@" >"$out" 2>"$out.err"
	BPF_TOOL_PID=$DMU_BG_PID
}

bpf_tool_ready() {
	local out=$1 pid=$2
	# the banner is on stdout, or on stderr with --json and batch dmuser-top
	wait_until 90 _bpf_started "$out" "$pid" || true
	grep -qs '^Tracing' "$out" "$out.err" ||
		die "$out: the tool did not start: $(cat "$out.err" "$out" 2>/dev/null | head -20)"
}

bpf_tool_stop() {
	local pid=$1 sig=${2:-INT} rc=0
	kill -"$sig" "$pid" 2>/dev/null || true
	wait_until 30 _dmu_not_running "$pid" || die "pid $pid did not exit 30 s after SIG$sig"
	wait "$pid" || rc=$?
	[[ -f $_DMU_STATE/pids ]] && sed -i "/^$pid\$/d" "$_DMU_STATE/pids"
	assert_eq "$rc" 0 "exit status after SIG$sig"
}

# The histogram of one stage and op in dmuser-lat --json -O output (the last
# interval that has one).
bpf_json_lat() {
	jq -sc --arg s "$2" --arg o "$3" \
		'[.[].latency[] | select(.stage == $s and .op == $o)] | last // empty' "$1"
}

# On a histogram object (stdin): slot index of the largest count / total count /
# index of the last non-empty slot.
bpf_hist_mode() {
	jq -r '.buckets | to_entries | max_by(.value.count) | .key'
}
bpf_hist_count() {
	jq -r '.count'
}
bpf_hist_max() {
	jq -r '[.buckets | to_entries[] | select(.value.count > 0) | .key] | max'
}
