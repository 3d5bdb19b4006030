# shellcheck shell=bash disable=SC2034 # ceph_conf, ceph_dir are for the tests
# tests/remote/ceph.sh: sourced by the remote lane's tests after tests/e2e/lib.sh.
#   ceph_start DIR       a one-node cluster (tests/ceph/cluster.sh start DIR),
#                        stopped when the test exits; sets ceph_conf
#   ceph_perf WHO PATH   a counter of an admin socket's `perf dump`: WHO is
#                        osd.0, or a client's pid (its socket in DIR/run);
#                        PATH a jq path, e.g. '.osd.op_w'
#   ceph_rbd_counter PID NAME
#                        librbd's counter NAME (wr, rd, flush, discard, ...)
#                        of the image that process PID has open

ceph_start() {
	ceph_dir=$1
	ceph_conf=$ceph_dir/ceph.conf
	dmu_at_exit "$DMU_ROOT/tests/ceph/cluster.sh" stop "$ceph_dir"
	log "starting a Ceph cluster (one mon, one memstore OSD) in $ceph_dir"
	CEPH_START_TIMEOUT=$((120 * ${DMU_TIMEOUT_SCALE:-1})) \
		"$DMU_ROOT/tests/ceph/cluster.sh" start "$ceph_dir" ||
		die "the Ceph cluster did not start"
	log "Ceph is up"
}

_ceph_asok() {
	if [[ $1 == osd.* || $1 == mon.* ]]; then
		echo "$ceph_dir/run/$1.asok"
	else
		echo "$ceph_dir/run/client.admin.$1.asok"
	fi
}

ceph_perf() {
	ceph --admin-daemon "$(_ceph_asok "$1")" perf dump | jq -e "$2" ||
		die "no $2 in the perf dump of $1"
}

ceph_rbd_counter() {
	# the image's section is named librbd-<id>-<pool>-<image>
	ceph --admin-daemon "$(_ceph_asok "$1")" perf dump |
		jq -e --arg n "$2" '[to_entries[] | select(.key | startswith("librbd-")) | .value[$n]] | first' ||
		die "no librbd counter $2 in the perf dump of pid $1"
}
