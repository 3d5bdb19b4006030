// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The metrics' arithmetic and their two renderings, through the public
 * API only: requests served through the fake kernel, then
 * dmu_metrics_render().  The fake clock (rig.h) makes every latency
 * exactly what the backend's calls add to it, so each log2 bucket's
 * boundaries can be pinned; the fake device-mapper (fake_dm.c) gives an
 * attached device a target status line of the test's choosing; the fake
 * control node lets dmu_channel_reopen() open a new channel.  These were
 * white-box tests of lib/internal.h (tests/unit/lib-internal) until
 * issue 16 asked for the public header only.
 *
 * One property of the internals is not observable here: that the
 * in-flight gauge never goes below 0 (a reply after the channel went idle
 * would need a request answered after its cycle ended, which the library
 * never does).
 */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "rig.h"
#include "test.h"

#define BUCKETS 40		/* 39 bounded log2 buckets, then the overflow */
#define T0 1000000000000ull	/* the fake clock when a test starts */

static const char *const op_names[] = {
	"read", "write", "flush", "discard", "secure_erase", "write_zeroes", "other",
};
#define NOPS (sizeof(op_names) / sizeof(op_names[0]))

static unsigned char rec[64 * 1024];

static char *render(struct dmu_device *dev, enum dmu_metrics_format f,
		    const struct dmu_metrics_opts *o)
{
	char *text = NULL;
	size_t len = 0;

	REQUIRE(dmu_metrics_render(dev, f, o, &text, &len) == 0);
	REQUIRE_EQ(strlen(text), len);
	return text;
}

static json_t *render_json(struct dmu_device *dev, const struct dmu_metrics_opts *o)
{
	char *text = render(dev, DMU_METRICS_JSON, o);
	json_t *doc = json_loads(text, 0, NULL);

	REQUIRE(doc != NULL);
	free(text);
	return doc;
}

/* The value of the first sample line starting with `prefix`, or -1. */
static double sample(const char *text, const char *prefix)
{
	size_t n = strlen(prefix);

	for (const char *line = text; line && *line; line = strchr(line, '\n') + 1) {
		if (!strncmp(line, prefix, n) && line[n] == ' ')
			return strtod(line + n + 1, NULL);
		if (!strchr(line, '\n'))
			break;
	}
	return -1;
}

/* ops.<op>.latency_ns: bounded buckets' counts, then the overflow, into n[BUCKETS]. */
static void buckets_of(json_t *doc, const char *op, uint64_t *n)
{
	json_t *lat = json_object_get(json_object_get(json_object_get(doc, "ops"), op),
				      "latency_ns");
	json_t *b = json_object_get(lat, "buckets");

	REQUIRE_EQ(json_array_size(b), BUCKETS - 1);
	for (unsigned i = 0; i < BUCKETS - 1; i++)
		n[i] = (uint64_t)json_integer_value(json_object_get(json_array_get(b, i), "count"));
	n[BUCKETS - 1] = (uint64_t)json_integer_value(json_object_get(lat, "overflow"));
}

/* ---- the latency histogram's buckets ---------------------------------- */

/* An asynchronous backend whose every request takes *(uint64_t *)arg ns. */
static int submit_taking(void *arg, struct dmu_req *req)
{
	atomic_fetch_add(&fake_clock_ns, *(const uint64_t *)arg);
	dmu_req_complete(req, 0);
	return 0;
}

/*
 * Serve one READ that takes exactly ns; the bucket it landed in.  The
 * channel is asynchronous and served on this thread: a reply is counted
 * before dmu_channel_process() returns (the blocking loop counts it on its
 * own thread after the write, so a render could run before).
 */
static unsigned bucket_of_one_read(struct rig *r, uint64_t ns, uint64_t seq)
{
	static const struct dmu_async_ops aops = { .sz = sizeof(aops), .submit = submit_taking };
	uint64_t before[BUCKETS], after[BUCKETS];
	json_t *doc = render_json(r->dev, NULL);
	int landed = -1;

	buckets_of(doc, "read", before);
	json_decref(doc);
	send_req(r->k, seq, DM_USER_REQ_MAP_READ, 0, 0, 512, NULL);
	CHECK_EQ(dmu_channel_process(r->ch, &aops, &ns), 0);	/* read, submitted, completed */
	if (no_record(r->k, 0))
		CHECK_EQ(dmu_channel_process(r->ch, &aops, &ns), 0);	/* the reply */
	CHECK_EQ(recv_record(r->k, rec, sizeof(rec)), MSG + 512);
	doc = render_json(r->dev, NULL);
	buckets_of(doc, "read", after);
	json_decref(doc);
	for (unsigned i = 0; i < BUCKETS; i++) {
		if (after[i] == before[i])
			continue;
		if (after[i] != before[i] + 1 || landed >= 0)
			t_fail(__FILE__, __LINE__, "%llu ns: bucket %u went %llu -> %llu",
			       (unsigned long long)ns, i, (unsigned long long)before[i],
			       (unsigned long long)after[i]);
		landed = (int)i;
	}
	if (landed < 0)
		t_fail(__FILE__, __LINE__, "%llu ns: counted in no bucket", (unsigned long long)ns);
	return (unsigned)landed;
}

/*
 * Bucket i < 39 holds (2^i, 2^(i+1)] ns (bucket 0 also 0 and 1 ns), the
 * last everything above 2^39 ns: each boundary value lands below it,
 * one nanosecond more in the next bucket.  The JSON's "upper" of bucket i
 * is 2^(i+1).
 */
