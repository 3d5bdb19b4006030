#!/bin/bash
# timeout: 120
# The module loads, registers the "user" target, creates and removes the control
# node of a target with no daemon attached, and unloads cleanly. Twice, so that a
# control name and the module can be reused after removal.
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

name=dmu-test0
ctl=/dev/dm-user/$name

for round in 1 2; do
	log "round $round: insmod $DMU_KO"
	dmu_load
	dmsetup targets | awk '$1 == "user" { f = 1 } END { exit !f }' ||
		die "dmsetup targets does not list 'user': $(dmsetup targets | tr '\n' ';')"

	log "create $name (no daemon attached)"
	dmsetup create --noudevsync "$name" --table "0 2048 user 0 2048 $name" ||
		die "dmsetup create $name failed"
	wait_for_path "$ctl" 10 || die "control node $ctl did not appear"
	[[ -c $ctl ]] || die "$ctl is not a character device: $(ls -l "$ctl")"
	assert_eq "$(stat -c %A "$ctl")" "crw-------" "mode of $ctl"
	assert_eq "$(stat -c %u:%g "$ctl")" "0:0" "owner of $ctl"

	table=$(dmsetup table "$name")
	log "table: $table"
	read -r t_start t_len t_type t_args <<<"$table"
	assert_eq "$t_start $t_len $t_type" "0 2048 user" "dmsetup table $name"
	[[ " $t_args " == *" $name "* ]] || die "table arguments '$t_args' do not name the control node $name"
	dmsetup status "$name" >/dev/null || die "dmsetup status $name failed"
	assert_eq "$(dmsetup info -c --noheadings -o name "$name")" "$name" "dmsetup info name"

	dmsetup mknodes "$name"
	wait_for_path "/dev/mapper/$name" 10 || die "/dev/mapper/$name missing after dmsetup mknodes"
	[[ -b /dev/mapper/$name ]] || die "/dev/mapper/$name is not a block device"

	log "remove $name"
	dmsetup remove --noudevsync "$name" || die "dmsetup remove $name failed"
	wait_for_gone "$ctl" 10 || die "control node $ctl still exists after remove"
	! dmu_dm_exists "$name" || die "$name still listed after remove"
	dmsetup mknodes
	wait_for_gone "/dev/mapper/$name" 10 || die "/dev/mapper/$name left behind"

	log "rmmod dm_user"
	dmu_unload
	[[ ! -e /sys/module/dm_user ]] || die "/sys/module/dm_user still exists"
	if dmsetup targets | awk '$1 == "user" { f = 1 } END { exit !f }'; then
		die "target 'user' still registered after rmmod"
	fi
done
