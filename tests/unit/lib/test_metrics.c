// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Metrics (counters and histograms, their JSON and Prometheus renderings,
 * the HTTP endpoint), and the promise that serving a request allocates
 * nothing.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <malloc.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "rig.h"
#include "test.h"

static unsigned char rec[64 * 1024];

/* Serve n writes of 4 KiB, one read, one flush that fails, one zone op. */
static void some_traffic(struct rig *r, unsigned n)
{
	unsigned char *p = pattern(4096, 30);
	size_t off;

	rig_serve(r);
	for (unsigned i = 0; i < n; i++) {
		send_req(r->k, i + 1, DM_USER_REQ_MAP_WRITE, 0, i * 8, 4096, p);
		CHECK_EQ(recv_record(r->k, rec, sizeof(rec)), MSG);
	}
	send_req(r->k, 100, DM_USER_REQ_MAP_READ, 0, 0, 4096, NULL);
	CHECK_EQ(recv_record(r->k, rec, sizeof(rec)), MSG + 4096);
	r->mem->fail[DMU_REQ_FLUSH] = -EIO;
	send_req(r->k, 101, DM_USER_REQ_MAP_FLUSH, 0, 0, 0, NULL);
	off = 0;
	recv_record(r->k, rec, sizeof(rec));
	CHECK_EQ(reply_at(rec, &off, 0).type, DM_USER_RESP_ERROR);
	send_req(r->k, 102, DM_USER_REQ_MAP_ZONE_OPEN, 0, 0, 0, NULL);
	recv_record(r->k, rec, sizeof(rec));
	dmu_channel_stop(r->ch);
	CHECK_EQ(rig_join(r), 0);
	free(p);
}

static json_t *render_json(struct dmu_device *dev)
{
	DMU_OPTS(dmu_metrics_opts, o, .version = "9.9.9", .backing_file = "/tmp/f");
	char *text = NULL;
	size_t len = 0;
	json_error_t e;
	json_t *doc;

	REQUIRE(dmu_metrics_render(dev, DMU_METRICS_JSON, &o, &text, &len) == 0);
	REQUIRE_EQ(strlen(text), len);
	doc = json_loads(text, 0, &e);
	REQUIRE(doc);
	free(text);
	return doc;
}

TEST(metrics_json_counts_and_schema)
{
	struct rig r;
	struct rig_cfg cfg = { 0 };
	json_t *doc;
	char *text = NULL;

	rig_open(&r, &cfg);
	some_traffic(&r, 5);
	doc = render_json(r.dev);
	CHECK_EQ(jget(doc, "ops.write.requests"), 5);
	CHECK_EQ(jget(doc, "ops.write.bytes"), 5 * 4096);
	CHECK_EQ(jget(doc, "ops.write.errors"), 0);
	CHECK_EQ(jget(doc, "ops.write.latency_ns.count"), 5);
	CHECK_EQ(jget(doc, "ops.read.requests"), 1);
	CHECK_EQ(jget(doc, "ops.flush.errors"), 1);
	CHECK_EQ(jget(doc, "ops.other.requests"), 1);
	CHECK_EQ(jget(doc, "replies.success"), 6);
	CHECK_EQ(jget(doc, "replies.error"), 1);
	CHECK_EQ(jget(doc, "replies.unsupported"), 1);
	CHECK_EQ(jget(doc, "backend_flushes"), 1);
	CHECK_EQ(jget(doc, "channel_requests_read"), 8);
	CHECK_EQ(jget(doc, "channel_writes"), 8);
	CHECK_EQ(jget(doc, "in_flight"), 0);
	CHECK_EQ(jget(doc, "threads"), 1);
	CHECK_EQ(jget(doc, "device.size_bytes"), DEV_SIZE);
	CHECK_STR(json_string_value(json_object_get(doc, "version")), "9.9.9");
	CHECK_STR(json_string_value(json_object_get(json_object_get(doc, "device"), "control_path")),
		  "/dev/dm-user/unit0");
	/* a device with no dm device behind it has no target status */
	CHECK(json_is_false(json_object_get(json_object_get(doc, "target"), "available")));

	/* the sum of the buckets is the count */
	json_t *b = json_object_get(json_object_get(json_object_get(json_object_get(doc, "ops"),
		"write"), "latency_ns"), "buckets");
	uint64_t sum = 0;
	for (size_t i = 0; i < json_array_size(b); i++)
		sum += (uint64_t)json_integer_value(json_object_get(json_array_get(b, i), "count"));
	CHECK_EQ(sum, 5);
	json_decref(doc);

	/* the document dmuserd serves: the same schema */
	REQUIRE(dmu_metrics_render(r.dev, DMU_METRICS_JSON, NULL, &text, NULL) == 0);
	CHECK_EQ(check_with("python3 %s/tests/unit/validate-schema.py "
			    "$DMU_SCHEMA %s", text), 0);
	free(text);
	rig_close(&r);
}

