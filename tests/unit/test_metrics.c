// SPDX-License-Identifier: GPL-2.0
/* Histogram bucketing, snapshots, and both renderings. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "metrics.h"
#include "metrics_render.h"
#include "schema.h"
#include "test.h"

TEST(metrics_bucket_boundaries)
{
	CHECK_EQ(dmu_hist_bucket(0), 0);
	CHECK_EQ(dmu_hist_bucket(1), 0);
	CHECK_EQ(dmu_hist_bucket(2), 0);
	CHECK_EQ(dmu_hist_bucket(3), 1);
	CHECK_EQ(dmu_hist_bucket(4), 1);
	CHECK_EQ(dmu_hist_bucket(5), 2);
	CHECK_EQ(dmu_hist_bucket(8), 2);
	CHECK_EQ(dmu_hist_bucket(9), 3);
	CHECK_EQ(dmu_hist_bucket(1000), 9);		/* (512, 1024] */
	CHECK_EQ(dmu_hist_bucket(1ull << 39), DMU_HIST_BUCKETS - 2);
	CHECK_EQ(dmu_hist_bucket((1ull << 39) + 1), DMU_HIST_BUCKETS - 1);
	CHECK_EQ(dmu_hist_bucket(UINT64_MAX), DMU_HIST_BUCKETS - 1);
}

/* Every value lands in the bucket whose (lower, upper] holds it. */
TEST(metrics_bucket_bounds_are_inclusive_uppers)
{
	for (unsigned i = 0; i < DMU_HIST_BUCKETS - 1; i++) {
		uint64_t upper = dmu_hist_upper_ns(i);

		CHECK_EQ(upper, 2ull << i);
		CHECK_EQ(dmu_hist_bucket(upper), i);
		CHECK_EQ(dmu_hist_bucket(upper + 1), i + 1);
		if (i > 0)
			CHECK_EQ(dmu_hist_bucket(dmu_hist_upper_ns(i - 1) + 1), i);
	}
}

static struct dmu_metrics two_threads(void)
{
	struct dmu_metrics m;

	REQUIRE(dmu_metrics_init(&m, 2) == 0);
	/* Thread 0 batches: one read() brings both its requests, one writev answers. */
	dmu_metrics_batched(&m.thread[0], true);
	dmu_metrics_read(&m.thread[0]);
	dmu_metrics_received(&m.thread[0], 2);
	dmu_metrics_end(&m.thread[0], DMU_OP_READ, 0, 4096, 1500);
	dmu_metrics_end(&m.thread[0], DMU_OP_READ, 0, 4096, 3000);
	dmu_metrics_wrote(&m.thread[0]);
	/* Thread 1 does not: a read() and a write() per request, one in hand. */
	for (unsigned i = 0; i < 4; i++) {
		dmu_metrics_read(&m.thread[1]);
		dmu_metrics_received(&m.thread[1], 1);
	}
	dmu_metrics_end(&m.thread[1], DMU_OP_READ, 0, 8192, 1ull << 45);
	dmu_metrics_end(&m.thread[1], DMU_OP_WRITE, 1, 4096, 100);
	dmu_metrics_end(&m.thread[1], DMU_OP_OTHER, 2, 0, 10);
	for (unsigned i = 0; i < 3; i++)
		dmu_metrics_wrote(&m.thread[1]);
	dmu_metrics_flushed(&m.thread[1]);
	return m;
}

