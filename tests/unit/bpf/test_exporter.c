// SPDX-License-Identifier: GPL-2.0
/*
 * Host unit tests of bpf/exporter_render.c: a made-up scrape of the
 * dmuser_lat maps split into entries, and their Prometheus and JSON
 * renderings; a record read as two CPUs' copies, summed as a scrape does.
 * Writes the Prometheus text to $1 for `promtool check metrics` and
 * prom-check.py.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
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

TEST(exporter_prepare)
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

TEST(exporter_prometheus)
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
	has(t, "dmuser_kernel_errors_total{device=\"dmu-a\",op=\"read\"} 3\n");
	has(t, "dmuser_kernel_timeouts_total{device=\"dmu-a\",op=\"read\"} 3\n");
	has(t, "dmuser_kernel_timeouts_total{device=\"dmu-a\",op=\"write\"} 0\n");
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
	has(t, "# TYPE dmuser_kernel_queued_requests_at_map histogram\n");
	has(t, "dmuser_kernel_queued_requests_at_map_bucket{device=\"dmu-a\",le=\"1\"} 5\n");
	has(t, "dmuser_kernel_queued_requests_at_map_bucket{device=\"dmu-a\",le=\"3\"} 5\n");
	has(t, "dmuser_kernel_queued_requests_at_map_bucket{device=\"dmu-a\",le=\"7\"} 15\n");
	has(t, "dmuser_kernel_queued_requests_at_map_sum{device=\"dmu-a\"} 55\n");
	has(t, "dmuser_kernel_queued_requests_at_map_count{device=\"dmu-a\"} 15\n");
	has(t, "dmuser_kernel_in_flight_requests_at_map_bucket{device=\"dmu-a\",le=\"3\"} 5\n");
	has(t, "dmuser_kernel_in_flight_requests_at_map_sum{device=\"dmu-a\"} 12\n");
	CHECK(strstr(t, "dmuser_kernel_queued_requests_at_map_count{device=\"we") == NULL, "no depth for a device without samples");
	has(t, "dmuser_exporter_info{version=\"0.1\",attach=\"tp_btf\"} 1\n");

	free(t);

	/* no entries at all: the families are still there, and still valid */
	struct dmu_exp_snapshot empty = { .version = "0.1", .attach = "raw_tp" };
	dmu_exp_prepare(&empty, devs, 4, fake_name);
	t = render_prom(&empty);
	has(t, "# TYPE dmuser_kernel_requests_total counter\n");
	CHECK(strstr(t, "_bucket") == NULL, "no series");
	free(t);
}

TEST(exporter_json)
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
TEST(exporter_percpu)
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
	has(t, "dmuser_kernel_errors_total{device=\"dmu-a\",op=\"write\"} 1\n");
	has(t, "dmuser_kernel_timeouts_total{device=\"dmu-a\",op=\"write\"} 1\n");
	has(t, "dmuser_stage_latency_seconds_bucket{device=\"dmu-a\",op=\"write\",stage=\"total\",le=\"0.000128\"} 4\n");
	has(t, "dmuser_stage_latency_seconds_bucket{device=\"dmu-a\",op=\"write\",stage=\"total\",le=\"0.000256\"} 7\n");
	has(t, "dmuser_stage_latency_seconds_sum{device=\"dmu-a\",op=\"write\",stage=\"total\"} 0.001000\n");
	has(t, "dmuser_stage_latency_seconds_count{device=\"dmu-a\",op=\"write\",stage=\"total\"} 7\n");
	has(t, "dmuser_kernel_queued_requests_at_map_bucket{device=\"dmu-a\",le=\"7\"} 7\n");
	has(t, "dmuser_kernel_queued_requests_at_map_sum{device=\"dmu-a\"} 35\n");
	has(t, "dmuser_kernel_in_flight_requests_at_map_count{device=\"dmu-a\"} 0\n");
	free(t);
}

