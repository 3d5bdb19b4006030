// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The HTTP endpoint's routes, methods, formats and headers, over a real
 * socket on 127.0.0.1: what dmuserd's own tests (tests/unit/test_http.c)
 * checked before dmuserd served its metrics through the library (issue 16).
 */
#include <arpa/inet.h>
#include <jansson.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "rig.h"
#include "test.h"

static const char page[] = "<!doctype html><html><body>live</body></html>\n";

struct server {
	struct rig r;
	struct dmu_http *http;
	uint16_t port;
};

/* A device with one WRITE of 4 KiB served, and its endpoint with a page at /. */
static void start(struct server *s)
{
	struct rig_cfg cfg = { 0 };
	static unsigned char w[4096];
	size_t off = 0;
	unsigned char rec[256];
	DMU_OPTS(dmu_http_opts, o, .index_html = page, .index_html_len = sizeof(page) - 1);

	rig_open(&s->r, &cfg);
	rig_serve(&s->r);
	send_req(s->r.k, 1, DM_USER_REQ_MAP_WRITE, 0, 0, sizeof(w), w);
	REQUIRE_EQ(recv_record(s->r.k, rec, sizeof(rec)), MSG);
	CHECK_EQ(reply_at(rec, &off, 0).type, DM_USER_RESP_SUCCESS);
	dmu_channel_stop(s->r.ch);		/* counted once the loop is done */
	CHECK_EQ(rig_join(&s->r), 0);
	REQUIRE(dmu_http_start(s->r.dev, "127.0.0.1:0", &o, &s->http) == 0);
	s->port = dmu_http_port(s->http);
	REQUIRE(s->port != 0);
}

static void stop(struct server *s)
{
	dmu_http_stop(s->http);
	rig_close(&s->r);
}

struct response {
	int code;
	char headers[2048];
	char *body;
};

/* One HTTP/1.0 request; the server closes the connection after replying. */
static struct response request(struct server *s, const char *method, const char *target,
			       const char *extra_headers)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(s->port) };
	struct response r = { 0 };
	char req[512];
	size_t cap = 1 << 20, len = 0;
	char *buf = malloc(cap + 1);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	REQUIRE(fd >= 0);
	REQUIRE(connect(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0);
	int n = snprintf(req, sizeof(req), "%s %s HTTP/1.0\r\nHost: x\r\n%s\r\n",
			 method, target, extra_headers ? extra_headers : "");
	REQUIRE(write(fd, req, (size_t)n) == n);
	for (ssize_t got; (got = read(fd, buf + len, cap - len)) > 0;)
		len += (size_t)got;
	close(fd);
	buf[len] = '\0';

	REQUIRE(sscanf(buf, "HTTP/1.%*d %d", &r.code) == 1);
	char *end = strstr(buf, "\r\n\r\n");
	REQUIRE(end != NULL);
	size_t hlen = (size_t)(end - buf) < sizeof(r.headers) - 1 ? (size_t)(end - buf) :
		      sizeof(r.headers) - 1;
	memcpy(r.headers, buf, hlen);
	r.body = strdup(end + 4);
	free(buf);
	return r;
}

static bool has_header(const struct response *r, const char *line)
{
	return strcasestr(r->headers, line) != NULL;
}

static int code_of(struct server *s, const char *method, const char *target, const char *extra)
{
	struct response r = request(s, method, target, extra);

	free(r.body);
	return r.code;
}

/* JSON by default and for ?format=json, whatever Accept says; a device without a target says so. */
TEST(http_metrics_json_by_default)
{
	struct server s;

	start(&s);
	for (int i = 0; i < 2; i++) {
		struct response r = request(&s, "GET", i ? "/metrics?format=json" : "/metrics",
					    i ? "Accept: text/plain\r\n" : NULL);
		CHECK_EQ(r.code, 200);
		CHECK(has_header(&r, "Content-Type: application/json"));
		json_t *doc = json_loads(r.body, 0, NULL);
		REQUIRE(doc != NULL);
		json_t *write = json_object_get(json_object_get(doc, "ops"), "write");
		CHECK_EQ(json_integer_value(json_object_get(write, "requests")), 1);
		CHECK_EQ(json_integer_value(json_object_get(write, "bytes")), 4096);
		json_t *target = json_object_get(doc, "target");
		CHECK(json_is_false(json_object_get(target, "available")));
		CHECK(json_is_null(json_object_get(target, "status")));
		json_decref(doc);
		free(r.body);
	}
	stop(&s);
}

/* Prometheus text for ?format=prometheus, and for an Accept that names text/plain. */
TEST(http_metrics_prometheus_by_query_or_accept)
{
	struct server s;

	start(&s);
	struct response r = request(&s, "GET", "/metrics?format=prometheus", NULL);
	CHECK_EQ(r.code, 200);
	CHECK(has_header(&r, "Content-Type: text/plain; version=0.0.4"));
	CHECK(strstr(r.body, "\ndmuser_requests_total{op=\"write\"} 1\n") != NULL);
	free(r.body);

	r = request(&s, "GET", "/metrics",
		    "Accept: application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.3\r\n");
	CHECK_EQ(r.code, 200);
	CHECK(has_header(&r, "Content-Type: text/plain; version=0.0.4"));
	CHECK(strstr(r.body, "# TYPE dmuser_request_duration_seconds histogram") != NULL);
	free(r.body);

	r = request(&s, "GET", "/metrics", "Accept: application/json\r\n");
	CHECK(has_header(&r, "Content-Type: application/json"));
	free(r.body);
	stop(&s);
}

TEST(http_unknown_path_is_404_bad_format_400)
{
	struct server s;

	start(&s);
	CHECK_EQ(code_of(&s, "GET", "/index.html", NULL), 404);
	CHECK_EQ(code_of(&s, "GET", "//", NULL), 404);
	CHECK_EQ(code_of(&s, "GET", "/metricsx", NULL), 404);
	CHECK_EQ(code_of(&s, "GET", "/metrics/", NULL), 404);
	CHECK_EQ(code_of(&s, "GET", "/metrics?format=xml", NULL), 400);
	stop(&s);
}

/* Only GET and HEAD; 405 says which are allowed; HEAD has headers only. */
TEST(http_bad_method_is_405)
{
	struct server s;

	start(&s);
	struct response r = request(&s, "POST", "/metrics", "Content-Length: 0\r\n");
	CHECK_EQ(r.code, 405);
	CHECK(has_header(&r, "Allow: GET, HEAD"));
	free(r.body);
	CHECK_EQ(code_of(&s, "DELETE", "/metrics", NULL), 405);
	CHECK_EQ(code_of(&s, "PUT", "/metrics", "Content-Length: 0\r\n"), 405);
	CHECK_EQ(code_of(&s, "POST", "/", "Content-Length: 0\r\n"), 405);
	r = request(&s, "HEAD", "/metrics", NULL);
	CHECK_EQ(r.code, 200);
	CHECK_STR(r.body, "");
	free(r.body);
	stop(&s);
}

/* The page given as index_html is served whole at /, as HTML. */
TEST(http_index_page)
{
	struct server s;

	start(&s);
	struct response r = request(&s, "GET", "/", NULL);
	CHECK_EQ(r.code, 200);
	CHECK(has_header(&r, "Content-Type: text/html; charset=utf-8"));
	CHECK_STR(r.body, page);
	free(r.body);
	r = request(&s, "HEAD", "/", NULL);
	CHECK_EQ(r.code, 200);
	CHECK_STR(r.body, "");
	free(r.body);
	stop(&s);
}