TEST(metrics_latency_bucket_boundaries)
{
	static const struct { uint64_t ns; unsigned bucket; } fixed[] = {
		{ 0, 0 }, { 1, 0 }, { 2, 0 }, { 3, 1 }, { 4, 1 }, { 5, 2 }, { 8, 2 },
		{ 9, 3 }, { 1000, 9 }, { 1ull << 39, BUCKETS - 2 },
		{ (1ull << 39) + 1, BUCKETS - 1 }, { 1ull << 45, BUCKETS - 1 },
	};
	struct rig r;
	struct rig_cfg cfg = { .depth = 1 };
	uint64_t seq = 1;

	fake_clock = true;
	atomic_store(&fake_clock_ns, T0);
	rig_open(&r, &cfg);
	for (unsigned i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
		CHECK_EQ(bucket_of_one_read(&r, fixed[i].ns, seq++), fixed[i].bucket);
	for (unsigned i = 0; i < BUCKETS - 1; i++) {
		uint64_t upper = 2ull << i;

		CHECK_EQ(bucket_of_one_read(&r, upper, seq++), i);
		CHECK_EQ(bucket_of_one_read(&r, upper + 1, seq++), i + 1);
		if (i > 0)
			CHECK_EQ(bucket_of_one_read(&r, (1ull << i) + 1, seq++), i);
	}

	json_t *doc = render_json(r.dev, NULL);
	json_t *b = json_object_get(json_object_get(json_object_get(json_object_get(doc, "ops"),
		"read"), "latency_ns"), "buckets");
	for (unsigned i = 0; i < BUCKETS - 1; i++)
		CHECK_EQ(json_integer_value(json_object_get(json_array_get(b, i), "upper")), 2ull << i);
	json_decref(doc);
	rig_close(&r);
}

/* The real clock: a backend that takes 3 ms is counted above 2^21 ns (2.1 ms). */
TEST(metrics_latency_on_the_real_clock)
{
	struct rig r;
	struct rig_cfg cfg = { 0 };
	uint64_t n[BUCKETS];

	rig_open(&r, &cfg);
	r.mem->delay_ms = 3;
	rig_serve(&r);
	send_req(r.k, 1, DM_USER_REQ_MAP_READ, 0, 0, 512, NULL);
	CHECK_EQ(recv_record(r.k, rec, sizeof(rec)), MSG + 512);
	dmu_channel_stop(r.ch);
	CHECK_EQ(rig_join(&r), 0);
	json_t *doc = render_json(r.dev, NULL);
	buckets_of(doc, "read", n);
	for (unsigned i = 0; i <= 20; i++)
		CHECK_EQ(n[i], 0);
	uint64_t total = 0;
	for (unsigned i = 21; i < BUCKETS; i++)
		total += n[i];
	CHECK_EQ(total, 1);
	CHECK(jget(doc, "ops.read.latency_ns.sum") >= 3000000);
	json_decref(doc);
	rig_close(&r);
}

/* ---- two channels ----------------------------------------------------- */

/*
 * A device with two channels: channel 0 batches (one read() brings both
 * its READs, one writev answers them; each backend call takes 750 ns, so
 * both wait 1500 ns), channel 1 does not (a read() and a write() per
 * request: a READ of 2^45 ns, a WRITE that fails, a zone request nobody
 * serves, a FLUSH).  When fake_dm names a device, it is attached, so the
 * target's status line is in the metrics; else a handle without one.
 */
struct two {
	struct rig r;
	struct dmu_channel *ch1;
	int k1;
	struct mem *mem1;
	pthread_t t1;
	int result1;
};

static void *serve1(void *arg)
{
	struct two *t = arg;

	t->result1 = dmu_channel_run(t->ch1, &mem_ops, t->mem1);
	return NULL;
}

static void two_channels(struct two *t)
{
	struct rig_cfg batched = { .batch = true }, plain = { 0 };
	struct rig *r = &t->r;
	unsigned char *p = pattern(4096, 7);
	size_t off;

	memset(t, 0, sizeof(*t));
	fake_clock = true;
	atomic_store(&fake_clock_ns, T0);
	r->mem = calloc(1, sizeof(*r->mem));
	t->mem1 = calloc(1, sizeof(*t->mem1));
	REQUIRE(r->mem && t->mem1);
	if (fake_dm.name)
		REQUIRE(dmu_device_attach(fake_dm.name, &r->dev) == 0);
	else
		REQUIRE(dmu_device_new("two0", DEV_SIZE, NULL, &r->dev) == 0);
	r->ch = rig_open_channel(r, &batched, &r->k);
	t->ch1 = rig_open_channel(r, &plain, &t->k1);
	CHECK(dmu_channel_batching(r->ch));
	CHECK(!dmu_channel_batching(t->ch1));

	r->mem->advance_ns = 750;
	rig_serve(r);
	struct req q[] = {
		{ 1, DM_USER_REQ_MAP_READ, 0, 0, 4096, NULL },
		{ 2, DM_USER_REQ_MAP_READ, 0, 8, 4096, NULL },
	};
	send_batch(r->k, q, 2);
	CHECK_EQ(recv_record(r->k, rec, sizeof(rec)), 2 * (MSG + 4096));
	dmu_channel_stop(r->ch);
	CHECK_EQ(rig_join(r), 0);

	REQUIRE(pthread_create(&t->t1, NULL, serve1, t) == 0);
	t->mem1->advance_ns = 1ull << 45;
	send_req(t->k1, 3, DM_USER_REQ_MAP_READ, 0, 0, 8192, NULL);
	CHECK_EQ(recv_record(t->k1, rec, sizeof(rec)), MSG + 8192);
	t->mem1->advance_ns = 100;
	t->mem1->fail[DMU_REQ_WRITE] = -EIO;
	send_req(t->k1, 4, DM_USER_REQ_MAP_WRITE, 0, 0, 4096, p);
	off = 0;
	recv_record(t->k1, rec, sizeof(rec));
	CHECK_EQ(reply_at(rec, &off, 0).type, DM_USER_RESP_ERROR);
	send_req(t->k1, 5, DM_USER_REQ_MAP_ZONE_OPEN, 0, 0, 0, NULL);
	off = 0;
	recv_record(t->k1, rec, sizeof(rec));
	CHECK_EQ(reply_at(rec, &off, 0).type, DM_USER_RESP_UNSUPPORTED);
	t->mem1->advance_ns = 10;
	send_req(t->k1, 6, DM_USER_REQ_MAP_FLUSH, 0, 0, 0, NULL);
	off = 0;
	recv_record(t->k1, rec, sizeof(rec));
	CHECK_EQ(reply_at(rec, &off, 0).type, DM_USER_RESP_SUCCESS);
	dmu_channel_stop(t->ch1);
	pthread_join(t->t1, NULL);
	CHECK_EQ(t->result1, 0);
	free(p);
}

static void two_close(struct two *t)
{
	CHECK_EQ(dmu_channel_close(t->ch1), 0);
	close(t->k1);
	free(t->mem1);
	rig_close(&t->r);
}

/* What two_channels() served, summed over both channels. */
TEST(metrics_two_channels_are_summed)
{
	struct two t;
	uint64_t n[BUCKETS];

	two_channels(&t);
	json_t *doc = render_json(t.r.dev, NULL);
	CHECK_EQ(jget(doc, "ops.read.requests"), 3);
	CHECK_EQ(jget(doc, "ops.read.bytes"), 16384);
	CHECK_EQ(jget(doc, "ops.read.latency_ns.count"), 3);
	CHECK_EQ(jget(doc, "ops.read.latency_ns.sum"), 3000 + (1ull << 45));
	buckets_of(doc, "read", n);
	CHECK_EQ(n[10], 2);			/* 1500 ns: (1024, 2048] */
	CHECK_EQ(n[BUCKETS - 1], 1);		/* 2^45 ns */
	CHECK_EQ(jget(doc, "ops.write.requests"), 1);
	CHECK_EQ(jget(doc, "ops.write.bytes"), 0);	/* failed: no bytes */
	CHECK_EQ(jget(doc, "ops.write.errors"), 1);
	CHECK_EQ(jget(doc, "ops.other.requests"), 1);
	CHECK_EQ(jget(doc, "ops.other.errors"), 0);	/* UNSUPPORTED is no error */
	CHECK_EQ(jget(doc, "ops.flush.requests"), 1);
	CHECK_EQ(jget(doc, "replies.success"), 4);
	CHECK_EQ(jget(doc, "replies.error"), 1);
	CHECK_EQ(jget(doc, "replies.unsupported"), 1);
	CHECK_EQ(jget(doc, "in_flight"), 0);
	CHECK_EQ(jget(doc, "backend_flushes"), 1);
	CHECK_EQ(jget(doc, "channel_reads"), 5);
	CHECK_EQ(jget(doc, "channel_requests_read"), 6);
	CHECK_EQ(jget(doc, "channel_writes"), 5);
	CHECK_EQ(jget(doc, "channels_batched"), 1);
	CHECK_EQ(jget(doc, "threads"), 2);
	json_decref(doc);

	/* a closed channel adds its counts, not its levels */
	CHECK_EQ(dmu_channel_close(t.r.ch), 0);
	close(t.r.k);
	t.r.ch = rig_open_channel(&t.r, &(struct rig_cfg){ 0 }, &t.r.k);
	doc = render_json(t.r.dev, NULL);
	CHECK_EQ(jget(doc, "channels_batched"), 0);
	CHECK_EQ(jget(doc, "threads"), 2);
	CHECK_EQ(jget(doc, "channel_reads"), 5);
	CHECK_EQ(jget(doc, "ops.read.requests"), 3);
	json_decref(doc);
	two_close(&t);
}

/* ---- in flight -------------------------------------------------------- */

struct held {
	struct dmu_req *req[8];
	unsigned n;
};

static int hold(void *arg, struct dmu_req *req)
{
	struct held *h = arg;

	h->req[h->n++] = req;
	return 0;
}

/*
 * Requests read and not yet answered: counted when read, counted down
 * as each reply leaves.
 */
TEST(metrics_in_flight_counts_down)
{
	static const struct dmu_async_ops aops = { .sz = sizeof(aops), .submit = hold };
	struct rig r;
	struct rig_cfg cfg = { .batch = true, .depth = 4 };
	struct held h = { 0 };
	json_t *doc;

	rig_open(&r, &cfg);
	struct req q[] = {
		{ 1, DM_USER_REQ_MAP_FLUSH, 0, 0, 0, NULL },
		{ 2, DM_USER_REQ_MAP_FLUSH, 0, 0, 0, NULL },
		{ 3, DM_USER_REQ_MAP_FLUSH, 0, 0, 0, NULL },
	};
	send_batch(r.k, q, 3);
	CHECK_EQ(dmu_channel_process(r.ch, &aops, &h), 0);
	REQUIRE_EQ(h.n, 3);
	doc = render_json(r.dev, NULL);
	CHECK_EQ(jget(doc, "in_flight"), 3);
	json_decref(doc);
	for (unsigned i = 0; i < 3; i++) {
		dmu_req_complete(h.req[i], 0);
		CHECK_EQ(dmu_channel_process(r.ch, &aops, &h), 0);
		recv_record(r.k, rec, sizeof(rec));
		doc = render_json(r.dev, NULL);
		CHECK_EQ(jget(doc, "in_flight"), 2 - i);
		json_decref(doc);
	}
	rig_close(&r);
}

/*
 * The stream breaks in the middle of a batch: the requests after the one
 * whose reply could not be written were never answered, and are no
 * longer in flight (the kernel requeues or fails them), nor counted as
 * served.
 */
TEST(metrics_in_flight_cleared_when_the_stream_breaks)
{
	struct rig r;
	struct rig_cfg cfg = { .batch = true };
	sigset_t pipe;

	sigemptyset(&pipe);
	sigaddset(&pipe, SIGPIPE);
	REQUIRE(pthread_sigmask(SIG_BLOCK, &pipe, NULL) == 0);	/* the thread inherits it */
	rig_open(&r, &cfg);
	struct req q[] = {
		{ 1, DM_USER_REQ_MAP_READ, 0, 0, 4 * CAP, NULL },	/* sent a buffer at a time */
		{ 2, DM_USER_REQ_MAP_FLUSH, 0, 0, 0, NULL },
		{ 3, DM_USER_REQ_MAP_FLUSH, 0, 0, 0, NULL },
	};
	send_batch(r.k, q, 3);
	close(r.k);		/* the kernel's end goes: the READ's reply fails */
	rig_serve(&r);
	CHECK(rig_join(&r) < 0);
	json_t *doc = render_json(r.dev, NULL);
	CHECK_EQ(jget(doc, "channel_requests_read"), 3);
	CHECK_EQ(jget(doc, "ops.read.requests"), 1);
	CHECK_EQ(jget(doc, "ops.flush.requests"), 0);
	CHECK_EQ(jget(doc, "in_flight"), 0);
	json_decref(doc);
	r.k = socket(AF_UNIX, SOCK_SEQPACKET, 0);	/* for rig_close */
	rig_close(&r);
}

/* ---- Prometheus ------------------------------------------------------- */

TEST(render_prometheus_histogram_is_cumulative_and_inf_is_count)
{
	struct two t;

	two_channels(&t);
	char *text = render(t.r.dev, DMU_METRICS_PROMETHEUS, NULL);
	json_t *doc = render_json(t.r.dev, NULL);

	for (unsigned op = 0; op < NOPS; op++) {
		char key[160];
		double last = 0;

		for (unsigned i = 0; i < BUCKETS - 1; i++) {
			snprintf(key, sizeof(key),
				 "dmuser_request_duration_seconds_bucket{op=\"%s\",le=\"%.12g\"}",
				 op_names[op], (double)(2ull << i) / 1e9);
			double v = sample(text, key);

			if (v < last)
				t_fail(__FILE__, __LINE__, "%s = %g < %g", key, v, last);
			last = v;
		}
		snprintf(key, sizeof(key), "dmuser_request_duration_seconds_bucket{op=\"%s\",le=\"+Inf\"}",
			 op_names[op]);
		double inf = sample(text, key);
		snprintf(key, sizeof(key), "dmuser_request_duration_seconds_count{op=\"%s\"}",
			 op_names[op]);
		double count = sample(text, key);
		char path[64];
		snprintf(path, sizeof(path), "ops.%s.latency_ns.count", op_names[op]);

		CHECK(inf >= last);
		CHECK(inf == count);
		CHECK_EQ((uint64_t)count, jget(doc, path));
	}
	/* 1500 ns twice: <= 2.048e-06 s, not <= 1.024e-06; 2^45 ns is only in +Inf. */
	CHECK(sample(text, "dmuser_request_duration_seconds_bucket{op=\"read\",le=\"1.024e-06\"}") == 0);
	CHECK(sample(text, "dmuser_request_duration_seconds_bucket{op=\"read\",le=\"2.048e-06\"}") == 2);
	CHECK(sample(text, "dmuser_request_duration_seconds_bucket{op=\"read\",le=\"549.755813888\"}") == 2);
	CHECK(sample(text, "dmuser_request_duration_seconds_bucket{op=\"read\",le=\"+Inf\"}") == 3);
	CHECK(fabs(sample(text, "dmuser_request_duration_seconds_sum{op=\"read\"}") -
		   (3000 + (double)(1ull << 45)) / 1e9) < 1e-6);
	json_decref(doc);
	free(text);
	two_close(&t);
}

/* The fake dm device `name`: DEV_SIZE bytes, control name dev0, this status line. */
static void attachable(const char *name, const char *status)
{
	fake_dm.name = name;
	fake_dm.table = "0 2048 dev0";
	fake_dm.sectors = DEV_SIZE / 512;
	fake_dm.status = status;
}

static const char *const status_words = "channels 2 queued 0 in_flight 1 errors=4 dev0 word";

TEST(render_prometheus_counters_and_names)
{
	DMU_OPTS(dmu_metrics_opts, o, .version = "9.8.7", .backend = "nbd");
	struct two t;

	attachable("dev\"0", status_words);
	two_channels(&t);
	atomic_store(&fake_clock_ns, T0 + 40000500000000ull);
	char *text = render(t.r.dev, DMU_METRICS_PROMETHEUS, &o);

	CHECK(sample(text, "dmuser_requests_total{op=\"read\"}") == 3);
	CHECK(sample(text, "dmuser_request_bytes_total{op=\"read\"}") == 16384);
	CHECK(sample(text, "dmuser_request_errors_total{op=\"write\"}") == 1);
	CHECK(sample(text, "dmuser_replies_total{status=\"unsupported\"}") == 1);
	CHECK(sample(text, "dmuser_backend_flushes_total") == 1);
	CHECK(sample(text, "dmuser_channel_reads_total") == 5);
	CHECK(sample(text, "dmuser_channel_requests_read_total") == 6);
	CHECK(sample(text, "dmuser_channel_writes_total") == 5);
	CHECK(sample(text, "dmuser_channels_batched") == 1);
	CHECK(sample(text, "dmuser_in_flight_requests") == 0);
	CHECK(sample(text, "dmuser_device_size_bytes") == DEV_SIZE);
	CHECK(sample(text, "dmuser_threads") == 2);
	CHECK(sample(text, "dmuser_uptime_seconds") == 40000.5);
	CHECK(sample(text, "dmuser_info{version=\"9.8.7\",device=\"dev\\\"0\",backend=\"nbd\"}") == 1);
	CHECK(sample(text, "dmuser_kernel_status_up") == 1);
	CHECK(sample(text, "dmuser_kernel_channels") == 2);
	CHECK(sample(text, "dmuser_kernel_in_flight_requests") == 1);
	CHECK(sample(text, "dmuser_kernel_errors_total") == 4);

	/* Format 0.0.4: every line a comment or "name{labels} value"; every
	 * family announced by TYPE before its samples; names dmuser_*. */
	char *copy = strdup(text), *save = NULL;
	char typed[64][96];
	unsigned ntyped = 0;
	for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char name[96];

		if (!strncmp(line, "# HELP ", 7))
			continue;
		if (sscanf(line, "# TYPE %95s", name) == 1) {
			REQUIRE(ntyped < 64);
			strcpy(typed[ntyped++], name);
			CHECK(!strncmp(name, "dmuser_", 7));
			continue;
		}
		REQUIRE(sscanf(line, "%95[a-zA-Z0-9_:]", name) == 1);
		CHECK(!strncmp(name, "dmuser_", 7));
		bool known = false;
		for (unsigned i = 0; i < ntyped; i++) {
			size_t n = strlen(typed[i]);

			known |= !strncmp(name, typed[i], n) &&
				 (!name[n] || !strcmp(name + n, "_bucket") ||
				  !strcmp(name + n, "_sum") || !strcmp(name + n, "_count"));
		}
		if (!known)
			t_fail(__FILE__, __LINE__, "sample before its TYPE: %s", line);
		const char *value = strrchr(line, ' ');
		char *end;
		REQUIRE(value != NULL);
		strtod(value + 1, &end);
		CHECK(*end == '\0');
	}
	free(copy);
	free(text);
	two_close(&t);
}