TEST(metrics_snapshot_sums_threads)
{
	struct dmu_metrics m = two_threads();
	struct dmu_metrics_snapshot s;

	dmu_metrics_snapshot(&m, &s);
	CHECK_EQ(s.op[DMU_OP_READ].requests, 3);
	CHECK_EQ(s.op[DMU_OP_READ].bytes, 16384);
	CHECK_EQ(s.op[DMU_OP_READ].latency_count, 3);
	CHECK_EQ(s.op[DMU_OP_READ].latency_sum_ns, 4500 + (1ull << 45));
	CHECK_EQ(s.op[DMU_OP_READ].latency[dmu_hist_bucket(1500)], 1);
	CHECK_EQ(s.op[DMU_OP_READ].latency[DMU_HIST_BUCKETS - 1], 1);
	CHECK_EQ(s.op[DMU_OP_WRITE].requests, 1);
	CHECK_EQ(s.op[DMU_OP_WRITE].bytes, 0);		/* failed: no bytes */
	CHECK_EQ(s.op[DMU_OP_WRITE].errors, 1);
	CHECK_EQ(s.op[DMU_OP_OTHER].errors, 0);
	CHECK_EQ(s.replies[0], 3);
	CHECK_EQ(s.replies[1], 1);
	CHECK_EQ(s.replies[2], 1);
	CHECK_EQ(s.in_flight, 1);
	CHECK_EQ(s.backend_flushes, 1);
	CHECK_EQ(s.channel_reads, 5);
	CHECK_EQ(s.channel_requests_read, 6);
	CHECK_EQ(s.channel_writes, 4);
	CHECK_EQ(s.channels_batched, 1);
}

TEST(metrics_in_flight_counts_down_and_idle_clears_it)
{
	struct dmu_metrics m;
	struct dmu_metrics_snapshot s;

	REQUIRE(dmu_metrics_init(&m, 1) == 0);
	dmu_metrics_received(&m.thread[0], 3);
	dmu_metrics_end(&m.thread[0], DMU_OP_FLUSH, 0, 0, 10);
	dmu_metrics_snapshot(&m, &s);
	CHECK_EQ(s.in_flight, 2);
	dmu_metrics_idle(&m.thread[0]);		/* the other two were never answered */
	dmu_metrics_snapshot(&m, &s);
	CHECK_EQ(s.in_flight, 0);
	dmu_metrics_end(&m.thread[0], DMU_OP_FLUSH, 0, 0, 10);	/* never below 0 */
	dmu_metrics_snapshot(&m, &s);
	CHECK_EQ(s.in_flight, 0);
	dmu_metrics_batched(&m.thread[0], true);
	dmu_metrics_batched(&m.thread[0], false);
	dmu_metrics_snapshot(&m, &s);
	CHECK_EQ(s.channels_batched, 0);
	dmu_metrics_free(&m);
}

static const struct dmu_metrics_info info = {
	.version = "9.8.7",
	.name = "dev\"0",
	.backing_file = "/tmp/backing",
	.control_path = "/dev/dm-user/dev0",
	.size_bytes = 1ull << 30,
	.threads = 2,
	.read_only = false,
	.direct = true,
	.uptime_seconds = 12.5,
	.target_status = "channels 2 queued 0 in_flight 1 errors=4 dev0 word",
};

static char *prometheus_text(const struct dmu_metrics_snapshot *s)
{
	char *text = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&text, &len);

	REQUIRE(out != NULL);
	REQUIRE(dmu_render_prometheus(s, &info, out) == 0);
	REQUIRE(fclose(out) == 0);
	return text;
}

/* The value of the first sample line starting with `prefix`, or -1. */
static double sample(const char *text, const char *prefix)
{
	size_t n = strlen(prefix);

	for (const char *line = text; line && *line; line = strchr(line, '\n') + 1) {
		if (!strncmp(line, prefix, n) && line[n] == ' ')
			return strtod(line + n + 1, NULL);
		if (!strchr(line, '\n'))
			break;
	}
	return -1;
}

