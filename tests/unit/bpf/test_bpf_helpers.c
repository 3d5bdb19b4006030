// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Host unit tests of bpf/trace_helpers.c: log2 slot bounds, percentile
 * interpolation, histogram printing, tracefs format checks, names.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <linux/dm-user.h>

#include "dmuser.h"
#include "trace_helpers.h"
#include "check.h"


#define NEAR(a, b) (fabs((a) - (b)) < 1e-6)

/* The BPF side's slot function (dmuser.bpf.h), for values in userspace. */
static int slot_of(unsigned long long v)
{
	int s = 0;

	while (v > 1) {
		v >>= 1;
		s++;
	}
	return s;
}

static void test_slots(void)
{
	unsigned long long lo, hi;
	unsigned long long v;
	int s;

	dmu_slot_bounds(0, &lo, &hi);
	CHECK(lo == 0 && hi == 1, "slot 0 = [%llu, %llu]", lo, hi);
	dmu_slot_bounds(1, &lo, &hi);
	CHECK(lo == 2 && hi == 3, "slot 1 = [%llu, %llu]", lo, hi);
	dmu_slot_bounds(12, &lo, &hi);
	CHECK(lo == 4096 && hi == 8191, "slot 12 = [%llu, %llu]", lo, hi);
	/* every value lands in the slot whose bounds hold it */
	for (v = 0; v < 100000; v += 7) {
		s = slot_of(v);
		dmu_slot_bounds(s, &lo, &hi);
		if (v < lo || v > hi) {
			CHECK(0, "value %llu slot %d [%llu, %llu]", v, s, lo, hi);
			return;
		}
	}
	passed++;
	/* the daemon-delay test's arithmetic: 4 ms in usecs is slot 11
	 * ([2048, 4095]) only while the overhead stays under 96 us; any delay
	 * in [4096, 8191] us is slot 12; in msecs, [4, 7] ms is slot 2. */
	CHECK(slot_of(4000) == 11 && slot_of(4096) == 12 && slot_of(8191) == 12,
	      "usecs slots of 4000/4096/8191");
	CHECK(slot_of(4) == 2 && slot_of(7) == 2 && slot_of(8) == 3, "msecs slots");
}

static void test_percentile(void)
{
	unsigned int h[DMU_MAX_SLOTS] = { 0 };
	double p;

	CHECK(dmu_hist_percentile(h, DMU_MAX_SLOTS, 0.5) < 0, "empty");
	CHECK(dmu_hist_mode(h, DMU_MAX_SLOTS) == -1, "empty mode");

	/* 100 values in [4096, 8192): uniform inside the slot */
	h[12] = 100;
	p = dmu_hist_percentile(h, DMU_MAX_SLOTS, 0.5);
	CHECK(NEAR(p, 4096 + 0.5 * 4096), "p50 = %f", p);
	p = dmu_hist_percentile(h, DMU_MAX_SLOTS, 0.99);
	CHECK(NEAR(p, 4096 + 0.99 * 4096), "p99 = %f", p);
	p = dmu_hist_percentile(h, DMU_MAX_SLOTS, 1.0);
	CHECK(NEAR(p, 8192), "p100 = %f", p);
	CHECK(dmu_hist_mode(h, DMU_MAX_SLOTS) == 12, "mode");

	/* 90 in slot 3 [8, 16), 10 in slot 10 [1024, 2048) */
	memset(h, 0, sizeof(h));
	h[3] = 90;
	h[10] = 10;
	p = dmu_hist_percentile(h, DMU_MAX_SLOTS, 0.5);
	CHECK(NEAR(p, 8 + (50.0 / 90) * 8), "p50 = %f", p);
	p = dmu_hist_percentile(h, DMU_MAX_SLOTS, 0.9);
	CHECK(NEAR(p, 16), "p90 = %f (top of slot 3)", p);
	p = dmu_hist_percentile(h, DMU_MAX_SLOTS, 0.99);
	CHECK(NEAR(p, 1024 + (9.0 / 10) * 1024), "p99 = %f", p);
	CHECK(dmu_hist_total(h, DMU_MAX_SLOTS) == 100, "total");

	/* slot 0 spans [0, 2) */
	memset(h, 0, sizeof(h));
	h[0] = 4;
	p = dmu_hist_percentile(h, DMU_MAX_SLOTS, 0.5);
	CHECK(NEAR(p, 1.0), "slot 0 p50 = %f", p);

	/* the largest slot */
	memset(h, 0, sizeof(h));
	h[DMU_MAX_SLOTS - 1] = 1;
	p = dmu_hist_percentile(h, DMU_MAX_SLOTS, 0.5);
	CHECK(p >= (double)(1ULL << (DMU_MAX_SLOTS - 1)), "last slot p50 = %f", p);

	/* percentiles are monotonic */
	memset(h, 0, sizeof(h));
	h[2] = 3; h[5] = 7; h[6] = 1; h[20] = 2;
	{
		double prev = -1, q;
		bool mono = true;

		for (q = 0.01; q <= 1.0; q += 0.01) {
			p = dmu_hist_percentile(h, DMU_MAX_SLOTS, q);
			if (p < prev)
				mono = false;
			prev = p;
		}
		CHECK(mono, "monotonic");
	}
}

