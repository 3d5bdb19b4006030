#!/bin/bash
# timeout: 180
# Bad "user" table lines are refused by the constructor: `dmsetup create` fails,
# the kernel log has the device-mapper table error naming the "user" target, and
# nothing is left behind (no dm device, no /dev/dm-user node).
# Table format: <start> <len> user <start> <len> <control-name>
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

dmu_load

# The control directory may or may not exist while no target does; what matters is
# that a failed create leaves no node in it.
ctl_nodes() {
	local f
	for f in /dev/dm-user/*; do
		[[ -e $f ]] && echo "${f##*/}"
	done
	return 0
}

nodes_before=$(ctl_nodes)

# expect_rejected DESCRIPTION TABLE-LINE
expect_rejected() {
	local what=$1 table=$2 dev=dmu-test-bad mark out rc=0 errs found line
	log "rejected? $what: '$table'"
	mark=$(dmu_kmsg_mark)
	out=$(dmsetup create --noudevsync "$dev" --table "$table" 2>&1) || rc=$?
	((rc != 0)) || die "$what: dmsetup create succeeded with table '$table'"
	# The kernel logs "device-mapper: table: <maj:min>: user: <ti->error> (-EINVAL)".
	errs=$(dmu_dmesg_since "$mark")
	found=""
	while IFS= read -r line; do
		[[ $line == *"device-mapper: table: "*": user: "* ]] && { found=$line; break; }
	done <<<"$errs"
	[[ -n $found ]] ||
		die "$what: no 'device-mapper: table: ... user: ...' error in dmesg; dmsetup said: $out; dmesg: $errs"
	log "  kernel: device-mapper: table: ${found#*device-mapper: table: }"
	assert_eq "$(dmu_dm_names)" "$expect_devices" "$what: dm devices after the failed create (must not leave $dev)"
	assert_eq "$(ctl_nodes)" "$expect_nodes" "$what: nodes in /dev/dm-user after the failed create"
}

expect_devices=""
expect_nodes=$nodes_before

# Wrong argument counts (the target takes exactly three arguments).
expect_rejected "no arguments" "0 2048 user"
expect_rejected "one argument" "0 2048 user 0"
expect_rejected "two arguments" "0 2048 user 0 2048"
expect_rejected "four arguments" "0 2048 user 0 2048 dmu-test-x extra"
expect_rejected "five arguments" "0 2048 user 0 2048 dmu-test-x extra more"

# Numbers that do not parse.
expect_rejected "non-numeric start" "0 2048 user abc 2048 dmu-test-x"
expect_rejected "non-numeric length" "0 2048 user 0 abc dmu-test-x"
expect_rejected "number with trailing junk" "0 2048 user 0 2048k dmu-test-x"
expect_rejected "negative start" "0 2048 user -1 2048 dmu-test-x"

# A control name that is in use by another live target.
log "create dmu-test-a with control name dmu-test-dup"
dmsetup create --noudevsync dmu-test-a --table "0 2048 user 0 2048 dmu-test-dup" ||
	die "dmsetup create dmu-test-a failed"
wait_for_path /dev/dm-user/dmu-test-dup 10 || die "/dev/dm-user/dmu-test-dup did not appear"
expect_devices=dmu-test-a
expect_nodes=$(ctl_nodes)
expect_rejected "duplicate control name" "0 2048 user 0 2048 dmu-test-dup"
[[ -c /dev/dm-user/dmu-test-dup ]] || die "the first target's control node vanished after the rejected duplicate"
assert_eq "$(dmsetup table dmu-test-a | awk '{ print $3 }')" user "dmu-test-a still has its table"

log "remove dmu-test-a"
dmsetup remove --noudevsync dmu-test-a || die "dmsetup remove dmu-test-a failed"
wait_for_gone /dev/dm-user/dmu-test-dup 10 || die "control node of dmu-test-a left behind"
assert_eq "$(dmu_dm_names)" "" "dm devices at the end"
assert_eq "$(ctl_nodes)" "$nodes_before" "nodes in /dev/dm-user at the end"

# The name is free again once its target is gone.
dmsetup create --noudevsync dmu-test-b --table "0 2048 user 0 2048 dmu-test-dup" ||
	die "control name dmu-test-dup not reusable after its target was removed"
wait_for_path /dev/dm-user/dmu-test-dup 10 || die "/dev/dm-user/dmu-test-dup did not reappear"
dmsetup remove --noudevsync dmu-test-b || die "dmsetup remove dmu-test-b failed"
wait_for_gone /dev/dm-user/dmu-test-dup 10 || die "control node of dmu-test-b left behind"

dmu_unload
