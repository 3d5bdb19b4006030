#!/bin/bash
# timeout: 180
# --adopt, what dmuserd@.service restarts a crashed daemon with: the device a
# SIGKILLed dmuserd left behind is refused by a new dmuserd without --adopt
# ("already exists", exit 1), and served by one with it. A read issued while
# no daemon runs waits in the recovery window and is answered by the adopter
# with the data written before the kill (the window, 120 s, is longer than a
# slow guest takes to get there); the adopter removes the device on
# SIGTERM, as one that created it.
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

tmp=$(dmu_tmpdir)
name=dmu-test-adopt
dev=/dev/mapper/$name
dmu_load
truncate -s 64M "$tmp/backing"
dmu_daemon_start "$name" "$tmp/backing" 64M --threads 2 --recovery-ms 120000 --adopt
head -c 4M /dev/urandom >"$tmp/data"
dd if="$tmp/data" of="$dev" bs=1M oflag=direct status=none || die "writing $dev failed"

kill -KILL "$DMU_DAEMON_PID"
wait "$DMU_DAEMON_PID" 2>/dev/null || true
dmu_dm_exists "$name" || die "the device went with the killed daemon"

field() { dmsetup status "$name" | awk -v n="$1" '{ print $n }'; }
queued() { (($(field 5) > 0)); }
dmu_bg dd if="$dev" of="$tmp/back" bs=1M count=4 iflag=direct status=none
reader=$DMU_BG_PID
wait_until 30 queued || die "the read is not queued: $(dmsetup status "$name")"

set +e
out=$("$DMU_DAEMON" --file "$tmp/backing" --name "$name" --threads 2 2>&1)
rc=$?
set -e
assert_eq "$rc" 1 "exit status of dmuserd without --adopt on the dead daemon's device"
[[ $out == *"device $name already exists"* ]] || die "without --adopt: '$out'"
queued || die "the refused daemon touched the device: $(dmsetup status "$name")"

dmu_daemon_start "$name" "$tmp/backing" 64M --threads 2 --adopt
dmu_wait "$reader" 30 || die "the read waiting in the recovery window failed"
cmp "$tmp/data" "$tmp/back" || die "the adopter read back other data"
assert_eq "$(field 8)" 0 "failed requests"
assert_eq "$(dmsetup table "$name")" "0 131072 user 0 131072 $name 2 recovery_ms 120000" "the adopted device's table"

dmu_daemon_stop
! dmu_dm_exists "$name" || die "the --adopt daemon left the device at exit"
dmu_unload
