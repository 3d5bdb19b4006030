// SPDX-License-Identifier: GPL-2.0
#include "httpd.h"

#include <microhttpd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

#define STACK_SIZE (256 * 1024)
#define MAX_CONNECTIONS 16
#define CONNECTION_TIMEOUT_S 10

#define TYPE_JSON "application/json"
#define TYPE_PROMETHEUS "text/plain; version=0.0.4; charset=utf-8"
#define TYPE_TEXT "text/plain; charset=utf-8"
#define TYPE_HTML "text/html; charset=utf-8"

struct dmu_httpd {
	struct MHD_Daemon *daemon;
	dmu_httpd_render_fn render;
	void *ctx;
	uint16_t port;
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

static enum MHD_Result serve_metrics(struct dmu_httpd *h, struct MHD_Connection *conn)
{
	enum format format = choose_format(conn);
	char *body = NULL;
	size_t len = 0;

	if (format == FORMAT_BAD)
		return respond_text(conn, MHD_HTTP_BAD_REQUEST,
				    "format must be json or prometheus\n");
	if (h->render(h->ctx, format == FORMAT_JSON ? DMU_HTTPD_JSON : DMU_HTTPD_PROMETHEUS,
		      &body, &len)) {
		free(body);
		return MHD_NO;
	}
	return respond(conn, MHD_HTTP_OK, format == FORMAT_JSON ? TYPE_JSON : TYPE_PROMETHEUS,
		       body, len);
}

static enum MHD_Result serve_page(struct MHD_Connection *conn)
{
	size_t len = (size_t)(dmu_web_index_html_end - dmu_web_index_html);

	/* the page lives in .rodata for the life of the process */
	return queue(conn, MHD_HTTP_OK, TYPE_HTML,
		     MHD_create_response_from_buffer(len, (void *)dmu_web_index_html,
						     MHD_RESPMEM_PERSISTENT));
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn,
				  const char *url, const char *method,
				  const char *version, const char *upload_data,
				  size_t *upload_data_size, void **req_cls)
{
	bool page = !strcmp(url, "/");

	(void)version;
	(void)upload_data;
	(void)upload_data_size;
	(void)req_cls;

	if (!page && strcmp(url, "/metrics"))
		return respond_text(conn, MHD_HTTP_NOT_FOUND,
				    "not found: try /metrics, or / for the live page\n");
	if (strcmp(method, MHD_HTTP_METHOD_GET) && strcmp(method, MHD_HTTP_METHOD_HEAD))
		return respond_text(conn, MHD_HTTP_METHOD_NOT_ALLOWED,
				    "method not allowed: use GET\n");
	return page ? serve_page(conn) : serve_metrics(cls, conn);
}

static void on_log(void *cls, const char *fmt, va_list ap)
{
	char line[256];

	(void)cls;
	vsnprintf(line, sizeof(line), fmt, ap);
	line[strcspn(line, "\n")] = '\0';
	dmu_warn("metrics http: %s", line);
}

struct dmu_httpd *dmu_httpd_start(const struct dmu_listen *listen,
				  dmu_httpd_render_fn render, void *ctx)
{
	struct dmu_httpd *h = calloc(1, sizeof(*h));
	unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;

	if (!h)
		return NULL;
	if (listen->addr.ss_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	h->render = render;
	h->ctx = ctx;
	h->daemon = MHD_start_daemon(flags, 0, NULL, NULL, on_request, h,
		MHD_OPTION_EXTERNAL_LOGGER, on_log, NULL,	/* first, to catch all */
		MHD_OPTION_SOCK_ADDR, (const struct sockaddr *)&listen->addr,
		MHD_OPTION_THREAD_STACK_SIZE, (size_t)STACK_SIZE,
		MHD_OPTION_CONNECTION_LIMIT, (unsigned)MAX_CONNECTIONS,
		MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)CONNECTION_TIMEOUT_S,
		MHD_OPTION_END);
	if (!h->daemon) {
		dmu_error("cannot serve metrics on %s (address in use or not local?)",
			  listen->text);
		free(h);
		return NULL;
	}
	const union MHD_DaemonInfo *di = MHD_get_daemon_info(h->daemon,
							     MHD_DAEMON_INFO_BIND_PORT);
	h->port = di ? di->port : 0;
	return h;
}

uint16_t dmu_httpd_port(const struct dmu_httpd *h)
{
	return h->port;
}

void dmu_httpd_stop(struct dmu_httpd *h)
{
	if (!h)
		return;
	MHD_stop_daemon(h->daemon);
	free(h);
}
