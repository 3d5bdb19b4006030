#!/bin/bash
# shellcheck source-path=SCRIPTDIR
# Run the e2e tests (tests/e2e/[0-9]*.sh) in QEMU guests, one guest per kernel.
#
#   tests/vm/suite.sh [--kernel KVER]... [--filter REGEX] [--soak] [--smp N] [-v]
#
# --kernel  a kernel to test (repeatable; exact version or unambiguous prefix such as
#           6.1 or 6.12). Default: every installed generic -amd64 kernel with headers.
#           Each one must have build/kmod/<kver>/dm-user.ko, else this fails.
# --filter  run only the tests whose file name matches REGEX (bash =~).
# --soak    export DMU_SOAK=1 to the tests (bigger counts).
# --smp     virtual CPUs per guest (default 2).
# -v        stream the guest consoles.
#
# Prints "PASS <kver> <test>", "FAIL <kver> <test>" (with the test's output and
# the reasons) or "SKIP <kver> <test>: <why>" per test, then one line
# "N passed, N failed, N skipped".  A skip is never counted as a pass.
# Exit status 0 only if every test passed. If a guest crashes or hangs, the test
# that was running fails and a fresh guest runs the remaining tests.
# Results: build/vm/suite-<kver>.<pid>/boot-<n>/ (see tests/vm/guest-suite.sh);
# build/vm/suite-<kver> points to the latest; earlier ones are removed a day
# later. Several suites may run at once.
set -euo pipefail

# shellcheck source=common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() {
	sed -n '3,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}" >&2
	exit 2
}

kernels_arg=() filter="" soak=0 smp=2 verbose=0
while (($#)); do
	case $1 in
	--kernel) kernels_arg+=("${2:?}"); shift 2 ;;
	--filter) filter=${2:?}; shift 2 ;;
	--soak) soak=1; shift ;;
	--smp) smp=${2:?}; shift 2 ;;
	-v | --verbose) verbose=1; shift ;;
	-h | --help) usage ;;
	*) echo "suite.sh: unknown argument '$1'" >&2; usage ;;
	esac
done

