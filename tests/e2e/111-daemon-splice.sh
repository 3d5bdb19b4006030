#!/bin/bash
# timeout: 300
# dmuserd moves data by splice(2) (libdmuser's dmu_ops.locate, target
# 1.6.0): a WRITE's payload from the kernel's pages to the file, a READ's
# data from the file to the kernel, with no copy through the worker's
# memory.  /proc/PID/io shows it: rchar and wchar count what read() and
# write() calls copy (splice() moves are not in them).
#   - 32 MiB written through the device (direct, 128 KiB and 1 MiB
#     requests): dmuserd's rchar grows by less than 1 MiB (the first
#     128 KiB write, which it reads before it splices, and the request
#     headers it reads from the pipe), and its wchar by less than 1 MiB;
#   - 32 MiB read back: likewise; the data are those written, and after
#     dmuserd stops the backing file is too;
#   - with --no-splice the same writes make rchar grow by at least 32 MiB
#     and the reads wchar by at least 32 MiB: the measure sees the copies.
# The backing file is on tmpfs, as in make bench.
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

dmu_kernel_independent "dmuserd and libdmuser's splice; the module's splice is checked on every kernel by 030 and 031"
tmp=$(dmu_tmpdir)
name=dmu-test-splice
size=$((64 << 20))
dev=/dev/mapper/$name
data=$((32 << 20))
# The debug lane's kernel has no task I/O accounting.
[[ -e /proc/self/io ]] || skip "no /proc/PID/io on this kernel (CONFIG_TASK_IO_ACCOUNTING)"
dmu_load

shm=$tmp	# tmpfs (dmu_tmpdir checks)
head -c "$data" /dev/urandom >"$tmp/model"

# io FIELD: dmuserd's FIELD from /proc/PID/io (all its threads)
io() { awk -v f="$1:" '$1 == f { print $2 }' "/proc/$DMU_DAEMON_PID/io"; }

for mode in splice copy; do
	args=(--threads 2 --metrics 0)
	[[ $mode == copy ]] && args+=(--no-splice)
	truncate -s "$size" "$shm/backing"
	dmu_daemon_start "$name" "$shm/backing" "$size" "${args[@]}"

	r0=$(io rchar) w0=$(io wchar)
	dd if="$tmp/model" of="$dev" bs=128k count=128 oflag=direct status=none
	dd if="$tmp/model" of="$dev" bs=1M skip=16 seek=16 oflag=direct status=none
	r1=$(io rchar) w1=$(io wchar)
	dd if="$dev" of="$tmp/back" bs=1M count=32 iflag=direct status=none
	r2=$(io rchar) w2=$(io wchar)
	cmp "$tmp/model" "$tmp/back" || die "$mode: the device reads back differently from what was written"
	log "$mode: writes: rchar +$((r1 - r0)) wchar +$((w1 - w0)); reads: rchar +$((r2 - r1)) wchar +$((w2 - w1))"
	if [[ $mode == splice ]]; then
		(((r1 - r0) < (1 << 20))) || die "splice: writing $data bytes made dmuserd read() $((r1 - r0)) bytes"
		(((w1 - w0) < (1 << 20))) || die "splice: writing $data bytes made dmuserd write() $((w1 - w0)) bytes"
		(((w2 - w1) < (1 << 20))) || die "splice: reading $data bytes made dmuserd write() $((w2 - w1)) bytes"
		(((r2 - r1) < (1 << 20))) || die "splice: reading $data bytes made dmuserd read() $((r2 - r1)) bytes"
	else
		(((r1 - r0) >= data)) || die "--no-splice: writing $data bytes made dmuserd read() only $((r1 - r0)) bytes"
		(((w2 - w1) >= data)) || die "--no-splice: reading $data bytes made dmuserd write() only $((w2 - w1)) bytes"
	fi
	dmu_daemon_stop
	cmp -n "$data" "$tmp/model" "$shm/backing" || die "$mode: the backing file differs from what was written"
	rm -f "$shm/backing"
done

dmu_unload
