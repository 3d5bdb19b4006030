// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Host unit tests of dmuser-lat's daemon-stage helpers (bpf/trace_helpers.c):
 * finding libdmuser's USDT probes in an ELF file, finding the file of a
 * process that holds them, and the sum of the per-CPU daemon-stage records.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/sdt.h>
#include <linux/types.h>

#include "dmuser.h"
#include "dmuser-lat.h"
#include "trace_helpers.h"
#include "check.h"

#define LIBDMUSER "../../../lib/libdmuser.so.1"

/*
 * This test binary's own probes: three of libdmuser's four under provider
 * dmuser, the fourth's name under another provider (which must not count).
 * Never called; the notes are there all the same.
 */
void usdt_fixture(unsigned devt, unsigned long long seq);
void usdt_fixture(unsigned devt, unsigned long long seq)
{
	DTRACE_PROBE2(dmuser, request_received, devt, seq);
	DTRACE_PROBE2(dmuser, backend_submitted, devt, seq);
	DTRACE_PROBE2(dmuser, backend_done, devt, seq);
	DTRACE_PROBE2(notdmuser, reply_sent, devt, seq);
}

TEST(usdt_probes_of_files)
{
	char path[64];
	FILE *f;
	int got;

	/* the library the tree builds: every probe */
	got = dmu_usdt_probes(LIBDMUSER);
	CHECK(got == DMU_USDT_ALL, "%s: probes %#x, want %#x", LIBDMUSER, got, DMU_USDT_ALL);
	/* this program: three of them (reply_sent is another provider's) */
	got = dmu_usdt_probes("/proc/self/exe");
	CHECK(got == ((1 << DMU_USDT_RECEIVED) | (1 << DMU_USDT_SUBMITTED) | (1 << DMU_USDT_DONE)),
	      "this test's probes %#x, want 0x7", got);
	/* an ELF file without any probe: the shell */
	got = dmu_usdt_probes("/bin/sh");
	CHECK(got == 0, "/bin/sh: %d", got);
	/* not ELF, and missing */
	snprintf(path, sizeof(path), "/tmp/dmu-usdt-%d", (int)getpid());
	f = fopen(path, "w");
	if (f) {
		fputs("#!/bin/sh\nexit 0\n", f);
		fclose(f);
		got = dmu_usdt_probes(path);
		CHECK(got == -ENOEXEC, "a script: %d", got);
		unlink(path);
	}
	got = dmu_usdt_probes("/nonexistent/dmuserd");
	CHECK(got == -ENOENT, "a missing file: %d", got);
}

/* Writes text to a temporary maps file; returns its path (static). */
static const char *maps_file(const char *text)
{
	static char path[64];
	FILE *f;

	snprintf(path, sizeof(path), "/tmp/dmu-maps-%d", (int)getpid());
	f = fopen(path, "w");
	if (!f)
		return NULL;
	fputs(text, f);
	fclose(f);
	return path;
}

TEST(usdt_binary_of)
{
	char out[256], self[256];
	const char *maps;
	ssize_t n;
	int got;

	maps = maps_file(
		"55d0c0a00000-55d0c0a02000 r--p 00000000 fe:01 1234  /usr/bin/dmu-null\n"
		"7f1e2c000000-7f1e2c021000 rw-p 00000000 00:00 0 \n"
		"7f1e2c400000-7f1e2c404000 r--p 00000000 fe:01 99  /usr/lib/x86_64-linux-gnu/libdmuserx.so\n"
		"7f1e2c600000-7f1e2c604000 r--p 00000000 fe:01 77  /opt/my lib/libdmuser.so.1.0.0\n"
		"7f1e2c604000-7f1e2c614000 r-xp 00004000 fe:01 77  /opt/my lib/libdmuser.so.1.0.0\n"
		"7ffd5b3f0000-7ffd5b411000 rw-p 00000000 00:00 0  [stack]\n");
	if (!maps) {
		CHECK(0, "cannot write a maps file");
		return;
	}
	/* the first mapping of libdmuser.so*, a space in its path kept */
	got = dmu_usdt_binary_of(maps, "/proc/self/exe", out, sizeof(out));
	CHECK(got == 1 && !strcmp(out, "/opt/my lib/libdmuser.so.1.0.0"), "library: %d %s", got, out);
	CHECK(dmu_usdt_binary_of(maps, "/proc/self/exe", out, 10) == -ENAMETOOLONG, "short buffer");

	/* no libdmuser.so mapped: the program itself (libdmuser.a linked in) */
	maps = maps_file(
		"55d0c0a00000-55d0c0a02000 r--p 00000000 fe:01 1234  /usr/sbin/dmuserd\n"
		"7f1e2c400000-7f1e2c404000 r--p 00000000 fe:01 99  /usr/lib/x86_64-linux-gnu/libc.so.6\n");
	n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	self[n > 0 ? n : 0] = '\0';
	got = dmu_usdt_binary_of(maps, "/proc/self/exe", out, sizeof(out));
	CHECK(got == 0 && !strcmp(out, self), "program: %d %s (want %s)", got, out, self);
	unlink(maps);

	got = dmu_usdt_binary_of("/proc/999999999/maps", "/proc/999999999/exe", out, sizeof(out));
	CHECK(got == -ENOENT, "no such process: %d", got);
}

