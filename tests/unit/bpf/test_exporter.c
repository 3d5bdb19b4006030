// SPDX-License-Identifier: GPL-2.0
/*
 * Host unit tests of bpf/exporter_render.c: a made-up scrape of the
 * dmuser_lat maps split into entries, and their Prometheus and JSON
 * renderings; a record read as two CPUs' copies, summed as a scrape does.
 * Writes the Prometheus text to $1 for `promtool check metrics` and
 * prom-check.py.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/dm-user.h>

#include "dmuser-exporter.h"
#include "trace_helpers.h"
#include "check.h"


#define DEV_A dmu_mkdev(254, 0)
#define DEV_B dmu_mkdev(254, 3)

static void fake_name(__u32 dev, char *buf, size_t len)
{
	if (dev == DEV_A)
		snprintf(buf, len, "dmu-a");
	else
		snprintf(buf, len, "we\"ird\\name");	/* label escaping */
}

#define NRECS 4
static struct dmu_exp_rec recs[NRECS];
static struct dmu_exp_hist lat[NRECS * DMU_NR_STAGES], qd[NRECS * DMU_NR_QD];
static struct dmu_exp_stat st[NRECS];
static struct dmu_exp_dev devs[4];

/* A scrape of dev_recs: one record per (dev, op), split as the exporter does. */
static void make(struct dmu_exp_snapshot *s)
{
	struct dmu_lat_rec *r;

	memset(recs, 0, sizeof(recs));
	memset(lat, 0, sizeof(lat));
	memset(qd, 0, sizeof(qd));
	memset(st, 0, sizeof(st));
	/* given in no particular order: prepare() sorts */
	recs[0].key = (struct dmu_op_key){ DEV_B, DM_USER_REQ_MAP_READ };
	r = &recs[0].rec;
	r->st = (struct dmu_op_stats){ .ios = 7, .bytes = 7 * 4096 };
	r->lat[DMU_STAGE_TOTAL].slots[2] = 7;
	r->lat[DMU_STAGE_TOTAL].sum = 7 * 5;

	recs[1].key = (struct dmu_op_key){ DEV_A, DM_USER_REQ_MAP_WRITE };
	r = &recs[1].rec;
	r->st = (struct dmu_op_stats){ .ios = 10, .bytes = 10 * 8192, .errors = 2 };
	/* slot 39 is overflow */
	r->lat[DMU_STAGE_DAEMON].slots[10] = 9;
	r->lat[DMU_STAGE_DAEMON].slots[DMU_MAX_SLOTS - 1] = 1;
	r->lat[DMU_STAGE_DAEMON].sum = 9 * 1500 + 1234567890123ULL;
	/* queue depth of DEV_A: read and write histograms are summed */
	r->qd[DMU_QD_QUEUED].slots[2] = 10;	/* 4..7 */
	r->qd[DMU_QD_QUEUED].sum = 50;

	/* a record that has nothing yet (only a rejected op would leave none of
	 * these, but a scrape may catch a record just created): no entries */
	recs[2].key = (struct dmu_op_key){ DEV_B, DM_USER_REQ_MAP_FLUSH };

	recs[3].key = (struct dmu_op_key){ DEV_A, DM_USER_REQ_MAP_READ };
	r = &recs[3].rec;
	r->st = (struct dmu_op_stats){ .ios = 5, .bytes = 5 * 4096, .errors = 3 };
	r->st.ends[DMU_END_TIMEOUT] = 3;
	/* DEV_A read total: 2 at 0-1 us, 3 at [64, 128) us */
	r->lat[DMU_STAGE_TOTAL].slots[0] = 2;
	r->lat[DMU_STAGE_TOTAL].slots[6] = 3;
	r->lat[DMU_STAGE_TOTAL].sum = 2 + 3 * 100;
	r->lat[DMU_STAGE_QUEUE].slots[3] = 5;
	r->lat[DMU_STAGE_QUEUE].sum = 5 * 9;
	r->qd[DMU_QD_QUEUED].slots[0] = 5;	/* 0..1 */
	r->qd[DMU_QD_QUEUED].sum = 5;
	r->qd[DMU_QD_IN_FLIGHT].slots[1] = 5;
	r->qd[DMU_QD_IN_FLIGHT].sum = 12;

	*s = (struct dmu_exp_snapshot){
		.version = "0.1", .attach = "tp_btf", .uptime_seconds = 12.5,
		.lat = lat, .qd = qd, .st = st,
	};
	dmu_exp_split(s, recs, NRECS);
	dmu_exp_prepare(s, devs, 4, fake_name);
}

