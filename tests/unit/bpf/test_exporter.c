// SPDX-License-Identifier: GPL-2.0
/*
 * Host unit tests of bpf/exporter_render.c: the Prometheus and JSON
 * renderings of a made-up scrape of the dmuser_lat maps.  Writes the
 * Prometheus text to $1 for `promtool check metrics` and prom-check.py.
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

static struct dmu_exp_hist lat[8], qd[8];
static struct dmu_exp_stat st[4];
static struct dmu_exp_dev devs[4];

static void make(struct dmu_exp_snapshot *s)
{
	memset(lat, 0, sizeof(lat));
	memset(qd, 0, sizeof(qd));
	memset(st, 0, sizeof(st));
	/* given in no particular order: prepare() sorts */
	st[0] = (struct dmu_exp_stat){ { DEV_B, DM_USER_REQ_MAP_READ }, { .ios = 7, .bytes = 7 * 4096 } };
	st[1] = (struct dmu_exp_stat){ { DEV_A, DM_USER_REQ_MAP_WRITE }, { .ios = 10, .bytes = 10 * 8192, .errors = 2 } };
	st[2] = (struct dmu_exp_stat){ { DEV_A, DM_USER_REQ_MAP_READ }, { .ios = 5, .bytes = 5 * 4096, .errors = 3 } };
	st[2].st.ends[DMU_END_TIMEOUT] = 3;
	/* DEV_A read total: 2 at 0-1 us, 3 at [64, 128) us; slot 39 is overflow */
	lat[0].key = (struct dmu_hist_key){ DEV_A, DM_USER_REQ_MAP_READ, DMU_STAGE_TOTAL, 0 };
	lat[0].hist.slots[0] = 2;
	lat[0].hist.slots[6] = 3;
	lat[0].hist.sum = 2 + 3 * 100;
	lat[1].key = (struct dmu_hist_key){ DEV_A, DM_USER_REQ_MAP_READ, DMU_STAGE_QUEUE, 0 };
	lat[1].hist.slots[3] = 5;
	lat[1].hist.sum = 5 * 9;
	lat[2].key = (struct dmu_hist_key){ DEV_A, DM_USER_REQ_MAP_WRITE, DMU_STAGE_DAEMON, 0 };
	lat[2].hist.slots[10] = 9;
	lat[2].hist.slots[DMU_MAX_SLOTS - 1] = 1;
	lat[2].hist.sum = 9 * 1500 + 1234567890123ULL;
	lat[3].key = (struct dmu_hist_key){ DEV_B, DM_USER_REQ_MAP_READ, DMU_STAGE_TOTAL, 0 };
	lat[3].hist.slots[2] = 7;
	lat[3].hist.sum = 7 * 5;
	/* queue depth of DEV_A: read and write histograms are summed */
	qd[0].key = (struct dmu_hist_key){ DEV_A, DM_USER_REQ_MAP_WRITE, DMU_QD_QUEUED, 0 };
	qd[0].hist.slots[2] = 10;	/* 4..7 */
	qd[0].hist.sum = 50;
	qd[1].key = (struct dmu_hist_key){ DEV_A, DM_USER_REQ_MAP_READ, DMU_QD_QUEUED, 0 };
	qd[1].hist.slots[0] = 5;	/* 0..1 */
	qd[1].hist.sum = 5;
	qd[2].key = (struct dmu_hist_key){ DEV_A, DM_USER_REQ_MAP_READ, DMU_QD_IN_FLIGHT, 0 };
	qd[2].hist.slots[1] = 5;
	qd[2].hist.sum = 12;
	*s = (struct dmu_exp_snapshot){
		.version = "0.1", .attach = "tp_btf", .uptime_seconds = 12.5,
		.lat = lat, .nlat = 4, .qd = qd, .nqd = 3, .st = st, .nst = 3,
	};
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

int main(int argc, char **argv)
{
	test_prepare();
	test_prometheus(argc > 1 ? argv[1] : "/dev/null");
	test_json();
	printf("%d passed, %d failed\n", passed, failed);
	return failed ? 1 : 0;
}
