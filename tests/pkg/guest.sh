#!/bin/bash
# Runs INSIDE a `tests/vm/run.sh --systemd` guest, as root, cwd = repo root:
# the packaging test's side of one boot (tests/pkg/run.sh boots the guest
# twice on the same disk, so the second boot is a reboot of the first).
#
#   tests/pkg/guest.sh install   first boot: dpkg -i the .debs of build/deb
#                                (DKMS builds dm-user.ko for this kernel), write
#                                /etc/dm-user/disk0.conf, systemctl start
#                                dmuserd@disk0, a file system on the device,
#                                status, journal, a crash (SIGKILL) and the
#                                unit's restart, stop; then enable the unit
#   tests/pkg/guest.sh reboot    second boot: the unit brought the device back
#                                at boot, with the files of the first boot;
#                                stop, disable, apt-get purge: nothing left
#
# Prints "ok - <what>" per check and "time <step> <seconds>" per timed step;
# the first failed check prints "not ok - <what>" and exits 1. Either way the
# kernel log of the boot is judged at the end (tests/vm/dmesg-bad.sh): a match
# or a new W/D/L/B taint fails the boot.
set -uo pipefail

DMU_ROOT=${DMU_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)}
# shellcheck source=tests/vm/dmesg-bad.sh
. "$DMU_ROOT/tests/vm/dmesg-bad.sh"

NAME=disk0
CONF=/etc/dm-user/$NAME.conf
IMG=/var/lib/dm-user/$NAME.img
SIZE=$((256 * 1024 * 1024))
UNIT=dmuserd@$NAME.service
MNT=/mnt/$NAME
STATE=/root/dmu-pkg # this test's notes, kept on the disk for the second boot
DEBS=(dm-user-dkms dmuserd dmuser-tools libdmuser1 libdmuser-dev)
kver=$(uname -r)

failed=0
ok() { echo "ok - $*"; }
fail() {
	echo "not ok - $*"
	failed=1
	finish
}
check() { # WHAT COMMAND...: the command must succeed
	local what=$1
	shift
	if "$@"; then ok "$what"; else fail "$what (failed: $*)"; fi
}
t_start=0
tick() { t_start=$(date +%s.%N); }
tock() { awk -v a="$t_start" -v b="$(date +%s.%N)" -v s="$1" 'BEGIN { printf "time %s %.1f\n", s, b - a }'; }
# until_true SECONDS COMMAND...: poll COMMAND (every 0.1 s) until it succeeds;
# fails after SECONDS. A deadline, not a delay: each poll asks for the state.
until_true() {
	local end=$((SECONDS + $1))
	shift
	until "$@"; do
		((SECONDS < end)) || return 1
		sleep 0.1
	done
}

taint0=$(</proc/sys/kernel/tainted)
finish() {
	local d newtaint
	d=$(mktemp)
	dmesg >"$d"
	if grep -qE "$DMU_DMESG_BAD" "$d"; then
		echo "not ok - kernel log of this boot is clean (report: $(dmesg_kinds "$d")):"
		grep -m1 -B5 -A60 -E "$DMU_DMESG_BAD" "$d" | sed 's/^/  /'
		failed=1
	else
		ok "kernel log of this boot is clean"
	fi
	newtaint=$((($(</proc/sys/kernel/tainted) & ~taint0) & DMU_TAINT_BAD))
	if ((newtaint)); then
		echo "not ok - no new W/D/L/B taint (gained $(printf '0x%x' "$newtaint"))"
		failed=1
	fi
	rm -f "$d"
	exit "$failed"
}

unit_prop() { systemctl show -P "$1" "$UNIT"; }
# shellcheck disable=SC2317 # called through check
dm_lacks() { ! dmsetup ls | awk '{ print $1 }' | grep -qx "$NAME"; }

