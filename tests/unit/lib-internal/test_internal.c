// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * libdmuser's internals (lib/internal.h), as linked from libdmuser.a:
 * histogram bucketing, channels' counters summed into a snapshot, and a
 * snapshot rendered with a given status line of the target (the public
 * API reads that line from a real dm device only).  These were dmuserd's
 * own metrics tests (tests/unit/test_metrics.c) until dmuserd ran on the
 * library (issue 16).
 */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"
#include "rig.h"
#include "test.h"

TEST(internal_bucket_boundaries)
{
	CHECK_EQ(dmu__hist_bucket(0), 0);
	CHECK_EQ(dmu__hist_bucket(1), 0);
	CHECK_EQ(dmu__hist_bucket(2), 0);
	CHECK_EQ(dmu__hist_bucket(3), 1);
	CHECK_EQ(dmu__hist_bucket(4), 1);
	CHECK_EQ(dmu__hist_bucket(5), 2);
	CHECK_EQ(dmu__hist_bucket(8), 2);
	CHECK_EQ(dmu__hist_bucket(9), 3);
	CHECK_EQ(dmu__hist_bucket(1000), 9);		/* (512, 1024] */
	CHECK_EQ(dmu__hist_bucket(1ull << 39), HIST_BUCKETS - 2);
	CHECK_EQ(dmu__hist_bucket((1ull << 39) + 1), HIST_BUCKETS - 1);
	CHECK_EQ(dmu__hist_bucket(UINT64_MAX), HIST_BUCKETS - 1);
}

/* Every value lands in the bucket whose (lower, upper] holds it. */
TEST(internal_bucket_bounds_are_inclusive_uppers)
{
	for (unsigned i = 0; i < HIST_BUCKETS - 1; i++) {
		uint64_t upper = dmu__hist_upper_ns(i);

		CHECK_EQ(upper, 2ull << i);
		CHECK_EQ(dmu__hist_bucket(upper), i);
		CHECK_EQ(dmu__hist_bucket(upper + 1), i + 1);
		if (i > 0)
			CHECK_EQ(dmu__hist_bucket(dmu__hist_upper_ns(i - 1) + 1), i);
	}
}

static struct chan_metrics ch[2];

/*
 * Two channels' counters: channel 0 batches (one read() brings both its
 * requests, one writev answers), channel 1 does not (a read() and a
 * write() per request, one still in hand).  Summed as the device does.
 */
static struct metrics_snapshot two_channels(void)
{
	struct metrics_snapshot s;

	memset(ch, 0, sizeof(ch));
	memset(&s, 0, sizeof(s));
	dmu__m_batched(&ch[0], true);
	dmu__m_read(&ch[0]);
	dmu__m_received(&ch[0], 2);
	dmu__m_end(&ch[0], MOP_READ, DM_USER_RESP_SUCCESS, 4096, 1500);
	dmu__m_end(&ch[0], MOP_READ, DM_USER_RESP_SUCCESS, 4096, 3000);
	dmu__m_wrote(&ch[0]);
	for (unsigned i = 0; i < 4; i++) {
		dmu__m_read(&ch[1]);
		dmu__m_received(&ch[1], 1);
	}
	dmu__m_end(&ch[1], MOP_READ, DM_USER_RESP_SUCCESS, 8192, 1ull << 45);
	dmu__m_end(&ch[1], MOP_WRITE, DM_USER_RESP_ERROR, 4096, 100);
	dmu__m_end(&ch[1], MOP_OTHER, DM_USER_RESP_UNSUPPORTED, 0, 10);
	for (unsigned i = 0; i < 3; i++)
		dmu__m_wrote(&ch[1]);
	dmu__m_flushed(&ch[1]);
	dmu__m_add(&s, &ch[0], true);
	dmu__m_add(&s, &ch[1], true);
	s.channels = 2;
	return s;
}

