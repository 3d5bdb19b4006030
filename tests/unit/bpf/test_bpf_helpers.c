// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Host unit tests of bpf/trace_helpers.c: log2 slot bounds, percentile
 * interpolation, histogram printing, tracefs format checks, names, the sums
 * of per-CPU map values.
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
#include "dmuser-lat.h"
#include "dmuser-top.h"
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

TEST(bpf_slots)
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
	/* the daemon-delay test's arithmetic: 4 ms in usecs is slot 11
	 * ([2048, 4095]) only while the overhead stays under 96 us; any delay
	 * in [4096, 8191] us is slot 12; in msecs, [4, 7] ms is slot 2. */
	CHECK(slot_of(4000) == 11 && slot_of(4096) == 12 && slot_of(8191) == 12,
	      "usecs slots of 4000/4096/8191");
	CHECK(slot_of(4) == 2 && slot_of(7) == 2 && slot_of(8) == 3, "msecs slots");
}

TEST(bpf_percentile)
{
	__u64 h[DMU_MAX_SLOTS] = { 0 };
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

TEST(bpf_print)
{
	__u64 h[DMU_MAX_SLOTS] = { 0 };
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

	{
		json_t *j = dmu_json_log2_hist(h, DMU_MAX_SLOTS);
		char *text = json_dumps(j, JSON_COMPACT);

		CHECK(text && !strcmp(text, "[{\"lo\":0,\"hi\":1,\"count\":0},{\"lo\":2,\"hi\":3,\"count\":2},"
				   "{\"lo\":4,\"hi\":7,\"count\":0},{\"lo\":8,\"hi\":15,\"count\":8}]"),
		      "json %s", text);
		free(text);
		json_decref(j);
	}
	/* counts past 2^32 stay whole */
	h[3] = 6000000000ULL;
	{
		json_t *j = dmu_json_log2_hist(h, DMU_MAX_SLOTS);

		CHECK(json_integer_value(json_object_get(json_array_get(j, 3), "count")) == 6000000000LL,
		      "count past 2^32");
		json_decref(j);
	}
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

TEST(bpf_formats)
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

TEST(bpf_names)
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

/* A value whose size is not a multiple of 8: the kernel puts its copies 16 bytes apart. */
struct odd {
	__u32 v[3];
};

static void odd_sum(void *sum, const void *val)
{
	struct odd *s = sum;
	const struct odd *v = val;
	int i;

	for (i = 0; i < 3; i++)
		s->v[i] += v->v[i];
}

TEST(bpf_percpu_stride)
{
	struct dmu_percpu pc;
	struct odd out, cpu[3] = { { { 1, 2, 3 } }, { { 10, 20, 30 } }, { { 100, 200, 300 } } };
	char *buf;
	size_t i;

	CHECK(dmu_percpu_init(&pc, -ENOENT, sizeof(out), odd_sum) == -ENOENT && !pc.buf,
	      "libbpf_num_possible_cpus()'s error is returned");
	if (dmu_percpu_init(&pc, 3, sizeof(out), odd_sum)) {
		CHECK(0, "init");
		return;
	}
	CHECK(pc.stride == 16, "stride %zu for a 12-byte value", pc.stride);
	buf = pc.buf;
	memset(buf, 0xff, 3 * pc.stride);	/* the padding after each copy is not summed */
	for (i = 0; i < 3; i++)
		memcpy(buf + 16 * i, &cpu[i], sizeof(cpu[i]));
	memset(&out, 0xee, sizeof(out));	/* zeroed before the sum */
	dmu_percpu_sum(&pc, &out);
	CHECK(out.v[0] == 111 && out.v[1] == 222 && out.v[2] == 333,
	      "sum of 3 copies: %u %u %u", out.v[0], out.v[1], out.v[2]);
	dmu_percpu_free(&pc);
	CHECK(!pc.buf, "freed");
}

/*
 * The maps' values are made of __u32 slots and __u64 fields, without
 * padding.  With CPU 0's copy all 0x01 bytes and CPU 1's all 0x02, whatever
 * the field, the sum is all 0x03 bytes (no carries): a field the sum
 * function forgets stays 0 and fails here.
 */
static void check_every_byte(const char *what, size_t size, dmu_sum_fn fn)
{
	struct dmu_percpu pc;
	unsigned char *out;
	size_t i;

	if (dmu_percpu_init(&pc, 2, size, fn)) {
		CHECK(0, "%s: init", what);
		return;
	}
	CHECK(pc.stride == size, "%s: stride %zu, size %zu", what, pc.stride, size);
	memset(pc.buf, 0x01, size);
	memset((char *)pc.buf + pc.stride, 0x02, size);
	out = malloc(size);
	dmu_percpu_sum(&pc, out);
	for (i = 0; i < size && out[i] == 3; i++)
		;
	CHECK(i == size, "%s: byte %zu of %zu summed to %#x, not 0x03", what, i, size,
	      i < size ? out[i] : 0);
	free(out);
	dmu_percpu_free(&pc);
}

TEST(bpf_percpu_lat)
{
	struct dmu_lat_rec *c0, *c1, sum;
	struct dmu_percpu pc;

	check_every_byte("dmu_lat_rec", sizeof(struct dmu_lat_rec), dmu_lat_rec_sum);
	if (dmu_percpu_init(&pc, 2, sizeof(sum), dmu_lat_rec_sum)) {
		CHECK(0, "init");
		return;
	}
	c0 = pc.buf;
	c1 = (struct dmu_lat_rec *)((char *)pc.buf + pc.stride);
	/* __u64 fields carry past 32 bits; __u32 slots add up slot by slot */
	c0->st.ios = 0xffffffffULL;
	c1->st.ios = 1;
	c0->st.bytes = 3ULL << 32;
	c1->st.bytes = 4096;
	c1->st.errors = 2;
	c0->st.ends[DMU_END_TIMEOUT] = 5;
	c1->st.ends[DMU_END_TIMEOUT] = 6;
	c0->lat[DMU_STAGE_TOTAL].slots[6] = 3;
	c1->lat[DMU_STAGE_TOTAL].slots[6] = 4;
	c1->lat[DMU_STAGE_TOTAL].slots[7] = 1;
	c0->lat[DMU_STAGE_TOTAL].sum = 1ULL << 40;
	c1->lat[DMU_STAGE_TOTAL].sum = 1ULL << 40;
	c0->qd[DMU_QD_IN_FLIGHT].slots[DMU_MAX_SLOTS - 1] = 7;
	c1->qd[DMU_QD_IN_FLIGHT].slots[DMU_MAX_SLOTS - 1] = 8;
	dmu_percpu_sum(&pc, &sum);
	CHECK(sum.st.ios == 1ULL << 32, "ios %llu", (unsigned long long)sum.st.ios);
	CHECK(sum.st.bytes == (3ULL << 32) + 4096, "bytes %llu", (unsigned long long)sum.st.bytes);
	CHECK(sum.st.errors == 2 && sum.st.ends[DMU_END_TIMEOUT] == 11 &&
	      sum.st.ends[DMU_END_REPLY] == 0, "errors, ends");
	CHECK(sum.lat[DMU_STAGE_TOTAL].slots[6] == 7 && sum.lat[DMU_STAGE_TOTAL].slots[7] == 1 &&
	      sum.lat[DMU_STAGE_TOTAL].slots[5] == 0, "total slots");
	CHECK(sum.lat[DMU_STAGE_TOTAL].sum == 1ULL << 41, "total sum %llu",
	      (unsigned long long)sum.lat[DMU_STAGE_TOTAL].sum);
	CHECK(sum.qd[DMU_QD_IN_FLIGHT].slots[DMU_MAX_SLOTS - 1] == 15, "last in-flight slot");
	CHECK(dmu_hist_total(sum.lat[DMU_STAGE_QUEUE].slots, DMU_MAX_SLOTS) == 0 &&
	      sum.lat[DMU_STAGE_QUEUE].sum == 0, "an empty histogram stays empty");
	dmu_percpu_free(&pc);
}

TEST(bpf_percpu_top)
{
	struct dmu_top_dev *c0, *c1, sum;
	struct dmu_percpu pc;

	check_every_byte("dmu_top_dev", sizeof(struct dmu_top_dev), dmu_top_dev_sum);
	if (dmu_percpu_init(&pc, 2, sizeof(sum), dmu_top_dev_sum)) {
		CHECK(0, "init");
		return;
	}
	c0 = pc.buf;
	c1 = (struct dmu_top_dev *)((char *)pc.buf + pc.stride);
	c0->ios[DMU_TOP_WRITE] = 10;
	c1->ios[DMU_TOP_WRITE] = 20;
	c0->bytes[DMU_TOP_OTHER] = 1ULL << 32;
	c1->bytes[DMU_TOP_OTHER] = (1ULL << 32) + 5;
	c0->errors = 1;
	c1->timeouts = 2;
	c0->hist[DMU_STAGE_DAEMON].slots[0] = 1;
	c1->hist[DMU_STAGE_DAEMON].slots[0] = 2;
	c1->hist[DMU_STAGE_DAEMON].sum = 3;
	dmu_percpu_sum(&pc, &sum);
	CHECK(sum.ios[DMU_TOP_WRITE] == 30 && sum.ios[DMU_TOP_READ] == 0, "ios");
	CHECK(sum.bytes[DMU_TOP_OTHER] == (2ULL << 32) + 5, "bytes %llu",
	      (unsigned long long)sum.bytes[DMU_TOP_OTHER]);
	CHECK(sum.errors == 1 && sum.timeouts == 2, "errors, timeouts");
	CHECK(sum.hist[DMU_STAGE_DAEMON].slots[0] == 3 && sum.hist[DMU_STAGE_DAEMON].sum == 3,
	      "daemon histogram");
	dmu_percpu_free(&pc);
}
