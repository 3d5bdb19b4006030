#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# A throwaway single-node Ceph cluster for tests, from Debian's packages
# (ceph-mon, ceph-osd, ceph-common):
#   cluster.sh start DIR   one mon and one OSD (memstore) on 127.0.0.1, a
#                          pool "rbd" of size 1; waits until the OSD is up
#                          and in and the pool takes a write (bounded by
#                          CEPH_START_TIMEOUT seconds, 90 by default)
#   cluster.sh stop DIR    kill them (by their pid files) and wait for them
# Everything is under DIR: DIR/ceph.conf (for clients: ceph -c DIR/ceph.conf,
# rbd -c ..., librados), the mon's and the OSD's data, logs, pid files and
# admin sockets.  No authentication (auth_*_required = none, no keyring),
# no mgr (rbd create and I/O need none; `ceph health` warns about it).
# Only 127.0.0.1 is used: it runs inside a network namespace of its own
# (`unshare -n` and `ip link set lo up`).
set -euo pipefail

usage() {
	echo "usage: $0 start DIR | stop DIR" >&2
	exit 2
}

[ $# -eq 2 ] || usage
cmd=$1
dir=$2
timeout_s=${CEPH_START_TIMEOUT:-90}

die() {
	echo "cluster.sh: $*" >&2
	exit 1
}

# pid_of NAME: the pid in DIR/run/NAME.pid, if that process is alive
pid_of() {
	local f="$dir/run/$1.pid" pid
	[ -s "$f" ] || return 1
	pid=$(cat "$f")
	kill -0 "$pid" 2>/dev/null || return 1
	echo "$pid"
}

stop() {
	local name pid
	for name in osd.0 mon.a; do
		if pid=$(pid_of "$name"); then
			kill -9 "$pid" 2>/dev/null || true
			# not our child: wait for /proc to forget it
			while kill -0 "$pid" 2>/dev/null; do
				tail --pid="$pid" -f /dev/null
			done
		fi
		rm -f "$dir/run/$name.pid"
	done
}

# until_ok WHAT CMD...: run CMD until it succeeds or the start's deadline passes
until_ok() {
	local what=$1
	shift
	until "$@" >/dev/null 2>&1; do
		[ "$SECONDS" -lt "$deadline" ] || die "$what: not within ${timeout_s} s (logs in $dir/log)"
		# each attempt blocks in the client for up to its own timeouts
	done
}

# mon_cmd ARGS...: ceph -c DIR/ceph.conf ARGS.  A command is retried (up to
# 3 times) only when the mon answers EPERM: about 1 command in 12 is so
# answered (seen with `ceph osd set noout` in a loop: "Error EPERM: problem
# getting command descriptions from mon."; the OSD's own, logged: "'wrong
# fsid': (1) Operation not permitted": a command sent before the client
# has the mon's map); any other failure fails at once.
mon_cmd() {
	local out _
	for _ in 1 2 3; do
		if out=$(ceph -c "$conf" "$@" 2>&1); then
			return 0
		fi
		[[ $out == *EPERM* ]] || break
	done
	echo "cluster.sh: ceph $*: $out" >&2
	return 1
}

osd_up_in() {
	local s
	s=$(ceph -c "$conf" --connect-timeout 5 osd stat -f json) || return 1
	# {"epoch":N,"num_osds":1,"num_up_osds":1,...,"num_in_osds":1,...}
	[[ $s == *'"num_up_osds":1,'* && $s == *'"num_in_osds":1,'* ]]
}

start() {
	command -v ceph-mon >/dev/null || die "ceph-mon is not installed (Debian packages ceph-mon ceph-osd ceph-common)"
	command -v ceph-osd >/dev/null || die "ceph-osd is not installed"
	command -v monmaptool >/dev/null || die "monmaptool is not installed (ceph-common... ceph-base)"
	[ ! -e "$dir/ceph.conf" ] || die "$dir/ceph.conf exists: stop it and remove $dir first"
	mkdir -p "$dir"/{run,log,mon,osd}
	dir=$(cd "$dir" && pwd)
	conf=$dir/ceph.conf
	deadline=$((SECONDS + timeout_s))
	local fsid port uuid
	fsid=$(cat /proc/sys/kernel/random/uuid)
	uuid=$(cat /proc/sys/kernel/random/uuid)
	port=${CEPH_MON_PORT:-6789}
	cat >"$conf" <<EOF
[global]
fsid = $fsid
mon host = v1:127.0.0.1:$port
mon initial members = a
public addr = 127.0.0.1
ms bind ipv6 = false
ms bind msgr2 = false
auth cluster required = none
auth service required = none
auth client required = none
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
mon allow pool size one = true
mon allow pool delete = true
osd crush chooseleaf type = 0
# the OSD sends no mon commands of its own at start-up (cluster.sh places
# it in the CRUSH map): a mon command right after connecting at times fails
# "wrong fsid" (EPERM), and the OSD then exits
osd crush update on start = false
osd class update on start = false
osd objectstore = memstore
# no erasure-code plugin preloaded (the pool is replicated): jerasure's
# gf-complete dies of SIGILL on a TCG guest's CPU (qemu64)
osd erasure code plugins =
memstore device bytes = 2147483648
run dir = $dir/run
pid file = $dir/run/\$name.pid
admin socket = $dir/run/\$name.\$pid.asok
log file = $dir/log/\$name.log
mon data = $dir/mon/\$name
osd data = $dir/osd/\$name
crash dir = $dir/crash
mon cluster log file = $dir/log/cluster.log
mon warn on pool no redundancy = false
osd max object name len = 460
osd max object namespace len = 64

[mon]
admin socket = $dir/run/\$name.asok

[osd]
admin socket = $dir/run/\$name.asok
# A PG's read lease 80 s (4 x osd heartbeat grace), not 16 s: an OSD
# stopped (SIGSTOP) for longer than its lease finds its PGs "laggy" when
# continued, and Ceph 16.2 (Debian 12) at times never clears that on a
# one-OSD acting set: every op to the PG then waits "for readable", still
# 400 s later (700-rbd-backend's 15-s stall: 4 times in 16 with the default
# lease, 0 in 14 with this one; upstream: ceph tracker 53806,
# ceph/ceph-container#1682).  With one OSD there is no peer whose failure
# the lease has to outlast.
osd pool default read lease ratio = 4
EOF
	monmaptool --create --fsid "$fsid" --addv a "[v1:127.0.0.1:$port]" "$dir/monmap" >/dev/null
	ceph-mon -c "$conf" -i a --mkfs --monmap "$dir/monmap" >"$dir/log/mkfs.log" 2>&1 ||
		die "ceph-mon --mkfs failed: $(tail -3 "$dir/log/mkfs.log")"
	ceph-mon -c "$conf" -i a >>"$dir/log/mkfs.log" 2>&1 ||
		die "ceph-mon did not start: $(tail -5 "$dir/log/mkfs.log"; tail -5 "$dir/log/mon.a.log")"
	# the OSD: an id from the mon, a memstore made, the daemon
	until_ok "the mon answering" ceph -c "$conf" --connect-timeout 5 mon stat
	mon_cmd osd new "$uuid" 0 || die "ceph osd new failed"
	mon_cmd osd crush add osd.0 1 root=default host=localhost || die "ceph osd crush add failed"
	mkdir -p "$dir/osd/osd.0"
	ceph-osd -c "$conf" -i 0 --mkfs --osd-uuid "$uuid" >>"$dir/log/mkfs.log" 2>&1 ||
		die "ceph-osd --mkfs failed: $(tail -3 "$dir/log/mkfs.log")"
	ceph-osd -c "$conf" -i 0 >>"$dir/log/mkfs.log" 2>&1 ||
		die "ceph-osd did not start: $(tail -5 "$dir/log/mkfs.log"; tail -5 "$dir/log/osd.0.log")"
	until_ok "osd.0 up and in" osd_up_in
	mon_cmd osd pool create rbd 8 8 replicated || die "cannot create pool rbd"
	mon_cmd osd pool application enable rbd rbd || die "cannot enable rbd on pool rbd"
	# the PGs active: a write to the pool succeeds (no mgr: no pg stats to ask)
	until_ok "pool rbd taking writes" \
		rados -c "$conf" --rados-osd-op-timeout 5 -p rbd put cluster-ready /dev/null
}

case $cmd in
start)
	trap 'stop' EXIT	# a start that fails leaves nothing running
	start
	trap - EXIT
	;;
stop)
	[ -d "$dir" ] || exit 0
	stop
	;;
*)
	usage
	;;
esac