static void counters_end_in_total(const char *text)
{
	char *copy = strdup(text), *save = NULL;
	unsigned counters = 0;

	for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char name[96], type[32];

		if (sscanf(line, "# TYPE %95s %31s", name, type) != 2)
			continue;
		if (!strcmp(type, "counter")) {
			counters++;
			CHECK(strlen(name) > 6 && !strcmp(name + strlen(name) - 6, "_total"));
		}
		if (!strcmp(type, "histogram"))
			CHECK(strstr(name, "_seconds") != NULL);
	}
	CHECK(counters >= 8);
	free(copy);
}

TEST(render_prometheus_counters_end_in_total)
{
	struct dmu_device *dev;
	char *text;

	REQUIRE(dmu_device_new("d", DEV_SIZE, NULL, &dev) == 0);
	text = render(dev, DMU_METRICS_PROMETHEUS, NULL);
	counters_end_in_total(text);
	free(text);
	CHECK_EQ(dmu_device_free(dev), 0);

	attachable("d", "2 5 1 100 4 3 7");
	REQUIRE(dmu_device_attach("d", &dev) == 0);
	text = render(dev, DMU_METRICS_PROMETHEUS, NULL);
	CHECK(strstr(text, "dmuser_kernel_requests_total") != NULL);
	counters_end_in_total(text);
	free(text);
	CHECK_EQ(dmu_device_free(dev), 0);
}