TEST(internal_snapshot_sums_channels)
{
	struct metrics_snapshot s = two_channels();

	CHECK_EQ(s.op[MOP_READ].requests, 3);
	CHECK_EQ(s.op[MOP_READ].bytes, 16384);
	CHECK_EQ(s.op[MOP_READ].latency_count, 3);
	CHECK_EQ(s.op[MOP_READ].latency_sum_ns, 4500 + (1ull << 45));
	CHECK_EQ(s.op[MOP_READ].latency[dmu__hist_bucket(1500)], 1);
	CHECK_EQ(s.op[MOP_READ].latency[HIST_BUCKETS - 1], 1);
	CHECK_EQ(s.op[MOP_WRITE].requests, 1);
	CHECK_EQ(s.op[MOP_WRITE].bytes, 0);		/* failed: no bytes */
	CHECK_EQ(s.op[MOP_WRITE].errors, 1);
	CHECK_EQ(s.op[MOP_OTHER].errors, 0);		/* UNSUPPORTED is no error */
	CHECK_EQ(s.replies[DM_USER_RESP_SUCCESS], 3);
	CHECK_EQ(s.replies[DM_USER_RESP_ERROR], 1);
	CHECK_EQ(s.replies[DM_USER_RESP_UNSUPPORTED], 1);
	CHECK_EQ(s.in_flight, 1);
	CHECK_EQ(s.backend_flushes, 1);
	CHECK_EQ(s.channel_reads, 5);
	CHECK_EQ(s.channel_requests_read, 6);
	CHECK_EQ(s.channel_writes, 4);
	CHECK_EQ(s.channels_batched, 1);

	/* a closed channel adds its counts, not its levels */
	struct metrics_snapshot t;
	memset(&t, 0, sizeof(t));
	dmu__m_add(&t, &ch[1], false);
	CHECK_EQ(t.in_flight, 0);
	CHECK_EQ(t.channel_reads, 4);
}

TEST(internal_in_flight_counts_down_and_idle_clears_it)
{
	static struct chan_metrics m;
	struct metrics_snapshot s;

	dmu__m_received(&m, 3);
	dmu__m_end(&m, MOP_FLUSH, DM_USER_RESP_SUCCESS, 0, 10);
	memset(&s, 0, sizeof(s));
	dmu__m_add(&s, &m, true);
	CHECK_EQ(s.in_flight, 2);
	dmu__m_idle(&m);		/* the other two were never answered */
	memset(&s, 0, sizeof(s));
	dmu__m_add(&s, &m, true);
	CHECK_EQ(s.in_flight, 0);
	dmu__m_end(&m, MOP_FLUSH, DM_USER_RESP_SUCCESS, 0, 10);	/* never below 0 */
	memset(&s, 0, sizeof(s));
	dmu__m_add(&s, &m, true);
	CHECK_EQ(s.in_flight, 0);
	dmu__m_batched(&m, true);
	dmu__m_batched(&m, false);
	memset(&s, 0, sizeof(s));
	dmu__m_add(&s, &m, true);
	CHECK_EQ(s.channels_batched, 0);
}

