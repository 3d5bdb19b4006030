#!/bin/bash
# shellcheck source-path=SCRIPTDIR/../vm
# Profile dm-user under 4k randread iodepth 32 with dmuserd at 1 and N threads, in
# one guest (tests/bench/guest-profile.sh says what is measured). Not part of
# `make bench` or `make check`; tests/bench/PROFILE.md reports its findings.
#
#   tests/bench/profile.sh [--kernel KVER] [--out DIR] [--timeout SECONDS]
#
# Environment: PROF_THREADS (N, 4), PROF_SECS (seconds per measurement, 5),
# PROF_SIZE (backing file, 512M). Results: DIR (default build/bench/profile)/<threads>/.
set -euo pipefail

# shellcheck source=../vm/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/../vm/common.sh"

kernel="" out=$DMU_ROOT/build/bench/profile timeout=420
while (($#)); do
	case $1 in
	--kernel) kernel=${2:?}; shift 2 ;;
	--out) out=${2:?}; shift 2 ;;
	--timeout) timeout=${2:?}; shift 2 ;;
	-h | --help) sed -n '3,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; exit 0 ;;
	*) vm_log "unknown argument '$1' (try --help)"; exit 2 ;;
	esac
done
if [[ -n $kernel ]]; then
	kver=$(vm_resolve_kernel "$kernel")
else
	kver=$(vm_kernels | tail -n1)
fi
rm -rf "$out"
mkdir -p "$out"
exec "$DMU_ROOT/tests/vm/run.sh" -v --kernel "$kver" --smp 2 --timeout "$timeout" --out "$out" \
	--env "PROF_THREADS=${PROF_THREADS:-4}" --env "PROF_SECS=${PROF_SECS:-5}" \
	--env "PROF_SIZE=${PROF_SIZE:-512M}" -- tests/bench/guest-profile.sh
