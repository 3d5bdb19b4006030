#!/bin/bash
# Runs INSIDE the test guest (started by tests/vm/suite.sh through run.sh).
#
#   tests/vm/guest-suite.sh [--filter REGEX] [TEST...]
#
# TEST is a file name in tests/e2e/ (e.g. 010-load-unload.sh); default: every
# tests/e2e/[0-9]*.sh whose name matches REGEX, in order. Each test runs under
# `timeout` (300 s, or N from a "# timeout: N" line in the test) in its own process
# group, with TMPDIR set to a fresh directory on tmpfs.
#
# A test is SKIPPED when it exits 77 (lib.sh's skip) after printing a line
# "SKIP: <why>", and nothing below fails it; a skip is reported with its
# reason and never counted as a pass.  It FAILS when
#   - its exit status is not 0 or 77, or 77 without a "SKIP: " line, or
#   - the kernel log written while it ran (and while the runner cleaned up after it)
#     has a line matching $DMU_DMESG_BAD (WARNING, BUG, Oops, lockdep, hung task,
#     KASAN, UBSAN...), or the kernel picked up a new W/D/L/B taint, or
#   - it left something behind: processes in its process group, a running dmuserd,
#     a dm device, or the dm_user module loaded. The runner then cleans up.
#
# Results go to $DMU_OUT (the host reads them while the guest runs):
#   results.txt          one line per event: "RUN name", "PASS name secs",
#                        "FAIL name secs", "SKIP name secs why", and
#                        "ABORT reason" when the guest cannot
#                        be brought back to a clean state (the host then boots a
#                        fresh guest for the remaining tests)
#   results/NAME.out     the test's stdout+stderr
#   results/NAME.dmesg   the kernel log lines written during the test
#   results/NAME.why     why it failed (exit status, offending dmesg lines, leftovers)
#   cpu.txt              "name wall_s cpu_s": the guest's busy CPU time while the
#                        test ran (from /proc/stat; under TCG, the host's CPU time
#                        for the guest), to find what make check's budget goes on
# Exit status: 0 if every test passed, 1 otherwise.
set -euo pipefail

DMU_ROOT=${DMU_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)}
: "${DMU_OUT:?DMU_OUT not set: run this through tests/vm/suite.sh or tests/vm/run.sh}"
export DMU_ROOT
export DMU_KVER=${DMU_KVER:-$(uname -r)}
export DMU_KO=${DMU_KO:-$DMU_ROOT/build/kmod/$DMU_KVER/dm-user.ko}
# Where the tests are: tests/e2e, or DMU_TESTS_DIR (relative to the repo root;
# the debug lane's self-test).
tdir=$DMU_ROOT/${DMU_TESTS_DIR:-tests/e2e}

# The kernel log lines and taints that fail a test (DMU_DMESG_BAD, dmesg_kinds,
# DMU_TAINT_BAD).
# shellcheck source=tests/vm/dmesg-bad.sh
. "$DMU_ROOT/tests/vm/dmesg-bad.sh"
# Lockdep stops after its first report (and after a taint that makes it
# unreliable, e.g. KASAN's): "debug_locks" in /proc/lockdep_stats, when there.
debug_locks() { awk '$1 == "debug_locks:" { print $2 }' /proc/lockdep_stats 2>/dev/null || true; }
DEFAULT_TIMEOUT=300
SKIP_STATUS=77

filter=""
tests=()
while (($#)); do
	case $1 in
	--filter) filter=${2:?}; shift 2 ;;
	-*) echo "guest-suite.sh: unknown option $1" >&2; exit 2 ;;
	*) tests+=("$1"); shift ;;
	esac
