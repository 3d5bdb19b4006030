#!/bin/bash
# timeout: 180
# Bad input to dmuserd gives a clear message and a non-zero exit status, and leaves
# no dm device behind (and never removes somebody else's): missing file, sizes that
# are not multiples of 512, a name in use, --attach to nothing or to a foreign
# target, a metrics port in use, bad options, and no dm-user module loaded.
# --help and --version exit 0.
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

tmp=$(dmu_tmpdir)
name=dmu-test-cli
truncate -s 16M "$tmp/ok"
truncate -s 1000 "$tmp/odd"

# expect STATUS PATTERN ARGS...: dmuserd ARGS exits STATUS, says PATTERN on stderr,
# writes no ready file and leaves no dm device named $name.
expect() {
	local want=$1 pattern=$2 rc=0
	shift 2
	rm -f "$tmp/ready"
	"$DMU_DAEMON" "$@" --ready-file "$tmp/ready" >"$tmp/out" 2>"$tmp/err" || rc=$?
	log "dmuserd $* -> $rc: $(head -n 1 "$tmp/err")"
	assert_eq "$rc" "$want" "exit status of dmuserd $*"
	grep -q -- "$pattern" "$tmp/err" || die "dmuserd $*: stderr lacks '$pattern': $(cat "$tmp/err")"
	grep -q '^dmuserd: ' "$tmp/err" || die "dmuserd $*: messages must start with 'dmuserd: '"
	[[ ! -e $tmp/ready ]] || die "dmuserd $*: wrote its ready file"
	! dmu_dm_exists "$name" || die "dmuserd $*: left device $name behind"
	[[ ! -e /dev/mapper/$name ]] || die "dmuserd $*: left /dev/mapper/$name behind"
}

log "help and version"
"$DMU_DAEMON" --help >"$tmp/help"
for flag in --file --name --size --threads --direct --read-only --attach \
	--ready-file --metrics --no-batch --inject-delay-us --help --version; do
	grep -q -- "$flag" "$tmp/help" || die "--help does not document $flag"
done
"$DMU_DAEMON" --version | grep -Eq '^dmuserd [0-9]+\.[0-9]+\.[0-9]+$' || die "bad --version output"

log "usage errors (exit 2)"
expect 2 "are required" --file "$tmp/ok"
expect 2 "are required" --name "$name"
expect 2 "unknown option" --file "$tmp/ok" --name "$name" --bogus
expect 2 "multiple of 512" --file "$tmp/ok" --name "$name" --size 1000
expect 2 "multiple of 512" --file "$tmp/ok" --name "$name" --size 0
expect 2 "invalid --size" --file "$tmp/ok" --name "$name" --size 12Q
expect 2 "invalid --threads" --file "$tmp/ok" --name "$name" --threads 0
expect 2 "invalid --metrics" --file "$tmp/ok" --name "$name" --metrics nowhere:x
expect 2 "invalid --name" --file "$tmp/ok" --name "a/b"

log "no dm-user module: the table cannot load"
[[ ! -d /sys/module/dm_user ]] || die "dm_user is loaded before the test"
expect 1 "cannot load the table" --file "$tmp/ok" --name "$name"

dmu_load
log "runtime errors (exit 1)"
expect 1 "cannot open backing file" --file "$tmp/missing" --name "$name" --size 1M
[[ ! -e $tmp/missing ]] || die "dmuserd created the missing backing file"
expect 1 "not a positive multiple of 512" --file "$tmp/odd" --name "$name"
expect 1 "cannot grow" --file "$tmp/ok" --name "$name" --size 32M --read-only
expect 1 "does not exist" --file "$tmp/ok" --name "$name" --attach

log "a metrics port in use"
python3 -c '
import socket, sys, time
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(1)
print(s.getsockname()[1], flush=True); time.sleep(60)' >"$tmp/port" &
holder=$!
wait_until 10 test -s "$tmp/port" || die "no port holder"
expect 1 "cannot serve metrics" --file "$tmp/ok" --name "$name" --metrics "$(cat "$tmp/port")"
kill "$holder"; wait "$holder" || true

log "a name in use by a device that is not ours"
dmsetup create --noudevsync "$name" --table "0 2048 zero"
expect_busy() {
	local rc=0
	"$DMU_DAEMON" --file "$tmp/ok" --name "$name" "$@" 2>"$tmp/err" || rc=$?
	assert_eq "$rc" 1 "exit status with $name in use ($*)"
	dmu_dm_exists "$name" || die "dmuserd removed somebody else's device $name"
	[[ $(dmsetup table "$name") == "0 2048 zero"* ]] ||
		die "the foreign device's table changed: $(dmsetup table "$name")"
}
expect_busy
grep -q "device $name already exists" "$tmp/err" || die "unclear message: $(cat "$tmp/err")"
expect_busy --attach
grep -q 'not a single "user" target' "$tmp/err" || die "unclear --attach message: $(cat "$tmp/err")"
dmsetup remove --noudevsync "$name"

dmu_unload
