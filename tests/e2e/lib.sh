# shellcheck shell=bash disable=SC2034 # variables here are for the tests that source this file
# tests/e2e/lib.sh: sourced by every e2e test, first thing after the shebang:
#
#     #!/bin/bash
#     # timeout: 120            (optional; default 300 s)
#     . "$(dirname "$0")/lib.sh"
#
# It turns on `set -euo pipefail`, fills in the DMU_* variables when a test is run
# by hand inside a guest, and installs an EXIT trap that calls dmu_cleanup, so a
# test that dies half-way still removes its devices, stops its daemons and unloads
# the module. Conventions are in tests/README.md.
#
# Functions (all fail the test through `die` unless stated otherwise):
#   log MSG...                      progress line with a timestamp
#   die MSG...                      print "FAIL: MSG" to stderr, exit 1
#   skip MSG...                     the test cannot run here: print "SKIP: MSG" and
#                                   exit $DMU_SKIP_STATUS (77); the suite reports it
#                                   as skipped with MSG, never as passed
#   assert_eq ACTUAL EXPECTED MSG   die unless the two strings are equal
#   assert_fails CMD...             run CMD; die if it succeeds
#   wait_for_path PATH TIMEOUT      poll until PATH exists; returns 1 on timeout
#   wait_for_gone PATH TIMEOUT      poll until PATH no longer exists; 1 on timeout
#   wait_until TIMEOUT CMD...       poll until CMD succeeds; 1 on timeout
#   dmu_tmpdir                      print a fresh directory on tmpfs (removed on exit)
#   dmu_load [PARAM=VALUE...]       insmod $DMU_KO unless loaded; check /sys/module
#   dmu_unload                      rmmod dm_user and check it is gone
#   dmu_cleanup                     stop lib-started processes, remove dm devices
#                                   named dmu-test* or using a "user" target, rmmod,
#                                   remove dmu_tmpdir directories (runs on exit)
#   dmu_bg CMD...                   start CMD in the background, remember it for
#                                   cleanup; its pid is in DMU_BG_PID (call it
#                                   directly, not inside $(...))
#   dmu_at_exit CMD...              run CMD in dmu_cleanup, once the processes
#                                   dmu_bg started are stopped (newest first;
#                                   for servers that daemonize, e.g. Ceph's)
#   dmu_running PID / dmu_not_running PID
#                                   whether PID runs (an exited, unreaped child
#                                   counts as not running); no die
#   dmu_stop PID [TIMEOUT]          SIGTERM PID, wait (10 s default), SIGKILL if it
#                                   must; returns PID's exit status
#   dmu_wait PID [TIMEOUT]          wait (30 s default) for PID to end by itself (no
#                                   signal); returns its exit status, or 124 if it
#                                   still runs (dmu_cleanup stops it)
#   dmu_daemon_start NAME FILE SIZE [ARGS...]
#                                   start $DMU_DAEMON --file FILE --name NAME
#                                   --size SIZE --ready-file F ARGS..., wait for F;
#                                   pid in DMU_DAEMON_PID, ready file (pid=,
#                                   device=, control=, metrics= lines) in
#                                   DMU_DAEMON_READY
#   dmu_daemon_stop [PID]           SIGTERM the daemon; die unless it exits 0 in 30 s
#   dmu_dm_names                    print the names of all dm devices
#   dmu_dm_exists NAME              true if dm device NAME exists (no die)
#   dmu_kmsg_mark                   write a unique marker to the kernel log, print it
#   dmu_dmesg_since MARK            print kernel log lines after MARK
#   dmu_scale NORMAL SOAK           print SOAK when DMU_SOAK=1, else NORMAL
#   dmu_ext4_round_trip DEV DIR     mkfs.ext4 on DEV, a tree of files (generated,
#                                   a symlink, an empty directory, the repo's
#                                   module/ and daemon/) copied in, fsck.ext4 -fn
#                                   clean, mounted again read-only, the tree
#                                   compares equal (DIR: scratch space)

set -euo pipefail
set -o errtrace

