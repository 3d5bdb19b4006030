# shellcheck shell=bash disable=SC2034 # variables here are for the tests that source this file
# dashboards/tests/lib.sh: helpers of the observability e2e tests
# (tests/e2e/4xx-*.sh).  Source it after tests/e2e/lib.sh:
#
#     . "$(dirname "$0")/lib.sh"
#     . "$DMU_ROOT/dashboards/tests/lib.sh"
#
#   obs_require TOOL...          die unless each tool is installed
#   obs_daemon NAME FILE SIZE [ARGS...]
#                                dmuserd with --metrics on a free port; sets
#                                OBS_DEV (/dev/mapper/NAME), OBS_DAEMON_URL
#   obs_exporter OUT [ARGS...]   start bpf/dmuser-exporter --listen 127.0.0.1:0,
#                                wait for its "Serving" line; OBS_EXPORTER_PID,
#                                OBS_EXPORTER_URL (http://127.0.0.1:PORT)
#   obs_stop PID [SIG]           send SIG (TERM), die unless PID exits 0 in 30 s
#   obs_fio OUT.json DEV SECS [ARGS...]
#                                start a time-based 4k randrw fio in the background
#                                (direct, libaio); pid in OBS_FIO_PID
#   obs_prometheus DIR PORT TARGET...
#                                start Prometheus on 127.0.0.1:PORT with the scrape
#                                config and rules of dashboards/prometheus/, its
#                                targets replaced by JOB=ADDR:PORT pairs, scrape every
#                                2 s, evaluation every second, TSDB in DIR; wait until
#                                ready; OBS_PROM_URL, OBS_PROM_PID

# shellcheck source=bpf/tests/lib.sh
. "$DMU_ROOT/bpf/tests/lib.sh"

OBS_EXPORTER=$DMU_ROOT/bpf/dmuser-exporter
OBS_DASH=$DMU_ROOT/dashboards
OBS_TESTS=$OBS_DASH/tests

obs_require() {
	local t
	for t in "$@"; do
		command -v "$t" >/dev/null || die "$t is not installed (make deps)"
	done
	[[ -x $OBS_EXPORTER ]] || die "not built: $OBS_EXPORTER (make -C bpf)"
	[[ -x $DMU_DAEMON ]] || die "not built: $DMU_DAEMON (make -C daemon)"
}

OBS_DEV="" OBS_DAEMON_URL=""
obs_daemon() {
	local name=$1 file=$2 size=$3 port
	shift 3
	truncate -s "$size" "$file"
	dmu_daemon_start "$name" "$file" "$size" --metrics 0 "$@"
	port=$(sed -n 's/^metrics=127\.0\.0\.1://p' "$DMU_DAEMON_READY")
	[[ $port =~ ^[1-9][0-9]*$ ]] || die "no metrics port in $(cat "$DMU_DAEMON_READY")"
	OBS_DAEMON_URL=http://127.0.0.1:$port
	OBS_DEV=/dev/mapper/$name
	[[ -b $OBS_DEV ]] || dmsetup mknodes "$name"
	[[ -b $OBS_DEV ]] || die "$OBS_DEV is not a block device"
}

# The pollers below run every 50 ms: no grep, no curl (a fork is dear in
# the guest, and its CPU is taken from the program being waited for).
_obs_serving() {
	[[ -r $1 && $'\n'$(<"$1") == *$'\nServing'* ]] || ! _dmu_running "$2"
}
OBS_EXPORTER_PID="" OBS_EXPORTER_URL=""
obs_exporter() {
	local out=$1 port
	shift
	dmu_bg "$OBS_EXPORTER" --listen 127.0.0.1:0 "$@" >"$out" 2>"$out.err"
	OBS_EXPORTER_PID=$DMU_BG_PID
	wait_until 90 _obs_serving "$out" "$OBS_EXPORTER_PID" || true
	port=$(sed -n 's|^Serving dm-user metrics on http://127\.0\.0\.1:\([0-9]*\)/metrics.*|\1|p' "$out")
	[[ $port =~ ^[1-9][0-9]*$ ]] ||
		die "dmuser-exporter did not start: $(cat "$out" "$out.err" 2>/dev/null | head -20)"
	OBS_EXPORTER_URL=http://127.0.0.1:$port
}

obs_stop() { bpf_tool_stop "$1" "${2:-TERM}"; }

OBS_FIO_PID=""
obs_fio() {
	local out=$1 dev=$2 secs=$3
	shift 3
	dmu_bg fio --name=obs --filename="$dev" --ioengine=libaio --direct=1 --bs=4k \
		--rw=randrw --iodepth=8 --time_based --runtime="$secs" --size=32M \
		--output-format=json --output="$out" "$@"
	OBS_FIO_PID=$DMU_BG_PID
}

# GET /-/ready on 127.0.0.1:PORT through bash's /dev/tcp: 200 once ready
_obs_prom_ready() {
	local fd status
	{ exec {fd}<>"/dev/tcp/127.0.0.1/$1"; } 2>/dev/null || return 1
	printf 'GET /-/ready HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&"$fd"
	read -r -t 5 status <&"$fd" || status=""
	exec {fd}>&-
	[[ $status == "HTTP/1."[01]" 200"* ]]
}
OBS_PROM_URL="" OBS_PROM_PID=""
obs_prometheus() {
	local dir=$1 port=$2
	shift 2
	mkdir -p "$dir"
	cp "$OBS_DASH/prometheus/dm-user.rules.yml" "$dir/"
	"$OBS_TESTS/prom-config.py" "$OBS_DASH/prometheus/prometheus.yml" "$@" \
		>"$dir/prometheus.yml" || die "cannot make a Prometheus config"
	dmu_bg prometheus --config.file="$dir/prometheus.yml" \
		--storage.tsdb.path="$dir/tsdb" --web.listen-address="127.0.0.1:$port" \
		--log.level=warn >"$dir/prometheus.log" 2>&1
	OBS_PROM_PID=$DMU_BG_PID
	OBS_PROM_URL=http://127.0.0.1:$port
	wait_until 120 _obs_prom_ready "$port" ||
		die "Prometheus not ready in 120 s: $(tail -20 "$dir/prometheus.log")"
}
