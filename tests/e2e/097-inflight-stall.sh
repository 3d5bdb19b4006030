#!/bin/bash
# timeout: 180
# Issue 20: the in-flight table (bpf/dmuser-inflight, from the module's
# debugfs file) and the dm_user_stall event (stall_ms).
# A 4k read is issued before any daemon is there: the table shows it queued,
# on no channel, with no reader. A python client then reads it in a thread of
# its own (so the thread's tid is not the process's pid) and holds it until
# the test lets go: the table shows the same seq "sent", on channel 0, with
# that pid and tid, and its age grows between two reads. stall_ms (200, set
# by dmsetup message after a table line with 300) fires exactly one
# dm_user_stall for it, with its seq, op, channel, pid and tid and an age of
# at least 200 ms, and no second one while the request is held for more
# than four times as long (many ticks of the clock); dmsetup status counts
# it in stalls and shows its age in oldest_us. Once let go, the read
# completes normally, the table is empty, and removing the device removes
# its debugfs directory.
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

tmp=$(dmu_tmpdir)
name=dmu-test-inflight
sectors=8192
dev=/dev/mapper/$name
trace=/sys/kernel/tracing
tool=$DMU_ROOT/bpf/dmuser-inflight
stall_ms=200
export PYTHONDONTWRITEBYTECODE=1
[[ -x $tool ]] || die "tool not built: $tool (run make)"
dmu_load

cat >"$tmp/client.py" <<'EOF'
import os, sys, threading
sys.path.insert(0, os.environ['DMU_ROOT'] + '/tests/tools')
import dmuproto as p

name, tmp = sys.argv[1], sys.argv[2]
disk = p.RamDisk(8192 * 512)

def worker():
    fd = p.open_ctl(name)
    m, payload = p.read_request(fd)
    p.put(tmp + '/held', '%d %d %d %d\n' % (m.seq, m.type, os.getpid(),
                                            threading.get_native_id()))
    p.wait_file(tmp + '/release', 60)
    p.write_all(fd, disk.answer(m, payload))
    p.put(tmp + '/answered')
    p.wait_file(tmp + '/exit', 60)
    os.close(fd)

t = threading.Thread(target=worker)
t.start()
t.join()
EOF

# "seq op state channel pid tid age_us held_us" of the one request the table lists
# for the device, or nothing; dies on more than one.
inflight_one() {
	"$tool" --json -d "$name" >"$tmp/inflight.json" || die "dmuser-inflight --json failed"
	python3 - "$tmp/inflight.json" <<'EOF'
import json, sys
reqs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
if len(reqs) > 1:
    sys.exit('more than one request listed: %r' % reqs)
for r in reqs:
    print(r['seq'], r['op_num'], r['state'], r['channel'], r['pid'], r['tid'], r['age_us'],
          r['held_us'])
EOF
}

stall_events() {
	grep -c "dm_user_stall: " "$trace/trace" || true
}

dmsetup create --noudevsync "$name" --table "0 $sectors user 0 $sectors $name 2 stall_ms 300"
dmsetup mknodes "$name"
[[ $(dmsetup table "$name") == *" 2 stall_ms 300" ]] ||
	die "table line does not show stall_ms 300: $(dmsetup table "$name")"
dmsetup message "$name" 0 stall_ms "$stall_ms"
[[ $(dmsetup table "$name") == *" 2 stall_ms $stall_ms" ]] ||
	die "table line does not show stall_ms $stall_ms: $(dmsetup table "$name")"
[[ -r /sys/kernel/debug/dm-user/$name/inflight ]] || die "no debugfs table for $name"
out=$(inflight_one)
assert_eq "$out" "" "requests listed for an idle device"

echo >"$trace/trace"
echo 1 >"$trace/events/dm_user/dm_user_stall/enable"

# Before any daemon: the request waits on the backlog.
dmu_bg dd if="$dev" of=/dev/null bs=4k count=1 iflag=direct status=none
dd_pid=$DMU_BG_PID
has_one() { [[ -n $(inflight_one) ]]; }
wait_until 30 has_one || die "the read never appeared in the table"
read -r qseq qop qstate qchan qpid qtid _ <<<"$(inflight_one)"
log "queued: seq $qseq op $qop state $qstate channel $qchan pid $qpid tid $qtid"
assert_eq "$qstate $qop $qchan $qpid $qtid" "queued 0 None None None" \
	"a request no daemon has read (state op channel pid tid)"

dmu_bg python3 "$tmp/client.py" "$name" "$tmp"
client=$DMU_BG_PID
wait_for_path "$tmp/held" 30 || die "the client did not read the request"
read -r seq op pid tid <"$tmp/held"
log "held by pid $pid tid $tid: seq $seq op $op"
assert_eq "$seq" "$qseq" "seq read by the client"
[[ $tid != "$pid" ]] || die "the client's reader thread has the process's pid: the test cannot tell them apart"

