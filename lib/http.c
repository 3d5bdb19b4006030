// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The metrics endpoint, on libmicrohttpd's own thread:
 *   GET /                              opts->index_html, when given
 *   GET /metrics                       JSON
 *   GET /metrics?format=prometheus     Prometheus text format 0.0.4
 *   GET /metrics with Accept: text/plain   the same
 *   ?format=json                       JSON, whatever Accept says
 * Any other path is 404; any method but GET and HEAD is 405.
 */
#include <errno.h>
#include <microhttpd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define STACK_SIZE (256 * 1024)
#define MAX_CONNECTIONS 16
#define CONNECTION_TIMEOUT_S 10

#define TYPE_JSON "application/json"
#define TYPE_PROMETHEUS "text/plain; version=0.0.4; charset=utf-8"
#define TYPE_TEXT "text/plain; charset=utf-8"
#define TYPE_HTML "text/html; charset=utf-8"

struct dmu_http {
	struct MHD_Daemon *daemon;
	struct dmu_device *dev;
	struct dmu_metrics_opts metrics;
	bool have_metrics;
	dmu_http_render_fn render;
	void *render_arg;
	const char *index_html;
	size_t index_html_len;
	uint16_t port;
	char address[80];
};

static enum MHD_Result queue(struct MHD_Connection *conn, unsigned code,
			     const char *type, struct MHD_Response *r)
{
	enum MHD_Result ret;

	if (!r)
		return MHD_NO;
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
	if (code == MHD_HTTP_METHOD_NOT_ALLOWED)
		MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
	ret = MHD_queue_response(conn, code, r);
	MHD_destroy_response(r);
	return ret;
}

/* Takes ownership of body (malloc'ed) and queues it. */
static enum MHD_Result respond(struct MHD_Connection *conn, unsigned code,
			       const char *type, char *body, size_t len)
{
	struct MHD_Response *r;

	if (!body)
		return MHD_NO;	/* out of memory: drop the connection */
	r = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
	if (!r)
		free(body);
	return queue(conn, code, type, r);
}

static enum MHD_Result respond_text(struct MHD_Connection *conn, unsigned code,
				    const char *text)
{
	return respond(conn, code, TYPE_TEXT, strdup(text), strlen(text));
}

enum format { FORMAT_JSON, FORMAT_PROMETHEUS, FORMAT_BAD };

static enum format choose_format(struct MHD_Connection *conn)
{
	const char *q = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "format");
	const char *accept;

	if (q)
		return !strcmp(q, "prometheus") ? FORMAT_PROMETHEUS :
		       !strcmp(q, "json") ? FORMAT_JSON : FORMAT_BAD;
	accept = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_ACCEPT);
	if (accept && strstr(accept, "text/plain"))
		return FORMAT_PROMETHEUS;
	return FORMAT_JSON;
}

static enum MHD_Result serve_metrics(struct dmu_http *h, struct MHD_Connection *conn)
{
	enum format format = choose_format(conn);
	enum dmu_metrics_format f;
	char *body = NULL;
	size_t len = 0;
	int err;

	if (format == FORMAT_BAD)
		return respond_text(conn, MHD_HTTP_BAD_REQUEST,
				    "format must be json or prometheus\n");
	f = format == FORMAT_JSON ? DMU_METRICS_JSON : DMU_METRICS_PROMETHEUS;
	if (h->render)
		err = h->render(h->render_arg, f, &body, &len);
	else
		err = dmu__render(h->dev, f, h->have_metrics ? &h->metrics : NULL, &body, &len);
	if (err) {
		free(body);
		return MHD_NO;
	}
	return respond(conn, MHD_HTTP_OK, format == FORMAT_JSON ? TYPE_JSON : TYPE_PROMETHEUS,
		       body, len);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn,
				  const char *url, const char *method,
				  const char *version, const char *upload_data,
				  size_t *upload_data_size, void **req_cls)
{
	struct dmu_http *h = cls;
	bool page = !strcmp(url, "/") && h->index_html;

	(void)version;
	(void)upload_data;
	(void)upload_data_size;
	(void)req_cls;

	if (!page && strcmp(url, "/metrics"))
		return respond_text(conn, MHD_HTTP_NOT_FOUND, "not found: try /metrics\n");
	if (strcmp(method, MHD_HTTP_METHOD_GET) && strcmp(method, MHD_HTTP_METHOD_HEAD))
		return respond_text(conn, MHD_HTTP_METHOD_NOT_ALLOWED,
				    "method not allowed: use GET\n");
	if (page)	/* the caller's page outlives the server */
		return queue(conn, MHD_HTTP_OK, TYPE_HTML,
			     MHD_create_response_from_buffer(h->index_html_len,
							     (void *)h->index_html,
							     MHD_RESPMEM_PERSISTENT));
	return serve_metrics(h, conn);
}

static void on_log(void *cls, const char *fmt, va_list ap)
{
	char line[256];

	(void)cls;
	vsnprintf(line, sizeof(line), fmt, ap);
	line[strcspn(line, "\n")] = '\0';
	dmu__warn("metrics http: %s", line);
}

DMU_API int dmu_http_start(struct dmu_device *dev, const char *listen,
			   const struct dmu_http_opts *opts, struct dmu_http **httpp)
{
	unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;
	struct dmu_http_opts o;
	struct listen_addr l;
	struct dmu_http *h;
	int err;

	OPTS_COPY(o, opts);
	*httpp = NULL;
	if (!dev && !o.render)
		return -EINVAL;
	err = dmu__parse_listen(listen, &l);
	if (err) {
		dmu__err("cannot listen on \"%s\": %s", listen ? listen : "",
			 err == -EINVAL ? "want PORT, HOST:PORT or [IPV6]:PORT" : "unknown host");
		return err;
	}
	h = calloc(1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	h->dev = dev;
	if (o.metrics) {
		OPTS_COPY(h->metrics, o.metrics);
		h->have_metrics = true;
	}
	h->render = o.render;
	h->render_arg = o.render_arg;
	h->index_html = o.index_html;
	h->index_html_len = o.index_html_len ? o.index_html_len :
			    (o.index_html ? strlen(o.index_html) : 0);
	if (l.addr.ss_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	h->daemon = MHD_start_daemon(flags, 0, NULL, NULL, on_request, h,
		MHD_OPTION_EXTERNAL_LOGGER, on_log, NULL,	/* first, to catch all */
		MHD_OPTION_SOCK_ADDR, (const struct sockaddr *)&l.addr,
		MHD_OPTION_THREAD_STACK_SIZE, (size_t)STACK_SIZE,
		MHD_OPTION_CONNECTION_LIMIT, (unsigned)MAX_CONNECTIONS,
		MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)CONNECTION_TIMEOUT_S,
		MHD_OPTION_END);
	if (!h->daemon) {
		dmu__err("cannot serve metrics on %s (address in use or not local?)", listen);
		free(h);
		return -EADDRINUSE;
	}
	const union MHD_DaemonInfo *di = MHD_get_daemon_info(h->daemon,
							     MHD_DAEMON_INFO_BIND_PORT);
	h->port = di ? di->port : 0;
	snprintf(h->address, sizeof(h->address), "%s:%u", l.host, h->port);
	*httpp = h;
	return 0;
}

DMU_API const char *dmu_http_address(const struct dmu_http *h)
{
	return h->address;
}

DMU_API uint16_t dmu_http_port(const struct dmu_http *h)
{
	return h->port;
}

DMU_API void dmu_http_stop(struct dmu_http *h)
{
	if (!h)
		return;
	MHD_stop_daemon(h->daemon);
	free(h);
}