static void test_print(void)
{
	unsigned int h[DMU_MAX_SLOTS] = { 0 };
	char *buf = NULL;
	size_t len = 0;
	FILE *f;

	h[1] = 2;
	h[3] = 8;
	f = open_memstream(&buf, &len);
	dmu_print_log2_hist(f, h, DMU_MAX_SLOTS, "usecs");
	fclose(f);
	CHECK(strstr(buf, "     usecs               : count    distribution\n") == buf,
	      "header:\n%s", buf);
	CHECK(strstr(buf, "         0 -> 1          : 0        |") != NULL, "slot 0:\n%s", buf);
	CHECK(strstr(buf, "         2 -> 3          : 2        |**********") != NULL, "slot 1:\n%s", buf);
	CHECK(strstr(buf, "         8 -> 15         : 8        |****************************************|") != NULL,
	      "slot 3:\n%s", buf);
	CHECK(strstr(buf, "16 ->") == NULL, "stops at the last non-empty slot:\n%s", buf);
	free(buf);

	buf = NULL;
	f = open_memstream(&buf, &len);
	dmu_json_log2_hist(f, h, DMU_MAX_SLOTS);
	fclose(f);
	CHECK(!strcmp(buf, "[{\"lo\":0,\"hi\":1,\"count\":0},{\"lo\":2,\"hi\":3,\"count\":2},"
			   "{\"lo\":4,\"hi\":7,\"count\":0},{\"lo\":8,\"hi\":15,\"count\":8}]"),
	      "json %s", buf);
	free(buf);

	buf = NULL;
	f = open_memstream(&buf, &len);
	dmu_json_str(f, "a\"b\\c\n");
	fclose(f);
	CHECK(!strcmp(buf, "\"a\\\"b\\\\c\\u000a\""), "json str %s", buf);
	free(buf);
}

/*
 * Writes the format files of a 6.x kernel for our events, optionally shifted;
 * old: dm_user_complete as before target version 1.3.0, without the stage
 * latencies.
 */
static void write_formats(const char *dir, int shift_in_flight, bool old)
{
	static const char *const fmt[] = {
		"dm_user_map",
		"\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n"
		"\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;\n"
		"\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;\n"
		"\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;\n\n"
		"\tfield:dev_t dev;\toffset:8;\tsize:4;\tsigned:0;\n"
		"\tfield:u64 seq;\toffset:16;\tsize:8;\tsigned:0;\n"
		"\tfield:u32 op;\toffset:24;\tsize:4;\tsigned:0;\n"
		"\tfield:u64 flags;\toffset:32;\tsize:8;\tsigned:0;\n"
		"\tfield:u64 sector;\toffset:40;\tsize:8;\tsigned:0;\n"
		"\tfield:u32 bytes;\toffset:48;\tsize:4;\tsigned:0;\n"
		"\tfield:u32 queued;\toffset:52;\tsize:4;\tsigned:0;\n"
		"\tfield:u32 in_flight;\toffset:%d;\tsize:4;\tsigned:0;\n",
		"dm_user_read",
		"\tfield:dev_t dev;\toffset:8;\tsize:4;\tsigned:0;\n"
		"\tfield:u64 seq;\toffset:16;\tsize:8;\tsigned:0;\n"
		"\tfield:u32 op;\toffset:24;\tsize:4;\tsigned:0;\n"
		"\tfield:u32 channel;\toffset:28;\tsize:4;\tsigned:0;\n",
		"dm_user_write",
		"\tfield:dev_t dev;\toffset:8;\tsize:4;\tsigned:0;\n"
		"\tfield:u64 seq;\toffset:16;\tsize:8;\tsigned:0;\n"
		"\tfield:u32 status;\toffset:24;\tsize:4;\tsigned:0;\n",
		"dm_user_complete",
		"\tfield:dev_t dev;\toffset:8;\tsize:4;\tsigned:0;\n"
		"\tfield:u64 seq;\toffset:16;\tsize:8;\tsigned:0;\n"
		"\tfield:u32 op;\toffset:24;\tsize:4;\tsigned:0;\n"
		"\tfield:u32 bytes;\toffset:28;\tsize:4;\tsigned:0;\n"
		"\tfield:int error;\toffset:32;\tsize:4;\tsigned:1;\n"
		"\tfield:u32 how;\toffset:36;\tsize:4;\tsigned:0;\n",
	};
	static const char v13[] =
		"\tfield:u64 queue_ns;\toffset:40;\tsize:8;\tsigned:0;\n"
		"\tfield:u64 daemon_ns;\toffset:48;\tsize:8;\tsigned:0;\n"
		"\tfield:u64 total_ns;\toffset:56;\tsize:8;\tsigned:0;\n";
	char path[512];
	int i;

	for (i = 0; i < 8; i += 2) {
		FILE *f;

		snprintf(path, sizeof(path), "%s/%s", dir, fmt[i]);
		mkdir(path, 0755);
		snprintf(path, sizeof(path), "%s/%s/format", dir, fmt[i]);
		f = fopen(path, "w");
		fprintf(f, "name: %s\nID: 1234\nformat:\n", fmt[i]);
		fprintf(f, fmt[i + 1], 56 + shift_in_flight);
		if (!strcmp(fmt[i], "dm_user_complete") && !old)
			fputs(v13, f);
		fprintf(f, "\nprint fmt: \"dev %%d:%%d\"\n");
		fclose(f);
	}
}

