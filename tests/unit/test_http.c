// SPDX-License-Identifier: GPL-2.0
/* The metrics endpoint, over a real socket on 127.0.0.1. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http.h"
#include "httpd.h"
#include "schema.h"
#include "test.h"

struct server {
	struct dmu_metrics metrics;
	struct dmu_http_source src;
	struct dmu_http *http;
	uint16_t port;
};

static int fake_status(void *ctx, char *buf, size_t len)
{
	if (!ctx)
		return -1;
	snprintf(buf, len, "%s", (const char *)ctx);
	return 0;
}

static void start(struct server *s, const char *status)
{
	struct dmu_listen l;

	REQUIRE(dmu_metrics_init(&s->metrics, 2) == 0);
	dmu_metrics_end(&s->metrics.thread[1], DMU_OP_WRITE, 0, 4096, 5000);
	s->src = (struct dmu_http_source){
		.metrics = &s->metrics,
		.info = {
			.version = "0.1.0", .name = "unit0", .backing_file = "/tmp/f",
			.control_path = "/dev/dm-user/unit0", .size_bytes = 1 << 20,
			.threads = 2,
		},
		.target_status = fake_status,
		.target_status_ctx = (void *)status,
	};
	REQUIRE(dmu_parse_listen("127.0.0.1:0", &l) == 0);
	s->http = dmu_http_start(&l, &s->src);
	REQUIRE(s->http != NULL);
	s->port = dmu_http_port(s->http);
	REQUIRE(s->port != 0);
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

TEST(http_metrics_json_by_default)
{
	struct server s;

	start(&s, "2 5 1 40 0 0 0");
	struct response r = request(&s, "GET", "/metrics", NULL);
	CHECK_EQ(r.code, 200);
	CHECK(has_header(&r, "Content-Type: application/json"));

	json_error_t err;
	json_t *doc = json_loads(r.body, 0, &err);
	REQUIRE(doc != NULL);
	json_t *write = json_object_get(json_object_get(doc, "ops"), "write");
	CHECK_EQ(json_integer_value(json_object_get(write, "requests")), 1);
	CHECK_EQ(json_integer_value(json_object_get(write, "bytes")), 4096);
	json_t *target = json_object_get(doc, "target");
	CHECK_STR(json_string_value(json_object_get(target, "status")), "2 5 1 40 0 0 0");
	json_t *fields = json_object_get(target, "fields");
	CHECK_EQ(json_integer_value(json_object_get(fields, "channels")), 2);
	CHECK_EQ(json_integer_value(json_object_get(fields, "queued")), 5);
	CHECK_EQ(json_integer_value(json_object_get(fields, "completed")), 40);
	CHECK_EQ(validate_against_schema(r.body, false), 0);
	json_decref(doc);
	dmu_http_stop(s.http);
}

TEST(http_metrics_json_when_target_is_gone)
{
	struct server s;

	start(&s, NULL);
	struct response r = request(&s, "GET", "/metrics?format=json", NULL);
	CHECK_EQ(r.code, 200);
	CHECK(strstr(r.body, "\"available\": false") != NULL);
	CHECK_EQ(validate_against_schema(r.body, false), 0);
	dmu_http_stop(s.http);
}

TEST(http_metrics_prometheus_by_query)
{
	struct server s;

	start(&s, "1 5 0 10 0 0 0");
	struct response r = request(&s, "GET", "/metrics?format=prometheus", NULL);
	CHECK_EQ(r.code, 200);
	CHECK(has_header(&r, "Content-Type: text/plain; version=0.0.4"));
	CHECK(strstr(r.body, "\ndmuser_requests_total{op=\"write\"} 1\n") != NULL);
	CHECK(strstr(r.body, "\ndmuser_kernel_queued_requests 5\n") != NULL);
	dmu_http_stop(s.http);
}

TEST(http_metrics_prometheus_by_accept)
{
	struct server s;

	start(&s, NULL);
	struct response r = request(&s, "GET", "/metrics",
		"Accept: application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.3\r\n");
	CHECK_EQ(r.code, 200);
	CHECK(has_header(&r, "Content-Type: text/plain; version=0.0.4"));
	CHECK(strstr(r.body, "# TYPE dmuser_request_duration_seconds histogram") != NULL);

	r = request(&s, "GET", "/metrics", "Accept: application/json\r\n");
	CHECK(has_header(&r, "Content-Type: application/json"));
	dmu_http_stop(s.http);
}

TEST(http_unknown_path_is_404)
{
	struct server s;

	start(&s, NULL);
	CHECK_EQ(request(&s, "GET", "/index.html", NULL).code, 404);
	CHECK_EQ(request(&s, "GET", "//", NULL).code, 404);
	CHECK_EQ(request(&s, "GET", "/metricsx", NULL).code, 404);
	CHECK_EQ(request(&s, "GET", "/metrics/", NULL).code, 404);
	dmu_http_stop(s.http);
}

TEST(http_live_page)
{
	struct server s;

	start(&s, NULL);
	struct response r = request(&s, "GET", "/", NULL);
	CHECK_EQ(r.code, 200);
	CHECK(has_header(&r, "Content-Type: text/html; charset=utf-8"));
	/* the built-in page, whole: it polls /metrics and exposes its charts' points */
	CHECK(strstr(r.body, "<!doctype html>") == r.body);
	CHECK(strstr(r.body, "</html>") != NULL);
	CHECK(strstr(r.body, "fetch(") != NULL);
	CHECK(strstr(r.body, "data-points") != NULL);
	/* self-contained: nothing loaded from elsewhere at run time */
	CHECK(strstr(r.body, "src=\"http") == NULL);
	CHECK(strstr(r.body, "href=\"http") == NULL);
	CHECK(strstr(r.body, "import ") == NULL);
	CHECK_EQ(strlen(r.body), (size_t)(dmu_web_index_html_end - dmu_web_index_html));

	r = request(&s, "HEAD", "/", NULL);
	CHECK_EQ(r.code, 200);
	CHECK_STR(r.body, "");
	CHECK_EQ(request(&s, "POST", "/", "Content-Length: 0\r\n").code, 405);
	dmu_http_stop(s.http);
}

TEST(http_bad_method_is_405)
{
	struct server s;

	start(&s, NULL);
	struct response r = request(&s, "POST", "/metrics", "Content-Length: 0\r\n");
	CHECK_EQ(r.code, 405);
	CHECK(has_header(&r, "Allow: GET, HEAD"));
	CHECK_EQ(request(&s, "DELETE", "/metrics", NULL).code, 405);
	CHECK_EQ(request(&s, "PUT", "/metrics", "Content-Length: 0\r\n").code, 405);
	r = request(&s, "HEAD", "/metrics", NULL);
	CHECK_EQ(r.code, 200);
	CHECK_STR(r.body, "");
	dmu_http_stop(s.http);
}

TEST(http_bad_format_is_400)
{
	struct server s;

	start(&s, NULL);
	CHECK_EQ(request(&s, "GET", "/metrics?format=xml", NULL).code, 400);
	dmu_http_stop(s.http);
}