/*
 * The kernel's cumulative counts are counters named *_total, its levels
 * gauges; a key given twice is rendered once (a duplicate family would make
 * Prometheus reject the whole scrape); an unknown field is a gauge.
 */
TEST(render_prometheus_kernel_counters_are_counters)
{
	static const char *const expect[][3] = {
		{ "dmuser_kernel_channels", "gauge", "2" },
		{ "dmuser_kernel_queued_requests", "gauge", "5" },
		{ "dmuser_kernel_in_flight_requests", "gauge", "1" },
		{ "dmuser_kernel_requests_total", "counter", "100" },
		{ "dmuser_kernel_errors_total", "counter", "4" },
		{ "dmuser_kernel_timeouts_total", "counter", "3" },
		{ "dmuser_kernel_requeues_total", "counter", "7" },
	};
	struct dmu_device *dev;
	char line[160];

	attachable("d", "2 5 1 100 4 3 7");
	REQUIRE(dmu_device_attach("d", &dev) == 0);
	char *text = render(dev, DMU_METRICS_PROMETHEUS, NULL);
	for (unsigned i = 0; i < sizeof(expect) / sizeof(expect[0]); i++) {
		snprintf(line, sizeof(line), "# TYPE %s %s\n", expect[i][0], expect[i][1]);
		if (!strstr(text, line))
			t_fail(__FILE__, __LINE__, "missing: %s", line);
		snprintf(line, sizeof(line), "\n%s %s\n", expect[i][0], expect[i][2]);
		if (!strstr(text, line))
			t_fail(__FILE__, __LINE__, "missing sample: %s", line + 1);
	}
	CHECK(strstr(text, "dmuser_target_") == NULL);
	free(text);

	fake_dm.status = "errors 1 errors=2 widgets 3";
	text = render(dev, DMU_METRICS_PROMETHEUS, NULL);
	CHECK(strstr(text, "\ndmuser_kernel_errors_total 1\n") != NULL);
	CHECK(strstr(text, "\ndmuser_kernel_errors_total 2\n") == NULL);
	CHECK(strstr(text, "\ndmuser_kernel_status_widgets 3\n") != NULL);
	free(text);

	fake_dm.status = NULL;	/* the status cannot be read */
	unsigned reads = fake_dm.status_reads;
	text = render(dev, DMU_METRICS_PROMETHEUS, NULL);
	CHECK(fake_dm.status_reads > reads);
	CHECK(sample(text, "dmuser_kernel_status_up") == 0);
	CHECK(strstr(text, "dmuser_kernel_channels") == NULL);
	free(text);
	CHECK_EQ(dmu_device_free(dev), 0);
}

