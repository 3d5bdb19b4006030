#!/bin/bash
# Runs INSIDE a `run.sh --systemd` guest, as dmu-test.service (written by
# tests/vm/init.sh, started by the kernel command line's systemd.wants= once
# multi-user.target is up): the guest-side steps 4 and 5 of init.sh, from inside
# a system that systemd booted.
#
#  1. mounts the results share (9p tag dmuout) on /run/dmu-out;
#  2. runs /run/dmu-out/.dmu/cmd.sh (written by run.sh) with an empty environment,
#     its output to the console;
#  3. writes its exit status to .dmu/status, the kernel log to .dmu/dmesg.txt and
#     this boot's journal to .dmu/journal.txt;
#  4. powers the guest off through systemd (`systemctl poweroff`), which stops
#     every unit first, as on a real machine.
# No status file means the guest failed before step 3: run.sh reports that.
out=/run/dmu-out
mkdir -p "$out"
if ! mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 dmuout "$out"; then
	echo "dmu-guest: cannot mount the results share (9p tag dmuout)" >&2
	systemctl poweroff --no-block
	exit 1
fi
rm -f "$out/.dmu/status"
# Straight to the console, as in the other guests (through the journal, each line
# would get a time stamp and a process name).
env -i /bin/bash "$out/.dmu/cmd.sh" </dev/null >/dev/console 2>&1
rc=$?
echo "$rc" >"$out/.dmu/status.tmp" && mv "$out/.dmu/status.tmp" "$out/.dmu/status"
dmesg >"$out/.dmu/dmesg.txt"
journalctl -b --no-pager -o short-monotonic >"$out/.dmu/journal.txt" 2>&1
sync
systemctl poweroff --no-block
