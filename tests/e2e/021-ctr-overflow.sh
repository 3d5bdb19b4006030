#!/bin/bash
# timeout: 60
# Issue 14, item 8: the constructor refuses a <dev-start> whose range would
# run past the last sector the daemon can be told (start + length overflows
# 64 bits), with a clear error and nothing left behind.
# `0 100 user 18446744073709551610 100 <ctl>` fails: no dm device, no
# /dev/dm-user/<ctl>, and the kernel log says why (a "user:" error about
# the start sector).  A start that fits (1000) still works.
# Fails on the old module: it checked only that <dev-start> fits a
# sector_t, so it accepted the table, and requests near the end would have
# carried sectors that wrapped past 2^64.
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

name=dmu-test-ovf
dmu_load
mark=$(dmu_kmsg_mark)

log "start 18446744073709551610, length 100"
if dmsetup create --noudevsync "$name" --table "0 100 user 18446744073709551610 100 $name" 2>/dev/null; then
	die "a start sector whose range overflows 64 bits was accepted: $(dmsetup table "$name")"
fi
! dmu_dm_exists "$name" || die "a failed create left dm device $name behind"
[[ ! -e /dev/dm-user/$name ]] || die "a failed create left /dev/dm-user/$name behind"
msg=$(dmu_dmesg_since "$mark" | grep 'user: ' | tail -n 1)
log "kernel: $msg"
[[ ${msg,,} == *start* ]] || die "the kernel log does not say what is wrong with the start sector: '$msg'"

log "start 1000, length 100"
dmsetup create --noudevsync "$name" --table "0 100 user 1000 100 $name"
assert_eq "$(dmsetup table "$name")" "0 100 user 1000 100 $name" "table with start 1000"
dmsetup remove --noudevsync "$name"
dmu_unload
