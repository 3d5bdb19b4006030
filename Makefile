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
	$(ROOT)/module/Kbuild $(ROOT)/module/include/uapi/linux/*.h)

# Everything the build, the tests and the demo use, as Debian packages.
DEPS := make gcc clang llvm pkg-config git \
	linux-image-amd64 linux-headers-amd64 \
	linux-image-6.12-amd64 linux-headers-6.12-amd64 \
	qemu-system-x86 busybox-static kmod xz-utils zstd cpio dwarves \
	dmsetup libdevmapper-dev libjansson-dev libmicrohttpd-dev libudev-dev libsystemd-dev \
	systemtap-sdt-dev liburing-dev abigail-tools man-db shellcheck \
	libbpf-dev bpftool bpftrace libncurses-dev \
	fio e2fsprogs util-linux strace procps psmisc iproute2 curl jq \
	python3 python3-jsonschema python3-yaml sparse bash-builtins \
	prometheus chromium fonts-dejavu-core gnuplot-nox

# What only `make bench` needs, installed by it (not by make check).
BENCH_DEPS := nbdkit nbd-client linux-perf

# What only `make check-debug` needs: the source and tools to build its kernel,
# and Debian's PREEMPT_RT kernel with headers.
DEBUG_DEPS := linux-source-6.12 bc flex bison libelf-dev libssl-dev dwarves \
	linux-image-6.12-rt-amd64 linux-headers-6.12-rt-amd64

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
	@mkdir -p $(@D)/include/uapi/linux
	@cp -p $(ROOT)/module/dm-user.c $(ROOT)/module/dm-user-trace.h $(ROOT)/module/Kbuild $(@D)/
	@cp -p $(ROOT)/module/include/uapi/linux/dm-user.h $(@D)/include/uapi/linux/
	$(MAKE) -C $(call kdir,$*) M=$(@D) W=1 modules 2>&1 | \
		grep -v 'Skipping BTF generation'; test $${PIPESTATUS[0]} -eq 0
	@if [ ! -e $(call kdir,$*)/vmlinux ]; then \
		$(ROOT)/module/scripts/vmlinux-btf.sh /boot/vmlinuz-$* $(@D)/vmlinux.btf && \
		pahole -J --btf_base $(@D)/vmlinux.btf $@ && \
		rm -f $(@D)/vmlinux.btf && echo "  BTF     $@ (pahole, base /boot/vmlinuz-$*)"; \
	fi
	@readelf -S $@ | grep -q '\.BTF' || { echo "$@: no BTF section" >&2; exit 1; }

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

# ---- tests -----------------------------------------------------------------

unit: daemon lib
	$(MAKE) -C $(ROOT)/tests/unit check
	$(MAKE) -C $(ROOT)/tests/unit/lib check
	$(MAKE) -C $(ROOT)/tests/unit/bpf check
	$(MAKE) -C $(ROOT)/tests/unit/dashboards check
	$(MAKE) -C $(ROOT)/tests/unit/bench check

check: deps-if-needed
	@$(MAKE) -C $(ROOT) all
	@$(ROOT)/tests/check.sh $(foreach k,$(KVERS),--kernel $(k))

soak: deps-if-needed
	@$(MAKE) -C $(ROOT) all
	@$(ROOT)/tests/check.sh --soak $(foreach k,$(KVERS),--kernel $(k))

demo: deps-if-needed
	@$(MAKE) -C $(ROOT) all
	@$(ROOT)/tests/demo/demo.sh

# Builds its kernel once (cached in /var/cache/dm-user/kernel), then the
# self-test and the VM tests that load the module; ends with "N passed, N failed".
check-debug: debug-deps-if-needed
	@$(ROOT)/tests/debug/check-debug.sh

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

.PHONY: all deps deps-if-needed bench-deps bench-deps-if-needed debug-deps debug-deps-if-needed check-debug modules daemon lib examples bpf tools unit lint sparse check soak demo bench clean