TEST(metrics_prometheus_is_valid_text_format)
{
	struct rig r;
	struct rig_cfg cfg = { 0 };
	char *text = NULL;

	rig_open(&r, &cfg);
	some_traffic(&r, 3);
	REQUIRE(dmu_metrics_render(r.dev, DMU_METRICS_PROMETHEUS, NULL, &text, NULL) == 0);
	CHECK(strstr(text, "dmuser_requests_total{op=\"write\"} 3\n") != NULL);
	CHECK(strstr(text, "dmuser_request_duration_seconds_count{op=\"write\"} 3\n") != NULL);
	CHECK(strstr(text, "dmuser_replies_total{status=\"error\"} 1\n") != NULL);
	CHECK_EQ(check_with("out=$(promtool check metrics < %2$s 2>&1) && [ -z \"$out\" ] || "
			    "{ echo \"promtool: $out\"; exit 1; } # %1$s", text), 0);
	CHECK_EQ(check_with("python3 %s/tests/unit/prom-check.py %s --require "
			    "dmuser_requests_total dmuser_request_duration_seconds", text), 0);
	free(text);
	rig_close(&r);
}

/* A closed channel's counts stay in the device's totals. */
TEST(metrics_survive_a_closed_channel)
{
	struct rig r;
	struct rig_cfg cfg = { 0 };
	json_t *doc;

	rig_open(&r, &cfg);
	some_traffic(&r, 4);
	CHECK_EQ(dmu_channel_close(r.ch), 0);
	close(r.k);
	r.ch = rig_open_channel(&r, &cfg, &r.k);
	doc = render_json(r.dev);
	CHECK_EQ(jget(doc, "ops.write.requests"), 4);
	CHECK_EQ(jget(doc, "threads"), 1);
	json_decref(doc);
	rig_close(&r);
}

struct response {
	int code;
	char *body;
};

static struct response get(uint16_t port, const char *target)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(port) };
	struct response resp = { 0 };
	size_t cap = 1 << 20, len = 0;
	char *buf = malloc(cap + 1), req[256];
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	REQUIRE(fd >= 0);
	REQUIRE(connect(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0);
	int n = snprintf(req, sizeof(req), "GET %s HTTP/1.0\r\nHost: x\r\n\r\n", target);
	REQUIRE(write(fd, req, (size_t)n) == n);
	for (ssize_t got; (got = read(fd, buf + len, cap - len)) > 0;)
		len += (size_t)got;
	close(fd);
	buf[len] = '\0';
	sscanf(buf, "HTTP/1.%*d %d", &resp.code);
	char *body = strstr(buf, "\r\n\r\n");
	resp.body = strdup(body ? body + 4 : "");
	free(buf);
	return resp;
}

/* One call serves the metrics; "localhost" resolves through getaddrinfo. */
TEST(http_serves_metrics)
{
	struct rig r;
	struct rig_cfg cfg = { 0 };
	DMU_OPTS(dmu_http_opts, ho, .index_html = "<html>hi</html>");
	struct dmu_http *h = NULL;
	struct response resp;

	rig_open(&r, &cfg);
	some_traffic(&r, 2);
	REQUIRE(dmu_http_start(r.dev, "localhost:0", &ho, &h) == 0);
	REQUIRE(dmu_http_port(h) != 0);
	char want[64];
	snprintf(want, sizeof(want), "127.0.0.1:%u", dmu_http_port(h));
	CHECK_STR(dmu_http_address(h), want);

	resp = get(dmu_http_port(h), "/metrics");
	CHECK_EQ(resp.code, 200);
	CHECK(strstr(resp.body, "\"write\"") != NULL);
	free(resp.body);
	resp = get(dmu_http_port(h), "/metrics?format=prometheus");
	CHECK_EQ(resp.code, 200);
	CHECK(strstr(resp.body, "dmuser_requests_total{op=\"write\"} 2") != NULL);
	free(resp.body);
	resp = get(dmu_http_port(h), "/");
	CHECK_EQ(resp.code, 200);
	CHECK_STR(resp.body, "<html>hi</html>");
	free(resp.body);
	resp = get(dmu_http_port(h), "/nope");
	CHECK_EQ(resp.code, 404);
	free(resp.body);
	dmu_http_stop(h);

	/* bad addresses are refused before anything listens */
	CHECK_EQ(dmu_http_start(r.dev, "nohost.invalid:1", NULL, &h), -EADDRNOTAVAIL);
	CHECK_EQ(dmu_http_start(r.dev, "::1:80", NULL, &h), -EINVAL);
	CHECK_EQ(dmu_http_start(r.dev, "127.0.0.1:99999", NULL, &h), -EINVAL);
	CHECK(h == NULL);
	rig_close(&r);
}