# sleep as a bash builtin (Debian's bash-builtins), so that a poll does not
# fork.  In an emulated guest a fork+exec costs more CPU than the wait it
# paces, and that CPU is taken from what the test waits for: 100 rounds of
# "sleep 0.05; cat /proc/self/stat" took 138 s in a loaded 6.12 guest, the
# same rounds with the builtins 5.8 s.  Without the package, the external
# sleep still works, only slower.
enable -f /usr/lib/bash/sleep sleep 2>/dev/null || true

DMU_ROOT=${DMU_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)}
DMU_KVER=${DMU_KVER:-$(uname -r)}
DMU_KO=${DMU_KO:-$DMU_ROOT/build/kmod/$DMU_KVER/dm-user.ko}
DMU_SOAK=${DMU_SOAK:-0}
DMU_DAEMON=${DMU_DAEMON:-$DMU_ROOT/daemon/dmuserd}
# No udev in the guest: libdevmapper must create /dev/mapper nodes itself.
DM_DISABLE_UDEV=${DM_DISABLE_UDEV:-1}
export DMU_ROOT DMU_KVER DMU_KO DMU_SOAK DMU_DAEMON DM_DISABLE_UDEV

DMU_TEST=${0##*/}
DMU_TEST=${DMU_TEST%.sh}
# Everything a test creates through the lib lives under this directory.
_DMU_STATE=${TMPDIR:-/tmp}/dmu-lib.$DMU_TEST.$$
_DMU_T0=${EPOCHREALTIME/[.,]/}

# "[seconds since the test started] message", without forking (forks are slow
# in an emulated guest).
log() {
	local now=${EPOCHREALTIME/[.,]/} cs
	cs=$(((10#$now - 10#$_DMU_T0) / 10000))
	printf '[%3d.%02d] %s\n' $((cs / 100)) $((cs % 100)) "$*"
}

die() {
	printf '%s: FAIL: %s\n' "$DMU_TEST" "$*" >&2
	exit 1
}

# The exit status that means "skipped" (automake's); tests/vm/guest-suite.sh
# reads the reason from the last "SKIP: " line of the test's output.
DMU_SKIP_STATUS=77
skip() {
	printf 'SKIP: %s\n' "$*"
	exit "$DMU_SKIP_STATUS"
}

# dmu_kernel_independent [--on 6.12] WHAT: a test whose subject does not
# depend on the kernel (WHAT says why: the kernel-facing part is checked on
# every kernel by other tests) runs on one of Debian's stock kernels, 6.1 (or
# the one --on names), and on every kernel of the debug lane; on the other
# stock kernel it is skipped with that reason.  make check waits for the
# slower of its two guests, and running such a test twice only costs CPU time
# (tests/README.md says which tests, on which kernel).
dmu_kernel_independent() {
	local on=6.1 stock=""
	if [[ $1 == --on ]]; then
		on=$2
		shift 2
	fi
	case $DMU_KVER in
	6.1.*-rt-amd64) ;;
	6.1.*-amd64) stock=6.1 ;;
	6.12.*+deb12-amd64) stock=6.12 ;;
	esac
	[[ -z $stock || $stock == "$on" ]] ||
		skip "kernel-independent ($*); runs on $on and in the debug lane"
}

assert_eq() {
	(($# == 3)) || die "assert_eq wants ACTUAL EXPECTED MSG, got $# args"
	[[ $1 == "$2" ]] || die "$3: expected '$2', got '$1'"
}

assert_fails() {
	local rc=0
	"$@" || rc=$?
	((rc != 0)) || die "expected failure, but it succeeded: $*"
}

# Polling helpers: check a real condition every 50 ms until a deadline.
# The pause between polls doubles from 10 ms up to 250 ms: a short wait ends
# soon, and a long one spends little CPU on predicates that must fork
# (dmsetup, curl), CPU that the guest's one vCPU would otherwise take from
# what is awaited.
wait_until() {
	local timeout=$1; shift
	local end=$((SECONDS + timeout)) nap=10 pause
	while ! "$@"; do
		((SECONDS < end)) || return 1
		printf -v pause '0.%03d' "$nap"
		sleep "$pause"
		((nap = nap * 2 > 250 ? 250 : nap * 2))
	done
}
_dmu_exists() { [[ -e $1 || -L $1 ]]; }
_dmu_absent() { ! _dmu_exists "$1"; }
wait_for_path() {
	wait_until "$2" _dmu_exists "$1" && return 0
	echo "$DMU_TEST: $1 did not appear within $2 s" >&2
	return 1
}
wait_for_gone() {
	wait_until "$2" _dmu_absent "$1" && return 0
	echo "$DMU_TEST: $1 still exists after $2 s" >&2
	return 1
}

dmu_scale() { if [[ $DMU_SOAK == 1 ]]; then echo "$2"; else echo "$1"; fi; }

dmu_tmpdir() {
	local d
	mkdir -p "$_DMU_STATE/tmp"
	d=$(mktemp -d "$_DMU_STATE/tmp/XXXXXX")
	[[ $(stat -f -c %T "$d") == tmpfs ]] || die "$d is not on tmpfs"
	echo "$d"
}

# ---- module -----------------------------------------------------------------

# shellcheck disable=SC2120 # parameters are optional
dmu_load() {
	[[ -e /proc/modules ]] || die "this kernel has no module support: run the test in the VM (tests/vm/suite.sh --kernel KVER --filter $DMU_TEST)"
	if [[ ! -d /sys/module/dm_user ]]; then
		[[ -f $DMU_KO ]] || die "module not built: $DMU_KO (build it with make, see README)"
		[[ -d /sys/module/dm_mod ]] || modprobe dm-mod || die "modprobe dm-mod failed"
		insmod "$DMU_KO" "$@" || die "insmod $DMU_KO $* failed"
	fi
	[[ -d /sys/module/dm_user ]] || die "/sys/module/dm_user missing after insmod"
}

dmu_unload() {
	[[ -d /sys/module/dm_user ]] || die "dmu_unload: dm_user is not loaded"
	rmmod dm_user || die "rmmod dm_user failed (refcnt $(cat /sys/module/dm_user/refcnt 2>/dev/null || echo ?))"
	wait_for_gone /sys/module/dm_user 10 || die "dm_user still in /sys/module after rmmod"
}

# ---- device-mapper ---------------------------------------------------------------

dmu_dm_names() {
	local out
	out=$(dmsetup info -c --noheadings -o name 2>/dev/null) || return 0
	[[ $out == "No devices found" ]] || printf '%s\n' "$out"
}

dmu_dm_exists() { dmsetup info "$1" >/dev/null 2>&1; }

# ---- background processes ----------------------------------------------------------

DMU_BG_PID=""
dmu_bg() {
	mkdir -p "$_DMU_STATE"
	"$@" &
	DMU_BG_PID=$!
	echo "$DMU_BG_PID" >>"$_DMU_STATE/pids"
}

# True while PID runs (a zombie child that has exited does not count).
_dmu_running() {
	local st
	{ read -r st <"/proc/$1/stat"; } 2>/dev/null || return 1
	st=${st##*) }
	[[ ${st%% *} != Z ]]
}
_dmu_not_running() { ! _dmu_running "$1"; }
dmu_running() { _dmu_running "$@"; }
dmu_not_running() { _dmu_not_running "$@"; }

dmu_stop() {
	local pid=$1 timeout=${2:-10} rc=0
	if _dmu_running "$pid"; then
		kill -TERM "$pid" 2>/dev/null || true
		if ! wait_until "$timeout" _dmu_not_running "$pid"; then
			echo "$DMU_TEST: pid $pid ignored SIGTERM for $timeout s; sending SIGKILL" >&2
			kill -KILL "$pid" 2>/dev/null || true
			wait_until 10 _dmu_not_running "$pid" || echo "$DMU_TEST: pid $pid survived SIGKILL" >&2
		fi
	fi
	wait "$pid" 2>/dev/null || rc=$?
	if [[ -f $_DMU_STATE/pids ]]; then
		sed -i "/^$pid\$/d" "$_DMU_STATE/pids"
	fi
	return "$rc"
}

# A process that must finish on its own (a dd whose I/O is under test): dmu_stop
# would SIGTERM it if it had not finished yet, and its failure would be ours.
dmu_wait() {
	local pid=$1 timeout=${2:-30} rc=0
	wait_until "$timeout" _dmu_not_running "$pid" || return 124
	wait "$pid" 2>/dev/null || rc=$?
	if [[ -f $_DMU_STATE/pids ]]; then
		sed -i "/^$pid\$/d" "$_DMU_STATE/pids"
	fi
	return "$rc"
}

DMU_DAEMON_PID="" DMU_DAEMON_READY=""
_dmu_daemon_up_or_dead() { [[ -e $1 ]] || ! _dmu_running "$2"; }
# dmu_daemon_run NAME [ARGS...]: dmuserd --name NAME with a ready file
# ($DMU_DAEMON_READY) and ARGS, in the background ($DMU_DAEMON_PID); returns
# once it is ready, dies if it is not within 30 s or exits first.  With
# DMU_DAEMON_ERR set, its stderr is appended to that file (and shown if it
# exits before it is ready).
dmu_daemon_run() {
	(($# >= 1)) || die "dmu_daemon_run NAME [ARGS...]"
	local name=$1 ready rc=0
	shift
	[[ -x $DMU_DAEMON ]] || die "daemon not built: $DMU_DAEMON"
	mkdir -p "$_DMU_STATE"
	ready=$_DMU_STATE/ready.$name
	DMU_DAEMON_READY=$ready
	rm -f "$ready"
	if [[ -n ${DMU_DAEMON_ERR:-} ]]; then
		dmu_bg "$DMU_DAEMON" --name "$name" --ready-file "$ready" "$@" 2>>"$DMU_DAEMON_ERR"
	else
		dmu_bg "$DMU_DAEMON" --name "$name" --ready-file "$ready" "$@"
	fi
	DMU_DAEMON_PID=$DMU_BG_PID
	wait_until 30 _dmu_daemon_up_or_dead "$ready" "$DMU_DAEMON_PID" ||
		die "$DMU_DAEMON did not write its ready file within 30 s"
	if [[ ! -e $ready ]]; then
		wait "$DMU_DAEMON_PID" || rc=$?
		die "$DMU_DAEMON exited with status $rc before it was ready${DMU_DAEMON_ERR:+: $(cat "$DMU_DAEMON_ERR")}"
	fi
}

# dmu_daemon_start NAME FILE SIZE [ARGS...]: dmu_daemon_run serving FILE
dmu_daemon_start() {
	(($# >= 3)) || die "dmu_daemon_start NAME FILE SIZE [ARGS...]"
	local name=$1 file=$2 size=$3
	shift 3
	dmu_daemon_run "$name" --file "$file" --size "$size" "$@"
}

# shellcheck disable=SC2120 # the pid is optional
dmu_daemon_stop() {
	local pid=${1:-$DMU_DAEMON_PID} rc=0
	[[ -n $pid ]] || die "dmu_daemon_stop: no daemon pid"
	dmu_stop "$pid" 30 || rc=$?
	assert_eq "$rc" 0 "daemon (pid $pid) exit status after SIGTERM"
}

dmu_ext4_round_trip() {
	local dev=$1 src=$2/src mnt=$2/mnt i
	mkdir -p "$src/gen/empty" "$mnt"
	for i in $(seq 1 24); do
		head -c $(((i * i * 997) % (1 << 20) + i)) /dev/urandom >"$src/gen/file$i"
	done
	ln -s file1 "$src/gen/link"
	cp -a "$DMU_ROOT/module" "$DMU_ROOT/daemon" "$src/"
	mkfs.ext4 -q -F "$dev" || die "mkfs.ext4 failed"
	mount -t ext4 "$dev" "$mnt" || die "mount failed"
	cp -a "$src" "$mnt/tree"
	umount "$mnt" || die "umount failed"
	fsck.ext4 -fn "$dev" >"$2/fsck" 2>&1 || die "fsck.ext4 -fn found problems: $(cat "$2/fsck")"
	mount -t ext4 -o ro "$dev" "$mnt" || die "second mount failed"
	diff -r --no-dereference "$src" "$mnt/tree" >"$2/diff" 2>&1 ||
		die "the tree differs after a remount: $(head -n 20 "$2/diff")"
	umount "$mnt"
	log "ext4: $(find "$src" | wc -l) entries, $(du -sh "$src" | cut -f1), equal after a remount"
}

# ---- an older module's tracepoint --------------------------------------------------

# dmu_old_format CMD...: runs CMD in a private mount namespace where the
# dm_user_complete format reads as before target version 1.3.0 (no *_ns
# fields); prints its output and returns its exit status.  The module must
# be loaded.
dmu_old_format() {
	local events fmt old
	for events in /sys/kernel/tracing/events/dm_user /sys/kernel/debug/tracing/events/dm_user; do
		[[ -d $events ]] && break
	done
	fmt=$events/dm_user_complete/format
	grep -q 'field:u64 total_ns;' "$fmt" || die "dm_user_complete has no total_ns: $(cat "$fmt")"
	old=$(mktemp "$(dmu_tmpdir)/format-1.2.XXXXXX")
	grep -v 'field:u64 [a-z]*_ns;' "$fmt" >"$old"
	# shellcheck disable=SC2016 # $1, $2 are sh -c's
	unshare -m sh -c 'mount --bind "$1" "$2" && shift 2 && exec "$@"' sh "$old" "$fmt" "$@" 2>&1
}

# ---- kernel log ----------------------------------------------------------------------

dmu_kmsg_mark() {
	local mark="dmu-mark:$DMU_TEST:$$:$SRANDOM"
	echo "<6>$mark" >/dev/kmsg
	echo "$mark"
}

# The kernel log after dmu_kmsg_mark's MARK.  To test it for a pattern, read it to
# the end (grep PAT >/dev/null, not grep -q): under pipefail, awk killed by SIGPIPE
# after grep -q's early exit fails the pipeline, which `if` reads as "not found".
dmu_dmesg_since() {
	dmesg | awk -v m="$1" 'found { print; next } index($0, m) { found = 1 }'
}

# ---- cleanup -------------------------------------------------------------------------

_DMU_AT_EXIT=()
dmu_at_exit() {
	local q
	printf -v q '%q ' "$@"
	_DMU_AT_EXIT+=("$q")
}

dmu_cleanup() {
	local pid name
	# Newest first: a client goes before the server it uses (nbdkit does not
	# exit on SIGTERM while a client is still connected).
	if [[ -f $_DMU_STATE/pids ]]; then
		while read -r pid; do
			[[ -n $pid ]] && { dmu_stop "$pid" 10 || true; }
		done < <(tac "$_DMU_STATE/pids")
	fi
	local i
	for ((i = ${#_DMU_AT_EXIT[@]} - 1; i >= 0; i--)); do
		eval "${_DMU_AT_EXIT[i]}" || echo "$DMU_TEST: cleanup: '${_DMU_AT_EXIT[i]}' failed" >&2
	done
	_DMU_AT_EXIT=()
	while IFS= read -r name; do
		[[ -n $name ]] || continue
		if [[ $name == dmu-test* ]] || dmsetup table "$name" 2>/dev/null | awk '$3 == "user" { f = 1 } END { exit !f }'; then
			dmsetup remove --noudevsync --force --retry "$name" >/dev/null ||
				echo "$DMU_TEST: cleanup: cannot remove dm device $name" >&2
		fi
	done < <(dmu_dm_names)
	if [[ -d /sys/module/dm_user ]]; then
		rmmod dm_user || echo "$DMU_TEST: cleanup: rmmod dm_user failed" >&2
	fi
	rm -rf "$_DMU_STATE"
}

_dmu_on_err() {
	local rc=$1 line=$2 cmd=$3 i
	echo "$DMU_TEST: line $line: '$cmd' exited $rc" >&2
	for ((i = 1; i < ${#FUNCNAME[@]} - 1; i++)); do
		echo "    from ${FUNCNAME[$i]}() at ${BASH_SOURCE[$i + 1]##*/}:${BASH_LINENO[$i]}" >&2
	done
}

_dmu_on_exit() {
	local rc=$?
	set +e
	trap - ERR
	dmu_cleanup
	if ((rc == 0)); then
		log "PASS"
	elif ((rc == DMU_SKIP_STATUS)); then
		log "SKIPPED"
	else
		log "FAILED (exit $rc)"
	fi
	exit "$rc"
}

trap '_dmu_on_err $? $LINENO "$BASH_COMMAND"' ERR
trap _dmu_on_exit EXIT
# timeout(1) sends SIGTERM: exit non-zero through the EXIT trap, which cleans up.
trap 'echo "$DMU_TEST: killed by SIGTERM" >&2; exit 143' TERM
trap 'exit 130' INT
