#!/bin/bash
# timeout: 300
# Discard, write-zeroes, FUA and flush, end to end through dmuserd:
#  - a discarded range reads back as zeroes, through the device and in the backing
#    file, the file's blocks are freed (PUNCH_HOLE), and the data around it stays;
#  - BLKZEROOUT (blkdiscard -z) zeroes a range;
#  - O_DIRECT|O_DSYNC writes (REQ_FUA) and fsync of the device (a flush) reach
#    fdatasync, seen at the syscall: strace on dmuserd counts exactly one
#    successful fdatasync() per FUA write and per flush request it received
#    (a dsync write is a FUA write, and the kernel follows it with a flush of
#    the device: 16 writes make 32 calls), and one for the fsync's flush
#    (dmuserd's own backend_flushes counter agrees, but it is bumped before the
#    call, so it cannot show the call was made).
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

tmp=$(dmu_tmpdir)
name=dmu-test-ops
size=$((32 << 20))
dev=/dev/mapper/$name
MiB=$((1 << 20))

ip link set lo up # the metrics listen on 127.0.0.1
dmu_load
truncate -s "$size" "$tmp/backing"
head -c $((16 * MiB)) /dev/urandom >"$tmp/pattern"
dmu_bg "$DMU_DAEMON" --file "$tmp/backing" --name "$name" --metrics 0 --ready-file "$tmp/ready"
pid=$DMU_BG_PID
wait_for_path "$tmp/ready" 30 || die "dmuserd did not start"
url=http://127.0.0.1:$(sed -n 's/^metrics=127\.0\.0\.1://p' "$tmp/ready")/metrics
metric() { curl -sf "$url" | jq -r "$1"; }

dd if="$tmp/pattern" of="$dev" bs=1M oflag=direct status=none
blocks_before=$(stat -c %b "$tmp/backing")

# zeroes_at OFFSET LEN FILE: LEN bytes of FILE at OFFSET are all zero
zeroes_at() { cmp -n "$2" -i "$1:0" "$3" /dev/zero; }
# same_at OFFSET LEN FILE: FILE matches the pattern there
same_at() { cmp -n "$2" -i "$1:$1" "$3" "$tmp/pattern"; }

log "discard 4 MiB at 1 MiB"
discards0=$(metric .ops.discard.requests)
blkdiscard -o "$MiB" -l $((4 * MiB)) "$dev"
dd if="$dev" of="$tmp/back" bs=1M count=16 iflag=direct status=none
zeroes_at "$MiB" $((4 * MiB)) "$tmp/back" || die "discarded range does not read back as zeroes"
same_at 0 "$MiB" "$tmp/back" || die "data before the discarded range changed"
same_at $((5 * MiB)) $((11 * MiB)) "$tmp/back" || die "data after the discarded range changed"
zeroes_at "$MiB" $((4 * MiB)) "$tmp/backing" || die "discarded range is not zero in the backing file"
blocks_after=$(stat -c %b "$tmp/backing")
log "backing file blocks: $blocks_before before, $blocks_after after"
((blocks_after < blocks_before)) || die "discard freed no blocks of the backing file"
(($(metric .ops.discard.requests) > discards0)) || die "no discard request counted"
assert_eq "$(metric .ops.discard.errors)" 0 "discard errors"

log "BLKZEROOUT 1 MiB at 8 MiB"
blkdiscard -z -o $((8 * MiB)) -l "$MiB" "$dev"
dd if="$dev" of="$tmp/back" bs=1M count=16 iflag=direct status=none
zeroes_at $((8 * MiB)) "$MiB" "$tmp/back" || die "zeroed range does not read back as zeroes"
same_at $((9 * MiB)) "$MiB" "$tmp/back" || die "data after the zeroed range changed"

# fdatasync calls of dmuserd (all its threads) that returned 0, while CMD... runs
_strace_attached() { grep -q 'attached' "$tmp/strace.err"; }
syncs_during() {
	local st
	strace -f -e trace=fdatasync,fsync -o "$tmp/strace" -p "$pid" 2>"$tmp/strace.err" &
	st=$!
	wait_until 30 _strace_attached || die "strace did not attach to dmuserd: $(cat "$tmp/strace.err")"
	"$@" || die "$*: failed"
	kill -INT "$st"
	wait "$st" || true
	# a call interrupted by another thread's shows as "<... fdatasync resumed>) = 0"
	grep -c 'fdatasync.*= 0$' "$tmp/strace" || true
}

log "FUA: 16 O_DIRECT|O_DSYNC writes"
flushes0=$(metric .backend_flushes)
writes0=$(metric .ops.write.requests)
freqs0=$(metric .ops.flush.requests)
n=$(syncs_during dd if="$tmp/pattern" of="$dev" bs=4k count=16 seek=4096 oflag=direct,dsync status=none)
flushes1=$(metric .backend_flushes)
writes=$(($(metric .ops.write.requests) - writes0))
freqs=$(($(metric .ops.flush.requests) - freqs0))
log "fdatasync calls seen by strace: $n; FUA writes $writes, flush requests $freqs; backend flushes counted: $flushes0 -> $flushes1"
assert_eq "$writes" 16 "write requests of 16 dsync writes"
assert_eq "$n" "$((writes + freqs))" "fdatasync calls (strace) for $writes FUA writes and $freqs flushes"
assert_eq "$((flushes1 - flushes0))" "$n" "dmuserd's backend_flushes against strace"
! grep -q 'fdatasync.*= -1' "$tmp/strace" || die "fdatasync failed: $(grep 'fdatasync.*= -1' "$tmp/strace")"

log "flush: fsync of the device"
flush_reqs0=$(metric .ops.flush.requests)
n=$(syncs_during sync "$dev")
flushes2=$(metric .backend_flushes)
log "fdatasync calls seen by strace: $n"
assert_eq "$(($(metric .ops.flush.requests) - flush_reqs0))" 1 "flush requests of one fsync"
assert_eq "$n" 1 "fdatasync calls for one flush (strace)"
assert_eq "$((flushes2 - flushes1))" 1 "dmuserd's backend_flushes for the flush"
assert_eq "$(metric '[.ops[].errors] | add')" 0 "errors"

rc=0
dmu_stop "$pid" 30 || rc=$?
assert_eq "$rc" 0 "dmuserd exit status after SIGTERM"
dmu_unload