/* ---- no allocation on the request path -------------------------------- */

/*
 * Every allocation in this process goes through these; the ones made on
 * a thread while `counting` is set are counted.
 */
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);

static _Thread_local volatile bool counting;	/* volatile: the compiler knows malloc */
static atomic_uint allocations;

static void count(void)
{
	if (counting)
		atomic_fetch_add(&allocations, 1);
}

void *malloc(size_t n)
{
	count();
	return __libc_malloc(n);
}

void *calloc(size_t a, size_t b)
{
	count();
	return __libc_calloc(a, b);
}

void *realloc(void *p, size_t n)
{
	count();
	return __libc_realloc(p, n);
}

int posix_memalign(void **p, size_t align, size_t n)
{
	count();
	*p = __libc_memalign(align, n);
	return *p ? 0 : ENOMEM;
}

void *aligned_alloc(size_t align, size_t n)
{
	count();
	return __libc_memalign(align, n);
}

static void *serve_counting(void *arg)
{
	struct rig *r = arg;

	counting = true;
	r->result = dmu_channel_run(r->ch, &mem_ops, r->mem);
	counting = false;
	return NULL;
}

static int submit_now(void *arg, struct dmu_req *req)
{
	(void)arg;
	if (dmu_req_type(req) == DMU_REQ_READ)
		memset(dmu_req_buf(req), 1, dmu_req_len(req));
	dmu_req_complete(req, 0);
	return 0;
}

TEST(no_allocation_on_the_request_path)
{
	static const struct dmu_async_ops aops = { .sz = sizeof(aops), .submit = submit_now };
	struct rig r;
	struct rig_cfg cfg = { .batch = true };
	unsigned char *p = pattern(8192, 31);
	pthread_t t;

	/* the check sees an allocation: it is not vacuous */
	counting = true;
	void *volatile probe = malloc(16);
	counting = false;
	free(probe);
	CHECK_EQ(atomic_load(&allocations), 1);
	atomic_store(&allocations, 0);

	rig_open(&r, &cfg);
	REQUIRE(pthread_create(&t, NULL, serve_counting, &r) == 0);
	for (unsigned i = 0; i < 50; i++) {
		struct req q[] = {
			{ 3 * i + 1, DM_USER_REQ_MAP_WRITE, DM_USER_REQ_MAP_FLAG_FUA, 8, 8192, p },
			{ 3 * i + 2, DM_USER_REQ_MAP_READ, 0, 8, 8192, NULL },
			{ 3 * i + 3, DM_USER_REQ_MAP_WRITE_ZEROES, 0, 64, 65536, NULL },
		};
		send_batch(r.k, q, 3);
		CHECK_EQ(recv_record(r.k, rec, sizeof(rec)), 3 * MSG + 8192);
	}
	dmu_channel_stop(r.ch);
	pthread_join(t, NULL);
	CHECK_EQ(r.result, 0);
	CHECK_EQ(atomic_load(&allocations), 0);
	rig_close(&r);

	cfg.depth = 8;
	rig_open(&r, &cfg);
	for (unsigned i = 0; i < 50; i++) {
		struct req q[] = {
			{ 2 * i + 1, DM_USER_REQ_MAP_WRITE, 0, 8, 8192, p },
			{ 2 * i + 2, DM_USER_REQ_MAP_READ, 0, 8, 8192, NULL },
		};
		send_batch(r.k, q, 2);
		counting = true;
		int rc = dmu_channel_process(r.ch, &aops, NULL);
		counting = false;
		CHECK_EQ(rc, 0);
		CHECK_EQ(recv_record(r.k, rec, sizeof(rec)), 2 * MSG + 8192);
	}
	CHECK_EQ(atomic_load(&allocations), 0);
	rig_close(&r);
	free(p);
}