/*
 * The six fields of a 1.5.0 target's status line (module/README.md "Status
 * and messages") under their names and types, the microseconds in seconds
 * (exactly: a decimal, not a double's digits); a 1.4 target's seven-number
 * line has none of them, and nothing is left to a dmuser_kernel_status_<key>.
 */
TEST(render_prometheus_saturation_fields)
{
	static const char *const expect[][3] = {
		{ "dmuser_kernel_depth_waits_total", "counter", "9" },
		{ "dmuser_kernel_depth_wait_seconds_total", "counter", "1.500001" },
		{ "dmuser_kernel_queued_requests_hwm", "gauge", "17" },
		{ "dmuser_kernel_in_flight_requests_hwm", "gauge", "5" },
		{ "dmuser_kernel_stalls_total", "counter", "2" },
		{ "dmuser_kernel_oldest_request_age_seconds", "gauge", "0.002500" },
	};
	const unsigned n = sizeof(expect) / sizeof(expect[0]);
	struct dmu_device *dev;
	char line[160];

	attachable("d", "2 5 1 100 4 3 7 9 1500001 17 5 2 2500");
	REQUIRE(dmu_device_attach("d", &dev) == 0);
	char *text = render(dev, DMU_METRICS_PROMETHEUS, NULL);
	for (unsigned i = 0; i < n; i++) {
		snprintf(line, sizeof(line), "# TYPE %s %s\n", expect[i][0], expect[i][1]);
		if (!strstr(text, line))
			t_fail(__FILE__, __LINE__, "missing: %s", line);
		snprintf(line, sizeof(line), "\n%s %s\n", expect[i][0], expect[i][2]);
		if (!strstr(text, line))
			t_fail(__FILE__, __LINE__, "missing sample: %s", line + 1);
		CHECK(sample(text, expect[i][0]) == strtod(expect[i][2], NULL));
	}
	CHECK(sample(text, "dmuser_kernel_requeues_total") == 7);
	CHECK(strstr(text, "dmuser_kernel_status_depth") == NULL);
	CHECK(strstr(text, "dmuser_kernel_status_field") == NULL);
	CHECK(strstr(text, "dmuser_kernel_status_oldest") == NULL);
	counters_end_in_total(text);
	free(text);

	/* an older target's seven numbers: the six families are simply absent */
	fake_dm.status = "2 5 1 100 4 3 7";
	text = render(dev, DMU_METRICS_PROMETHEUS, NULL);
	CHECK(sample(text, "dmuser_kernel_requeues_total") == 7);
	for (unsigned i = 0; i < n; i++)
		if (strstr(text, expect[i][0]))
			t_fail(__FILE__, __LINE__, "%s from a 7-field line", expect[i][0]);
	for (const char *p = text; (p = strstr(p, "dmuser_kernel_status_")); p++)
		CHECK(!strncmp(p, "dmuser_kernel_status_up", 23));
	free(text);

	/* a microsecond count past 2^53 is still exact */
	fake_dm.status = "2 5 1 100 4 3 7 9 18446744073709551615 17 5 2 0";
	text = render(dev, DMU_METRICS_PROMETHEUS, NULL);
	CHECK(strstr(text, "\ndmuser_kernel_depth_wait_seconds_total 18446744073709.551615\n") != NULL);
	CHECK(strstr(text, "\ndmuser_kernel_oldest_request_age_seconds 0.000000\n") != NULL);
	free(text);
	CHECK_EQ(dmu_device_free(dev), 0);
}