TEST(metrics_prometheus_histogram_is_cumulative_and_inf_is_count)
{
	struct dmu_metrics m = two_threads();
	struct dmu_metrics_snapshot s;

	dmu_metrics_snapshot(&m, &s);
	char *text = prometheus_text(&s);

	for (unsigned op = 0; op < DMU_OP_COUNT; op++) {
		char key[160];
		double last = 0;

		for (unsigned i = 0; i < DMU_HIST_BUCKETS - 1; i++) {
			snprintf(key, sizeof(key),
				 "dmuser_request_duration_seconds_bucket{op=\"%s\",le=\"%.12g\"}",
				 dmu_op_name(op), (double)(2ull << i) / 1e9);
			double v = sample(text, key);

			if (v < last)
				t_fail(__FILE__, __LINE__, "%s = %g < %g", key, v, last);
			last = v;
		}
		snprintf(key, sizeof(key), "dmuser_request_duration_seconds_bucket{op=\"%s\",le=\"+Inf\"}",
			 dmu_op_name(op));
		double inf = sample(text, key);
		snprintf(key, sizeof(key), "dmuser_request_duration_seconds_count{op=\"%s\"}",
			 dmu_op_name(op));
		double count = sample(text, key);

		CHECK(inf >= last);
		CHECK(inf == count);
		CHECK_EQ((uint64_t)count, s.op[op].latency_count);
	}
	/* 1500 ns and 3000 ns are <= 4.096e-06 s; 2^45 ns is only in +Inf. */
	CHECK(sample(text, "dmuser_request_duration_seconds_bucket{op=\"read\",le=\"4.096e-06\"}") == 2);
	CHECK(sample(text, "dmuser_request_duration_seconds_bucket{op=\"read\",le=\"549.755813888\"}") == 2);
	CHECK(sample(text, "dmuser_request_duration_seconds_bucket{op=\"read\",le=\"+Inf\"}") == 3);
	CHECK(fabs(sample(text, "dmuser_request_duration_seconds_sum{op=\"read\"}") -
		   (4500 + (double)(1ull << 45)) / 1e9) < 1e-6);
	free(text);
}

TEST(metrics_prometheus_counters_and_names)
{
	struct dmu_metrics m = two_threads();
	struct dmu_metrics_snapshot s;

	dmu_metrics_snapshot(&m, &s);
	char *text = prometheus_text(&s);

	CHECK(sample(text, "dmuser_requests_total{op=\"read\"}") == 3);
	CHECK(sample(text, "dmuser_request_bytes_total{op=\"read\"}") == 16384);
	CHECK(sample(text, "dmuser_request_errors_total{op=\"write\"}") == 1);
	CHECK(sample(text, "dmuser_replies_total{status=\"unsupported\"}") == 1);
	CHECK(sample(text, "dmuser_backend_flushes_total") == 1);
	CHECK(sample(text, "dmuser_channel_reads_total") == 5);
	CHECK(sample(text, "dmuser_channel_requests_read_total") == 6);
	CHECK(sample(text, "dmuser_channel_writes_total") == 4);
	CHECK(sample(text, "dmuser_channels_batched") == 1);
	CHECK(sample(text, "dmuser_in_flight_requests") == 1);
	CHECK(sample(text, "dmuser_device_size_bytes") == (double)(1ull << 30));
	CHECK(sample(text, "dmuser_threads") == 2);
	CHECK(sample(text, "dmuser_uptime_seconds") == 12.5);
	CHECK(sample(text, "dmuser_info{version=\"9.8.7\",device=\"dev\\\"0\"}") == 1);
	CHECK(sample(text, "dmuser_kernel_status_up") == 1);
	CHECK(sample(text, "dmuser_kernel_channels") == 2);
	CHECK(sample(text, "dmuser_kernel_in_flight_requests") == 1);
	CHECK(sample(text, "dmuser_kernel_errors_total") == 4);

	/* Format 0.0.4: every line a comment or "name{labels} value"; every
	 * family announced by TYPE before its samples; names dmuser_*. */
	char *copy = strdup(text), *save = NULL;
	char typed[64][96];
	unsigned ntyped = 0;
	for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char name[96];

		if (!strncmp(line, "# HELP ", 7))
			continue;
		if (sscanf(line, "# TYPE %95s", name) == 1) {
			REQUIRE(ntyped < 64);
			strcpy(typed[ntyped++], name);
			CHECK(!strncmp(name, "dmuser_", 7));
			continue;
		}
		REQUIRE(sscanf(line, "%95[a-zA-Z0-9_:]", name) == 1);
		CHECK(!strncmp(name, "dmuser_", 7));
		bool known = false;
		for (unsigned i = 0; i < ntyped; i++) {
			size_t n = strlen(typed[i]);

			known |= !strncmp(name, typed[i], n) &&
				 (!name[n] || !strcmp(name + n, "_bucket") ||
				  !strcmp(name + n, "_sum") || !strcmp(name + n, "_count"));
		}
		if (!known)
			t_fail(__FILE__, __LINE__, "sample before its TYPE: %s", line);
		const char *value = strrchr(line, ' ');
		char *end;
		REQUIRE(value != NULL);
		strtod(value + 1, &end);
		CHECK(*end == '\0');
	}
	free(copy);
	free(text);
}