static char *render_prom(const struct dmu_exp_snapshot *s)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);

	CHECK(dmu_exp_render_prometheus(s, f) == 0, "render");
	fclose(f);
	return text;
}

static void has(const char *text, const char *line)
{
	CHECK(strstr(text, line) != NULL, "missing line: %s", line);
}

static void test_prepare(void)
{
	struct dmu_exp_snapshot s;

	make(&s);
	/* only what has samples: 4 stage histograms, 3 depth ones, 3 ops */
	CHECK(s.nlat == 4 && s.nqd == 3 && s.nst == 3, "split %d %d %d", s.nlat, s.nqd, s.nst);
	CHECK(s.lat[2].key.dev == DEV_A && s.lat[2].key.op == DM_USER_REQ_MAP_WRITE &&
	      s.lat[2].key.kind == DMU_STAGE_DAEMON && s.lat[2].hist.slots[10] == 9,
	      "split key and histogram");
	CHECK(s.ndevs == 2 && s.devs[0].dev == DEV_A && s.devs[1].dev == DEV_B,
	      "devs %d", s.ndevs);
	CHECK(!strcmp(s.devs[0].name, "dmu-a"), "name %s", s.devs[0].name);
	CHECK(s.st[0].key.dev == DEV_A && s.st[0].key.op == DM_USER_REQ_MAP_READ, "sorted stats");
	CHECK(s.lat[0].key.kind == DMU_STAGE_QUEUE && s.lat[1].key.kind == DMU_STAGE_TOTAL,
	      "sorted hists");
}

static void test_prometheus(const char *path)
{
	struct dmu_exp_snapshot s;
	char *t;

	make(&s);
	t = render_prom(&s);
	has(t, "# TYPE dmuser_stage_latency_seconds histogram\n");
	has(t, "# TYPE dmuser_kernel_requests_total counter\n");
	has(t, "dmuser_kernel_requests_total{device=\"dmu-a\",op=\"read\"} 5\n");
	has(t, "dmuser_kernel_requests_total{device=\"dmu-a\",op=\"write\"} 10\n");
	has(t, "dmuser_kernel_requests_total{device=\"we\\\"ird\\\\name\",op=\"read\"} 7\n");
	has(t, "dmuser_kernel_request_bytes_total{device=\"dmu-a\",op=\"write\"} 81920\n");
	has(t, "dmuser_errors_total{device=\"dmu-a\",op=\"read\"} 3\n");
	has(t, "dmuser_timeouts_total{device=\"dmu-a\",op=\"read\"} 3\n");
	has(t, "dmuser_timeouts_total{device=\"dmu-a\",op=\"write\"} 0\n");
	/* slot 0 (0 and 1 us) is "at most 2 us"; slot 6 [64, 128) is at most 128 us */
	has(t, "dmuser_stage_latency_seconds_bucket{device=\"dmu-a\",op=\"read\",stage=\"total\",le=\"2e-06\"} 2\n");
	has(t, "dmuser_stage_latency_seconds_bucket{device=\"dmu-a\",op=\"read\",stage=\"total\",le=\"6.4e-05\"} 2\n");
	has(t, "dmuser_stage_latency_seconds_bucket{device=\"dmu-a\",op=\"read\",stage=\"total\",le=\"0.000128\"} 5\n");
	has(t, "dmuser_stage_latency_seconds_bucket{device=\"dmu-a\",op=\"read\",stage=\"total\",le=\"+Inf\"} 5\n");
	has(t, "dmuser_stage_latency_seconds_sum{device=\"dmu-a\",op=\"read\",stage=\"total\"} 0.000302\n");
	has(t, "dmuser_stage_latency_seconds_count{device=\"dmu-a\",op=\"read\",stage=\"total\"} 5\n");
	/* the last slot is the overflow: only in +Inf, which equals _count */
	has(t, "dmuser_stage_latency_seconds_bucket{device=\"dmu-a\",op=\"write\",stage=\"daemon\",le=\"549755.813888\"} 9\n");
	has(t, "dmuser_stage_latency_seconds_bucket{device=\"dmu-a\",op=\"write\",stage=\"daemon\",le=\"+Inf\"} 10\n");
	has(t, "dmuser_stage_latency_seconds_sum{device=\"dmu-a\",op=\"write\",stage=\"daemon\"} 1234567.903623\n");
	has(t, "dmuser_stage_latency_seconds_count{device=\"dmu-a\",op=\"write\",stage=\"daemon\"} 10\n");
	/* depths are integers: slot i is at most 2^(i+1) - 1; ops summed per device */
	has(t, "# TYPE dmuser_queue_depth histogram\n");
	has(t, "dmuser_queue_depth_bucket{device=\"dmu-a\",le=\"1\"} 5\n");
	has(t, "dmuser_queue_depth_bucket{device=\"dmu-a\",le=\"3\"} 5\n");
	has(t, "dmuser_queue_depth_bucket{device=\"dmu-a\",le=\"7\"} 15\n");
	has(t, "dmuser_queue_depth_sum{device=\"dmu-a\"} 55\n");
	has(t, "dmuser_queue_depth_count{device=\"dmu-a\"} 15\n");
	has(t, "dmuser_in_flight_bucket{device=\"dmu-a\",le=\"3\"} 5\n");
	has(t, "dmuser_in_flight_sum{device=\"dmu-a\"} 12\n");
	CHECK(strstr(t, "dmuser_queue_depth_count{device=\"we") == NULL, "no depth for a device without samples");
	has(t, "dmuser_exporter_info{version=\"0.1\",attach=\"tp_btf\"} 1\n");

	FILE *f = fopen(path, "w");
	CHECK(f && fputs(t, f) >= 0 && fclose(f) == 0, "write %s", path);
	free(t);

	/* no entries at all: the families are still there, and still valid */
	struct dmu_exp_snapshot empty = { .version = "0.1", .attach = "raw_tp" };
	dmu_exp_prepare(&empty, devs, 4, fake_name);
	t = render_prom(&empty);
	has(t, "# TYPE dmuser_kernel_requests_total counter\n");
	CHECK(strstr(t, "_bucket") == NULL, "no series");
	free(t);
}

