#!/bin/bash
# timeout: 60
# The debug lane's self-test (tests/debug/check-debug.sh), never part of make
# check: loads dmu_abba.ko, which takes two mutexes in both orders, and
# unloads it.  The test itself passes; the suite must FAIL it on the lockdep
# report the load writes to the kernel log, and name lockdep.
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/../../e2e/lib.sh"

ko=$DMU_ROOT/build/debug/selftest/$DMU_KVER/dmu_abba.ko
[[ -f $ko ]] || die "no $ko (tests/debug/check-debug.sh builds it)"
insmod "$ko" || die "insmod $ko failed"
rmmod dmu_abba || die "rmmod dmu_abba failed"
log "loaded and unloaded dmu_abba"
