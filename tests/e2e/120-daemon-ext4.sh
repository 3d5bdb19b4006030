#!/bin/bash
# timeout: 600
# ext4 on a dmuserd device: mkfs.ext4 (which discards), mount, copy a tree of
# files in (generated files of many sizes, a symlink, an empty directory, and part
# of /usr/share/doc), unmount, fsck.ext4 -fn finds nothing, mount again, and the
# tree compares equal. Two worker threads.
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

tmp=$(dmu_tmpdir)
name=dmu-test-ext4
size=$((256 << 20))
dev=/dev/mapper/$name
mnt=$tmp/mnt
src=$tmp/src
dmu_load

log "build the source tree"
mkdir -p "$src/gen/empty" "$mnt"
for i in $(seq 1 60); do
	head -c $(( (i * i * 997) % (3 << 20) + i )) /dev/urandom >"$src/gen/file$i"
done
ln -s file1 "$src/gen/link"
docs=0
for d in /usr/share/doc/*/; do
	cp -a "$d" "$src/" 2>/dev/null || true
	docs=$((docs + 1))
	((docs < 40)) || break
done
log "source: $(find "$src" | wc -l) entries, $(du -sh "$src" | cut -f1)"

truncate -s "$size" "$tmp/backing"
dmu_daemon_start "$name" "$tmp/backing" "$size" --threads 2

mkfs.ext4 -q -F "$dev" || die "mkfs.ext4 failed"
mount -t ext4 "$dev" "$mnt" || die "mount failed"
cp -a "$src" "$mnt/tree"
umount "$mnt" || die "umount failed"

log "fsck.ext4 -fn"
fsck.ext4 -fn "$dev" >"$tmp/fsck" 2>&1 || die "fsck.ext4 -fn found problems: $(cat "$tmp/fsck")"

mount -t ext4 -o ro "$dev" "$mnt" || die "second mount failed"
diff -r --no-dereference "$src" "$mnt/tree" >"$tmp/diff" 2>&1 ||
	die "the tree differs after a remount: $(head -n 20 "$tmp/diff")"
umount "$mnt"

dmu_daemon_stop
! dmu_dm_exists "$name" || die "$name still exists after the daemon stopped"
dmu_unload