done
if ((${#tests[@]} == 0)); then
	for t in "$tdir"/[0-9]*.sh; do
		[[ -e $t ]] || continue
		n=$(basename "$t")
		[[ -z $filter || $n =~ $filter ]] && tests+=("$n")
	done
fi

res=$DMU_OUT/results
mkdir -p "$res"
: >>"$DMU_OUT/results.txt"
say() { echo "dmu-suite: $*"; }
event() { printf '%s\n' "$*" >>"$DMU_OUT/results.txt"; }

# sleep without a fork (bash-builtins; see tests/e2e/lib.sh)
enable -f /usr/lib/bash/sleep sleep 2>/dev/null || true

# Poll CMD until it succeeds or SECONDS pass.
poll() {
	local secs=$1; shift
	local end=$((SECONDS + secs))
	until "$@"; do
		((SECONDS < end)) || return 1
		sleep 0.1
	done
}

# Reasons why the current test failed, one per line (empty: it passed).
reasons=""
reason() { reasons+="$*"$'\n'; }

# Processes, as "pid pgid comm" lines, from one ps call (forks are slow here).
procs() { ps -eo pid=,pgid=,comm=; }
group_alive() { # pgid
	local pid pgid comm
	while read -r pid pgid comm; do
		[[ $pgid == "$1" ]] && return 0
	done < <(procs)
	return 1
}
dmuserd_alive() {
	local pid pgid comm
	while read -r pid pgid comm; do
		[[ $comm == dmuserd ]] && return 0
	done < <(procs)
	return 1
}
group_gone() { ! group_alive "$1"; }
dmuserd_gone() { ! dmuserd_alive; }
dm_user_gone() { rmmod dm_user 2>/dev/null; [[ ! -d /sys/module/dm_user ]]; }

# Bring the guest back to a clean state after a test; add a reason for each thing
# that was left behind. Returns 1 if the state could not be restored.
cleanup_after() {
	local pgid=$1 pid g comm name ok=0 group="" daemons="" names=""
	while read -r pid g comm; do
		[[ $g == "$pgid" ]] && group+="$pid $comm, "
		[[ $comm == dmuserd ]] && daemons+="$pid "
	done < <(procs)
	if [[ -n $group ]]; then
		reason "left processes running: ${group%, }"
		kill -KILL -- "-$pgid" 2>/dev/null || true
		poll 10 group_gone "$pgid" || { reason "  ...still there after SIGKILL"; ok=1; }
	fi
	if [[ -n $daemons ]]; then
		reason "stray dmuserd: pid ${daemons% }"
		# shellcheck disable=SC2086 # a list of pids
		kill -TERM $daemons 2>/dev/null || true
		# shellcheck disable=SC2086
		poll 10 dmuserd_gone || kill -KILL $daemons 2>/dev/null || true
		poll 10 dmuserd_gone || { reason "  ...dmuserd survived SIGKILL"; ok=1; }
	fi
	names=$(dmsetup info -c --noheadings -o name 2>/dev/null) || names=""
	[[ $names != "No devices found" ]] || names=""
	if [[ -n $names ]]; then
		while IFS= read -r name; do
			reason "left dm device: $name ($(dmsetup table "$name" 2>&1 | head -n3 | tr '\n' ';'))"
			if ! dmsetup remove --noudevsync --force --retry "$name" >/dev/null 2>&1; then
				reason "  ...dmsetup remove -f $name failed"
				ok=1
			fi
		done <<<"$names"
		dmsetup mknodes >/dev/null 2>&1 || true
	fi
	if [[ -d /sys/module/dm_user ]]; then
		reason "dm_user module left loaded (refcnt $(</sys/module/dm_user/refcnt))"
		poll 10 dm_user_gone || { reason "  ...rmmod dm_user failed"; ok=1; }
	fi
	return $ok
}

# N from a "# timeout: N" line of the test, else the default. Under
# DMU_SOAK=1 a "# soak-timeout: N" line wins.
test_timeout() {
	local line tmo=$DEFAULT_TIMEOUT soak=""
	while IFS= read -r line; do
		if [[ $line =~ ^#\ timeout:\ *([0-9]+) ]]; then
			tmo=${BASH_REMATCH[1]}
		elif [[ $line =~ ^#\ soak-timeout:\ *([0-9]+) ]]; then
			soak=${BASH_REMATCH[1]}
		fi
	done <"$1"
	if [[ ${DMU_SOAK:-0} == 1 && -n $soak ]]; then tmo=$soak; fi
	echo "$((tmo * ${DMU_TIMEOUT_SCALE:-1}))"
}

# busy_ticks: the guest's CPU time so far, all CPUs, in USER_HZ ticks (idle
# and iowait left out)
busy_ticks() {
	local user nice sys irq softirq steal
	read -r _ user nice sys _ _ irq softirq steal _ </proc/stat
	echo $((user + nice + sys + irq + softirq + steal))
}
hz=$(getconf CLK_TCK)

# Boot messages are not judged, but kept.
dmesg --read-clear >"$res/boot.dmesg" 2>&1 || true
((${#tests[@]} == 0)) || mkdir -p "${tests[@]/#//tmp/dmu-suite/}"

say "kernel $DMU_KVER, ${#tests[@]} test(s)"
failed=0
for n in "${tests[@]}"; do
	name=${n%.sh}
	t=$tdir/$n
	why=$res/$name.why
	reasons=""
	tmo=$(test_timeout "$t")
	event "RUN $name"
	say "RUN  $name (timeout ${tmo}s)"
	taint0=$(</proc/sys/kernel/tainted)
	locks0=$(debug_locks)
	export TMPDIR=/tmp/dmu-suite/$n
	start=$SECONDS
	busy0=$(busy_ticks)

	# timeout(1) puts itself and the test in a new process group: $! is its id.
	set +e
	timeout -k 10 "$tmo" bash "$t" >"$res/$name.out" 2>&1 </dev/null &
	pgid=$!
	wait "$pgid"
	rc=$?
	set -e

	skipwhy=""
	if ((rc == 124)); then
		reason "timed out after ${tmo} s (killed)"
	elif ((rc == SKIP_STATUS)); then
		skipwhy=$(sed -n 's/^SKIP: //p' "$res/$name.out" | tail -n 1)
		[[ -n $skipwhy ]] || reason "exit status $rc (skip) without a 'SKIP: <why>' line"
	elif ((rc != 0)); then
		reason "exit status $rc"
	fi
	abort=""
	if ! cleanup_after "$pgid" 2>>"$res/$name.out"; then
		abort="cannot restore a clean guest after $name"
	fi
	# Free the test's tmpfs space (it may hold big backing files).
	if compgen -G "$TMPDIR/*" >/dev/null || compgen -G "$TMPDIR/.[!.]*" >/dev/null; then
		rm -rf "$TMPDIR"
	fi

	dmesg --read-clear >"$res/$name.dmesg" 2>&1 || true
	if grep -qE "$DMU_DMESG_BAD" "$res/$name.dmesg"; then
		kinds=$(dmesg_kinds "$res/$name.dmesg")
		reason "kernel log has lines matching the failure patterns${kinds:+ (report: $kinds)}:"
		reason "$(grep -E "$DMU_DMESG_BAD" "$res/$name.dmesg" | head -n 20 | sed 's/^/  /')"
		reason "kernel log from the first match (60 lines at most; all of it in $name.dmesg):"
		reason "$(grep -m1 -A60 -E "$DMU_DMESG_BAD" "$res/$name.dmesg" | sed 's/^/  /')"
	fi
	taint1=$(</proc/sys/kernel/tainted)
	newtaint=$(((taint1 & ~taint0) & DMU_TAINT_BAD))
	if ((newtaint)); then
		reason "kernel taint gained bits $(printf '0x%x' "$newtaint") (tainted: $taint0 -> $taint1)"
	fi

	locks1=$(debug_locks)
	if [[ $locks0 == 1 && $locks1 == 0 ]]; then
		reason "lockdep turned itself off during this test (debug_locks 1 -> 0)"
		abort="lockdep is off after $name"
	fi

	secs=$((SECONDS - start))
	busy1=$(busy_ticks)
	printf '%s %s %s\n' "$name" "$secs" "$(((busy1 - busy0) / hz))" >>"$DMU_OUT/cpu.txt"
	if [[ -n $reasons ]]; then
		printf '%s' "$reasons" >"$why"
		failed=$((failed + 1))
		event "FAIL $name $secs"
		say "FAIL $name (${secs}s)"
	elif [[ -n $skipwhy ]]; then
		event "SKIP $name $secs $skipwhy"
		say "SKIP $name (${secs}s): $skipwhy"
	else
		event "PASS $name $secs"
		say "PASS $name (${secs}s)"
	fi
	if [[ -n $abort ]]; then
		event "ABORT $abort"
		say "ABORT: $abort"
		exit 1
	fi
done
((failed == 0))