kernels=()
if ((${#kernels_arg[@]})); then
	for k in "${kernels_arg[@]}"; do kernels+=("$(vm_resolve_kernel "$k")"); done
else
	mapfile -t kernels < <(vm_kernels)
	((${#kernels[@]})) || vm_die "no installed generic -amd64 kernel with headers (/boot/vmlinuz-*, /lib/modules/*/build)"
fi
missing=()
for k in "${kernels[@]}"; do
	[[ -f $(vm_ko_path "$k") ]] || missing+=("$k")
done
if ((${#missing[@]})); then
	for k in "${missing[@]}"; do
		vm_log "error: kernel $k has headers but no built module $(vm_ko_path "$k")"
	done
	vm_die "build the module for every kernel first (make modules)"
fi

# DMU_TESTS_DIR: another directory of tests (the debug lane's self-test).
# DMU_TIMEOUT_SCALE=N: every test's timeout times N (the debug lane's kernel).
tdir=$DMU_ROOT/${DMU_TESTS_DIR:-tests/e2e}
scale=${DMU_TIMEOUT_SCALE:-1}
[[ $scale =~ ^[1-9][0-9]*$ ]] || vm_die "DMU_TIMEOUT_SCALE wants a positive integer, got '$scale'"
tests=()
for t in "$tdir"/[0-9]*.sh; do
	[[ -e $t ]] || continue
	n=$(basename "$t")
	[[ -z $filter || $n =~ $filter ]] && tests+=("$n")
done
((${#tests[@]})) || vm_die "no test in tests/e2e matches '${filter}'"

# The guest's timeout for a test (as tests/vm/guest-suite.sh picks it): N from
# its "# timeout: N" line, else 300; under --soak a "# soak-timeout: N" line wins.
test_timeout() {
	local n s=""
	n=$(sed -n 's/^# timeout: *\([0-9][0-9]*\).*/\1/p' "$tdir/$1" | head -n1)
	((soak)) && s=$(sed -n 's/^# soak-timeout: *\([0-9][0-9]*\).*/\1/p' "$tdir/$1" | head -n1)
	echo "$((${s:-${n:-300}} * scale))"
}

passed=0 failed=0 skipped=0

indent() { sed 's/^/    | /'; }

report_fail() { # kver name dir [extra reason]
	local kver=$1 name=$2 dir=$3
	echo "FAIL $kver $name"
	[[ -z ${4:-} ]] || echo "    reason: $4"
	if [[ -s $dir/results/$name.why ]]; then
		echo "    reasons ($dir/results/$name.why):"
		indent <"$dir/results/$name.why"
	fi
	if [[ -f $dir/results/$name.out ]]; then
		echo "    test output ($dir/results/$name.out):"
		tail -n 200 "$dir/results/$name.out" | indent
	fi
	failed=$((failed + 1))
}

# Print the PASS/FAIL lines of results.txt from line $seen_lines on.
# Sets: seen_lines, running (test started but not finished), done_tests[], aborted.
process_results() { # kver dir
	local kver=$1 dir=$2 line kind name
	[[ -f $dir/results.txt ]] || return 0
	while IFS= read -r line; do
		seen_lines=$((seen_lines + 1))
		read -r kind name _ <<<"$line"
		case $kind in
		RUN)
			running=$name running_since=$SECONDS
			running_tmo=$(test_timeout "$name.sh") ;;
		PASS)
			echo "PASS $kver $name"
			passed=$((passed + 1)); running=""; done_tests[$name]=1 ;;
		SKIP)
			read -r _ _ _ why <<<"$line"
			echo "SKIP $kver $name: $why"
			skipped=$((skipped + 1)); running=""; done_tests[$name]=1 ;;
		FAIL)
			report_fail "$kver" "$name" "$dir"
			running=""; done_tests[$name]=1 ;;
		ABORT) aborted=${line#ABORT } ;;
		esac
	done < <(tail -n +"$((seen_lines + 1))" "$dir/results.txt")
}

total_start=$(vm_now)
for kver in "${kernels[@]}"; do
	base=$DMU_VM_BUILD/suite-$kver.$$
	vm_prune "suite-$kver.*" 1440 # earlier suites' results are kept for a day
	rm -rf "$base"
	mkdir -p "$base"
	link=$DMU_VM_BUILD/suite-$kver
	[[ -L $link || ! -e $link ]] || rm -rf "$link" # a directory from an older layout
	ln -sfn "$(basename "$base")" "$link"
	remaining=("${tests[@]}")
	boot=0
	kstart=$(vm_now)
	while ((${#remaining[@]})); do
		boot=$((boot + 1))
		dir=$base/boot-$boot
		mkdir -p "$dir"
		budget=120
		for t in "${remaining[@]}"; do budget=$((budget + $(test_timeout "$t") + 60)); done
		runargs=(--kernel "$kver" --out "$dir" --timeout "$budget" --smp "$smp" -q)
		((soak)) && runargs+=(--env DMU_SOAK=1)
		[[ -z ${DMU_TESTS_DIR:-} ]] || runargs+=(--env "DMU_TESTS_DIR=$DMU_TESTS_DIR")
		((scale == 1)) || runargs+=(--env "DMU_TIMEOUT_SCALE=$scale")
		((verbose)) && runargs+=(-v)

		"$DMU_ROOT/tests/vm/run.sh" "${runargs[@]}" -- tests/vm/guest-suite.sh "${remaining[@]}" &
		pid=$!
		# run.sh stops its guest on SIGTERM (a background job cannot see SIGINT).
		trap 'kill -TERM "$pid" 2>/dev/null; wait "$pid"; vm_log "interrupted"; exit 130' INT TERM HUP
		seen_lines=0 running="" running_since=0 running_tmo=0 aborted="" hung=""
		boot_since=$SECONDS
		declare -A done_tests=()
		# Report results while the guest runs. Watchdog: the guest kills a test at
		# its timeout (SIGKILL 10 s later) and cleans up; if no result comes
		# 120 s after that, or no test starts within 300 s of the boot, the guest
		# is wedged: stop it now rather than at run.sh's much later deadline.
		while kill -0 "$pid" 2>/dev/null; do
			process_results "$kver" "$dir"
			if [[ -n $running ]] && ((SECONDS - running_since > running_tmo + 130)); then
				hung="no result $((SECONDS - running_since)) s after it started (timeout ${running_tmo} s): the guest hung; stopped it"
			elif ((seen_lines == 0 && SECONDS - boot_since > 300 * scale)); then
				hung="no test started within $((300 * scale)) s of booting the guest; stopped it"
			fi
			if [[ -n $hung ]]; then
				kill -TERM "$pid" 2>/dev/null || true
				break
			fi
			sleep 1
		done
		rc=0
		wait "$pid" || rc=$?
		trap - INT TERM HUP
		process_results "$kver" "$dir"

		if [[ -n $hung && -z $running ]]; then
			for t in "${remaining[@]}"; do
				report_fail "$kver" "${t%.sh}" "$dir" "$hung"
			done
			echo "    guest console ($dir/console.log):"
			indent <"$dir/console.log"
			break
		elif [[ -n $running ]]; then
			case $rc in
			124) why="the guest hung: run.sh killed it after ${budget} s" ;;
			125) why="the guest crashed (kernel panic?)" ;;
			*) why="the guest stopped while it ran (run.sh exit $rc)" ;;
			esac
			[[ -z $hung ]] || why=$hung
			report_fail "$kver" "$running" "$dir" "$why"
			echo "    guest console, last 80 lines ($dir/console.log):"
			tail -n 80 "$dir/console.log" | indent
			done_tests[$running]=1
		elif [[ -n $aborted ]]; then
			vm_log "$kver: $aborted; booting a fresh guest for the remaining tests"
		elif ((${#done_tests[@]} == 0)); then
			# Not even one test started: the guest itself is broken.
			for t in "${remaining[@]}"; do
				report_fail "$kver" "${t%.sh}" "$dir" "the guest did not start the suite (run.sh exit $rc)"
			done
			echo "    guest console ($dir/console.log):"
			indent <"$dir/console.log"
			break
		elif ((rc != 0 && rc != 1)); then
			vm_log "$kver: guest-suite exited $rc"
		fi
		next=()
		for t in "${remaining[@]}"; do
			[[ -n ${done_tests[${t%.sh}]:-} ]] || next+=("$t")
		done
		if ((${#next[@]} && boot >= 5)); then
			for t in "${next[@]}"; do
				report_fail "$kver" "${t%.sh}" "$dir" "not run: too many guest restarts"
			done
			break
		fi
		remaining=(${next[@]+"${next[@]}"})
	done
	vm_log "$kver: ${#tests[@]} test(s) in $boot guest boot(s), $(vm_elapsed "$kstart") s"
done
vm_log "total $(vm_elapsed "$total_start") s"

echo "$passed passed, $failed failed, $skipped skipped"
((failed == 0))