TEST(metrics_prometheus_counters_end_in_total)
{
	struct dmu_metrics_snapshot s = { 0 };
	char *text = prometheus_text(&s);
	char *copy = strdup(text), *save = NULL;

	for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char name[96], type[32];

		if (sscanf(line, "# TYPE %95s %31s", name, type) != 2)
			continue;
		if (!strcmp(type, "counter"))
			CHECK(strlen(name) > 6 && !strcmp(name + strlen(name) - 6, "_total"));
		if (!strcmp(type, "histogram"))
			CHECK(strstr(name, "_seconds") != NULL);
	}
	free(copy);
	free(text);
}

/*
 * The kernel's cumulative counts are counters named *_total, its levels
 * gauges; a key given twice is rendered once (a duplicate family would make
 * Prometheus reject the whole scrape).
 */
TEST(metrics_prometheus_kernel_counters_are_counters)
{
	static const struct dmu_metrics_info positional = {
		.version = "1", .name = "d", .target_status = "2 5 1 100 4 3 7",
	};
	static const char *const expect[][3] = {
		{ "dmuser_kernel_channels", "gauge", "2" },
		{ "dmuser_kernel_queued_requests", "gauge", "5" },
		{ "dmuser_kernel_in_flight_requests", "gauge", "1" },
		{ "dmuser_kernel_requests_total", "counter", "100" },
		{ "dmuser_kernel_errors_total", "counter", "4" },
		{ "dmuser_kernel_timeouts_total", "counter", "3" },
		{ "dmuser_kernel_requeues_total", "counter", "7" },
	};
	struct dmu_metrics_snapshot s = { 0 };
	char *text = NULL, line[160];
	size_t len = 0;
	FILE *out = open_memstream(&text, &len);

	REQUIRE(out != NULL);
	REQUIRE(dmu_render_prometheus(&s, &positional, out) == 0);
	REQUIRE(fclose(out) == 0);
	for (unsigned i = 0; i < sizeof(expect) / sizeof(expect[0]); i++) {
		snprintf(line, sizeof(line), "# TYPE %s %s\n", expect[i][0], expect[i][1]);
		if (!strstr(text, line))
			t_fail(__FILE__, __LINE__, "missing: %s", line);
		snprintf(line, sizeof(line), "\n%s %s\n", expect[i][0], expect[i][2]);
		if (!strstr(text, line))
			t_fail(__FILE__, __LINE__, "missing sample: %s", line + 1);
	}
	CHECK(strstr(text, "dmuser_target_") == NULL);
	free(text);

	static const struct dmu_metrics_info twice = {
		.version = "1", .name = "d", .target_status = "errors 1 errors=2 widgets 3",
	};
	text = NULL;
	out = open_memstream(&text, &len);
	REQUIRE(out != NULL);
	REQUIRE(dmu_render_prometheus(&s, &twice, out) == 0);
	REQUIRE(fclose(out) == 0);
	CHECK(strstr(text, "\ndmuser_kernel_errors_total 1\n") != NULL);
	CHECK(strstr(text, "\ndmuser_kernel_errors_total 2\n") == NULL);
	CHECK(strstr(text, "\ndmuser_kernel_status_widgets 3\n") != NULL);
	free(text);
}

