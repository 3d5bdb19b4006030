#!/bin/bash
# shellcheck source-path=SCRIPTDIR
# The packaging test (make check-pkg): a guest that boots like a server.
#
#   tests/pkg/run.sh [--kernel KVER] [--smp N] [-v]
#
# Boots KVER (default 6.12) twice with systemd as PID 1 (tests/vm/run.sh
# --systemd), on one disk that holds the overlay's upper layer, so that the
# second boot is a reboot of the first machine:
#   install  dpkg -i the .debs of build/deb (make deb), DKMS builds dm-user.ko,
#            /etc/dm-user/disk0.conf, systemctl start dmuserd@disk0, mkfs and a
#            file tree read back, systemctl status, the journal, a SIGKILL and
#            the unit's restart, systemctl stop, systemctl enable
#   reboot   the unit brought the device back at boot with the first boot's
#            files; disable --now; apt-get purge: no file and no DKMS build left
# (tests/pkg/guest.sh has each check.) A boot whose kernel log matches the VM
# tests' failure patterns fails. Prints the guest's "ok"/"not ok" lines, then
# "PASS pkg <boot>" or "FAIL pkg <boot>" with its times, and at the end
# "N passed, N failed, N skipped"; exits non-zero if a boot failed. The second
# boot runs only after the first passed. Results: build/pkg/<boot>/ (console.log,
# output.txt, .dmu/journal.txt, .dmu/dmesg.txt); the disk image is deleted at the
# end unless a boot failed.
set -euo pipefail

# shellcheck source=../vm/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/../vm/common.sh"

kernel=6.12 verbose=() smp=2
while (($#)); do
	case $1 in
	--kernel) kernel=${2:?}; shift 2 ;;
	--smp) smp=${2:?}; shift 2 ;;
	-v | --verbose) verbose=(-v); shift ;;
	*) echo "usage: $0 [--kernel KVER] [--smp N] [-v]" >&2; exit 2 ;;
	esac
done
kver=$(vm_resolve_kernel "$kernel")
for p in dm-user-dkms dmuserd dmuser-tools libdmuser1 libdmuser-dev; do
	compgen -G "$DMU_ROOT/build/deb/${p}_*.deb" >/dev/null || vm_die "no build/deb/${p}_*.deb: run 'make deb'"
done

dir=$DMU_ROOT/build/pkg
rm -rf "$dir"
mkdir -p "$dir"
disk=$dir/disk.img

passed=0 failed=0
# boot NAME TIMEOUT: one boot running tests/pkg/guest.sh NAME
boot() {
	local name=$1 timeout=$2 out=$dir/$1 rc start took up
	mkdir -p "$out"
	start=$(vm_now)
	set +e
	"$DMU_ROOT/tests/vm/run.sh" --systemd --disk "$disk" --kernel "$kver" --smp "$smp" --timeout "$timeout" \
		--out "$out" -q ${verbose[@]+"${verbose[@]}"} -- tests/pkg/guest.sh "$name" >"$out/output.txt" 2>&1
	rc=$?
	set -e
	took=$(vm_elapsed "$start")
	# The command's output is on the console (dmu-test.service): its own lines.
	grep -E '^(ok|not ok) - |^time |^  |^dmu-guest: ' "$out/console.log" | grep -v '^  *$' || true
	cat "$out/output.txt"
	up=$(sed -n 's/^dmu-guest: up after \([0-9.]*\) s$/\1/p' "$out/console.log" | head -n 1)
	if ((rc == 0)); then
		echo "PASS pkg $name ($kver: ${took} s in all, systemd reached multi-user.target and the test started ${up:-?} s after the kernel)"
		passed=$((passed + 1))
	else
		echo "FAIL pkg $name ($kver: exit status $rc after ${took} s; console: $out/console.log, journal: $out/.dmu/journal.txt)"
		failed=$((failed + 1))
	fi
	return "$rc"
}

if boot install 2400 && boot reboot 1200; then
	rm -f "$disk"
fi
echo "$passed passed, $failed failed, 0 skipped"
((failed == 0))
