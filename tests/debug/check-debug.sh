#!/bin/bash
# The debug lane, `make check-debug` (not part of make check): the VM tests
# that load dm-user.ko, on two kernels, two guests at a time (see "the suites"):
#   - a debug kernel built from Debian's linux-source-6.12 with
#     tests/debug/debug.config (lockdep, DEBUG_ATOMIC_SLEEP, KASAN, UBSAN,
#     DEBUG_LIST, debugobjects, KFENCE), by tests/debug/kernel.sh, cached
#     outside the clone (/var/cache/dm-user/kernel, DMU_DEBUG_CACHE);
#   - Debian's PREEMPT_RT kernel (linux-image-6.12-rt-amd64), where
#     spinlocks sleep.
# First (right after the kernel, before the other builds) a self-test:
# tests/debug/selftest/ loads a module that takes two mutexes in both orders;
# the suite must fail that test and name lockdep, or the lane fails ("the
# judge missed lockdep") and stops.
# Prints the suites' PASS/FAIL lines, the times, then "N passed, N failed";
# exits non-zero if anything failed.
#
# Environment: DMU_TIMEOUT_SCALE (default 3) multiplies every test's timeout;
# DMU_VM_SMP (default 1) vCPUs per guest; DMU_DEBUG_FILTER (a bash regex)
# narrows the tests.
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)
log_dir=$root/build/debug
mkdir -p "$log_dir"
cd "$root" || exit 1
# shellcheck source=tests/vm/common.sh
. "$root/tests/vm/common.sh"

passed=0 failed=0 skipped=0 have_skipped=0
start=$SECONDS
times=()
took() { times+=("$1: $((SECONDS - $2)) s"); }
lane_fail() { echo "FAIL check-debug: $*"; failed=$((failed + 1)); }
finish() {
	echo
	echo "times: total $((SECONDS - start)) s (${times[*]/%/;})"
	if ((have_skipped)); then
		echo "$passed passed, $failed failed, $skipped skipped"
	else
		echo "$passed passed, $failed failed"
	fi
	((failed == 0))
	exit
}

