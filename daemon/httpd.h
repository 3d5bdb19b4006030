/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The HTTP endpoint shared by dmuserd and bpf/dmuser-exporter, on
 * libmicrohttpd's own thread:
 *   GET /                              the live page (web/index.html, built in)
 *   GET /metrics                       JSON
 *   GET /metrics?format=prometheus     Prometheus text format 0.0.4
 *   GET /metrics with Accept: text/plain   the same
 *   ?format=json                       JSON, whatever Accept says
 * Any other path is 404; any method but GET and HEAD is 405.  What
 * /metrics holds is the caller's: a render callback per scrape.
 */
#ifndef DMUSERD_HTTPD_H
#define DMUSERD_HTTPD_H

#include <stddef.h>
#include <stdint.h>

#include "listen.h"

enum dmu_httpd_format { DMU_HTTPD_JSON, DMU_HTTPD_PROMETHEUS };

/*
 * Renders /metrics in the given format into a malloc'ed *body of *len
 * bytes.  Returns 0, or -1 (the connection is dropped).  Called on the
 * HTTP thread, one scrape at a time.
 */
typedef int (*dmu_httpd_render_fn)(void *ctx, enum dmu_httpd_format format,
				   char **body, size_t *len);

struct dmu_httpd;

/* Start listening.  NULL (and a message) on failure. */
struct dmu_httpd *dmu_httpd_start(const struct dmu_listen *listen,
				  dmu_httpd_render_fn render, void *ctx);
/* The port actually bound (useful with port 0). */
uint16_t dmu_httpd_port(const struct dmu_httpd *h);
/* Stop listening; waits for a request in progress.  NULL is fine. */
void dmu_httpd_stop(struct dmu_httpd *h);

/* The built-in live page (web.S). */
extern const char dmu_web_index_html[];
extern const char dmu_web_index_html_end[];

#endif