/* Every byte of the record is summed (as check_every_byte in test_bpf_helpers.c). */
TEST(usdt_percpu_pipe)
{
	struct dmu_pipe_rec *c0, *c1, sum;
	struct dmu_percpu pc;
	unsigned char *b;
	size_t i;

	if (dmu_percpu_init(&pc, 2, sizeof(sum), dmu_pipe_rec_sum)) {
		CHECK(0, "init");
		return;
	}
	CHECK(pc.stride == sizeof(sum), "stride %zu, size %zu", pc.stride, sizeof(sum));
	memset(pc.buf, 0x01, sizeof(sum));
	memset((char *)pc.buf + pc.stride, 0x02, sizeof(sum));
	dmu_percpu_sum(&pc, &sum);
	b = (unsigned char *)&sum;
	for (i = 0; i < sizeof(sum) && b[i] == 3; i++)
		;
	CHECK(i == sizeof(sum), "byte %zu of %zu summed to %#x", i, sizeof(sum),
	      i < sizeof(sum) ? b[i] : 0);

	memset(pc.buf, 0, 2 * pc.stride);
	c0 = pc.buf;
	c1 = (struct dmu_pipe_rec *)((char *)pc.buf + pc.stride);
	c0->counts[DMU_PC_OBSERVED] = 0xffffffffULL;
	c1->counts[DMU_PC_OBSERVED] = 1;
	c1->counts[DMU_PC_NO_DAEMON] = 3;
	c0->st[DMU_PS_BACKEND].slots[0] = 2;	/* a stage under 1 us counts in slot 0 */
	c1->st[DMU_PS_BACKEND].slots[0] = 5;
	c0->sum_ns[DMU_PS_REPLY] = 1ULL << 40;
	c1->sum_ns[DMU_PS_REPLY] = 1ULL << 40;
	dmu_percpu_sum(&pc, &sum);
	CHECK(sum.counts[DMU_PC_OBSERVED] == 1ULL << 32, "observed %llu",
	      (unsigned long long)sum.counts[DMU_PC_OBSERVED]);
	CHECK(sum.counts[DMU_PC_NO_DAEMON] == 3 && sum.counts[DMU_PC_PARTIAL] == 0, "no_daemon, partial");
	CHECK(dmu_hist_total(sum.st[DMU_PS_BACKEND].slots, DMU_MAX_SLOTS) == 7, "backend count");
	CHECK(sum.sum_ns[DMU_PS_REPLY] == 1ULL << 41, "reply sum_ns");
	dmu_percpu_free(&pc);
}

TEST(usdt_names)
{
	static const char *const want[] = { "queue", "handoff", "pickup", "backend", "reply", "total" };
	int i;

	for (i = 0; i < DMU_NR_PSTAGES; i++)
		CHECK(!strcmp(dmu_pstage_names[i], want[i]), "stage %d: %s", i, dmu_pstage_names[i]);
	CHECK(!strcmp(dmu_usdt_probe_names[DMU_USDT_RECEIVED], "request_received") &&
	      !strcmp(dmu_usdt_probe_names[DMU_USDT_SUBMITTED], "backend_submitted") &&
	      !strcmp(dmu_usdt_probe_names[DMU_USDT_DONE], "backend_done") &&
	      !strcmp(dmu_usdt_probe_names[DMU_USDT_REPLY], "reply_sent"), "probe names (lib/README.md)");
	CHECK(!strcmp(dmu_pcount_names[DMU_PC_OBSERVED], "observed") &&
	      !strcmp(dmu_pcount_names[DMU_PC_MISORDERED], "misordered"), "count names");
}

#define LAT "../../../bpf/dmuser-lat"
#define LAT_PAGE "../../../bpf/dmuser-lat.8"

/* The output of cmd (a shell command), malloc'd; NULL on failure. */
static char *capture(const char *cmd)
{
	char *text = NULL;
	size_t len = 0, n;
	char buf[4096];
	FILE *p = popen(cmd, "r"), *out;

	if (!p)
		return NULL;
	out = open_memstream(&text, &len);
	while (out && (n = fread(buf, 1, sizeof(buf), p)) > 0)
		fwrite(buf, 1, n, out);
	if (out)
		fclose(out);
	pclose(p);
	return text;
}

/* dmuser-lat(8) renders without warnings and names every long option of --help. */
TEST(usdt_man_page_documents_every_option)
{
	char *warnings, *text, *help;
	const char *p;
	int flags = 0;

	if (access(LAT, X_OK))
		SKIP("%s not built (make -C bpf)", LAT);
	if (system("command -v man >/dev/null && command -v col >/dev/null"))
		SKIP("man or col not installed");
	warnings = capture("MANWIDTH=80 man --warnings -l " LAT_PAGE " 2>&1 >/dev/null");
	text = capture("MANWIDTH=200 man -l " LAT_PAGE " 2>/dev/null | col -b");
	help = capture(LAT " --help");
	if (!warnings || !text || !help) {
		CHECK(0, "cannot run man or %s", LAT);
		goto out;
	}
	CHECK(!*warnings, "warnings: %s", warnings);
	/* every "--word" after a space: the options, and their uses in the text */
	for (p = help; (p = strstr(p, " --")); ) {
		char flag[64];
		size_t n;

		p++;
		n = strspn(p + 2, "abcdefghijklmnopqrstuvwxyz-") + 2;
		if (n > 2 && n < sizeof(flag)) {
			memcpy(flag, p, n);
			flag[n] = '\0';
			/* argp's own */
			if (strcmp(flag, "--usage") && strcmp(flag, "--version")) {
				flags++;
				CHECK(strstr(text, flag) != NULL, "dmuser-lat(8) does not mention %s", flag);
			}
		}
		p += n;
	}
	/* --binary, --pid, --stage, --json, ... (hidden ones are not in --help) */
	CHECK(flags >= 14, "%d long options found in --help", flags);
out:
	free(warnings);
	free(text);
	free(help);
}
