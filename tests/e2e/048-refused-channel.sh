#!/bin/bash
# timeout: 600
# Issue 14, item 3: a refused channel is taken out of service at once.
# A client opens the control device, reads one request (a 4k read), and
# answers it with a seq nobody issued: that write() fails with EINVAL, as
# documented, and the client keeps the channel open.  From that moment:
#  - a poll() on the channel that was blocked before the refusal wakes with
#    POLLERR; read() and write() on it fail with EIO;
#  - `dmsetup status` no longer counts it among the channels;
#  - the request it held is handled as if it had closed: with recovery_ms it
#    is requeued and served by the next daemon (the read succeeds), without
#    it fails with EIO (exactly that one request: errors 1 at the end);
#  - it gets no new requests: `dmuserd --attach --threads 1` serves the
#    device alone, and fio (4k randread, iodepth 8, 2000 I/Os: about
#    twice over the device, 60 s cap) completes every I/O without error.
# Run with recovery_ms 30000, then without.
# Fails on the old module: refusing only set a flag.  The channel stayed in
# the set: map() kept queueing on it, its held request waited for a close
# that never came, the poller slept on, and status still counted it.
# Every check is made and reported; the test fails at the end if any did.
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

tmp=$(dmu_tmpdir)
name=dmu-test-refuse
sectors=8192
size=$((sectors * 512))
dev=/dev/mapper/$name
export PYTHONDONTWRITEBYTECODE=1
dmu_load
truncate -s "$size" "$tmp/backing"

field() { dmsetup status "$name" | awk -v n="$1" '{ print $n }'; }
fails=()
check_eq() { # ACTUAL EXPECTED MSG: record a mismatch, go on
	[[ $1 == "$2" ]] && return 0
	fails+=("$3: expected '$2', got '$1'")
	log "MISMATCH: $3: expected '$2', got '$1'"
}

cat >"$tmp/client.py" <<'EOF'
import errno, os, select, sys, threading, time
sys.path.insert(0, os.environ['DMU_ROOT'] + '/tests/tools')
import dmuproto as p

name, tmp = sys.argv[1], sys.argv[2]
fd = p.open_ctl(name)
p.put(tmp + '/ready')
m, _ = p.read_request(fd)
p.put(tmp + '/got', repr(m) + '\n')

res = {}
def poller():
    res['tid'] = threading.get_native_id()
    t0 = time.monotonic()
    res['revents'] = p.readable(fd, 20000)
    res['ms'] = int((time.monotonic() - t0) * 1000)
t = threading.Thread(target=poller)
t.start()
# Refuse only once the poller sleeps in poll() (syscall 7 on x86-64).
end = time.monotonic() + 30
while True:
    tid = res.get('tid')
    if tid:
        with open('/proc/self/task/%d/syscall' % tid) as f:
            if f.read().split()[0] == '7':
                break
    if time.monotonic() > end:
        sys.exit('the poller never blocked in poll()')
    time.sleep(0.01)

bogus = p.Msg(1 << 62, p.SUCCESS, 0, 0, 0).pack()
out = 'refusing_write %s\n' % p.errno_of(os.write, fd, bogus)
t.join()
out += 'poll_err %d\n' % bool(res['revents'] & select.POLLERR)
out += 'poll_ms %d\n' % res['ms']
out += 'read %s\n' % p.errno_of(os.read, fd, 4096)
out += 'write %s\n' % p.errno_of(os.write, fd, m.reply(p.SUCCESS) + bytes(m.len))
p.put(tmp + '/refused', out)
p.wait_file(tmp + '/exit', 600)
EOF

