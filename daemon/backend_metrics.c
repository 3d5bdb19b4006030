// SPDX-License-Identifier: GPL-2.0
#include "backend_metrics.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int add_json(const struct dmu_backend_counters *c, char **buf, size_t *len)
{
	json_t *doc = json_loadb(*buf, *len, 0, NULL);
	json_t *o = json_pack("{s:I, s:I, s:I, s:I, s:I}",
			      "reconnects", (json_int_t)c->reconnects,
			      "reconnect_attempts", (json_int_t)c->reconnect_attempts,
			      "requests_replayed", (json_int_t)c->requests_replayed,
			      "requests_failed", (json_int_t)c->requests_failed,
			      "disconnected", (json_int_t)c->disconnected);
	char *text = NULL;
	int err = -ENOMEM;

	if (!doc || !json_is_object(doc)) {
		err = -EINVAL;
		json_decref(o);
		goto out;
	}
	if (!o || json_object_set_new(doc, "backend", o))
		goto out;
	text = json_dumps(doc, JSON_INDENT(2));
	if (text) {
		size_t n = strlen(text);
		char *nl = realloc(text, n + 2);

		if (nl) {
			nl[n++] = '\n';	/* as libdmuser ends it */
			nl[n] = '\0';
			free(*buf);
			*buf = nl;
			*len = n;
			err = 0;
		} else {
			free(text);
		}
	}
out:
	json_decref(doc);
	return err;
}

static int add_prom(const struct dmu_backend_counters *c, char **buf, size_t *len)
{
	static const struct {
		const char *name, *type, *help;
		size_t off;
	} series[] = {
		{ "dmuser_backend_reconnects_total", "counter",
		  "Connections to the backend's server re-established after it was lost.",
		  offsetof(struct dmu_backend_counters, reconnects) },
		{ "dmuser_backend_reconnect_attempts_total", "counter",
		  "Attempts to re-establish a lost connection, successful or not.",
		  offsetof(struct dmu_backend_counters, reconnect_attempts) },
		{ "dmuser_backend_requests_replayed_total", "counter",
		  "Requests held while the server was away and run again on a new connection.",
		  offsetof(struct dmu_backend_counters, requests_replayed) },
		{ "dmuser_backend_requests_failed_total", "counter",
		  "Held requests failed with EIO: the server was not back within the window.",
		  offsetof(struct dmu_backend_counters, requests_failed) },
		{ "dmuser_backend_disconnected", "gauge",
		  "Connections to the backend's server that are down now.",
		  offsetof(struct dmu_backend_counters, disconnected) },
	};
	char *text = NULL;
	size_t n = 0;
	FILE *out = open_memstream(&text, &n);

	if (!out)
		return -ENOMEM;
	fwrite(*buf, 1, strlen(*buf), out);
	for (size_t i = 0; i < sizeof(series) / sizeof(series[0]); i++) {
		uint64_t v;

		memcpy(&v, (const char *)c + series[i].off, sizeof(v));
		fprintf(out, "# HELP %s %s\n# TYPE %s %s\n%s %" PRIu64 "\n", series[i].name,
			series[i].help, series[i].name, series[i].type, series[i].name, v);
	}
	if (fclose(out) || !text) {
		free(text);
		return -ENOMEM;
	}
	free(*buf);
	*buf = text;
	*len = n;
	return 0;
}

int dmu_backend_metrics_add(const struct dmu_backend_counters *c,
			    enum dmu_metrics_format format, char **buf, size_t *len)
{
	size_t n = strlen(*buf);
	int err = format == DMU_METRICS_PROMETHEUS ? add_prom(c, buf, &n) : add_json(c, buf, &n);

	if (!err && len)
		*len = n;
	return err;
}