read -r s1 op1 st1 ch1 pid1 tid1 age1 _ <<<"$(inflight_one)"
log "table: seq $s1 op $op1 state $st1 channel $ch1 pid $pid1 tid $tid1 age_us $age1"
assert_eq "$s1 $op1 $st1 $ch1" "$seq $op sent 0" "the held request (seq op state channel)"
assert_eq "$pid1" "$pid" "pid of the reader"
assert_eq "$tid1" "$tid" "tid of the thread that read it"
"$tool" -d "$name" >"$tmp/inflight.txt" || die "dmuser-inflight failed"
grep -Eq "^$name +$name +$seq +read .* sent +0 +$pid +$tid +[0-9]+ +[0-9]+\$" "$tmp/inflight.txt" ||
	die "text table does not show the request: $(cat "$tmp/inflight.txt")"
age_grew() {
	local a
	read -r _ _ _ _ _ _ a _ <<<"$(inflight_one)"
	[[ -n $a ]] && ((a > age1))
}
wait_until 10 age_grew || die "the request's age did not grow past $age1 us"

# The event fires once the request is held stall_ms, then never again: hold
# it until it is more than four times that old, and count.
has_event() { (($(stall_events) >= 1)); }
wait_until 30 has_event || die "no dm_user_stall event for a request held past $stall_ms ms"
old_enough() {
	local h
	read -r _ _ _ _ _ _ _ h <<<"$(inflight_one)"
	[[ -n $h ]] && ((h > 4 * stall_ms * 1000 + 100000))
}
wait_until 30 old_enough || die "the request did not get old enough"
assert_eq "$(stall_events)" 1 "dm_user_stall events while held $((4 * stall_ms)) ms and more"
# dmsetup status counts it (stalls, field 12) and shows the held request as
# the oldest (oldest_us, field 13): at least as old as the table said.
read -r -a st <<<"$(dmsetup status "$name" | cut -d' ' -f4-)"
log "status: ${st[*]}"
assert_eq "${#st[@]} ${st[11]}" "13 1" "status fields, and stalls"
((st[12] >= 4 * stall_ms * 1000)) || die "status oldest_us ${st[12]} < $((4 * stall_ms)) ms for a request held that long"
line=$(grep "dm_user_stall: " "$trace/trace")
log "trace: ${line##*dm_user_stall: }"
[[ $line =~ seq\ ([0-9]+)\ op\ ([0-9]+)\ channel\ ([0-9]+)\ pid\ (-?[0-9]+)\ tid\ (-?[0-9]+)\ age_us\ ([0-9]+)\ held_us\ ([0-9]+) ]] ||
	die "dm_user_stall line not understood: $line"
assert_eq "${BASH_REMATCH[1]} ${BASH_REMATCH[2]} ${BASH_REMATCH[3]}" "$seq $op 0" \
	"dm_user_stall seq op channel"
assert_eq "${BASH_REMATCH[4]} ${BASH_REMATCH[5]}" "$pid $tid" "dm_user_stall pid tid"
((BASH_REMATCH[6] >= stall_ms * 1000)) || die "dm_user_stall age_us ${BASH_REMATCH[6]} < $stall_ms ms"
((BASH_REMATCH[7] >= stall_ms * 1000)) || die "dm_user_stall held_us ${BASH_REMATCH[7]} < $stall_ms ms"
((BASH_REMATCH[6] >= BASH_REMATCH[7])) || die "dm_user_stall age_us < held_us: $line"

# Not a timeout: let go, and the read completes as usual.
: >"$tmp/release"
dmu_wait "$dd_pid" 30 || die "the held read failed once answered"
wait_for_path "$tmp/answered" 10 || die "the client did not answer"
out=$(inflight_one)
assert_eq "$out" "" "requests listed after the reply"
read -r -a st <<<"$(dmsetup status "$name" | cut -d' ' -f4-)"
assert_eq "${st[11]} ${st[12]}" "1 0" "stalls and oldest_us once answered"
echo 0 >"$trace/events/dm_user/dm_user_stall/enable"
assert_eq "$(stall_events)" 1 "dm_user_stall events in all"
read -r _ _ _ _ errors timeouts _ <<<"$(dmsetup status "$name" | cut -d' ' -f4-)"
assert_eq "$errors $timeouts" "0 0" "errors and timeouts"

: >"$tmp/exit"
wait_until 60 dmu_not_running "$client" || die "the client did not exit"
dmu_stop "$client" || die "the client failed"
dmsetup remove --noudevsync "$name"
[[ ! -e /sys/kernel/debug/dm-user/$name ]] || die "debugfs dm-user/$name outlived its device"
dmu_unload
