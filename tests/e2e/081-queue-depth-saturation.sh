#!/bin/bash
# timeout: 240
# Issue 20, saturation: dmsetup status appends four fields after the seven
# of before (which keep their places): depth_waits depth_wait_us hwm_queued
# hwm_in_flight. With queue_depth 4 and fio at iodepth 32 against a client
# that reads up to 32 requests before it answers them (1 ms later),
# submitters wait for room (depth_waits > 0, depth_wait_us > 0), the client
# holds all 4 at once (hwm_in_flight 4) and neither mark passes 4.
# `dmsetup message reset_hwm` on the idle device sets both marks to 0 and
# leaves the wait counters alone. Without queue_depth the same load never
# waits, and its in-flight mark passes 4.
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

client=$DMU_ROOT/build/tools/dmu-client
[[ -x $client ]] || die "test tool not built: $client (run make)"
tmp=$(dmu_tmpdir)
name=dmu-test-sat
sectors=65536
size=$((sectors * 512))
dmu_load

# The status fields after the target's name, as "name=value" words.
sat() {
	local -a f
	read -r -a f <<<"$(dmsetup status "$name")"
	((${#f[@]} == 16)) || die "status has ${#f[@]} words, not 3 + 13: ${f[*]}"
	echo "waits=${f[10]} wait_us=${f[11]} hwm_queued=${f[12]} hwm_in_flight=${f[13]} errors=${f[7]}"
}

run() { # TABLE-OPTIONS...: create, serve, fio at iodepth 32; leaves the device
	dmsetup create --noudevsync "$name" --table "0 $sectors user 0 $sectors $name $*"
	dmsetup mknodes "$name"
	rm -f "$tmp/ready"
	dmu_bg "$client" serve "/dev/dm-user/$name" "$size" --batch 32 --delay-ms 1 --ready "$tmp/ready"
	pid=$DMU_BG_PID
	wait_for_path "$tmp/ready" 10 || die "dmu-client did not start"
	before=$(sat)
	assert_eq "$before" "waits=0 wait_us=0 hwm_queued=0 hwm_in_flight=0 errors=0" "fresh device"
	fio --name=sat --filename="/dev/mapper/$name" --rw=randwrite --bs=4k --size=8M \
		--iodepth=32 --ioengine=libaio --direct=1 --output="$tmp/fio" ||
		die "fio failed: $(cat "$tmp/fio")"
	after=$(sat)
	log "$* after fio: $after"
	eval "$after"
}
stop() {
	dmsetup remove --noudevsync "$name"
	dmu_stop "$pid" 10 || die "dmu-client failed"
}

run 2 queue_depth 4
# shellcheck disable=SC2154 # set by eval in run
{
	assert_eq "$errors" 0 "errors"
	((waits > 0)) || die "queue_depth 4 under iodepth 32 made nobody wait: $after"
	((wait_us > 0)) || die "waits counted but no time: $after"
	assert_eq "$hwm_in_flight" 4 "in-flight high-water mark with queue_depth 4"
	((hwm_queued >= 1 && hwm_queued <= 4)) || die "queued high-water mark $hwm_queued outside 1..4"
}
dmsetup message "$name" 0 reset_hwm
reset=$(sat)
log "after reset_hwm: $reset"
assert_eq "$reset" "waits=$waits wait_us=$wait_us hwm_queued=0 hwm_in_flight=0 errors=0" \
	"reset_hwm on an idle device"
assert_fails dmsetup message "$name" 0 reset_hwm 1
stop

run
# shellcheck disable=SC2154
{
	assert_eq "$waits $wait_us" "0 0" "waits without queue_depth"
	((hwm_in_flight > 4)) || die "without queue_depth the load never held more than 4 ($after): the test proves nothing"
}
stop
dmu_unload