static const struct render_info info = {
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

static char *render(const struct metrics_snapshot *s, const struct render_info *i,
		    enum dmu_metrics_format f)
{
	char *text = NULL;
	size_t len = 0;

	REQUIRE(dmu__render_doc(s, i, f, &text, &len) == 0);
	REQUIRE_EQ(strlen(text), len);
	return text;
}

static json_t *render_json(const struct render_info *i)
{
	struct metrics_snapshot s = two_channels();
	char *text = render(&s, i, DMU_METRICS_JSON);
	json_t *doc = json_loads(text, 0, NULL);

	REQUIRE(doc != NULL);
	free(text);
	return doc;
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

TEST(render_prometheus_histogram_is_cumulative_and_inf_is_count)
{
	struct metrics_snapshot s = two_channels();
	char *text = render(&s, &info, DMU_METRICS_PROMETHEUS);

	for (unsigned op = 0; op < MOP_COUNT; op++) {
		char key[160];
		double last = 0;

		for (unsigned i = 0; i < HIST_BUCKETS - 1; i++) {
			snprintf(key, sizeof(key),
				 "dmuser_request_duration_seconds_bucket{op=\"%s\",le=\"%.12g\"}",
				 dmu__mop_name(op), (double)(2ull << i) / 1e9);
			double v = sample(text, key);

			if (v < last)
				t_fail(__FILE__, __LINE__, "%s = %g < %g", key, v, last);
			last = v;
		}
		snprintf(key, sizeof(key), "dmuser_request_duration_seconds_bucket{op=\"%s\",le=\"+Inf\"}",
			 dmu__mop_name(op));
		double inf = sample(text, key);
		snprintf(key, sizeof(key), "dmuser_request_duration_seconds_count{op=\"%s\"}",
			 dmu__mop_name(op));
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

TEST(render_prometheus_counters_and_names)
{
	struct metrics_snapshot s = two_channels();
	char *text = render(&s, &info, DMU_METRICS_PROMETHEUS);

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

TEST(render_prometheus_counters_end_in_total)
{
	struct metrics_snapshot s;
	memset(&s, 0, sizeof(s));
	char *text = render(&s, &info, DMU_METRICS_PROMETHEUS);
	char *copy = strdup(text), *save = NULL;
	unsigned counters = 0;

	for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char name[96], type[32];

		if (sscanf(line, "# TYPE %95s %31s", name, type) != 2)
			continue;
		if (!strcmp(type, "counter")) {
			counters++;
			CHECK(strlen(name) > 6 && !strcmp(name + strlen(name) - 6, "_total"));
		}
		if (!strcmp(type, "histogram"))
			CHECK(strstr(name, "_seconds") != NULL);
	}
	CHECK(counters >= 8);
	free(copy);
	free(text);
}

/*
 * The kernel's cumulative counts are counters named *_total, its levels
 * gauges; a key given twice is rendered once (a duplicate family would make
 * Prometheus reject the whole scrape); an unknown field is a gauge.
 */
TEST(render_prometheus_kernel_counters_are_counters)
{
	static const struct render_info positional = {
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
	struct metrics_snapshot s;
	char line[160];

	memset(&s, 0, sizeof(s));
	char *text = render(&s, &positional, DMU_METRICS_PROMETHEUS);
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

	static const struct render_info twice = {
		.version = "1", .name = "d", .target_status = "errors 1 errors=2 widgets 3",
	};
	text = render(&s, &twice, DMU_METRICS_PROMETHEUS);
	CHECK(strstr(text, "\ndmuser_kernel_errors_total 1\n") != NULL);
	CHECK(strstr(text, "\ndmuser_kernel_errors_total 2\n") == NULL);
	CHECK(strstr(text, "\ndmuser_kernel_status_widgets 3\n") != NULL);
	free(text);

	static const struct render_info none = { .version = "1", .name = "d" };
	text = render(&s, &none, DMU_METRICS_PROMETHEUS);
	CHECK(sample(text, "dmuser_kernel_status_up") == 0);
	CHECK(strstr(text, "dmuser_kernel_channels") == NULL);
	free(text);
}

/*
 * The whole Prometheus text, with every family present (samples, the
 * target's status), passes Prometheus' own linter and prom-check.py
 * (HELP/TYPE once each, cumulative buckets, +Inf == _count, counters end
 * in _total).
 */
TEST(render_prometheus_text_passes_promtool)
{
	static const struct render_info full = {
		.version = "9.8.7", .name = "dev0", .threads = 2,
		.target_status = "2 0 1 100 4 1 3",
	};
	struct metrics_snapshot s = two_channels();
	char *text = render(&s, &full, DMU_METRICS_PROMETHEUS);

	CHECK_EQ(check_with("out=$(promtool check metrics < %2$s 2>&1) && [ -z \"$out\" ] || "
			    "{ echo \"promtool: $out\"; exit 1; } # %1$s", text), 0);
	CHECK_EQ(check_with("python3 %s/tests/unit/prom-check.py %s --require dmuser_requests_total "
			    "dmuser_request_duration_seconds dmuser_kernel_requests_total "
			    "dmuser_kernel_errors_total dmuser_in_flight_requests >/dev/null", text), 0);
	free(text);
}

/* The status line's numbers by name, in target.fields. */
static json_t *fields_of(const char *status)
{
	struct render_info i = info;

	i.target_status = status;
	json_t *doc = render_json(&i);
	json_t *f = json_incref(json_object_get(json_object_get(doc, "target"), "fields"));

	json_decref(doc);
	REQUIRE(f != NULL);
	return f;
}

static uint64_t field(json_t *f, const char *key)
{
	json_t *v = json_object_get(f, key);

	if (!v || !json_is_integer(v)) {
		t_fail(__FILE__, __LINE__, "no field %s", key);
		return UINT64_MAX;
	}
	return (uint64_t)json_integer_value(v);
}

TEST(render_status_line_parsing)
{
	/* "key value" pairs and key=value words, other words skipped */
	json_t *f = fields_of("ctl0 channels 2 queued 17 mode rw timeouts=3 x=y 5");
	CHECK_EQ(json_object_size(f), 3);
	CHECK_EQ(field(f, "channels"), 2);
	CHECK_EQ(field(f, "queued"), 17);
	CHECK_EQ(field(f, "timeouts"), 3);
	json_decref(f);
	f = fields_of("");
	CHECK_EQ(json_object_size(f), 0);
	json_decref(f);

	/* dm-user's own format: seven numbers (module/README.md), then extras */
	f = fields_of("2 0 1 100 4 1 3 9");
	static const char *const names[] = {
		"channels", "queued", "in_flight", "completed", "errors", "timeouts",
		"requeues", "field_7",
	};
	static const uint64_t values[] = { 2, 0, 1, 100, 4, 1, 3, 9 };
	CHECK_EQ(json_object_size(f), 8);
	for (unsigned i = 0; i < 8; i++)
		CHECK_EQ(field(f, names[i]), values[i]);
	json_decref(f);

	/* at most 32 fields are read */
	char many[1024] = "";
	for (unsigned i = 0; i < 40; i++)
		snprintf(many + strlen(many), sizeof(many) - strlen(many), "k%u %u ", i, i);
	f = fields_of(many);
	CHECK_EQ(json_object_size(f), 32);
	json_decref(f);
}

TEST(render_json_shape)
{
	json_t *doc = render_json(&info);

	CHECK_STR(json_string_value(json_object_get(doc, "version")), "9.8.7");
	json_t *dev = json_object_get(doc, "device");
	CHECK_STR(json_string_value(json_object_get(dev, "name")), "dev\"0");
	CHECK_EQ(json_integer_value(json_object_get(dev, "size_bytes")), 1ull << 30);
	CHECK(json_is_false(json_object_get(dev, "read_only")));
	CHECK(json_is_true(json_object_get(dev, "direct")));
	CHECK_STR(json_string_value(json_object_get(dev, "backing_file")), "/tmp/backing");
	CHECK_STR(json_string_value(json_object_get(dev, "control_path")), "/dev/dm-user/dev0");
	CHECK_EQ(json_integer_value(json_object_get(doc, "threads")), 2);
	CHECK(json_real_value(json_object_get(doc, "uptime_seconds")) == 12.5);
	CHECK_EQ(json_integer_value(json_object_get(doc, "in_flight")), 1);
	CHECK_EQ(json_integer_value(json_object_get(doc, "channel_reads")), 5);
	CHECK_EQ(json_integer_value(json_object_get(doc, "channel_requests_read")), 6);
	CHECK_EQ(json_integer_value(json_object_get(doc, "channel_writes")), 4);
	CHECK_EQ(json_integer_value(json_object_get(doc, "channels_batched")), 1);

	json_t *ops = json_object_get(doc, "ops");
	CHECK_EQ(json_object_size(ops), MOP_COUNT);
	json_t *read = json_object_get(ops, "read");
	CHECK_EQ(json_integer_value(json_object_get(read, "requests")), 3);
	CHECK_EQ(json_integer_value(json_object_get(read, "bytes")), 16384);
	json_t *lat = json_object_get(read, "latency_ns");
	CHECK_EQ(json_integer_value(json_object_get(lat, "count")), 3);
	CHECK_EQ(json_integer_value(json_object_get(lat, "overflow")), 1);
	json_t *buckets = json_object_get(lat, "buckets");
	CHECK_EQ(json_array_size(buckets), HIST_BUCKETS - 1);
	uint64_t total = (uint64_t)json_integer_value(json_object_get(lat, "overflow"));
	for (size_t i = 0; i < json_array_size(buckets); i++) {
		json_t *b = json_array_get(buckets, i);

		CHECK_EQ(json_integer_value(json_object_get(b, "upper")), 2ull << i);
		total += (uint64_t)json_integer_value(json_object_get(b, "count"));
	}
	CHECK_EQ(total, 3);

	json_t *target = json_object_get(doc, "target");
	CHECK(json_is_true(json_object_get(target, "available")));
	CHECK_STR(json_string_value(json_object_get(target, "status")), info.target_status);
	CHECK_EQ(json_integer_value(json_object_get(json_object_get(target, "fields"), "queued")), 0);
	CHECK_EQ(json_integer_value(json_object_get(json_object_get(target, "fields"), "errors")), 4);
	json_decref(doc);
}

TEST(render_json_without_target_status)
{
	struct render_info i = info;

	i.target_status = NULL;
	json_t *doc = render_json(&i);
	json_t *target = json_object_get(doc, "target");
	CHECK(json_is_false(json_object_get(target, "available")));
	CHECK(json_is_null(json_object_get(target, "status")));
	CHECK_EQ(json_object_size(json_object_get(target, "fields")), 0);
	json_decref(doc);
}

/* Both shapes of the document match daemon/metrics.schema.json; a wrong one does not. */
TEST(render_json_matches_schema)
{
	static const char *const cmd =
		"python3 %1$s/tests/unit/validate-schema.py %1$s/daemon/metrics.schema.json %2$s";
	struct render_info i = info;

	for (int with_status = 0; with_status < 2; with_status++) {
		struct metrics_snapshot s = two_channels();

		i.target_status = with_status ? info.target_status : NULL;
		char *text = render(&s, &i, DMU_METRICS_JSON);
		CHECK_EQ(check_with(cmd, text), 0);
		free(text);
	}
	CHECK_EQ(check_with("python3 %1$s/tests/unit/validate-schema.py "
			    "%1$s/daemon/metrics.schema.json %2$s 2>/dev/null",
			    "{\"version\": \"1.0.0\"}"), 1);
}

/* ---- reopening ---------------------------------------------------------- */

/*
 * A reopened channel is a new one to the kernel: batching is asked for
 * again, and granted or not anew; each reopen is counted.  The control
 * device is a FIFO here (the handle's control path is set to it), the
 * first open a socket; rig.c plays the module's side of the ioctl.
 */
TEST(internal_reopen_asks_for_batching_again)
{
	DMU_OPTS(dmu_channel_opts, o, .buffer_size = 16384, .no_io_flusher = true);
	char dir[] = "/tmp/dmu-libint-XXXXXX", path[64];
	struct dmu_device *dev;
	struct dmu_channel *chan;
	struct metrics_snapshot s;
	int sv[2];

	REQUIRE(mkdtemp(dir) != NULL);
	snprintf(path, sizeof(path), "%s/ctl", dir);
	REQUIRE(mkfifo(path, 0600) == 0);
	REQUIRE(dmu_device_new("reopen0", 1 << 20, NULL, &dev) == 0);
	REQUIRE(strlen(path) < sizeof(dev->control_path));
	snprintf(dev->control_path, sizeof(dev->control_path), "%s", path);
	REQUIRE(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv) == 0);

	fake_ioctl = true;
	fake_ioctl_calls = 0;
	REQUIRE(dmu_channel_open_fd(dev, sv[1], &o, &chan) == 0);
	CHECK_EQ(fake_ioctl_calls, 1);
	CHECK(dmu_channel_batching(chan));

	fake_ioctl_result = -ENOTTY;	/* say a module without it was loaded meanwhile */
	CHECK_EQ(dmu_channel_reopen(chan), 0);
	CHECK_EQ(fake_ioctl_calls, 2);
	CHECK(!dmu_channel_batching(chan));
	dmu__device_snapshot(dev, &s);
	CHECK_EQ(s.channels_batched, 0);
	CHECK_EQ(s.channel_reopens, 1);

	fake_ioctl_result = 0;
	CHECK_EQ(dmu_channel_reopen(chan), 0);
	CHECK_EQ(fake_ioctl_calls, 3);
	CHECK(dmu_channel_batching(chan));
	dmu__device_snapshot(dev, &s);
	CHECK_EQ(s.channels_batched, 1);
	CHECK_EQ(s.channel_reopens, 2);

	fake_ioctl = false;
	CHECK_EQ(dmu_channel_close(chan), 0);
	CHECK_EQ(dmu_device_free(dev), 0);
	close(sv[0]);
	unlink(path);
	rmdir(dir);
}
