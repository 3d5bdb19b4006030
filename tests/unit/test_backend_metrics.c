// SPDX-License-Identifier: GPL-2.0
/*
 * The backend's counters at /metrics (daemon/backend_metrics.c): added to
 * what libdmuser renders for a device, as the "backend" object of the
 * JSON (which must still match daemon/metrics.schema.json) and as
 * dmuser_backend_* series (which promtool must accept).
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <dmuser.h>

#include "backend_metrics.h"
#include "test.h"

static const struct dmu_backend_counters sample_counters = {
	.reconnects = 3, .reconnect_attempts = 17, .requests_replayed = 29,
	.requests_failed = 5, .disconnected = 1,
};

static char *rendered(enum dmu_metrics_format format, size_t *len)
{
	struct dmu_device *dev;
	char *buf = NULL;

	REQUIRE(dmu_device_new("m0", 1 << 20, NULL, &dev) == 0);
	DMU_OPTS(dmu_metrics_opts, o, .backend = "nbd");
	REQUIRE(dmu_metrics_render(dev, format, &o, &buf, len) == 0);
	REQUIRE(dmu_backend_metrics_add(&sample_counters, format, &buf, len) == 0);
	dmu_device_free(dev);
	return buf;
}

/* cmd (a printf format, %s: the file) on text written to a file: its exit status. */
static int run_on(const char *cmd, const char *text)
{
	char path[] = "/tmp/dmu-metrics-XXXXXX", line[512];
	int fd = mkstemp(path), status;

	REQUIRE(fd >= 0);
	REQUIRE(write(fd, text, strlen(text)) == (ssize_t)strlen(text));
	close(fd);
	snprintf(line, sizeof(line), cmd, path);
	status = system(line);
	unlink(path);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

TEST(backend_metrics_json_object_matches_the_schema)
{
	size_t len;
	char *text = rendered(DMU_METRICS_JSON, &len);
	json_t *doc = json_loads(text, 0, NULL);
	json_t *b = json_object_get(doc, "backend");

	CHECK_EQ(len, strlen(text));
	CHECK(text[len - 1] == '\n');
	REQUIRE(b != NULL);
	CHECK_EQ(json_integer_value(json_object_get(b, "reconnects")), 3);
	CHECK_EQ(json_integer_value(json_object_get(b, "reconnect_attempts")), 17);
	CHECK_EQ(json_integer_value(json_object_get(b, "requests_replayed")), 29);
	CHECK_EQ(json_integer_value(json_object_get(b, "requests_failed")), 5);
	CHECK_EQ(json_integer_value(json_object_get(b, "disconnected")), 1);
	CHECK(json_object_get(doc, "ops") != NULL);	/* the library's fields stay */
	CHECK_STR(json_string_value(json_object_get(json_object_get(doc, "device"), "backend")),
		  "nbd");
	free(text);
	/* this device has no channel open; dmuserd's always has (the schema: >= 1) */
	json_object_set_new(doc, "threads", json_integer(1));
	text = json_dumps(doc, 0);
	json_decref(doc);
	int st = run_on("python3 ../../tests/unit/validate-schema.py ../../daemon/metrics.schema.json %s",
			text);

	free(text);
	if (st == 3)
		SKIP("python3-jsonschema is not installed");
	CHECK_EQ(st, 0);
}

TEST(backend_metrics_prometheus_series_pass_promtool)
{
	size_t len;
	char *text = rendered(DMU_METRICS_PROMETHEUS, &len);

	CHECK_EQ(len, strlen(text));
	CHECK(strstr(text, "dmuser_requests_total{") != NULL);	/* the library's */
	CHECK(strstr(text, "\ndmuser_backend_reconnects_total 3\n") != NULL);
	CHECK(strstr(text, "\ndmuser_backend_reconnect_attempts_total 17\n") != NULL);
	CHECK(strstr(text, "\ndmuser_backend_requests_replayed_total 29\n") != NULL);
	CHECK(strstr(text, "\ndmuser_backend_requests_failed_total 5\n") != NULL);
	CHECK(strstr(text, "# TYPE dmuser_backend_disconnected gauge\ndmuser_backend_disconnected 1\n") != NULL);
	if (system("command -v promtool >/dev/null"))
		SKIP("promtool is not installed (Debian: prometheus)");
	CHECK_EQ(run_on("out=$(promtool check metrics < %s 2>&1) && [ -z \"$out\" ] || "
			"{ echo \"promtool: $out\"; exit 1; }", text), 0);
	free(text);
}

/* Not JSON (a library that changed its output): an error, the text left alone. */
TEST(backend_metrics_refuse_what_is_not_a_json_object)
{
	char *buf = strdup("[1, 2]\n");
	size_t len = 7;

	REQUIRE(buf != NULL);
	CHECK(dmu_backend_metrics_add(&sample_counters, DMU_METRICS_JSON, &buf, &len) < 0);
	CHECK_STR(buf, "[1, 2]\n");
	free(buf);
}