# ---- kernels -----------------------------------------------------------------
t=$SECONDS
kdir=$("$root/tests/debug/kernel.sh") || { lane_fail "no debug kernel (tests/debug/kernel.sh)"; finish; }
took "debug kernel (build or cache)" "$t"
dkver=$(<"$kdir/kver")
export DMU_VM_KERNEL_DIRS=$kdir
rtkver=""
for f in /boot/vmlinuz-6.12*-rt-amd64; do
	k=${f#/boot/vmlinuz-}
	[[ -e $f && -d /lib/modules/$k/build ]] && rtkver=$k
done
[[ -n $rtkver ]] || { lane_fail "no PREEMPT_RT kernel with headers (make debug-deps)"; finish; }
echo "kernels: $dkver ($kdir), $rtkver"

# count_suite LOG RC: add a suite's "N passed, N failed[, N skipped]" line.
count_suite() {
	local line p f s=0
	line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$1" | tail -n 1)
	if [[ -z $line ]]; then
		lane_fail "$(basename "$1"): no result line (exit status $2)"
		return
	fi
	[[ $line =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed(,\ ([0-9]+)\ skipped)? ]]
	p=${BASH_REMATCH[1]} f=${BASH_REMATCH[2]}
	if [[ -n ${BASH_REMATCH[3]} ]]; then s=${BASH_REMATCH[4]}; have_skipped=1; fi
	passed=$((passed + p)) failed=$((failed + f)) skipped=$((skipped + s))
	if (($2 != 0 && f == 0)); then lane_fail "$(basename "$1"): exit status $2 with no failed test"; fi
}

# ---- the self-test: the judge must catch lockdep ---------------------------
t=$SECONDS
blog=$log_dir/build.log
: >"$blog"
st=$root/build/debug/selftest/$dkver
mkdir -p "$st"
cp -p "$root"/tests/debug/selftest/dmu_abba.c "$root"/tests/debug/selftest/Kbuild "$st/"
# (suite.sh wants dm-user.ko for every kernel it runs on, even for this test)
if ! { make -C "$kdir/build" M="$st" modules &&
	make -s -C "$root" modules KVERS="$dkver" KDIR="$kdir/build"; } >>"$blog" 2>&1; then
	tail -n 30 "$blog"
	lane_fail "module build for $dkver failed (log: $blog)"
	finish
fi
slog=$log_dir/selftest.log
echo "== self-test on $dkver: a module with an AB-BA lock order must fail on lockdep"
DMU_TESTS_DIR=tests/debug/selftest "$root/tests/vm/suite.sh" --kernel "$dkver" --smp 1 >"$slog" 2>&1
src=$?
took "self-test" "$t"
if ((src != 0)) && grep -q "^FAIL $dkver 010-lockdep-abba\$" "$slog" &&
	grep -qE 'report: ([^)]*, )?lockdep' "$slog" &&
	grep -q 'possible circular locking dependency detected' "$slog"; then
	echo "PASS self-test: the suite failed 010-lockdep-abba and named lockdep"
	passed=$((passed + 1))
else
	sed 's/^/    | /' "$slog"
	lane_fail "self-test: the judge missed lockdep (suite exit $src; log: $slog)"
	finish
fi

# ---- builds --------------------------------------------------------------------
t=$SECONDS
if ! {
	make -s -C "$root" daemon lib examples bpf tools &&
		make -s -C "$root" modules KVERS="$rtkver"
} >>"$blog" 2>&1; then
	tail -n 30 "$blog"
	lane_fail "build failed (log: $blog)"
	finish
fi
took "builds" "$t"

# ---- the suites ------------------------------------------------------------------
# Every VM test that loads the module.
picked=()
for f in "$root"/tests/e2e/[0-9]*.sh; do
	n=$(basename "$f")
	grep -q 'dmu_load' "$f" || continue
	[[ -z ${DMU_DEBUG_FILTER:-} || $n =~ $DMU_DEBUG_FILTER ]] && picked+=("$n")
done
((${#picked[@]})) || { lane_fail "no test picked (DMU_DEBUG_FILTER='${DMU_DEBUG_FILTER:-}')"; finish; }
export DMU_TIMEOUT_SCALE=${DMU_TIMEOUT_SCALE:-3}
smp=${DMU_VM_SMP:-1}
# Two guests at a time (the machine has 2 cores), three suites: the RT kernel's
# takes about half as long as the debug kernel's (1880 s and 3650 s in the first
# whole run), so the debug kernel's tests are split in two.  Slot 1 runs the RT
# suite and then every 4th of the debug kernel's tests; slot 2 runs the other
# three quarters from the start.
dbg1=() dbg2=()
for i in "${!picked[@]}"; do
	if ((i % 4 == 3)); then dbg1+=("${picked[$i]}"); else dbg2+=("${picked[$i]}"); fi
done
# run_suite KVER NAME TEST...: one suite.sh; output in NAME.run, exit status in NAME.rc
run_suite() {
	local k=$1 name=$2 f
	shift 2
	f=$(IFS='|'; echo "$*")
	"$root/tests/vm/suite.sh" --kernel "$k" --smp "$smp" --filter "^(${f//./\\.})\$" \
		>"$log_dir/$name.run" 2>&1
	echo $? >"$log_dir/$name.rc"
}
echo "== ${#picked[@]} test(s) on $dkver (in two guests: ${#dbg2[@]} and ${#dbg1[@]}) and $rtkver, $smp vCPU(s) each, timeouts x$DMU_TIMEOUT_SCALE"
t=$SECONDS
runs=("vm-$rtkver" "vm-$dkver-a")
rm -f "$log_dir"/vm-*.run "$log_dir"/vm-*.rc
{
	run_suite "$rtkver" "vm-$rtkver" "${picked[@]}"
	((${#dbg1[@]} == 0)) || run_suite "$dkver" "vm-$dkver-b" "${dbg1[@]}"
} &
slot1=$!
run_suite "$dkver" "vm-$dkver-a" "${dbg2[@]}" &
slot2=$!
wait "$slot1" "$slot2"
((${#dbg1[@]} == 0)) || runs+=("vm-$dkver-b")
for r in "${runs[@]}"; do
	echo "== $r"
	cat "$log_dir/$r.run"
	count_suite "$log_dir/$r.run" "$(cat "$log_dir/$r.rc" 2>/dev/null || echo 255)"
done
took "suites" "$t"
finish
