# dm-user: top-level build and test entry points.
#
#   make deps     install every Debian package the build and tests need
#   make          build the module for every installed kernel, the daemon,
#                 libdmuser and its examples, and the BPF tools
#   make check    deps (if missing), build, host unit tests, VM tests on every
#                 installed kernel (6.1 and 6.12 are required); ends with
#                 "N passed, N failed, N skipped"
#   make soak     the VM tests that have soak-sized counts, at those counts
#   make demo     boot a guest and show dm-user serving a file under load
#   make bench    boot one guest and run fio on the file, loop, nbd and dm-user
#                 (see tests/bench/README.md); writes build/bench/results.*
#   make check-debug  the VM tests on a lockdep/KASAN/UBSAN/KFENCE kernel and on
#                 Debian's PREEMPT_RT kernel (tests/debug/); not part of check
#   make install  the programs, the library, the man pages, the systemd units
#                 and the module's source for DKMS (PREFIX, DESTDIR, sbindir,
#                 libdir, mandir, unitdir, ...: see "install" below)
#   make deb      the Debian packages (debian/), into build/deb/
#   make check-pkg  make deb, then boot a guest with systemd as init, install
#                 the packages, serve a device through dmuserd@.service,
#                 reboot it, purge them (tests/pkg/); not part of check (its
#                 8 minutes of TCG do not fit make check's 20; tests/README.md)
#
# Kernels: every generic -amd64 /lib/modules/<version>/build that has a
# matching /boot/vmlinuz-<version>.  Restrict with KVERS="<version> ...".

SHELL := /bin/bash
ROOT := $(abspath $(dir $(lastword $(MAKEFILE_LIST))))
BUILD := $(ROOT)/build

