#!/bin/bash
# timeout: 600
# ext4 on dmuserd --backend nbd+unix:// against nbdkit's memory plugin inside
# the guest, two worker threads (two NBD connections): mkfs.ext4 (which
# discards: TRIM at the server), a file tree copied in, fsck.ext4 -fn clean,
# remounted, the tree compares equal (dmu_ext4_round_trip).  The NBD
# backend's other VM tests (600-602) are in make check; this one is here
# for make check's time.
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/../e2e/lib.sh"

command -v nbdkit >/dev/null || die "nbdkit is not installed: Debian package nbdkit (make deps)"
tmp=$(dmu_tmpdir)
name=dmu-test-nbdext4
dev=/dev/mapper/$name
ip link set lo up # the metrics listen on 127.0.0.1
dmu_load

dmu_bg nbdkit -f -U "$tmp/nbd.sock" --filter=log memory size=64M logfile="$tmp/nbd.log"
wait_for_path "$tmp/nbd.sock" 30 || die "nbdkit did not create its socket"
dmu_daemon_run "$name" --backend "nbd+unix:///?socket=$tmp/nbd.sock" --threads 2 --metrics 0
[[ -b $dev ]] || die "$dev is not a block device"
mkdir "$tmp/ext4"
dmu_ext4_round_trip "$dev" "$tmp/ext4"
grep -q ' Trim id=' "$tmp/nbd.log" || die "mkfs.ext4's discard sent no TRIM to the server"
dmu_daemon_stop
! dmu_dm_exists "$name" || die "$name still exists after dmuserd stopped"
dmu_unload