static void test_formats(void)
{
	char dir[] = "/tmp/dmu-bpf-test.XXXXXX";
	char why[512] = "";
	const char *missing;
	char cmd[600];

	if (!mkdtemp(dir)) {
		CHECK(0, "mkdtemp: %s", strerror(errno));
		return;
	}
	write_formats(dir, 0, false);
	CHECK(dmu_probe_tracepoint(dir, why, sizeof(why)), "layout accepted: %s", why);
	missing = NULL;
	CHECK(dmu_probe_complete_fields(dir, &missing) == 1 && !missing, "1.3.0 fields found");
	write_formats(dir, 4, false);
	CHECK(!dmu_probe_tracepoint(dir, why, sizeof(why)) && strstr(why, "in_flight at offset 60"),
	      "shifted layout rejected: %s", why);
	/* a module older than 1.3.0 */
	write_formats(dir, 0, true);
	CHECK(!dmu_probe_tracepoint(dir, why, sizeof(why)) && strstr(why, "no field queue_ns"),
	      "old layout rejected: %s", why);
	CHECK(dmu_probe_complete_fields(dir, &missing) == 0 && missing && !strcmp(missing, "total_ns"),
	      "old module: missing %s", missing ? missing : "(none)");
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	CHECK(system(cmd) == 0, "cleanup");
	CHECK(!dmu_probe_tracepoint("/nonexistent", why, sizeof(why)), "missing dir");
	CHECK(dmu_probe_complete_fields("/nonexistent", &missing) == -ENOENT, "no format file");
}

static void test_names(void)
{
	enum dmu_attach_mode m;
	unsigned int op;
	char buf[16];
	__u32 dev;

	CHECK(!dmu_op_parse("read", &op) && op == DM_USER_REQ_MAP_READ, "read");
	CHECK(!dmu_op_parse("WRITE", &op) && op == DM_USER_REQ_MAP_WRITE, "write");
	CHECK(!dmu_op_parse("write_zeroes", &op) && op == DM_USER_REQ_MAP_WRITE_ZEROES, "wz");
	CHECK(!dmu_op_parse("2", &op) && op == 2, "number");
	CHECK(dmu_op_parse("bogus", &op) == -EINVAL, "bogus");
	CHECK(!strcmp(dmu_op_name(DM_USER_REQ_MAP_FLUSH, buf, sizeof(buf)), "flush"), "flush");
	CHECK(!strcmp(dmu_op_name(99, buf, sizeof(buf)), "op99"), "op99");

	CHECK(!dmu_attach_parse("raw_tp", &m) && m == DMU_ATTACH_RAW_TP, "raw_tp");
	CHECK(!dmu_attach_parse("tracepoint", &m) && m == DMU_ATTACH_TRACEPOINT, "tracepoint");
	CHECK(!dmu_attach_parse("tp_btf", &m) && m == DMU_ATTACH_TP_BTF, "tp_btf");
	CHECK(dmu_attach_parse("kprobe", &m) == -EINVAL, "kprobe");

	dev = dmu_mkdev(254, 3);
	CHECK(dev == ((254u << 20) | 3) && dmu_major(dev) == 254 && dmu_minor(dev) == 3, "mkdev");
	CHECK(!dmu_dev_resolve("254:7", &dev) && dev == dmu_mkdev(254, 7), "MAJ:MIN");
	CHECK(dmu_dev_resolve("no-such-dm-device-here", &dev) == -ENOENT, "unknown name");
}

int main(void)
{
	test_slots();
	test_percentile();
	test_print();
	test_formats();
	test_names();
	printf("%d passed, %d failed\n", passed, failed);
	return failed ? 1 : 0;
}