# The device is there, the right size, a dm-user target served by the unit.
device_served() {
	check "/dev/mapper/$NAME is a block device" test -b "/dev/mapper/$NAME"
	check "/dev/dm-user/$NAME (its control device) exists" test -c "/dev/dm-user/$NAME"
	local size table
	size=$(blockdev --getsize64 "/dev/mapper/$NAME")
	[[ $size == "$SIZE" ]] || fail "device size is $size, want $SIZE"
	ok "device size is $SIZE bytes"
	table=$(dmsetup table "$NAME")
	[[ $table == "0 $((SIZE / 512)) user 0 $((SIZE / 512)) $NAME"* ]] ||
		fail "dmsetup table $NAME: '$table'"
	ok "table: $table"
}

# mount, compare every file's checksum with the list made when they were written
tree_matches() {
	mkdir -p "$MNT"
	check "mount /dev/mapper/$NAME" mount "/dev/mapper/$NAME" "$MNT"
	if (cd "$MNT" && sha256sum --quiet -c "$STATE/tree.sha256"); then
		ok "$(wc -l <"$STATE/tree.sha256") files read back with their checksums ($1)"
	else
		fail "the file tree's checksums differ ($1)"
	fi
	check "umount" umount "$MNT"
}

install_boot() {
	local deb debs=() p
	rm -rf "$STATE"
	mkdir -p "$STATE"
	for p in "${DEBS[@]}"; do
		deb=$(compgen -G "$DMU_ROOT/build/deb/${p}_*.deb") ||
			fail "no build/deb/${p}_*.deb (make deb)"
		debs+=("$deb")
	done

	# 1. the packages; DKMS builds the module for this kernel in the postinst.
	# It would also build it for the "newest" kernel by /boot/config-*, which on
	# the build machines is the PREEMPT_RT one installed for make check-debug:
	# this machine has only the kernel it runs (its other kernels' configs are
	# removed from this guest's overlay), or DKMS's build, the longest step here
	# under TCG, would be done twice. (What DKMS runs, module/Makefile's dkms
	# target, is what `make` builds build/kmod/<kver>/ with, for every kernel.)
	local c
	for c in /boot/config-*; do
		[[ $c == "/boot/config-$kver" ]] || rm -f "$c"
	done
	# man-db's trigger re-indexes the manual pages (mandb: 29 s under TCG, at
	# the install and again at the purge); this test reads no index. The flag
	# file is what debconf's man-db/auto-update=false removes.
	rm -f /var/lib/man-db/auto-update
	tick
	if ! DEBIAN_FRONTEND=noninteractive dpkg -i "${debs[@]}" >"$STATE/dpkg-i.log" 2>&1; then
		cat "$STATE/dpkg-i.log"
		fail "dpkg -i ${debs[*]##*/}"
	fi
	tock dpkg-i
	sed 's/^/  dpkg: /' "$STATE/dpkg-i.log"
	ok "dpkg -i ${debs[*]##*/}"
	for p in "${DEBS[@]}"; do
		dpkg-query -W -f='${Status}\n' "$p" | grep -qx 'install ok installed' ||
			fail "$p is installed"
		dpkg -L "$p" >"$STATE/$p.list" || fail "dpkg -L $p"
	done
	ok "dpkg-query: the ${#DEBS[@]} packages are installed"
	local st ko
	st=$(dkms status dm-user -k "$kver")
	[[ $st == *", $kver, "*": installed"* ]] || fail "dkms status for $kver says installed: '$st'"
	ok "dkms status: $st"
	ko=$(modinfo -k "$kver" -n dm-user) || fail "modinfo -n dm-user"
	[[ $ko == /lib/modules/$kver/updates/dkms/dm-user.ko* ]] ||
		fail "modprobe finds dm-user at $ko, not DKMS's /lib/modules/$kver/updates/dkms/"
	ok "modinfo: DKMS's module for $kver: $ko"
	[[ $(modinfo -k "$kver" -F depends dm-user) == *dm-mod* ]] || fail "depmod records that dm-user needs dm-mod"
	ok "modinfo: dm-user depends on dm-mod"
	check "dm-user not loaded yet" bash -c '! grep -q "^dm_user " /proc/modules'

	# 2. the configuration
	mkdir -p /var/lib/dm-user
	truncate -s "$SIZE" "$IMG"
	check "the package made /etc/dm-user" test -d /etc/dm-user
	printf 'file %s\nthreads 2\nmetrics 127.0.0.1:9180\nrecovery-ms 30000\n' "$IMG" >"$CONF"
	ok "wrote $CONF"

	# 3. the unit
	tick
	check "systemctl start $UNIT" systemctl start "$UNIT"
	tock systemctl-start
	check "$UNIT is active" test "$(unit_prop ActiveState)" = active
	check "dm-user was loaded (ExecStartPre modprobe), and dm-mod for it" grep -q "^dm_mod .*dm_user" /proc/modules
	device_served

	# mkfs and a file tree, written, then read back after a remount (through
	# the daemon: the page cache is dropped in between)
	tick
	check "mkfs.ext4 /dev/mapper/$NAME" mkfs.ext4 -q -F "/dev/mapper/$NAME"
	mkdir -p "$MNT"
	check "mount /dev/mapper/$NAME" mount "/dev/mapper/$NAME" "$MNT"
	local i
	for i in $(seq 1 24); do
		mkdir -p "$MNT/d$((i % 5))/e$((i % 3))"
		head -c $((i * i * 4096 + i * 7)) /dev/urandom >"$MNT/d$((i % 5))/e$((i % 3))/f$i"
	done
	cp -a "$DMU_ROOT/daemon" "$MNT/daemon-src"
	ln -s d1/e1/f1 "$MNT/link"
	(cd "$MNT" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum) >"$STATE/tree.sha256"
	check "umount" umount "$MNT"
	blockdev --flushbufs "/dev/mapper/$NAME"
	echo 3 >/proc/sys/vm/drop_caches
	tree_matches "after a remount"
	tock mkfs-tree

	# status and journal
	local out
	out=$(systemctl status "$UNIT" --no-pager 2>&1)
	printf '  status: %s\n' "${out//$'\n'/$'\n'  status: }"
	grep -q "Status: \"serving $IMG on /dev/mapper/$NAME\"" <<<"$out" ||
		fail "systemctl status shows the daemon's status line naming /dev/mapper/$NAME"
	ok "systemctl status: Status: \"serving $IMG on /dev/mapper/$NAME\""
	out=$(journalctl -b -u "$UNIT" --no-pager -o cat)
	printf '  journal: %s\n' "${out//$'\n'/$'\n'  journal: }"
	grep -q "^dmuserd: serving $IMG on /dev/mapper/$NAME ($SIZE bytes, 2 threads), metrics on 127.0.0.1:9180$" <<<"$out" ||
		fail "journalctl -u $UNIT has the daemon's start-up line"
	ok "journalctl -u $UNIT: the daemon's start-up line"

	# a crash: Restart=on-failure starts dmuserd again, which serves the
	# device the dead one left behind (recovery_ms keeps the I/O waiting)
	local pid0
	pid0=$(unit_prop MainPID)
	check "systemctl kill -s KILL $UNIT" systemctl kill -s KILL "$UNIT"
	until_true 60 bash -c "[[ \$(systemctl show -P NRestarts $UNIT) -ge 1 && \$(systemctl show -P ActiveState $UNIT) == active ]]" ||
		fail "$UNIT restarted after SIGKILL and is active (state $(unit_prop ActiveState)/$(unit_prop SubState), restarts $(unit_prop NRestarts); journal: $(journalctl -b -u "$UNIT" --no-pager -o cat | tail -n 5 | tr '\n' '|'))"
	[[ $(unit_prop MainPID) != "$pid0" ]] || fail "a new dmuserd serves after the SIGKILL"
	ok "after SIGKILL the unit restarted (NRestarts=$(unit_prop NRestarts)) and a new dmuserd serves"
	device_served
	tree_matches "after the daemon's crash and restart"

	# stop: the device goes
	tick
	check "systemctl stop $UNIT" systemctl stop "$UNIT"
	tock systemctl-stop
	check "$UNIT is inactive" test "$(unit_prop ActiveState)" = inactive
	check "dmsetup ls lacks $NAME" dm_lacks
	check "/dev/mapper/$NAME is gone" test ! -e "/dev/mapper/$NAME"
	check "/dev/dm-user/$NAME is gone" test ! -e "/dev/dm-user/$NAME"

	# for the reboot
	check "systemctl enable $UNIT" systemctl enable "$UNIT"
	check "enabled: $UNIT in multi-user.target.wants" \
		test -L "/etc/systemd/system/multi-user.target.wants/$UNIT"
	finish
}