static void test_json(void)
{
	struct dmu_exp_snapshot s;
	json_t *doc, *d, *read, *total;

	make(&s);
	doc = dmu_exp_render_json(&s);
	CHECK(doc != NULL, "json");
	CHECK(!strcmp(json_string_value(json_object_get(doc, "attach")), "tp_btf"), "attach");
	CHECK(json_array_size(json_object_get(doc, "devices")) == 2, "two devices");
	d = json_array_get(json_object_get(doc, "devices"), 0);
	CHECK(!strcmp(json_string_value(json_object_get(d, "device")), "dmu-a"), "device name");
	CHECK(!strcmp(json_string_value(json_object_get(d, "dev")), "254:0"), "dev");
	read = json_object_get(json_object_get(d, "ops"), "read");
	CHECK(json_integer_value(json_object_get(read, "requests")) == 5, "requests");
	CHECK(json_integer_value(json_object_get(read, "bytes")) == 5 * 4096, "bytes");
	CHECK(json_integer_value(json_object_get(read, "timeouts")) == 3, "timeouts");
	total = json_object_get(json_object_get(read, "latency_us"), "total");
	CHECK(json_integer_value(json_object_get(total, "count")) == 5, "count");
	CHECK(json_integer_value(json_object_get(total, "sum")) == 302, "sum");
	CHECK(json_array_size(json_object_get(total, "buckets")) == DMU_MAX_SLOTS - 1, "buckets");
	CHECK(json_integer_value(json_object_get(json_array_get(json_object_get(total, "buckets"), 6),
						 "upper")) == 128, "upper");
	CHECK(json_integer_value(json_object_get(json_array_get(json_object_get(total, "buckets"), 6),
						 "count")) == 3, "bucket count");
	CHECK(json_integer_value(json_object_get(json_object_get(d, "queue_depth"), "sum")) == 55,
	      "queue depth sum");
	CHECK(json_integer_value(json_object_get(json_object_get(d, "in_flight"), "count")) == 5,
	      "in flight count");
	/* the second device has no queue-depth samples: empty, not absent */
	d = json_array_get(json_object_get(doc, "devices"), 1);
	CHECK(!strcmp(json_string_value(json_object_get(d, "device")), "we\"ird\\name"), "name 2");
	CHECK(json_integer_value(json_object_get(json_object_get(d, "queue_depth"), "count")) == 0,
	      "empty depth");
	json_decref(doc);
}