/*
 * dmu_device_status() through the fake libdevmapper: a 1.5.0 target's
 * thirteen numbers fill every member and fields says 13; a 1.4 target's
 * seven leave the six at 0 and fields at 7; a caller built before 1.2
 * (a smaller sz) gets only what it knew of, and sz says how much; a line
 * without seven numbers is EPROTO.
 */
TEST(device_status_reads_thirteen_or_seven_fields)
{
	struct dmu_device *dev;

	attachable("d", "2 5 1 100 4 3 7 9 1500001 17 5 2 2500");
	REQUIRE(dmu_device_attach("d", &dev) == 0);

	struct dmu_target_status st;
	memset(&st, 0xa5, sizeof(st));
	st.sz = sizeof(st);
	CHECK_EQ(dmu_device_status(dev, &st), 0);
	CHECK_EQ(st.sz, sizeof(st));
	CHECK_EQ(st.channels, 2);
	CHECK_EQ(st.queued, 5);
	CHECK_EQ(st.in_flight, 1);
	CHECK_EQ(st.completed, 100);
	CHECK_EQ(st.errors, 4);
	CHECK_EQ(st.timeouts, 3);
	CHECK_EQ(st.requeues, 7);
	CHECK_EQ(st.fields, 13);
	CHECK_EQ(st.depth_waits, 9);
	CHECK_EQ(st.depth_wait_us, 1500001);
	CHECK_EQ(st.hwm_queued, 17);
	CHECK_EQ(st.hwm_in_flight, 5);
	CHECK_EQ(st.stalls, 2);
	CHECK_EQ(st.oldest_us, 2500);

	fake_dm.status = "2 5 1 100 4 3 7";
	memset(&st, 0xa5, sizeof(st));
	st.sz = sizeof(st);
	CHECK_EQ(dmu_device_status(dev, &st), 0);
	CHECK_EQ(st.requeues, 7);
	CHECK_EQ(st.fields, 7);
	CHECK_EQ(st.depth_waits, 0);
	CHECK_EQ(st.depth_wait_us, 0);
	CHECK_EQ(st.hwm_queued, 0);
	CHECK_EQ(st.hwm_in_flight, 0);
	CHECK_EQ(st.stalls, 0);
	CHECK_EQ(st.oldest_us, 0);

	/* a newer target's extra numbers: counted, the thirteen still read */
	fake_dm.status = "2 5 1 100 4 3 7 9 1500001 17 5 2 2500 42 43";
	CHECK_EQ(dmu_device_status(dev, &st), 0);
	CHECK_EQ(st.fields, 15);
	CHECK_EQ(st.oldest_us, 2500);

	/* a 1.1 caller's struct ends after requeues: nothing past it is written */
	const size_t old_sz = offsetof(struct dmu_target_status, fields);
	memset(&st, 0xa5, sizeof(st));
	st.sz = old_sz;
	fake_dm.status = "2 5 1 100 4 3 7 9 1500001 17 5 2 2500";
	CHECK_EQ(dmu_device_status(dev, &st), 0);
	CHECK_EQ(st.sz, old_sz);
	CHECK_EQ(st.requeues, 7);
	const unsigned char *rest = (const unsigned char *)&st + old_sz;
	for (size_t i = 0; i < sizeof(st) - old_sz; i++)
		CHECK_EQ(rest[i], 0xa5);

	fake_dm.status = "2 5 1 100 4 3";
	CHECK_EQ(dmu_device_status(dev, &st), -EPROTO);
	fake_dm.status = "channels 2 queued 5";
	CHECK_EQ(dmu_device_status(dev, &st), -EPROTO);
	CHECK_EQ(dmu_device_free(dev), 0);
}

/*
 * The whole Prometheus text, with every family present (samples, the
 * target's status), passes Prometheus' own linter and prom-check.py
 * (HELP/TYPE once each, cumulative buckets, +Inf == _count, counters end
 * in _total).
 */
TEST(render_prometheus_text_passes_promtool)
{
	struct two t;

	attachable("dev0", "2 0 1 100 4 1 3 9 1500001 17 5 2 2500");
	two_channels(&t);
	char *text = render(t.r.dev, DMU_METRICS_PROMETHEUS, NULL);

	CHECK(sample(text, "dmuser_kernel_requests_total") == 100);
	CHECK(sample(text, "dmuser_kernel_oldest_request_age_seconds") == 0.0025);
	CHECK_EQ(check_with("out=$(promtool check metrics < %2$s 2>&1) && [ -z \"$out\" ] || "
			    "{ echo \"promtool: $out\"; exit 1; } # %1$s", text), 0);
	CHECK_EQ(check_with("python3 %s/tests/unit/prom-check.py %s --require dmuser_requests_total "
			    "dmuser_request_duration_seconds dmuser_kernel_requests_total "
			    "dmuser_kernel_errors_total dmuser_in_flight_requests "
			    "dmuser_kernel_depth_waits_total dmuser_kernel_depth_wait_seconds_total "
			    "dmuser_kernel_queued_requests_hwm dmuser_kernel_in_flight_requests_hwm "
			    "dmuser_kernel_stalls_total dmuser_kernel_oldest_request_age_seconds "
			    ">/dev/null", text), 0);
	free(text);
	two_close(&t);
}