/* Runs CMD with FILE on stdin; its status, and its output in out (may be NULL). */
static int run_on(const char *cmd, const char *file, char *out, size_t len)
{
	char full[1024];
	FILE *p;
	size_t n = 0;

	snprintf(full, sizeof(full), "%s < %s 2>&1", cmd, file);
	p = popen(full, "r");
	REQUIRE(p != NULL);
	if (out) {
		n = fread(out, 1, len - 1, p);
		out[n] = '\0';
	} else {
		char sink[4096];

		while (fread(sink, 1, sizeof(sink), p) > 0)
			;
	}
	int status = pclose(p);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/*
 * dmuserd's whole Prometheus text, with every family present (a snapshot
 * with samples, the target's status), passes Prometheus' own linter and
 * tests/unit/prom-check.py (HELP/TYPE once each, cumulative buckets,
 * +Inf == _count, counters end in _total).
 */
TEST(metrics_prometheus_text_passes_promtool)
{
	static const struct dmu_metrics_info full = {
		.version = "9.8.7", .name = "dev0", .threads = 2,
		.target_status = "2 0 1 100 4 1 3",
	};
	struct dmu_metrics m = two_threads();
	struct dmu_metrics_snapshot s;
	char path[] = "/tmp/dmu-unit-prom-XXXXXX", out[8192];
	char *text = NULL;
	size_t len = 0;
	FILE *f;
	int fd;

	dmu_metrics_snapshot(&m, &s);
	f = open_memstream(&text, &len);
	REQUIRE(f != NULL);
	REQUIRE(dmu_render_prometheus(&s, &full, f) == 0);
	REQUIRE(fclose(f) == 0);
	fd = mkstemp(path);
	REQUIRE(fd >= 0);
	REQUIRE(write(fd, text, len) == (ssize_t)len);
	close(fd);
	REQUIRE(run_on("command -v promtool", "/dev/null", NULL, 0) == 0);
	CHECK_EQ(run_on("promtool check metrics", path, out, sizeof(out)), 0);
	if (out[0])
		t_fail(__FILE__, __LINE__, "promtool check metrics: %s", out);
	CHECK_EQ(run_on("python3 ./prom-check.py /dev/stdin --require dmuser_requests_total "
			"dmuser_request_duration_seconds dmuser_kernel_requests_total "
			"dmuser_kernel_errors_total dmuser_in_flight_requests", path, out, sizeof(out)), 0);
	if (!strstr(out, ": ok: "))
		t_fail(__FILE__, __LINE__, "prom-check.py: %s", out);
	unlink(path);
	free(text);
}

TEST(metrics_status_line_parsing)
{
	struct dmu_status_field f[8];
	size_t n = dmu_parse_target_status("ctl0 channels 2 queued 17 mode rw timeouts=3 x=y 5", f, 8);

	REQUIRE_EQ(n, 3);
	CHECK_STR(f[0].key, "channels");
	CHECK_EQ(f[0].value, 2);
	CHECK_STR(f[1].key, "queued");
	CHECK_EQ(f[1].value, 17);
	CHECK_STR(f[2].key, "timeouts");
	CHECK_EQ(f[2].value, 3);
	CHECK_EQ(dmu_parse_target_status("", f, 8), 0);

	/* dm-user's own format: seven numbers (module/README.md), then extras. */
	n = dmu_parse_target_status("2 0 1 100 4 1 3 9", f, 8);
	REQUIRE_EQ(n, 8);
	static const char *const names[] = {
		"channels", "queued", "in_flight", "completed", "errors", "timeouts",
		"requeues", "field_7",
	};
	static const uint64_t values[] = { 2, 0, 1, 100, 4, 1, 3, 9 };
	for (unsigned i = 0; i < 8; i++) {
		CHECK_STR(f[i].key, names[i]);
		CHECK_EQ(f[i].value, values[i]);
	}
	CHECK_EQ(dmu_parse_target_status("a 1 b 2 c 3", f, 2), 2);
}

static json_t *render(const struct dmu_metrics_info *i)
{
	struct dmu_metrics m = two_threads();
	struct dmu_metrics_snapshot s;

	dmu_metrics_snapshot(&m, &s);
	json_t *doc = dmu_render_json(&s, i);
	REQUIRE(doc != NULL);
	return doc;
}

TEST(metrics_json_shape)
{
	json_t *doc = render(&info);

	CHECK_STR(json_string_value(json_object_get(doc, "version")), "9.8.7");
	json_t *dev = json_object_get(doc, "device");
	CHECK_STR(json_string_value(json_object_get(dev, "name")), "dev\"0");
	CHECK_EQ(json_integer_value(json_object_get(dev, "size_bytes")), 1ull << 30);
	CHECK(json_is_false(json_object_get(dev, "read_only")));
	CHECK_EQ(json_integer_value(json_object_get(doc, "threads")), 2);
	CHECK(json_real_value(json_object_get(doc, "uptime_seconds")) == 12.5);
	CHECK_EQ(json_integer_value(json_object_get(doc, "in_flight")), 1);
	CHECK_EQ(json_integer_value(json_object_get(doc, "channel_reads")), 5);
	CHECK_EQ(json_integer_value(json_object_get(doc, "channel_requests_read")), 6);
	CHECK_EQ(json_integer_value(json_object_get(doc, "channel_writes")), 4);
	CHECK_EQ(json_integer_value(json_object_get(doc, "channels_batched")), 1);

	json_t *ops = json_object_get(doc, "ops");
	CHECK_EQ(json_object_size(ops), DMU_OP_COUNT);
	json_t *read = json_object_get(ops, "read");
	CHECK_EQ(json_integer_value(json_object_get(read, "requests")), 3);
	CHECK_EQ(json_integer_value(json_object_get(read, "bytes")), 16384);
	json_t *lat = json_object_get(read, "latency_ns");
	CHECK_EQ(json_integer_value(json_object_get(lat, "count")), 3);
	CHECK_EQ(json_integer_value(json_object_get(lat, "overflow")), 1);
	json_t *buckets = json_object_get(lat, "buckets");
	CHECK_EQ(json_array_size(buckets), DMU_HIST_BUCKETS - 1);
	uint64_t total = (uint64_t)json_integer_value(json_object_get(lat, "overflow"));
	for (size_t i = 0; i < json_array_size(buckets); i++) {
		json_t *b = json_array_get(buckets, i);

		CHECK_EQ(json_integer_value(json_object_get(b, "upper")), 2ull << i);
		total += (uint64_t)json_integer_value(json_object_get(b, "count"));
	}
	CHECK_EQ(total, 3);

	json_t *target = json_object_get(doc, "target");
	CHECK(json_is_true(json_object_get(target, "available")));
	CHECK_EQ(json_integer_value(json_object_get(json_object_get(target, "fields"), "queued")), 0);
	CHECK_EQ(json_integer_value(json_object_get(json_object_get(target, "fields"), "errors")), 4);
	json_decref(doc);
}

TEST(metrics_json_without_target_status)
{
	struct dmu_metrics_info i = info;

	i.target_status = NULL;
	json_t *doc = render(&i);
	json_t *target = json_object_get(doc, "target");
	CHECK(json_is_false(json_object_get(target, "available")));
	CHECK(json_is_null(json_object_get(target, "status")));
	CHECK_EQ(json_object_size(json_object_get(target, "fields")), 0);
	json_decref(doc);
}

TEST(metrics_json_matches_schema)
{
	struct dmu_metrics_info i = info;

	for (int with_status = 0; with_status < 2; with_status++) {
		i.target_status = with_status ? info.target_status : NULL;
		json_t *doc = render(&i);
		char *text = json_dumps(doc, 0);

		CHECK_EQ(validate_against_schema(text, false), 0);
		free(text);
		json_decref(doc);
	}
}

TEST(metrics_schema_rejects_a_wrong_document)
{
	CHECK_EQ(validate_against_schema("{\"version\": \"1.0.0\"}", true), 1);
}