reboot_boot() {
	[[ -s $STATE/tree.sha256 ]] || fail "the first boot's notes ($STATE) are on the disk"
	ok "the first boot's disk: $STATE is there"
	check "dm-user loaded at boot (modules-load.d)" grep -q "^dm_user " /proc/modules
	check "$UNIT is active after the boot" test "$(unit_prop ActiveState)" = active
	# -t, not -u: the message often comes after the unit's process has exited,
	# and journald then cannot tell its unit
	journalctl -b -t systemd-modules-load --no-pager -o cat | grep -q "Inserted module 'dm_user'" ||
		fail "systemd-modules-load inserted dm_user"
	ok "systemd-modules-load: Inserted module 'dm_user'"
	device_served
	journalctl -b -u "$UNIT" --no-pager -o cat |
		grep -q "^dmuserd: serving $IMG on /dev/mapper/$NAME " ||
		fail "this boot's journal has the daemon's start-up line"
	ok "journalctl -b -u $UNIT: the daemon's start-up line in this boot"
	tree_matches "after the reboot"

	check "systemctl disable --now $UNIT" systemctl disable --now "$UNIT"
	check "dmsetup ls lacks $NAME" dm_lacks
	check "modprobe -r dm-user (nothing holds it)" modprobe -r dm-user
	rm -f "$CONF" "$IMG"

	# purge: nothing of the packages, nor of DKMS's build, is left. apt is
	# pointed at an empty list directory: a purge needs only dpkg's status,
	# and parsing the host's 19 MB of package lists took 9 s under TCG.
	local lists
	lists=$(mktemp -d)
	mkdir -p "$lists/partial"
	tick
	if ! DEBIAN_FRONTEND=noninteractive apt-get -o Dir::State::Lists="$lists" purge -y "${DEBS[@]}" \
		>"$STATE/purge.log" 2>&1; then
		cat "$STATE/purge.log"
		fail "apt-get purge ${DEBS[*]}"
	fi
	tock apt-get-purge
	sed 's/^/  apt: /' "$STATE/purge.log"
	ok "apt-get purge ${DEBS[*]}"
	local p left=() f
	for p in "${DEBS[@]}"; do
		if dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q 'installed'; then
			fail "$p is still installed"
		fi
	done
	[[ -z $(dkms status dm-user) ]] || fail "dkms status dm-user is empty: '$(dkms status dm-user)'"
	ok "dkms status dm-user: empty"
	for f in /var/lib/dkms/dm-user /usr/src/dm-user-* /lib/modules/*/updates/dkms/dm-user.ko*; do
		[[ -e $f ]] && left+=("$f")
	done
	# Every file the packages had (dpkg -L before the purge) is gone; a
	# directory may stay only when another package owns it.
	while IFS= read -r f; do
		[[ $f != /. ]] || continue # dpkg -L's first line
		[[ -e $f || -L $f ]] || continue
		# a directory another package owns, or one a symlink of the system
		# stands for (/lib on merged /usr: dpkg -L lists it, nobody owns it)
		if [[ -d $f ]] && { [[ -L $f ]] || dpkg-query -S "$f" >/dev/null 2>&1; }; then
			continue
		fi
		left+=("$f")
	done < <(cat "$STATE"/*.list | LC_ALL=C sort -u)
	((${#left[@]} == 0)) || fail "left behind: ${left[*]}"
	ok "nothing of $(cat "$STATE"/*.list | LC_ALL=C sort -u | wc -l) paths from dpkg -L, DKMS's tree or its module is left"
	finish
}

case ${1:-} in
install) install_boot ;;
reboot) reboot_boot ;;
*) echo "usage: $0 install|reboot" >&2; exit 2 ;;
esac
