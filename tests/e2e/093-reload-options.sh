#!/bin/bash
# timeout: 300
# Issue 14, item 4: `dmsetup reload` of a live device with its own control
# name, for options, and what must still be refused.
#  1. A device served by dmu-client: a reload adding timeout_ms succeeds
#     while the old table is live (`dmsetup table` unchanged, `--inactive`
#     shows the new one); at resume the new table takes over the control
#     device and the open channel: the table prints timeout_ms, the same
#     client (never reopened) serves data that reads back identical.
#  2. Two reloads before a resume: the second replaces the first, and the
#     resumed table is the second.
#  3. A reload followed by `dmsetup clear`: the live table is unchanged and
#     still serves, its control device still there.
#  4. The same control name for a *different* dm device fails with EBUSY
#     ("Control name already in use"), leaving nothing behind, and so do
#     two `user` targets with one control name in one table (create or
#     reload); the live device serves on.
# Fails on the old module: step 1's reload fails in ctr, "Control name
# already in use" (EBUSY), as any table naming a live control device did.
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

client=$DMU_ROOT/build/tools/dmu-client
[[ -x $client ]] || die "test tool not built: $client (run make)"
tmp=$(dmu_tmpdir)
name=dmu-test-reload
other=dmu-test-reload2
sectors=8192
size=$((sectors * 512))
dev=/dev/mapper/$name
dmu_load

field() { dmsetup status "$name" | awk -v n="$1" '{ print $n }'; }
table() { echo "0 $sectors user 0 $sectors $name${1:+ $1}"; }
serves() { # MSG N: 8 KiB at block N (of 8 KiB) written and read back through $dev
	head -c 8192 /dev/urandom >"$tmp/p"
	timeout 30 dd if="$tmp/p" of="$dev" bs=8k seek="$2" count=1 oflag=direct status=none ||
		die "$1: write failed"
	timeout 30 dd if="$dev" of="$tmp/back" bs=8k skip="$2" count=1 iflag=direct status=none ||
		die "$1: read failed"
	cmp "$tmp/p" "$tmp/back" || die "$1: data differs"
}

dmsetup create --noudevsync "$name" --table "$(table)"
dmsetup mknodes "$name"
dmu_bg "$client" serve "/dev/dm-user/$name" "$size" --ready "$tmp/ready"
pid=$DMU_BG_PID
wait_for_path "$tmp/ready" 10 || die "dmu-client did not start"
serves "before any reload" 1

log "1. reload with timeout_ms, same control name, while live"
dmsetup reload "$name" --table "$(table "2 timeout_ms 30000")" ||
	die "reload of the live table with its own control name failed: $(dmesg | grep 'user:' | tail -n 1)"
assert_eq "$(dmsetup table "$name")" "$(table)" "live table before resume"
assert_eq "$(dmsetup table --inactive "$name")" "$(table "2 timeout_ms 30000")" "inactive table"
serves "with a new table loaded, not resumed" 2
dmsetup resume --noudevsync "$name"
assert_eq "$(dmsetup table "$name")" "$(table "2 timeout_ms 30000")" "live table after resume"
[[ -c /dev/dm-user/$name ]] || die "/dev/dm-user/$name is gone after the resume"
serves "after the resume" 3
dmu_running "$pid" || die "dmu-client stopped"
assert_eq "$(field 4)" 1 "channels after the takeover (the client's, never reopened)"

log "2. two reloads, then resume"
dmsetup reload "$name" --table "$(table "2 queue_depth 8")"
dmsetup reload "$name" --table "$(table "4 timeout_ms 20000 recovery_ms 5000")"
dmsetup resume --noudevsync "$name"
assert_eq "$(dmsetup table "$name")" "$(table "4 timeout_ms 20000 recovery_ms 5000")" "live table after two reloads"
serves "after two reloads" 4

log "3. reload, then clear"
dmsetup reload "$name" --table "$(table "2 queue_depth 4")"
dmsetup clear "$name"
assert_eq "$(dmsetup table "$name")" "$(table "4 timeout_ms 20000 recovery_ms 5000")" "live table after reload + clear"
[[ -c /dev/dm-user/$name ]] || die "/dev/dm-user/$name is gone after reload + clear"
serves "after reload + clear" 5
assert_eq "$(field 4)" 1 "channels after reload + clear"

log "4. what must still fail"
if dmsetup create --noudevsync "$other" --table "0 $sectors user 0 $sectors $name" 2>"$tmp/create.err"; then
	die "a second dm device took control name $name"
fi
grep -q 'Device or resource busy' "$tmp/create.err" ||
	die "a second dm device with control name $name: expected EBUSY, got: $(cat "$tmp/create.err")"
! dmu_dm_exists "$other" || die "the refused create left $other behind"
if dmsetup create --noudevsync "$other" <<EOF 2>/dev/null; then
0 4096 user 0 4096 dmu-test-dup
4096 4096 user 0 4096 dmu-test-dup
EOF
	die "a table with two user targets of one control name was accepted"
fi
! dmu_dm_exists "$other" || die "the refused create left $other behind"
[[ ! -e /dev/dm-user/dmu-test-dup ]] || die "the refused create left /dev/dm-user/dmu-test-dup behind"
if dmsetup reload "$name" <<EOF 2>/dev/null; then
0 4096 user 0 4096 $name
4096 4096 user 0 4096 $name
EOF
	die "a reload with two user targets of the live control name was accepted"
fi
assert_eq "$(dmsetup table "$name")" "$(table "4 timeout_ms 20000 recovery_ms 5000")" "live table after the refused reload"
assert_eq "$(dmsetup info "$name" | sed -n 's/^Tables present: *//p')" LIVE "tables present after the refused reload"
serves "after the refused tables" 6

rc=0
timeout 30 dmsetup remove --noudevsync "$name" || rc=$?
assert_eq "$rc" 0 "dmsetup remove exit status"
wait_until 30 dmu_not_running "$pid" || die "dmu-client did not see the target go"
dmu_stop "$pid" 10 || die "dmu-client failed"
dmu_unload
