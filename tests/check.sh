#!/bin/bash
# Runs every test: the VM suite on each kernel, and meanwhile the host unit suites.
# Prints each suite's own lines, then one closing line
# "N passed, N failed, N skipped" summed over all of them (one count per
# test; a skipped test is never a pass), and exits non-zero if anything
# failed.
#
# Required kernels: the VM suite must run on each of DMU_REQUIRED_KERNELS
# (default "6.1 6.12", version prefixes as --kernel takes them).  One that is
# not installed, or not among the --kernel arguments, counts as a failure:
# a run on one kernel is not a run on both.  DMU_REQUIRED_KERNELS="" lifts
# this for a deliberately partial run.
#
#   tests/check.sh [--soak] [--kernel KVER]... [--filter REGEX]
#
# --filter picks the VM tests by file name (bash =~); with --soak, among the
# tests that have soak counts.
#
# Guests: one per kernel, all at once.  make check gives each guest one
# virtual CPU: the build machines have two cores, and with two TCG guests of
# two vCPUs each on them, loops of fork+exec and of dmsetup ran 25-40% slower
# than with one vCPU each (measured here), and the e2e tests are mostly
# process starts.  Measured with the whole suite: 100-daemon-fio-verify took
# 33 s with one vCPU against 152 s with two, 130-daemon-cli 11 s against 53 s.
# One vCPU also rules out a TCG artefact seen with two: a CPU running a stale
# int3 after the kernel patched a tracepoint site (bpf/README.md, Limits).
# make soak gives each guest two,
# so the long stress tests (hostile client, suspend/resume, kill -9, cycles)
# run with real parallelism in the guest.  DMU_VM_SMP=N overrides both.
#
# The kernels' VM suites run at the same time, one guest each: much of a VM
# test is waiting (timeouts, recovery windows, paced I/O), so two guests
# overlap well even on two cores.  Their output is shown one suite after the
# other.
#
# --soak runs the VM tests that have soak-sized counts (those that call
# dmu_scale) at those counts.  Every other test does exactly the same work in
# both modes, so `make check` already covers it.
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
log_dir=$root/build/check
mkdir -p "$log_dir"

passed=0 failed=0 skipped=0
suites_failed=()

# run_suite NAME COMMAND...: runs a suite that ends with one line
# "N passed, N failed, N skipped"; a suite that prints more than one such
# line (two binaries, say) is broken, not summed: it counts as a failure.
run_suite() {
	local name=$1 log=$log_dir/$1.log lines line p f k rc
	shift
	echo "== $name"
	"$@" 2>&1 | tee "$log"
	rc=${PIPESTATUS[0]}
	lines=$(grep -cE '^[0-9]+ passed, [0-9]+ failed' "$log")
	line=$(grep -E '^[0-9]+ passed, [0-9]+ failed, [0-9]+ skipped$' "$log" | tail -n 1)
	if [[ -z $line || $lines != 1 ]]; then
		echo "$name: $lines result lines, need one 'N passed, N failed, N skipped' (exit status $rc): counted as 1 failure"
		failed=$((failed + 1))
		suites_failed+=("$name")
		return
	fi
	read -r p _ f _ k _ <<<"${line//,/}"
	passed=$((passed + p))
	failed=$((failed + f))
	skipped=$((skipped + k))
	if ((rc != 0 && f == 0)); then
		echo "$name: exit status $rc with no failed test: counted as 1 failure"
		failed=$((failed + 1))
	fi
	((rc == 0 && f == 0)) || suites_failed+=("$name")
}

# Split the arguments: kernels here, everything else to every suite.
kernels=() args=() soak=0 filter=""
while (($#)); do
	case $1 in
	--kernel) kernels+=("${2:?--kernel needs a value}"); shift 2 ;;
	--soak) soak=1; args+=("$1"); shift ;;
	--filter) filter=${2:?--filter needs a value}; shift 2 ;;
	*) args+=("$1"); shift ;;
	esac
done
if ((soak)); then
	# the tests with soak counts, and of those the ones --filter picks
	picked=()
	while IFS= read -r t; do
		t=$(basename "$t")
		if [[ -z $filter || $t =~ $filter ]]; then picked+=("$t"); fi
	done < <(grep -l dmu_scale "$root"/tests/e2e/[0-9]*.sh)
	((${#picked[@]})) || { echo "check.sh: no test with soak counts matches '${filter}'" >&2; exit 1; }
	scaled=$(IFS='|'; echo "${picked[*]}")
	filter="^(${scaled//./\\.})\$"
	echo "soak: $scaled"
fi
[[ -z $filter ]] || args+=(--filter "$filter")
if ((${#kernels[@]} == 0)); then
	mapfile -t kernels < <(. "$root/tests/vm/common.sh" && vm_kernels)
fi

# Every required kernel series must be among those the suite runs on.
missing_kernels=()
for want in ${DMU_REQUIRED_KERNELS-6.1 6.12}; do
	found=""
	for k in "${kernels[@]}"; do
		[[ $k == "$want" || $k == "$want"[.+-]* ]] && found=$k
	done
	[[ -n $found ]] || missing_kernels+=("$want")
done
for want in "${missing_kernels[@]}"; do
	echo "FAIL kernel $want: required, but not installed or not selected (make deps installs it; DMU_REQUIRED_KERNELS=\"\" for a partial run)"
	failed=$((failed + 1))
	suites_failed+=("kernel-$want")
done

smp=${DMU_VM_SMP:-$((soak ? 2 : 1))}
echo "guests: ${#kernels[@]}, $smp vCPU(s) each"
pids=()
for k in "${kernels[@]}"; do
	"$root"/tests/vm/suite.sh --kernel "$k" --smp "$smp" "${args[@]}" >"$log_dir/vm-$k.run" 2>&1 &
	pids+=($!)
done

# The host unit suites run while the guests do: they spend most of their
# time waiting (a Ceph cluster starting, an NBD server killed, timeouts), as
# the guests do, and one after the other before the guests they added a
# minute to make check.  At nice 10, so that they take the CPU the guests
# leave idle rather than theirs (make check waits for the slower guest).
for mk in "$root"/tests/unit/Makefile "$root"/tests/unit/*/Makefile; do
	[[ -f $mk ]] || continue
	dir=$(dirname "$mk")
	name=${dir#"$root"/tests/}
	run_suite "${name//\//-}" nice -n 10 make -s -C "$dir" check
done
for i in "${!kernels[@]}"; do
	rc=0
	wait "${pids[$i]}" || rc=$?
	# shellcheck disable=SC2016 # $1, $2 are bash -c's
	run_suite "vm-${kernels[$i]}" bash -c 'cat "$1"; exit "$2"' _ "$log_dir/vm-${kernels[$i]}.run" "$rc"
done

echo
if ((${#suites_failed[@]})); then
	echo "failed suites: ${suites_failed[*]} (logs in $log_dir)"
fi
echo "$passed passed, $failed failed, $skipped skipped"
((failed == 0))