# Generic -amd64 flavour only, as the VM harness (tests/vm/common.sh).
KVERS ?= $(filter-out %-cloud-amd64 %-rt-amd64,$(filter %-amd64,\
	$(sort $(foreach b,$(wildcard /lib/modules/*/build),\
	$(if $(wildcard /boot/vmlinuz-$(notdir $(patsubst %/build,%,$(b)))),\
	$(notdir $(patsubst %/build,%,$(b))))))))
KMODS := $(foreach k,$(KVERS),$(BUILD)/kmod/$(k)/dm-user.ko)
MODULE_SRCS := $(wildcard $(ROOT)/module/*.c $(ROOT)/module/*.h \
	$(ROOT)/module/Kbuild $(ROOT)/module/Makefile $(ROOT)/module/scripts/vmlinux-btf.sh \
	$(ROOT)/module/include/uapi/linux/*.h)

# Everything the build, the tests and the demo use, as Debian packages.
DEPS := make gcc clang llvm pkg-config git \
	linux-image-amd64 linux-headers-amd64 \
	linux-image-6.12-amd64 linux-headers-6.12-amd64 \
	qemu-system-x86 busybox-static kmod xz-utils zstd cpio dwarves \
	dmsetup libdevmapper-dev libjansson-dev libmicrohttpd-dev libudev-dev libsystemd-dev libnbd-dev nbdkit qemu-utils \
	librbd-dev ceph-mon ceph-osd ceph-common \
	systemtap-sdt-dev liburing-dev abigail-tools man-db mandoc bsdextrautils shellcheck \
	libbpf-dev bpftool bpftrace libncurses-dev \
	fio e2fsprogs xfsprogs util-linux strace procps psmisc iproute2 curl jq \
	python3 python3-jsonschema python3-yaml sparse bash-builtins \
	prometheus chromium fonts-dejavu-core gnuplot-nox

# What only `make bench` needs, installed by it (not by make check).
BENCH_DEPS := nbd-client linux-perf rbd-nbd

# What only `make check-debug` needs: the source and tools to build its kernel,
# and Debian's PREEMPT_RT kernel with headers.
DEBUG_DEPS := linux-source-6.12 bc flex bison libelf-dev libssl-dev dwarves \
	linux-image-6.12-rt-amd64 linux-headers-6.12-rt-amd64

# What only `make deb` needs: debhelper, DKMS and its dh addon, lintian.
PKG_DEPS := debhelper dkms dh-dkms lintian dpkg-dev fakeroot

all: modules daemon lib examples bpf tools

CFLAGS_USER := -std=c11 -O2 -g -Wall -Wextra -Werror -I$(ROOT)/module/include/uapi

# ---- packages --------------------------------------------------------------

deps:
	apt-get update
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $(DEPS)

bench-deps:
	apt-get update
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $(DEPS) $(BENCH_DEPS)

# Installs only when something is missing, so `make check` stays quick.
deps-if-needed:
	@$(call install_missing,$(DEPS),deps)

bench-deps-if-needed:
	@$(call install_missing,$(DEPS) $(BENCH_DEPS),bench-deps)

debug-deps:
	apt-get update
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $(DEPS) $(DEBUG_DEPS)

debug-deps-if-needed:
	@$(call install_missing,$(DEPS) $(DEBUG_DEPS),debug-deps)

pkg-deps:
	apt-get update
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $(DEPS) $(PKG_DEPS)

pkg-deps-if-needed:
	@$(call install_missing,$(DEPS) $(PKG_DEPS),pkg-deps)

# install_missing PACKAGES,TARGET: make TARGET if a package is not installed
install_missing = missing=$$(for p in $(1); do \
		dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; \
	done); \
	if [ -n "$$missing" ]; then echo "installing:" $$missing; $(MAKE) -C $(ROOT) $(2); fi

# ---- build -----------------------------------------------------------------

modules: $(KMODS)

# The kernel tree a module is built against: KDIR when given (the debug
# lane's kernel, built outside /lib/modules, with KVERS naming it), else the
# installed headers.
kdir = $(or $(KDIR),/lib/modules/$(1)/build)

# One build directory per kernel: kbuild builds external modules in place.
# Where the headers have no vmlinux (Debian 6.1), kbuild skips module BTF, so
# generate it with pahole against the BTF of that kernel's own image.
$(BUILD)/kmod/%/dm-user.ko: $(MODULE_SRCS)
	@test -n "$(KVERS)" || { echo "no kernel headers installed: run 'make deps'" >&2; exit 1; }
	@mkdir -p $(@D)/include/uapi/linux $(@D)/scripts
	@cp -p $(ROOT)/module/dm-user.c $(ROOT)/module/dm-user-trace.h $(ROOT)/module/Kbuild \
		$(ROOT)/module/Makefile $(@D)/
	@cp -p $(ROOT)/module/scripts/vmlinux-btf.sh $(@D)/scripts/
	@cp -p $(ROOT)/module/include/uapi/linux/dm-user.h $(@D)/include/uapi/linux/
	@# module/Makefile's dkms target, as DKMS runs it: kbuild, then the module BTF
	$(MAKE) -C $(@D) KDIR=$(call kdir,$*) KVER=$* dkms 2>&1 | \
		grep -v 'Skipping BTF generation'; test $${PIPESTATUS[0]} -eq 0

daemon: lib
	$(MAKE) -C $(ROOT)/daemon

lib:
	$(MAKE) -C $(ROOT)/lib

examples: lib
	$(MAKE) -C $(ROOT)/examples

# dmuser-exporter links lib/libdmuser.a
bpf: lib
	$(MAKE) -C $(ROOT)/bpf

# Test tools that run inside the guest.
tools: $(BUILD)/tools/dmu-client $(BUILD)/tools/dmu-hostile $(BUILD)/tools/dmu-libctl

# Through libdmuser's public header and shared library only.
$(BUILD)/tools/dmu-libctl: $(ROOT)/tests/tools/dmu-libctl.c $(ROOT)/lib/include/dmuser.h lib
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_USER) -I$(ROOT)/lib/include -o $@ $< -L$(ROOT)/lib -ldmuser \
		-Wl,-rpath,$(ROOT)/lib

$(BUILD)/tools/%: $(ROOT)/tests/tools/%.c $(ROOT)/module/include/uapi/linux/dm-user.h
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_USER) -o $@ $<

# ---- install ---------------------------------------------------------------

# GNU names.  The module's source goes to /usr/src/dm-user-<version>
# whatever PREFIX is (DKMS looks there only); the units and the
# modules-load.d entry to systemd's directories (pkg-config), since systemd
# reads no others.  Userspace only: `make install` builds no kernel module
# (DKMS does, for every installed kernel).
VERSION := $(shell sed -n 's/^\#define DMUSERD_VERSION "\(.*\)"/\1/p' $(ROOT)/daemon/version.h)
PREFIX ?= /usr/local
prefix ?= $(PREFIX)
exec_prefix ?= $(prefix)
sbindir ?= $(exec_prefix)/sbin
libdir ?= $(exec_prefix)/lib
includedir ?= $(prefix)/include
datadir ?= $(prefix)/share
mandir ?= $(datadir)/man
sysconfdir ?= /etc
dkmssrcdir ?= /usr/src/dm-user-$(VERSION)
unitdir ?= $(or $(shell pkg-config --variable=systemdsystemunitdir systemd 2>/dev/null),/lib/systemd/system)
modulesloaddir ?= $(or $(shell pkg-config --variable=modulesloaddir systemd 2>/dev/null),/usr/lib/modules-load.d)

# Man pages: those that exist when make install runs.
MAN4 := $(wildcard $(ROOT)/module/dm-user.4)
MAN8 := $(ROOT)/daemon/dmuserd.8 $(wildcard $(ROOT)/bpf/dmuser-lat.8 $(ROOT)/bpf/dmuser-top.8 \
	$(ROOT)/bpf/dmuser-exporter.8 $(ROOT)/bpf/dmuser-inflight.8)
DASHBOARDS := grafana/dm-user.json prometheus/dm-user.rules.yml prometheus/prometheus.yml
UNITS := dmuserd@.service dmuser-exporter.service
SUBST = sed -e 's|@sbindir@|$(sbindir)|g' -e 's|@sysconfdir@|$(sysconfdir)|g'

install: daemon lib bpf
	install -d $(DESTDIR)$(sbindir) $(DESTDIR)$(datadir)/dm-user/oneliners \
		$(DESTDIR)$(mandir)/man8 $(DESTDIR)$(unitdir) $(DESTDIR)$(modulesloaddir)
	install -m 0755 $(ROOT)/daemon/dmuserd $(ROOT)/bpf/dmuser-lat $(ROOT)/bpf/dmuser-top \
		$(ROOT)/bpf/dmuser-exporter $(ROOT)/bpf/dmuser-inflight $(DESTDIR)$(sbindir)/
	install -m 0755 $(ROOT)/bpf/oneliners/*.bt $(DESTDIR)$(datadir)/dm-user/oneliners/
	for f in $(DASHBOARDS); do \
		install -D -m 0644 $(ROOT)/dashboards/$$f $(DESTDIR)$(datadir)/dm-user/dashboards/$$f || exit; \
	done
	install -m 0644 $(ROOT)/systemd/dmuserd.conf.example $(DESTDIR)$(datadir)/dm-user/
	install -m 0644 $(MAN8) $(DESTDIR)$(mandir)/man8/
	$(if $(MAN4),install -D -m 0644 $(MAN4) -t $(DESTDIR)$(mandir)/man4/)
	$(MAKE) -C $(ROOT)/lib install PREFIX=$(prefix) LIBDIR=$(libdir) INCLUDEDIR=$(includedir) \
		MANDIR=$(mandir) DESTDIR=$(DESTDIR)
	for u in $(UNITS); do \
		$(SUBST) $(ROOT)/systemd/$$u.in > $(DESTDIR)$(unitdir)/$$u && \
		chmod 0644 $(DESTDIR)$(unitdir)/$$u || exit; \
	done
	install -m 0644 $(ROOT)/systemd/dm-user.modules-load.conf $(DESTDIR)$(modulesloaddir)/dm-user.conf
	$(MAKE) -s install-dkms-src DESTDIR=$(DESTDIR)

# The module's source as DKMS builds it (module/dkms.conf, module/Makefile).
install-dkms-src:
	install -d $(DESTDIR)$(dkmssrcdir)/include/uapi/linux $(DESTDIR)$(dkmssrcdir)/scripts
	install -m 0644 $(ROOT)/module/dm-user.c $(ROOT)/module/dm-user-trace.h $(ROOT)/module/Kbuild \
		$(ROOT)/module/Makefile $(DESTDIR)$(dkmssrcdir)/
	sed 's/@VERSION@/$(VERSION)/' $(ROOT)/module/dkms.conf.in > $(DESTDIR)$(dkmssrcdir)/dkms.conf
	install -m 0644 $(ROOT)/module/include/uapi/linux/dm-user.h $(DESTDIR)$(dkmssrcdir)/include/uapi/linux/
	install -m 0755 $(ROOT)/module/scripts/vmlinux-btf.sh $(DESTDIR)$(dkmssrcdir)/scripts/

# ---- packages: Debian ------------------------------------------------------

# dpkg-buildpackage builds out of a clean copy of the tree (the files git
# knows or would add, build/ aside), so the tree's own build products never
# reach a package; the .debs land in build/deb/.  lintian then fails it on
# an error (warnings are listed: debian/README.source explains those left).
deb: pkg-deps-if-needed
	rm -rf $(BUILD)/deb && mkdir -p $(BUILD)/deb/src
	cd $(ROOT) && git ls-files -z --cached --others --exclude-standard | grep -zv '^build/' | \
		xargs -0 tar -cf - --no-recursion | tar -xf - -C $(BUILD)/deb/src
	cd $(BUILD)/deb/src && dpkg-buildpackage -us -uc -b
	rm -rf $(BUILD)/deb/src
	lintian --info --fail-on error $(BUILD)/deb/*.changes

# ---- tests -----------------------------------------------------------------

unit: daemon lib bpf
	$(MAKE) -C $(ROOT)/tests/unit check
	$(MAKE) -C $(ROOT)/tests/unit/lib check
	$(MAKE) -C $(ROOT)/tests/unit/bpf check
	$(MAKE) -C $(ROOT)/tests/unit/dashboards check
	$(MAKE) -C $(ROOT)/tests/unit/bench check
	$(MAKE) -C $(ROOT)/tests/unit/man check
	$(MAKE) -C $(ROOT)/tests/unit/install check

check: deps-if-needed
	@$(MAKE) -C $(ROOT) all
	@$(ROOT)/tests/check.sh $(foreach k,$(KVERS),--kernel $(k))

soak: deps-if-needed
	@$(MAKE) -C $(ROOT) all
	@$(ROOT)/tests/check.sh --soak $(foreach k,$(KVERS),--kernel $(k))

demo: deps-if-needed
	@$(MAKE) -C $(ROOT) all
	@$(ROOT)/tests/demo/demo.sh

# The remote lane (tests/remote/): dmuserd's RBD backend against a Ceph
# cluster started inside a 6.12 guest, and ext4 on its NBD backend, ~5 min;
# not in make check, for time.
# .ci/run runs it after make check.  Ends with "N passed, N failed, N skipped".
check-remote: deps-if-needed
	@$(MAKE) -C $(ROOT) all
	@DMU_TESTS_DIR=tests/remote $(ROOT)/tests/vm/suite.sh --kernel 6.12 --smp 1

# Builds its kernel once (cached in /var/cache/dm-user/kernel), then the
# self-test and the VM tests that load the module; ends with "N passed, N failed".
check-debug: debug-deps-if-needed
	@$(ROOT)/tests/debug/check-debug.sh

# The packaging test: the .debs installed and used on a guest that boots
# like a server, twice (tests/pkg/run.sh); ends with "N passed, N failed, N skipped".
check-pkg: deps-if-needed deb
	@$(ROOT)/tests/pkg/run.sh

# Goals are reported, not asserted: exits 0 unless a path or a job failed to run.
bench: bench-deps-if-needed
	@$(MAKE) -C $(ROOT) all
	@$(ROOT)/tests/bench/bench.sh

# Kernel style: checkpatch.pl from Debian's linux-source package.
CHECKPATCH := $(BUILD)/checkpatch/scripts/checkpatch.pl
$(CHECKPATCH):
	@ls /usr/src/linux-source-*.tar.xz >/dev/null 2>&1 || \
		DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends linux-source
	@mkdir -p $(BUILD)/checkpatch
	tar -xJf $$(ls /usr/src/linux-source-*.tar.xz | tail -n 1) -C $(BUILD)/checkpatch \
		--strip-components=1 --wildcards '*/scripts/checkpatch.pl' \
		'*/scripts/spelling.txt' '*/scripts/const_structs.checkpatch'

# --strict everywhere; the trace header's TRACE_EVENT() layout is the
# kernel's own, which checkpatch's open-line and alignment checks dislike.
lint: $(CHECKPATCH)
	perl $(CHECKPATCH) --no-tree --strict -q -f $(ROOT)/module/dm-user.c \
		$(ROOT)/module/include/uapi/linux/dm-user.h
	perl $(CHECKPATCH) --no-tree --strict -q \
		--ignore OPEN_ENDED_LINE,PARENTHESIS_ALIGNMENT,SPACING \
		-f $(ROOT)/module/dm-user-trace.h
	@echo "checkpatch: clean"
	@$(MAKE) -s sparse

# sparse (C=2: every file, even when the module is up to date) against the
# first installed kernel's headers, in a scratch copy of the module.
sparse:
	@command -v sparse >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends sparse
	@k=$(firstword $(KVERS)); d=$(BUILD)/sparse/$$k; rm -rf $$d; mkdir -p $$d/include/uapi/linux; \
	cp -p $(ROOT)/module/dm-user.c $(ROOT)/module/dm-user-trace.h $(ROOT)/module/Kbuild $$d/; \
	cp -p $(ROOT)/module/include/uapi/linux/dm-user.h $$d/include/uapi/linux/; \
	$(MAKE) -s -C /lib/modules/$$k/build M=$$d C=2 modules 2>&1 | \
		grep -v 'Skipping BTF generation' | tee $$d/sparse.log; \
	if grep -q 'warning\|error' $$d/sparse.log; then echo "sparse: not clean" >&2; exit 1; fi
	@echo "sparse: clean"

clean:
	rm -rf $(BUILD)
	-$(MAKE) -C $(ROOT)/daemon clean
	-$(MAKE) -C $(ROOT)/lib clean
	-$(MAKE) -C $(ROOT)/examples clean
	-$(MAKE) -C $(ROOT)/tests/unit/lib clean
	-$(MAKE) -C $(ROOT)/bpf clean
	-$(MAKE) -C $(ROOT)/tests/unit clean
	-$(MAKE) -C $(ROOT)/tests/unit/bpf clean
	-$(MAKE) -C $(ROOT)/tests/unit/bench clean

.PHONY: all deps deps-if-needed bench-deps bench-deps-if-needed pkg-deps pkg-deps-if-needed install install-dkms-src deb check-pkg check-remote debug-deps debug-deps-if-needed check-debug modules daemon lib examples bpf tools unit lint sparse check soak demo bench clean
