#!/bin/bash
# timeout: 60
# Issue 14, item 6a: the target's clock (timeouts, the recovery window)
# runs on its own WQ_MEM_RECLAIM workqueue, "kdmuserd", so it makes progress
# under memory pressure, when the system workqueue may be waiting for the
# very memory that those requests' completion would free.  A WQ_MEM_RECLAIM
# workqueue has a rescuer thread named after it: `kdmuserd` on 6.1,
# `kworker/R-kdmuserd` since 6.9 (rescuers renamed), is in the process list
# while the module is loaded, and gone after rmmod.
# Fails on the old module: its work ran on system_wq, which has no rescuer.
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

has_kdmuserd() { pgrep -x 'kdmuserd|kworker/R-kdmuserd' >/dev/null; }

! has_kdmuserd || die "kdmuserd runs before the module is loaded"
dmu_load
wait_until 10 has_kdmuserd || die "no kdmuserd thread with the module loaded: $(pgrep -l dmu || echo none)"
log "with dm_user loaded: $(pgrep -l -x 'kdmuserd|kworker/R-kdmuserd')"
dmu_unload
no_kdmuserd() { ! has_kdmuserd; }
wait_until 10 no_kdmuserd || die "kdmuserd still runs after rmmod"
