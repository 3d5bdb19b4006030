#!/bin/busybox sh
# shellcheck shell=sh
# PID 1 of the dm-user test guest. tests/vm/initramfs.sh copies this file to /init
# in the initramfs; it runs under busybox ash, not bash.
#
#  1. loads the virtio/9p modules shipped in the initramfs;
#  2. mounts the host root (9p tag "hostroot", read-only) on /newroot and the
#     writable results share (tag "dmuout") on /out;
#  3. builds a usable system inside /newroot: proc, sys, devtmpfs, devpts, tmpfs on
#     /tmp /run /var/tmp /dev/shm, tracefs, debugfs, bpffs; results share at
#     /run/dmu-out;
#  4. runs /run/dmu-out/.dmu/cmd.sh (written by run.sh) with bash inside the chroot;
#  5. writes the exit status to /run/dmu-out/.dmu/status, saves dmesg, powers off.
# Anything that goes wrong before step 5 powers off without a status file; the host
# reports that as a guest failure and shows the console log.
#
# With `run.sh --systemd` (the file .dmu/systemd in the results share) it boots a
# system instead: the root is an overlay, the host root (9p, read-only) under an
# upper layer on the guest's disk /dev/vda (ext4, made by run.sh; it can outlive
# the guest, for a second boot), and systemd runs as PID 1 (switch_root). The
# unit dmu-test.service, written here into the overlay, runs
# tests/vm/systemd-cmd.sh, which does steps 4 and 5 from inside that system.

/bin/busybox --install -s /bin
export PATH=/bin
mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
mount -t proc proc /proc
mount -t sysfs sysfs /sys

R=/newroot
OUT=/run/dmu-out

fail() {
	echo "dmu-init: FATAL: $*"
	sync
	poweroff -f
	sleep 60 # poweroff -f does not return; never let PID 1 exit
}

while read -r m; do
	insmod "/lib/dmu-modules/$m" || fail "insmod $m"
done </lib/dmu-modules/order

mkdir -p "$R" /out /keep
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 dmuout /out ||
	fail "cannot mount the results share (9p tag dmuout)"
[ -r /out/.dmu/root ] || fail "/out/.dmu/root missing (run.sh writes it)"
read -r DMU_ROOT </out/.dmu/root

echo 0 >/proc/sys/kernel/panic_on_warn || fail "set panic_on_warn"
# Show warnings (and worse) on the console too, so a wedged guest leaves a trace.
echo 5 >/proc/sys/kernel/printk
# Tests write markers to /dev/kmsg; do not rate-limit them.
echo on >/proc/sys/kernel/printk_devkmsg

if [ -f /out/.dmu/systemd ]; then
	# Not fatal: an alternative may not fit this CPU (crc32c-intel needs SSE4.2,
	# which TCG's CPU lacks; crc32c_generic does it). A module that is needed
	# and missing fails the mounts below.
	while read -r m; do
		insmod "/lib/dmu-modules/$m" 2>/dev/null || echo "dmu-init: note: insmod $m failed"
	done </lib/dmu-modules/order-systemd
	mkdir -p /lower /upperfs
	mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144,cache=loose,ro hostroot /lower ||
		fail "cannot mount the host root (9p tag hostroot)"
	mount -t ext4 /dev/vda /upperfs || fail "cannot mount the overlay's disk /dev/vda"
	mkdir -p /upperfs/upper /upperfs/work
	mount -t overlay -o lowerdir=/lower,upperdir=/upperfs/upper,workdir=/upperfs/work \
		overlay "$R" || fail "cannot mount the overlay root"
	[ -f "$R$DMU_ROOT/tests/vm/systemd-cmd.sh" ] || fail "repo root $DMU_ROOT not visible in the guest"
	# The host root may be a container's (a build machine): without this,
	# systemd in the guest would see /.dockerenv, take itself for a container
	# and skip what a container does not do (ConditionVirtualization=).
	rm -f "$R/.dockerenv"
	mkdir -p "$R/etc/systemd/system"
	{
		echo '# Written by tests/vm/init.sh (run.sh --systemd) at every boot.'
		echo '[Unit]'
		echo 'Description=dm-user test guest: the command of run.sh, then power off'
		echo 'After=multi-user.target'
		echo '[Service]'
		echo 'Type=oneshot'
		echo "ExecStart=/bin/bash $DMU_ROOT/tests/vm/systemd-cmd.sh"
		echo 'StandardOutput=journal+console'
		echo 'StandardError=journal+console'
		echo 'TimeoutStartSec=infinity'
	} >"$R/etc/systemd/system/dmu-test.service" || fail "write dmu-test.service"
	# kernel.hung_task_timeout_secs stays at the kernel's 120 s: on a busy
	# TCG host a booting system's module loads (udev's, each patching kernel
	# text under one mutex) have kept a task waiting for more than 30 s.
	umount /out # the unit mounts it again, on /run/dmu-out
	# shellcheck disable=SC2093 # exec returns only when switch_root cannot run
	exec switch_root "$R" /lib/systemd/systemd
	fail "switch_root to systemd failed"