/* Runs CMD < FILE; its exit status, its output (stdout and stderr) in out. */
static int run_on(const char *cmd, const char *file, char *out, size_t len)
{
	char full[1024];
	size_t n;
	FILE *p;
	int status;

	snprintf(full, sizeof(full), "%s < %s 2>&1", cmd, file);
	p = popen(full, "r");
	if (!p)
		return -1;
	n = fread(out, 1, len - 1, p);
	out[n] = '\0';
	status = pclose(p);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/*
 * The made-up scrape's Prometheus text passes Prometheus' own linter
 * (promtool check metrics, silent when clean) and tests/unit/prom-check.py
 * (cumulative buckets, +Inf == _count, one HELP and TYPE per family, the
 * families the dashboards use).
 */
TEST(exporter_prometheus_passes_promtool)
{
	char path[] = "/tmp/dmu-unit-exporter-XXXXXX", out[8192];
	struct dmu_exp_snapshot s;
	char *t;
	FILE *f;
	int fd;

	make(&s);
	t = render_prom(&s);
	fd = mkstemp(path);
	f = fd >= 0 ? fdopen(fd, "w") : NULL;
	REQUIRE(f != NULL);
	REQUIRE(fputs(t, f) >= 0 && fclose(f) == 0);
	free(t);
	CHECK(run_on("promtool check metrics", path, out, sizeof(out)) == 0 && !out[0],
	      "promtool check metrics: %s", out);
	CHECK(run_on("python3 ../prom-check.py /dev/stdin --require dmuser_kernel_requests_total "
		     "dmuser_stage_latency_seconds dmuser_kernel_queued_requests_at_map "
		     "dmuser_kernel_in_flight_requests_at_map dmuser_kernel_errors_total "
		     "dmuser_kernel_timeouts_total", path, out, sizeof(out)) == 0,
	      "prom-check.py: %s", out);
	unlink(path);
}

/*
 * Past 2^32: two CPUs' copies of one record with 3e9 requests each in the
 * same slot.  Their sum, 6e9, must reach the buckets, _count and the JSON
 * whole: with 32-bit slots it wrapped to 1705032704, and a counter that
 * goes backwards is a reset to Prometheus.
 */
TEST(exporter_counts_past_2_32)
{
	const __u64 each = 3000000000ULL, both = 2 * each;
	struct dmu_exp_snapshot s = {
		.version = "0.1", .attach = "raw_tp", .uptime_seconds = 1,
		.lat = lat, .qd = qd, .st = st,
	};
	struct dmu_lat_rec *c0, *c1;
	struct dmu_percpu pc;
	char *t, line[256];
	json_t *doc, *total;

	REQUIRE(dmu_percpu_init(&pc, 2, sizeof(struct dmu_lat_rec), dmu_lat_rec_sum) == 0);
	c0 = pc.buf;
	c1 = (struct dmu_lat_rec *)((char *)pc.buf + pc.stride);
	c0->st.ios = c1->st.ios = each;
	c0->lat[DMU_STAGE_TOTAL].slots[6] = c1->lat[DMU_STAGE_TOTAL].slots[6] = each;
	c0->lat[DMU_STAGE_TOTAL].sum = c1->lat[DMU_STAGE_TOTAL].sum = each * 100;
	c0->qd[DMU_QD_IN_FLIGHT].slots[1] = c1->qd[DMU_QD_IN_FLIGHT].slots[1] = each;
	recs[0].key = (struct dmu_op_key){ DEV_A, DM_USER_REQ_MAP_READ };
	dmu_percpu_sum(&pc, &recs[0].rec);
	dmu_percpu_free(&pc);
	CHECK(dmu_hist_total(recs[0].rec.lat[DMU_STAGE_TOTAL].slots, DMU_MAX_SLOTS) == both,
	      "total %llu", dmu_hist_total(recs[0].rec.lat[DMU_STAGE_TOTAL].slots, DMU_MAX_SLOTS));
	dmu_exp_split(&s, recs, 1);
	dmu_exp_prepare(&s, devs, 4, fake_name);

	t = render_prom(&s);
	snprintf(line, sizeof(line), "dmuser_kernel_requests_total{device=\"dmu-a\",op=\"read\"} %llu\n",
		 (unsigned long long)both);
	has(t, line);
	snprintf(line, sizeof(line), "dmuser_stage_latency_seconds_bucket{device=\"dmu-a\",op=\"read\","
		 "stage=\"total\",le=\"0.000128\"} %llu\n", (unsigned long long)both);
	has(t, line);
	snprintf(line, sizeof(line), "dmuser_stage_latency_seconds_count{device=\"dmu-a\",op=\"read\","
		 "stage=\"total\"} %llu\n", (unsigned long long)both);
	has(t, line);
	snprintf(line, sizeof(line), "dmuser_kernel_in_flight_requests_at_map_count{device=\"dmu-a\"} %llu\n",
		 (unsigned long long)both);
	has(t, line);
	free(t);

	doc = dmu_exp_render_json(&s);
	REQUIRE(doc != NULL);
	total = json_object_get(json_object_get(json_object_get(json_object_get(
		json_array_get(json_object_get(doc, "devices"), 0), "ops"), "read"), "latency_us"), "total");
	CHECK(json_integer_value(json_object_get(total, "count")) == (json_int_t)both,
	      "JSON count %lld", (long long)json_integer_value(json_object_get(total, "count")));
	CHECK(json_integer_value(json_object_get(json_array_get(json_object_get(total, "buckets"), 6),
						 "count")) == (json_int_t)both, "JSON bucket");
	json_decref(doc);
}

#define DEV_C dmu_mkdev(254, 7)

/*
 * The status lines of the dm devices with a user target, next to the BPF
 * records: A (records, a 1.5.0 target's 13 numbers), B (records, its status
 * not read: a device gone between the two) and C (no I/O since the exporter
 * started, a 1.4 target's 7 numbers).  C appears, under its dm name; each
 * field under dmuserd's name with a device label, the microseconds in
 * seconds; C has none of the six; the status line's completed, errors and
 * timeouts are left to the BPF families (one TYPE each, no op-less series);
 * the JSON's devices gain "target" as dmuserd's document has it.  The text
 * passes promtool and prom-check.py.
 */
TEST(exporter_target_status)
{
	const struct dmu_exp_target targets[] = {
		{ DEV_C, "dmu-c", "1 0 0 40 1 1 7" },
		{ DEV_A, "dmu-a", "2 3 1 15 5 3 0 9 1500001 17 5 2 2500" },
	};
	static struct dmu_exp_dev tdevs[8];
	char path[] = "/tmp/dmu-unit-exporter-XXXXXX", out[8192];
	struct dmu_exp_snapshot s;
	json_t *doc, *d, *target;
	char *t;
	FILE *f;
	int fd;

	make(&s);
	s.targets = targets;
	s.ntargets = 2;
	CHECK(dmu_exp_prepare(&s, tdevs, 8, fake_name) == 0, "room");
	REQUIRE(s.ndevs == 3);
	CHECK(s.devs[0].dev == DEV_A && s.devs[1].dev == DEV_B && s.devs[2].dev == DEV_C,
	      "devs in order");
	CHECK(!strcmp(s.devs[2].name, "dmu-c"), "C under its dm name: %s", s.devs[2].name);
	CHECK(s.devs[0].status == targets[1].status && s.devs[1].status == NULL &&
	      s.devs[2].status == targets[0].status, "status lines");

	t = render_prom(&s);
	has(t, "# TYPE dmuser_kernel_status_up gauge\n");
	has(t, "\ndmuser_kernel_status_up{device=\"dmu-a\"} 1\n");
	has(t, "\ndmuser_kernel_status_up{device=\"we\\\"ird\\\\name\"} 0\n");
	has(t, "\ndmuser_kernel_status_up{device=\"dmu-c\"} 1\n");
	has(t, "# TYPE dmuser_kernel_channels gauge\n");
	has(t, "\ndmuser_kernel_channels{device=\"dmu-a\"} 2\n");
	has(t, "\ndmuser_kernel_channels{device=\"dmu-c\"} 1\n");
	has(t, "\ndmuser_kernel_queued_requests{device=\"dmu-a\"} 3\n");
	has(t, "\ndmuser_kernel_in_flight_requests{device=\"dmu-a\"} 1\n");
	has(t, "# TYPE dmuser_kernel_requeues_total counter\n");
	has(t, "\ndmuser_kernel_requeues_total{device=\"dmu-c\"} 7\n");
	has(t, "# TYPE dmuser_kernel_depth_waits_total counter\n");
	has(t, "\ndmuser_kernel_depth_waits_total{device=\"dmu-a\"} 9\n");
	has(t, "# TYPE dmuser_kernel_depth_wait_seconds_total counter\n");
	has(t, "\ndmuser_kernel_depth_wait_seconds_total{device=\"dmu-a\"} 1.500001\n");
	has(t, "# TYPE dmuser_kernel_queued_requests_hwm gauge\n");
	has(t, "\ndmuser_kernel_queued_requests_hwm{device=\"dmu-a\"} 17\n");
	has(t, "# TYPE dmuser_kernel_in_flight_requests_hwm gauge\n");
	has(t, "\ndmuser_kernel_in_flight_requests_hwm{device=\"dmu-a\"} 5\n");
	has(t, "# TYPE dmuser_kernel_stalls_total counter\n");
	has(t, "\ndmuser_kernel_stalls_total{device=\"dmu-a\"} 2\n");
	has(t, "# TYPE dmuser_kernel_oldest_request_age_seconds gauge\n");
	has(t, "\ndmuser_kernel_oldest_request_age_seconds{device=\"dmu-a\"} 0.002500\n");
	CHECK(strstr(t, "_hwm{device=\"dmu-c\"}") == NULL, "a 1.4 target's line has no hwm");
	CHECK(strstr(t, "dmuser_kernel_stalls_total{device=\"dmu-c\"}") == NULL, "no stalls of C");
	CHECK(strstr(t, "dmuser_kernel_status_field") == NULL, "a field left unnamed");
	CHECK(strstr(t, "dmuser_kernel_channels{device=\"we") == NULL, "a status B has not");
	/* the BPF families keep their one TYPE and their op label */
	has(t, "dmuser_kernel_requests_total{device=\"dmu-a\",op=\"read\"} 5\n");
	CHECK(strstr(t, "dmuser_kernel_requests_total{device=\"dmu-a\"}") == NULL &&
	      strstr(t, "dmuser_kernel_requests_total{device=\"dmu-c\"}") == NULL &&
	      strstr(t, "dmuser_kernel_errors_total{device=\"dmu-c\"}") == NULL &&
	      strstr(t, "dmuser_kernel_timeouts_total{device=\"dmu-c\"}") == NULL,
	      "an op-less series of a BPF family");
	CHECK(strstr(strstr(t, "# TYPE dmuser_kernel_errors_total") + 1,
		     "# TYPE dmuser_kernel_errors_total") == NULL, "errors_total announced twice");

	fd = mkstemp(path);
	f = fd >= 0 ? fdopen(fd, "w") : NULL;
	REQUIRE(f != NULL);
	REQUIRE(fputs(t, f) >= 0 && fclose(f) == 0);
	free(t);
	CHECK(run_on("promtool check metrics", path, out, sizeof(out)) == 0 && !out[0],
	      "promtool check metrics: %s", out);
	CHECK(run_on("python3 ../prom-check.py /dev/stdin --require dmuser_kernel_requests_total "
		     "dmuser_kernel_status_up dmuser_kernel_channels dmuser_kernel_requeues_total "
		     "dmuser_kernel_depth_waits_total dmuser_kernel_depth_wait_seconds_total "
		     "dmuser_kernel_queued_requests_hwm dmuser_kernel_in_flight_requests_hwm "
		     "dmuser_kernel_stalls_total dmuser_kernel_oldest_request_age_seconds",
		     path, out, sizeof(out)) == 0, "prom-check.py: %s", out);
	unlink(path);

	doc = dmu_exp_render_json(&s);
	REQUIRE(doc != NULL);
	REQUIRE(json_array_size(json_object_get(doc, "devices")) == 3);
	d = json_array_get(json_object_get(doc, "devices"), 0);
	target = json_object_get(d, "target");
	CHECK(json_is_true(json_object_get(target, "available")), "A available");
	CHECK(!strcmp(json_string_value(json_object_get(target, "status")), targets[1].status),
	      "A status");
	CHECK(json_integer_value(json_object_get(json_object_get(target, "fields"), "oldest_us")) == 2500,
	      "A oldest_us");
	CHECK(json_integer_value(json_object_get(json_object_get(target, "fields"), "depth_wait_us")) ==
	      1500001, "A depth_wait_us");
	CHECK(json_object_size(json_object_get(target, "fields")) == 13, "A fields");
	d = json_array_get(json_object_get(doc, "devices"), 1);
	target = json_object_get(d, "target");
	CHECK(json_is_false(json_object_get(target, "available")) &&
	      json_is_null(json_object_get(target, "status")) &&
	      json_object_size(json_object_get(target, "fields")) == 0, "B: no status");
	d = json_array_get(json_object_get(doc, "devices"), 2);
	CHECK(!strcmp(json_string_value(json_object_get(d, "device")), "dmu-c"), "C's name");
	CHECK(!strcmp(json_string_value(json_object_get(d, "dev")), "254:7"), "C's dev");
	CHECK(json_is_object(json_object_get(d, "ops")) && json_object_size(json_object_get(d, "ops")) == 0,
	      "C: no op stats");
	CHECK(json_integer_value(json_object_get(json_object_get(d, "queue_depth"), "count")) == 0 &&
	      json_integer_value(json_object_get(json_object_get(d, "in_flight"), "count")) == 0,
	      "C: empty depth histograms, as the live page reads them");
	target = json_object_get(d, "target");
	CHECK(json_integer_value(json_object_get(json_object_get(target, "fields"), "requeues")) == 7 &&
	      json_object_size(json_object_get(target, "fields")) == 7, "C: a 1.4 target's 7 fields");
	json_decref(doc);

	/* no room for C: reported, and A keeps its status */
	make(&s);
	s.targets = targets;
	s.ntargets = 2;
	CHECK(dmu_exp_prepare(&s, tdevs, 2, fake_name) == -ENOSPC, "no room for C");
	CHECK(s.ndevs == 2 && s.devs[0].status == targets[1].status, "A's status kept");
}

/* dm-N names for the many-device test: every device its own name */
static void dm_n_name(__u32 dev, char *buf, size_t len)
{
	snprintf(buf, len, "dmu-many-%u", dmu_minor(dev));
}

/*
 * 300 devices, more than the 256 the exporter once had room for: every
 * device keeps its own label (the extra ones were all "unknown", duplicate
 * series, and Prometheus rejects a scrape with duplicates), and the text
 * passes promtool.  A devs array too small labels the rest by MAJ:MIN, still
 * distinct, and says so.
 */
TEST(exporter_more_than_256_devices)
{
	enum { N = 300 };
	static struct dmu_exp_rec many[N];
	static struct dmu_exp_hist mlat[N * DMU_NR_STAGES], mqd[N * DMU_NR_QD];
	static struct dmu_exp_stat mst[N];
	static struct dmu_exp_dev mdevs[N];
	struct dmu_exp_snapshot s = {
		.version = "0.1", .attach = "raw_tp", .lat = mlat, .qd = mqd, .st = mst,
	};
	char path[] = "/tmp/dmu-unit-exporter-XXXXXX", out[8192], line[160];
	char *t;
	FILE *f;
	int i, fd;

	for (i = 0; i < N; i++) {
		many[i].key = (struct dmu_op_key){ dmu_mkdev(254, i), DM_USER_REQ_MAP_READ };
		many[i].rec.st.ios = i + 1;
		many[i].rec.lat[DMU_STAGE_TOTAL].slots[3] = i + 1;
	}
	dmu_exp_split(&s, many, N);
	CHECK(dmu_exp_prepare(&s, mdevs, N, dm_n_name) == 0, "room for every device");
	CHECK(s.ndevs == N, "%d devices", s.ndevs);
	t = render_prom(&s);
	CHECK(strstr(t, "unknown") == NULL, "a device labelled unknown");
	for (i = 0; i < N; i += 37) {
		snprintf(line, sizeof(line), "dmuser_kernel_requests_total{device=\"dmu-many-%d\",op=\"read\"} %d\n",
			 i, i + 1);
		has(t, line);
	}
	fd = mkstemp(path);
	f = fd >= 0 ? fdopen(fd, "w") : NULL;
	REQUIRE(f != NULL);
	REQUIRE(fputs(t, f) >= 0 && fclose(f) == 0);
	free(t);
	CHECK(run_on("promtool check metrics", path, out, sizeof(out)) == 0 && !out[0],
	      "promtool check metrics: %.400s", out);
	unlink(path);

	/* room for 256 only: the rest get their MAJ:MIN, not one shared label */
	dmu_exp_split(&s, many, N);
	CHECK(dmu_exp_prepare(&s, mdevs, 256, dm_n_name) == -ENOSPC, "no room reported");
	t = render_prom(&s);
	has(t, "dmuser_kernel_requests_total{device=\"254:299\",op=\"read\"} 300\n");
	CHECK(strstr(t, "unknown") == NULL, "a device labelled unknown");
	free(t);
}
