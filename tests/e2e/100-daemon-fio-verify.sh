#!/bin/bash
# timeout: 1200
# soak-timeout: 3600
# dmuserd under fio --verify=crc32c: random writes of 4k to 128k blocks over the
# whole device (256 MiB; 1 GiB with DMU_SOAK=1), then every block read back and
# checked, through libaio with O_DIRECT, at iodepth 1 (one worker thread) and at
# iodepth 32 (four worker threads, so requests complete out of order).
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

tmp=$(dmu_tmpdir)
size=$(dmu_scale 256M 1G)
dmu_load

for run in "1 1" "32 4"; do
	read -r qd threads <<<"$run"
	name=dmu-test-fio$qd
	dev=/dev/mapper/$name
	rm -f "$tmp/backing"
	truncate -s "$size" "$tmp/backing"

	log "iodepth $qd, $threads thread(s): dmuserd on a $size file"
	dmu_daemon_start "$name" "$tmp/backing" "$size" --threads "$threads"
	[[ -b $dev ]] || die "$dev is not a block device"

	fio --name="verify-qd$qd" --filename="$dev" --rw=randwrite \
		--bssplit=4k/40:8k/10:16k/15:32k/10:64k/10:128k/15 --size="$size" \
		--iodepth="$qd" --ioengine=libaio --direct=1 \
		--verify=crc32c --do_verify=1 --verify_fatal=1 --verify_state_save=0 \
		--output-format=json --output="$tmp/fio-qd$qd.json" ||
		die "fio verify failed at iodepth $qd: $(cat "$tmp/fio-qd$qd.json")"

	read -r err written verified <<<"$(jq -r '.jobs[0] | "\(.error) \(.write.io_bytes) \(.read.io_bytes)"' "$tmp/fio-qd$qd.json")"
	log "iodepth $qd: error $err, written $written bytes, verified $verified bytes"
	assert_eq "$err" 0 "fio error at iodepth $qd"
	(( written > 0 && verified == written )) ||
		die "iodepth $qd: verified $verified bytes of $written written"

	dmu_daemon_stop
	! dmu_dm_exists "$name" || die "$name still exists after the daemon stopped"
done

dmu_unload