fi

echo 30 >/proc/sys/kernel/hung_task_timeout_secs || fail "set hung_task_timeout_secs"
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144,cache=loose,ro hostroot "$R" ||
	fail "cannot mount the host root (9p tag hostroot)"
[ -f "$R$DMU_ROOT/tests/vm/init.sh" ] || fail "repo root $DMU_ROOT not visible in the guest"

# Keep a handle on the repo before covering /tmp, /run and /var/tmp with tmpfs, in
# case the checkout lives below one of them.
mount -o bind "$R$DMU_ROOT" /keep || fail "bind $DMU_ROOT"

mount -t proc proc "$R/proc" || fail "mount proc"
mount -t sysfs sysfs "$R/sys" || fail "mount sysfs"
mount -t devtmpfs devtmpfs "$R/dev" || fail "mount devtmpfs"
mount -t tmpfs -o mode=1777 tmpfs "$R/tmp" || fail "mount /tmp"
mount -t tmpfs -o mode=0755 tmpfs "$R/run" || fail "mount /run"
mount -t tmpfs -o mode=1777 tmpfs "$R/var/tmp" || fail "mount /var/tmp"
if [ ! -f "$R$DMU_ROOT/tests/vm/init.sh" ]; then
	mkdir -p "$R$DMU_ROOT" || fail "mkdir $DMU_ROOT"
	mount -o bind /keep "$R$DMU_ROOT" || fail "cannot re-expose $DMU_ROOT after the tmpfs mounts"
fi
umount /keep

mkdir -p "$R/dev/pts" "$R/dev/shm" "$R/run/lock" "$R$OUT"
mount -t devpts -o newinstance,ptmxmode=0666 devpts "$R/dev/pts" || fail "mount devpts"
mount -t tmpfs -o mode=1777 tmpfs "$R/dev/shm" || fail "mount /dev/shm"
[ -e "$R/dev/fd" ] || ln -s /proc/self/fd "$R/dev/fd"
[ -e "$R/dev/stdin" ] || ln -s /proc/self/fd/0 "$R/dev/stdin"
[ -e "$R/dev/stdout" ] || ln -s /proc/self/fd/1 "$R/dev/stdout"
[ -e "$R/dev/stderr" ] || ln -s /proc/self/fd/2 "$R/dev/stderr"
mount -t tracefs tracefs "$R/sys/kernel/tracing" || fail "mount tracefs"
mount -t debugfs debugfs "$R/sys/kernel/debug" || fail "mount debugfs"
mount -t bpf bpf "$R/sys/fs/bpf" 2>/dev/null || echo "dmu-init: note: no bpffs"
# A kernel that is not the host's (tests/debug/kernel.sh) brings its own
# /lib/modules: run.sh names the directory that holds it.
if [ -s /out/.dmu/modroot ]; then
	read -r modroot </out/.dmu/modroot
	mount -o bind "$R$modroot/lib/modules" "$R/lib/modules" ||
		fail "bind $modroot/lib/modules on /lib/modules"
fi
mount -o move /out "$R$OUT" || fail "move the results share into the chroot"

# The kernel runs its module-autoload helper in PID 1's root (this initramfs), not
# in the chroot: route it to the host's modprobe, which knows /lib/modules.
cat >/bin/dmu-modprobe <<EOF
#!/bin/busybox sh
exec /bin/chroot $R /sbin/modprobe "\$@"
EOF
chmod 0755 /bin/dmu-modprobe
echo /bin/dmu-modprobe >/proc/sys/kernel/modprobe || fail "set kernel.modprobe"

# Loopback, for the metrics endpoints the tests scrape on 127.0.0.1.
chroot "$R" /sbin/ip link set lo up || fail "ip link set lo up"

rm -f "$R$OUT/.dmu/status"
chroot "$R" /usr/bin/env -i /bin/bash "$OUT/.dmu/cmd.sh" </dev/null
echo "$?" >"$R$OUT/.dmu/status.tmp" && mv "$R$OUT/.dmu/status.tmp" "$R$OUT/.dmu/status"
dmesg >"$R$OUT/.dmu/dmesg.txt"
sync
poweroff -f
sleep 60