/* ---- JSON ------------------------------------------------------------- */

/* The status line's numbers by name, in target.fields. */
static json_t *fields_of(struct dmu_device *dev, const char *status)
{
	fake_dm.status = status;
	json_t *doc = render_json(dev, NULL);
	json_t *f = json_incref(json_object_get(json_object_get(doc, "target"), "fields"));

	json_decref(doc);
	REQUIRE(f != NULL);
	return f;
}

static uint64_t field(json_t *f, const char *key)
{
	json_t *v = json_object_get(f, key);

	if (!v || !json_is_integer(v)) {
		t_fail(__FILE__, __LINE__, "no field %s", key);
		return UINT64_MAX;
	}
	return (uint64_t)json_integer_value(v);
}

TEST(render_status_line_parsing)
{
	struct dmu_device *dev;

	attachable("d", "");
	REQUIRE(dmu_device_attach("d", &dev) == 0);

	/* "key value" pairs and key=value words, other words skipped */
	json_t *f = fields_of(dev, "ctl0 channels 2 queued 17 mode rw timeouts=3 x=y 5");
	CHECK_EQ(json_object_size(f), 3);
	CHECK_EQ(field(f, "channels"), 2);
	CHECK_EQ(field(f, "queued"), 17);
	CHECK_EQ(field(f, "timeouts"), 3);
	json_decref(f);
	f = fields_of(dev, "");
	CHECK_EQ(json_object_size(f), 0);
	json_decref(f);

	/* dm-user's own format (module/README.md): thirteen numbers from target
	 * 1.5.0, seven before, and a newer target's extras as field_<n> */
	static const char *const names[] = {
		"channels", "queued", "in_flight", "completed", "errors", "timeouts",
		"requeues", "depth_waits", "depth_wait_us", "hwm_queued", "hwm_in_flight",
		"stalls", "oldest_us", "field_13",
	};
	static const uint64_t values[] = { 2, 0, 1, 100, 4, 1, 3, 9, 1500000, 17, 5, 2, 2500, 8 };
	f = fields_of(dev, "2 0 1 100 4 1 3 9 1500000 17 5 2 2500 8");
	CHECK_EQ(json_object_size(f), 14);
	for (unsigned i = 0; i < 14; i++)
		CHECK_EQ(field(f, names[i]), values[i]);
	json_decref(f);
	f = fields_of(dev, "2 0 1 100 4 1 3");
	CHECK_EQ(json_object_size(f), 7);
	for (unsigned i = 0; i < 7; i++)
		CHECK_EQ(field(f, names[i]), values[i]);
	CHECK(json_object_get(f, "depth_waits") == NULL);
	json_decref(f);

	/* at most 32 fields are read */
	static char many[1024];
	for (unsigned i = 0; i < 40; i++)
		snprintf(many + strlen(many), sizeof(many) - strlen(many), "k%u %u ", i, i);
	f = fields_of(dev, many);
	CHECK_EQ(json_object_size(f), 32);
	json_decref(f);
	CHECK_EQ(dmu_device_free(dev), 0);
}

TEST(render_json_shape)
{
	DMU_OPTS(dmu_metrics_opts, o, .version = "9.8.7", .backing_file = "/tmp/backing",
		 .direct = true, .backend = "file");
	struct two t;
	uint64_t n[BUCKETS];

	attachable("dev\"0", status_words);
	two_channels(&t);
	atomic_store(&fake_clock_ns, T0 + 40000500000000ull);
	json_t *doc = render_json(t.r.dev, &o);

	CHECK_STR(json_string_value(json_object_get(doc, "version")), "9.8.7");
	json_t *dev = json_object_get(doc, "device");
	CHECK_STR(json_string_value(json_object_get(dev, "name")), "dev\"0");
	CHECK_EQ(json_integer_value(json_object_get(dev, "size_bytes")), DEV_SIZE);
	CHECK(json_is_false(json_object_get(dev, "read_only")));
	CHECK(json_is_true(json_object_get(dev, "direct")));
	CHECK_STR(json_string_value(json_object_get(dev, "backing_file")), "/tmp/backing");
	CHECK_STR(json_string_value(json_object_get(dev, "backend")), "file");
	CHECK_STR(json_string_value(json_object_get(dev, "control_path")), "/dev/dm-user/dev0");
	CHECK_EQ(json_integer_value(json_object_get(doc, "threads")), 2);
	CHECK(json_real_value(json_object_get(doc, "uptime_seconds")) == 40000.5);
	CHECK_EQ(json_integer_value(json_object_get(doc, "in_flight")), 0);
	CHECK_EQ(json_integer_value(json_object_get(doc, "channel_reads")), 5);
	CHECK_EQ(json_integer_value(json_object_get(doc, "channel_requests_read")), 6);
	CHECK_EQ(json_integer_value(json_object_get(doc, "channel_writes")), 5);
	CHECK_EQ(json_integer_value(json_object_get(doc, "channels_batched")), 1);

	json_t *ops = json_object_get(doc, "ops");
	CHECK_EQ(json_object_size(ops), NOPS);
	for (unsigned i = 0; i < NOPS; i++)
		CHECK(json_object_get(ops, op_names[i]) != NULL);
	CHECK_EQ(jget(doc, "ops.read.requests"), 3);
	CHECK_EQ(jget(doc, "ops.read.bytes"), 16384);
	CHECK_EQ(jget(doc, "ops.read.latency_ns.count"), 3);
	CHECK_EQ(jget(doc, "ops.read.latency_ns.overflow"), 1);
	buckets_of(doc, "read", n);
	uint64_t total = 0;
	for (unsigned i = 0; i < BUCKETS; i++)
		total += n[i];
	CHECK_EQ(total, 3);

	json_t *target = json_object_get(doc, "target");
	CHECK(json_is_true(json_object_get(target, "available")));
	CHECK_STR(json_string_value(json_object_get(target, "status")), status_words);
	CHECK_EQ(json_integer_value(json_object_get(json_object_get(target, "fields"), "queued")), 0);
	CHECK_EQ(json_integer_value(json_object_get(json_object_get(target, "fields"), "errors")), 4);
	json_decref(doc);
	two_close(&t);

	/* read-only as the dm device says */
	struct dmu_device *ro;
	fake_dm.read_only = true;
	REQUIRE(dmu_device_attach("dev\"0", &ro) == 0);
	doc = render_json(ro, NULL);
	CHECK(json_is_true(json_object_get(json_object_get(doc, "device"), "read_only")));
	CHECK(json_is_false(json_object_get(json_object_get(doc, "device"), "direct")));
	CHECK_STR(json_string_value(json_object_get(json_object_get(doc, "device"), "backing_file")), "-");
	CHECK_STR(json_string_value(json_object_get(json_object_get(doc, "device"), "backend")), "-");
	json_decref(doc);
	CHECK_EQ(dmu_device_free(ro), 0);
}

