#!/bin/bash
# timeout: 240
# A reader that takes one request and then stays away does not hold back the
# requests it did not take. While a woken reader has not yet looked at the
# queues, map() wakes nobody else (it will take what was queued meanwhile);
# when it looks, takes one request and leaves others queued, it must wake
# another reader before it goes back to userspace. Here channel A answers each
# request 3 s after reading it (dmu-client --delay-ms), channel B answers at
# once, and fio submits 8 reads in one io_submit(), at a real-time priority
# (chrt -f), so that they are all queued before either reader runs (make
# check's guests have one vCPU; a woken reader would otherwise preempt fio
# between two of them, see that A is away, and wake B itself). Each
# round first makes A the reader that took last (one read served by A while B
# is stopped), whom map() wakes first (module/README.md, Design): A takes one
# of the 8, and the other 7 must complete long before A answers: without the
# hand-off they wait for A, one every 3 s. Each request's time is
# the module's own, total_ns of dm_user_complete: fio's completion times are
# when it reaps, which can wait for the slowest.
. "$(dirname "$0")/lib.sh"

client=$DMU_ROOT/build/tools/dmu-client
[[ -x $client ]] || die "test tool not built: $client (run make)"
tmp=$(dmu_tmpdir)
name=dmu-test-stall
sectors=65536 # 32 MiB
size=$((sectors * 512))
hold_ms=3000
fast_ms=1500 # the 7 others' bound: half of A's hold
want_held=$(dmu_scale 2 10) # rounds in which A must have held a request
max_rounds=$(dmu_scale 12 60)

dmu_load
dmsetup create --noudevsync "$name" --table "0 $sectors user 0 $sectors $name"
dmsetup mknodes "$name"
dev=/dev/mapper/$name

dmu_bg "$client" serve "/dev/dm-user/$name" "$size" --delay-ms "$hold_ms" --ready "$tmp/ready-a"
pid_a=$DMU_BG_PID
wait_for_path "$tmp/ready-a" 10 || die "dmu-client A did not start"
dmu_bg "$client" serve "/dev/dm-user/$name" "$size" --ready "$tmp/ready-b"
pid_b=$DMU_BG_PID
wait_for_path "$tmp/ready-b" 10 || die "dmu-client B did not start"
read -r _ _ _ channels _ <<<"$(dmsetup status "$name")"
assert_eq "$channels" 2 "channels open"

tev=/sys/kernel/tracing/events/dm_user/dm_user_complete
trace=/sys/kernel/tracing/trace
echo 1 >"$tev/enable"
held=0 rounds=0
while ((held < want_held && rounds < max_rounds)); do
	rounds=$((rounds + 1))
	# A takes last: B stopped (out of its read()), one read for A alone
	kill -STOP "$pid_b"
	fio --name=prime --filename="$dev" --rw=randread --bs=4k --size=32M --number_ios=1 \
		--ioengine=libaio --direct=1 --output="$tmp/prime.out" ||
		die "round $rounds: the read for A failed: $(cat "$tmp/prime.out")"
	kill -CONT "$pid_b"
	: >"$trace"
	chrt -f 10 fio --name=burst --filename="$dev" --rw=randread --bs=4k --size=32M --norandommap \
		--number_ios=8 --iodepth=8 --iodepth_batch_submit=8 --ioengine=libaio --direct=1 \
		--output="$tmp/fio.out" || die "round $rounds: fio failed: $(cat "$tmp/fio.out")"
	mapfile -t lat < <(sed -n 's/.* dm_user_complete: .* total_ns \([0-9]*\)$/\1/p' "$trace" | sort -n)
	assert_eq "${#lat[@]}" 8 "round $rounds: requests completed"
	slowest=$((lat[7] / 1000000)) next=$((lat[6] / 1000000))
	if ((slowest >= hold_ms * 9 / 10)); then
		held=$((held + 1))
		((next < fast_ms)) ||
			die "round $rounds: A held one request for ${slowest} ms and another waited ${next} ms: requests A did not take waited for A"
		log "round $rounds: A held one request ${slowest} ms; the other 7 took at most ${next} ms"
	else
		log "round $rounds: A took none (slowest ${slowest} ms)"
	fi
done
((held >= want_held)) ||
	die "A held a request in only $held of $rounds rounds: the scenario did not arise"

echo 0 >"$tev/enable"
read -r _ _ _ channels queued inflight completed errs _ <<<"$(dmsetup status "$name")"
assert_eq "$channels $queued $inflight $errs" "2 0 0 0" "channels queued in_flight errors"
log "$rounds rounds, A held a request in $held, $completed requests completed"

dmsetup remove --noudevsync "$name"
dmu_stop "$pid_a" 10 || die "dmu-client A did not exit cleanly after remove"
dmu_stop "$pid_b" 10 || die "dmu-client B did not exit cleanly after remove"
dmu_unload