/*
 * dev_recs is per-CPU: a scrape sums each record's copies (dmu_map_dump() with
 * a struct dmu_percpu) before the split.  Two CPUs' copies of device A's
 * write record, summed, must render as one record would.
 */
static void test_percpu(void)
{
	struct dmu_exp_snapshot s = {
		.version = "0.1", .attach = "raw_tp", .uptime_seconds = 1,
		.lat = lat, .qd = qd, .st = st,
	};
	struct dmu_lat_rec *c0, *c1;
	struct dmu_percpu pc;
	char *t;

	if (dmu_percpu_init(&pc, 2, sizeof(struct dmu_lat_rec), dmu_lat_rec_sum)) {
		CHECK(0, "init");
		return;
	}
	c0 = pc.buf;
	c1 = (struct dmu_lat_rec *)((char *)pc.buf + pc.stride);
	c0->st = (struct dmu_op_stats){ .ios = 3, .bytes = 3 * 4096 };
	c0->lat[DMU_STAGE_TOTAL].slots[6] = 3;		/* [64, 128) us */
	c0->lat[DMU_STAGE_TOTAL].sum = 300;
	c0->qd[DMU_QD_QUEUED].slots[2] = 3;
	c0->qd[DMU_QD_QUEUED].sum = 15;
	c1->st = (struct dmu_op_stats){ .ios = 4, .bytes = 4 * 4096, .errors = 1 };
	c1->st.ends[DMU_END_TIMEOUT] = 1;
	c1->lat[DMU_STAGE_TOTAL].slots[6] = 1;
	c1->lat[DMU_STAGE_TOTAL].slots[7] = 3;		/* [128, 256) us */
	c1->lat[DMU_STAGE_TOTAL].sum = 100 + 3 * 200;
	c1->qd[DMU_QD_QUEUED].slots[2] = 4;
	c1->qd[DMU_QD_QUEUED].sum = 20;

	memset(recs, 0xee, sizeof(recs[0]));	/* dmu_percpu_sum() zeroes it */
	recs[0].key = (struct dmu_op_key){ DEV_A, DM_USER_REQ_MAP_WRITE };
	dmu_percpu_sum(&pc, &recs[0].rec);
	dmu_percpu_free(&pc);
	dmu_exp_split(&s, recs, 1);
	dmu_exp_prepare(&s, devs, 4, fake_name);
	CHECK(s.nlat == 1 && s.nqd == 1 && s.nst == 1, "split %d %d %d", s.nlat, s.nqd, s.nst);

	t = render_prom(&s);
	has(t, "dmuser_kernel_requests_total{device=\"dmu-a\",op=\"write\"} 7\n");
	has(t, "dmuser_kernel_request_bytes_total{device=\"dmu-a\",op=\"write\"} 28672\n");
	has(t, "dmuser_errors_total{device=\"dmu-a\",op=\"write\"} 1\n");
	has(t, "dmuser_timeouts_total{device=\"dmu-a\",op=\"write\"} 1\n");
	has(t, "dmuser_stage_latency_seconds_bucket{device=\"dmu-a\",op=\"write\",stage=\"total\",le=\"0.000128\"} 4\n");
	has(t, "dmuser_stage_latency_seconds_bucket{device=\"dmu-a\",op=\"write\",stage=\"total\",le=\"0.000256\"} 7\n");
	has(t, "dmuser_stage_latency_seconds_sum{device=\"dmu-a\",op=\"write\",stage=\"total\"} 0.001000\n");
	has(t, "dmuser_stage_latency_seconds_count{device=\"dmu-a\",op=\"write\",stage=\"total\"} 7\n");
	has(t, "dmuser_queue_depth_bucket{device=\"dmu-a\",le=\"7\"} 7\n");
	has(t, "dmuser_queue_depth_sum{device=\"dmu-a\"} 35\n");
	has(t, "dmuser_in_flight_count{device=\"dmu-a\"} 0\n");
	free(t);
}

int main(int argc, char **argv)
{
	test_prepare();
	test_prometheus(argc > 1 ? argv[1] : "/dev/null");
	test_json();
	test_percpu();
	printf("%d passed, %d failed\n", passed, failed);
	return failed ? 1 : 0;
}
