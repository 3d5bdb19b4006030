/* SPDX-License-Identifier: GPL-2.0 */
/*
 * dmuserd's metrics endpoint (routes in httpd.h): /metrics is JSON
 * (metrics.schema.json) or Prometheus text of the workers' counters, read
 * without stopping them (metrics.h); / is the live page.
 */
#ifndef DMUSERD_HTTP_H
#define DMUSERD_HTTP_H

#include <stdint.h>

#include "metrics.h"
#include "metrics_render.h"
#include "options.h"

struct dmu_http_source {
	const struct dmu_metrics *metrics;
	struct dmu_metrics_info info;	/* uptime and target status: per scrape */
	uint64_t start_ns;		/* CLOCK_MONOTONIC when the daemon started */
	/*
	 * Copies the target's status line into buf; returns 0, or -1 when
	 * it is unavailable.  Called on the HTTP thread.  May be NULL.
	 */
	int (*target_status)(void *ctx, char *buf, size_t len);
	void *target_status_ctx;
};

struct dmu_http;

/* Start listening; src must outlive the server.  NULL (and a message) on failure. */
struct dmu_http *dmu_http_start(const struct dmu_listen *listen,
				const struct dmu_http_source *src);
/* The port actually bound (useful with port 0). */
uint16_t dmu_http_port(const struct dmu_http *h);
/* Stop listening; waits for a scrape in progress.  NULL is fine. */
void dmu_http_stop(struct dmu_http *h);

#endif