TEST(render_json_without_target_status)
{
	struct dmu_device *dev;

	attachable("d", NULL);
	REQUIRE(dmu_device_attach("d", &dev) == 0);
	json_t *doc = render_json(dev, NULL);
	json_t *target = json_object_get(doc, "target");
	CHECK(fake_dm.status_reads > 0);
	CHECK(json_is_false(json_object_get(target, "available")));
	CHECK(json_is_null(json_object_get(target, "status")));
	CHECK_EQ(json_object_size(json_object_get(target, "fields")), 0);
	json_decref(doc);
	CHECK_EQ(dmu_device_free(dev), 0);
}

/*
 * Both shapes of the document (target status, a 1.5.0 target's thirteen
 * numbers, or none) match daemon/metrics.schema.json; a wrong one does not.
 */
TEST(render_json_matches_schema)
{
	static const char *const cmd =
		"python3 %1$s/tests/unit/validate-schema.py %1$s/daemon/metrics.schema.json %2$s";
	DMU_OPTS(dmu_metrics_opts, o, .version = "9.8.7", .backing_file = "/tmp/backing");
	struct two t;

	/* (the words of status_words give the same keys as the positional line:
	 * one python run fewer) */
	static const char *const statuses[] = { NULL, "2 0 1 100 4 1 3 9 1500001 17 5 2 2500" };

	attachable("dev0", status_words);
	two_channels(&t);
	for (unsigned k = 0; k < sizeof(statuses) / sizeof(statuses[0]); k++) {
		int with_status = statuses[k] != NULL;

		fake_dm.status = statuses[k];
		char *text = render(t.r.dev, DMU_METRICS_JSON, &o);
		CHECK(strstr(text, with_status ? "\"available\": true" : "\"available\": false") ||
		      strstr(text, with_status ? "\"available\":true" : "\"available\":false"));
		CHECK_EQ(check_with(cmd, text), 0);
		free(text);
	}
	two_close(&t);
	CHECK_EQ(check_with("python3 %1$s/tests/unit/validate-schema.py "
			    "%1$s/daemon/metrics.schema.json %2$s 2>/dev/null",
			    "{\"version\": \"1.0.0\"}"), 1);
}

/* ---- reopening -------------------------------------------------------- */

/*
 * A reopened channel is a new one to the kernel: batching is asked for
 * again, and granted or not anew; each reopen is counted.  The first
 * channel is a socket; the reopens open the control node, which the fake
 * node makes a new socketpair, and rig.c plays the module's side of the
 * ioctl.  The reopened channel serves on the new descriptor.
 */
TEST(channel_reopen_asks_for_batching_again)
{
	DMU_OPTS(dmu_device_opts, d, .control_name = "reopen0");
	struct rig r;
	struct rig_cfg cfg = { .batch = true };
	json_t *doc;

	memset(&r, 0, sizeof(r));
	r.mem = calloc(1, sizeof(*r.mem));
	REQUIRE(r.mem);
	REQUIRE(dmu_device_new("reopen0", DEV_SIZE, &d, &r.dev) == 0);
	CHECK_STR(dmu_device_control_path(r.dev), "/dev/dm-user/reopen0");
	fake_ioctl_calls = 0;
	r.ch = rig_open_channel(&r, &cfg, &r.k);
	CHECK_EQ(fake_ioctl_calls, 1);
	CHECK(dmu_channel_batching(r.ch));

	fake_node = true;
	fake_ioctl_result = -ENOTTY;	/* say a module without it was loaded meanwhile */
	CHECK_EQ(dmu_channel_reopen(r.ch), 0);
	CHECK_EQ(fake_node_opens, 1);
	CHECK_EQ(fake_ioctl_calls, 2);
	CHECK(!dmu_channel_batching(r.ch));
	doc = render_json(r.dev, NULL);
	CHECK_EQ(jget(doc, "channels_batched"), 0);
	CHECK_EQ(jget(doc, "channel_reopens"), 1);
	json_decref(doc);

	fake_ioctl_result = 0;
	close(fake_node_k);
	CHECK_EQ(dmu_channel_reopen(r.ch), 0);
	CHECK_EQ(fake_node_opens, 2);
	CHECK_EQ(fake_ioctl_calls, 3);
	CHECK(dmu_channel_batching(r.ch));
	doc = render_json(r.dev, NULL);
	CHECK_EQ(jget(doc, "channels_batched"), 1);
	CHECK_EQ(jget(doc, "channel_reopens"), 2);
	json_decref(doc);

	/* the new descriptor is the one served */
	close(r.k);
	r.k = fake_node_k;
	rig_serve(&r);
	send_req(r.k, 1, DM_USER_REQ_MAP_FLUSH, 0, 0, 0, NULL);
	CHECK_EQ(recv_record(r.k, rec, sizeof(rec)), MSG);
	dmu_channel_stop(r.ch);
	CHECK_EQ(rig_join(&r), 0);
	CHECK_STR(r.mem->log, "F");
	rig_close(&r);
}
