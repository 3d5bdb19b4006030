// SPDX-License-Identifier: GPL-2.0
#include "http.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "httpd.h"

struct dmu_http {
	struct dmu_httpd *httpd;
	const struct dmu_http_source *src;
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int render_json(const struct dmu_metrics_snapshot *snap,
		       const struct dmu_metrics_info *info, char **body, size_t *len)
{
	json_t *doc = dmu_render_json(snap, info);
	char *text = doc ? json_dumps(doc, JSON_INDENT(2)) : NULL;
	char *nl;

	json_decref(doc);
	if (!text)
		return -1;
	/* JSON_INDENT leaves no final newline; curl users like one */
	*len = strlen(text);
	nl = realloc(text, *len + 2);
	if (!nl) {
		free(text);
		return -1;
	}
	nl[(*len)++] = '\n';
	nl[*len] = '\0';
	*body = nl;
	return 0;
}

static int render(void *ctx, enum dmu_httpd_format format, char **body, size_t *len)
{
	const struct dmu_http *h = ctx;
	const struct dmu_http_source *src = h->src;
	struct dmu_metrics_snapshot snap;
	struct dmu_metrics_info info = src->info;
	char status[1024];
	FILE *out;
	int err;

	dmu_metrics_snapshot(src->metrics, &snap);
	info.uptime_seconds = (double)(now_ns() - src->start_ns) / 1e9;
	info.target_status = NULL;
	if (src->target_status &&
	    src->target_status(src->target_status_ctx, status, sizeof(status)) == 0)
		info.target_status = status;

	if (format == DMU_HTTPD_JSON)
		return render_json(&snap, &info, body, len);

	out = open_memstream(body, len);
	if (!out)
		return -1;
	err = dmu_render_prometheus(&snap, &info, out);
	return fclose(out) || err ? -1 : 0;
}

struct dmu_http *dmu_http_start(const struct dmu_listen *listen,
				const struct dmu_http_source *src)
{
	struct dmu_http *h = calloc(1, sizeof(*h));

	if (!h)
		return NULL;
	h->src = src;
	h->httpd = dmu_httpd_start(listen, render, h);
	if (!h->httpd) {
		free(h);
		return NULL;
	}
	return h;
}

uint16_t dmu_http_port(const struct dmu_http *h)
{
	return dmu_httpd_port(h->httpd);
}

void dmu_http_stop(struct dmu_http *h)
{
	if (!h)
		return;
	dmu_httpd_stop(h->httpd);
	free(h);
}
