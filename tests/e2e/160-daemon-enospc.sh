#!/bin/bash
# timeout: 300
# A full backing filesystem fails the writes that do not fit, not the daemon: a
# sparse 32 MiB backing file on an 8 MiB tmpfs, written from start to end. The
# writer gets ENOSPC (dmuserd answers DM_USER_RESP_NOSPC, the target ends the BIO
# with BLK_STS_NOSPC); dmuserd keeps running, counts the errors, still serves the
# data that was written, and serves writes again once a discard has freed space.
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

tmp=$(dmu_tmpdir)
name=dmu-test-enospc
size=$((32 << 20))
dev=/dev/mapper/$name
small=$tmp/small
MiB=$((1 << 20))

ip link set lo up # the metrics listen on 127.0.0.1
dmu_load
mkdir "$small"
mount -t tmpfs -o size=8m tmpfs "$small"

truncate -s "$size" "$small/backing"
head -c "$size" /dev/urandom >"$tmp/pattern"
dmu_bg "$DMU_DAEMON" --file "$small/backing" --name "$name" --metrics 0 --ready-file "$tmp/ready"
pid=$DMU_BG_PID
wait_for_path "$tmp/ready" 30 || { umount "$small"; die "dmuserd did not start"; }
# Detach the mount now: it lives on while dmuserd holds the file open, and
# nothing is left mounted whatever happens next.
umount -l "$small"
url=http://127.0.0.1:$(sed -n 's/^metrics=127\.0\.0\.1://p' "$tmp/ready")/metrics
metric() { curl -sf "$url" | jq -r "$1"; }

log "write 32 MiB onto 8 MiB of space"
rc=0
dd if="$tmp/pattern" of="$dev" bs=1M oflag=direct status=none 2>"$tmp/dd.err" || rc=$?
log "dd exit status $rc: $(head -n 1 "$tmp/dd.err")"
((rc != 0)) || die "writing past the space left succeeded"
grep -qi "no space left on device" "$tmp/dd.err" || die "the writer did not get ENOSPC: $(cat "$tmp/dd.err")"
kill -0 "$pid" || die "dmuserd died on ENOSPC"

errors=$(metric .ops.write.errors)
log "write errors counted: $errors"
((errors > 0)) || die "no write error counted"
(($(metric .replies.nospc) >= errors)) || die "replies.nospc < ops.write.errors"

log "what was written still reads back"
dd if="$dev" of="$tmp/back" bs=1M count=4 iflag=direct status=none
cmp -n $((4 * MiB)) "$tmp/back" "$tmp/pattern" || die "data written before the filesystem filled changed"

log "discard frees space; writes work again"
blkdiscard -o 0 -l $((6 * MiB)) "$dev"
dd if="$tmp/pattern" of="$dev" bs=1M count=2 oflag=direct status=none ||
	die "a write after freeing space failed"
dd if="$dev" of="$tmp/back" bs=1M count=2 iflag=direct status=none
cmp -n $((2 * MiB)) "$tmp/back" "$tmp/pattern" || die "the new write reads back wrong"

rc=0
dmu_stop "$pid" 30 || rc=$?
assert_eq "$rc" 0 "dmuserd exit status after SIGTERM"
dmu_unload