for recovery in 30000 0; do
	if ((recovery)); then opts="2 recovery_ms $recovery"; else opts=""; fi
	log "recovery_ms $recovery: a client refused with a request in hand"
	rm -f "$tmp"/{ready,got,refused,exit,dmuserd.ready}
	dmsetup create --noudevsync "$name" --table "0 $sectors user 0 $sectors $name $opts"
	dmsetup mknodes "$name"
	dmu_bg python3 "$tmp/client.py" "$name" "$tmp"
	client=$DMU_BG_PID
	wait_for_path "$tmp/ready" 30 || die "the client did not start"
	dmu_bg dd if="$dev" of=/dev/null bs=4k count=1 iflag=direct status=none 2>"$tmp/dd.err"
	reader=$DMU_BG_PID
	wait_for_path "$tmp/got" 30 || die "the client got no request"
	wait_for_path "$tmp/refused" 60 || die "the client did not finish refusing"
	log "client: $(tr '\n' ' ' <"$tmp/refused")"
	check_eq "$(sed -n 's/^refusing_write //p' "$tmp/refused")" EINVAL "recovery $recovery: write() of a reply to seq 2^62"
	check_eq "$(sed -n 's/^poll_err //p' "$tmp/refused")" 1 "recovery $recovery: POLLERR for a poller blocked before the refusal"
	ms=$(sed -n 's/^poll_ms //p' "$tmp/refused")
	((ms < 10000)) || check_eq "$ms ms" "< 10000 ms" "recovery $recovery: the poller woke"
	check_eq "$(sed -n 's/^read //p' "$tmp/refused")" EIO "recovery $recovery: read() on the refused channel"
	check_eq "$(sed -n 's/^write //p' "$tmp/refused")" EIO "recovery $recovery: write() on the refused channel"
	check_eq "$(field 4)" 0 "recovery $recovery: channels counted with only the refused one open"
	if ((!recovery)); then
		wait_until 30 dmu_not_running "$reader" ||
			check_eq running "ended with EIO" "recovery 0: the refused channel's request"
	fi

	log "dmuserd --attach --threads 1 serves alongside the refused channel"
	dmu_bg "$DMU_DAEMON" --file "$tmp/backing" --name "$name" --attach --threads 1 \
		--ready-file "$tmp/dmuserd.ready"
	daemon=$DMU_BG_PID
	wait_for_path "$tmp/dmuserd.ready" 30 || die "dmuserd --attach did not start"
	wait_until 60 dmu_not_running "$reader" ||
		check_eq running ended "recovery $recovery: the refused channel's request, 60 s after dmuserd attached"
	if dmu_not_running "$reader"; then
		rc=0
		wait "$reader" || rc=$?
		if ((recovery)); then
			check_eq "$rc" 0 "recovery $recovery: exit status of the read the refused channel held (requeued)"
		else
			check_eq "$rc $(grep -c 'Input/output error' "$tmp/dd.err")" "1 1" \
				"recovery 0: the read the refused channel held fails with EIO (exit status, EIO lines)"
		fi
	fi
	rc=0
	start=$SECONDS
	timeout 120 fio --name=refused --filename="$dev" --rw=randread --bs=4k --ioengine=libaio \
		--direct=1 --iodepth=8 --io_size=8000k --number_ios=2000 --runtime=60 --output-format=json \
		--output="$tmp/fio.json" || rc=$?
	ios=$(jq -r '.jobs[0].read.total_ios' "$tmp/fio.json" 2>/dev/null || echo none)
	err=$(jq -r '.jobs[0].error' "$tmp/fio.json" 2>/dev/null || echo none)
	log "fio exit $rc after $((SECONDS - start)) s: $ios I/Os, error $err; status $(dmsetup status "$name")"
	check_eq "$rc $err $ios" "0 0 2000" "recovery $recovery: fio exit status, error, I/Os completed (124: killed after 120 s)"
	check_eq "$(field 4)" 1 "recovery $recovery: channels counted with dmuserd and the refused one open"
	if ((recovery)); then want=0; else want=1; fi
	check_eq "$(field 8)" "$want" "recovery $recovery: errors (the refused channel's request only)"

	: >"$tmp/exit"
	dmu_stop "$client" 30 || true
	dmu_daemon_stop "$daemon"
	rc=0
	timeout 60 dmsetup remove --noudevsync "$name" || rc=$?
	assert_eq "$rc" 0 "dmsetup remove exit status"
done

((${#fails[@]} == 0)) || die "$(printf '%s; ' "${fails[@]}")"
dmu_unload
