// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The wire protocol of the blocking loop in detail, against the fake
 * kernel: what dmuserd's own protocol tests (tests/unit/test_channel.c)
 * checked before dmuserd ran on the library (issue 16), ported here.
 * The backend records every call (op, range, NOUNMAP, buffer alignment)
 * and fails the next call of an op when told to.
 */
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "rig.h"
#include "test.h"

enum { B_READ, B_WRITE, B_FLUSH, B_DISCARD, B_ZEROES, B_ERASE, B_COUNT };

struct call {
	int op;
	uint64_t off, len;
	bool may_unmap;
	bool aligned;		/* the data buffer was page aligned */
};

struct rec {
	unsigned char data[DEV_SIZE];
	struct call log[400];
	unsigned nlog;
	unsigned calls[B_COUNT];
	int fail_op, fail_err;	/* the next call of fail_op returns fail_err */
};

static int record(struct rec *b, int op, uint64_t off, uint64_t len, bool may_unmap,
		  const void *buf)
{
	b->calls[op]++;
	if (b->nlog < sizeof(b->log) / sizeof(b->log[0]))
		b->log[b->nlog++] = (struct call){
			op, off, len, may_unmap, buf && (uintptr_t)buf % 4096 == 0,
		};
	if (b->fail_err && b->fail_op == op) {
		int err = b->fail_err;

		b->fail_err = 0;
		return err;
	}
	return 0;
}

static int b_read(void *arg, void *buf, size_t len, uint64_t off)
{
	struct rec *b = arg;
	int err = record(b, B_READ, off, len, false, buf);

	if (!err)
		memcpy(buf, b->data + off, len);
	return err;
}

static int b_write(void *arg, const void *buf, size_t len, uint64_t off)
{
	struct rec *b = arg;
	int err = record(b, B_WRITE, off, len, false, buf);

	if (!err)
		memcpy(b->data + off, buf, len);
	return err;
}

static int b_flush(void *arg)
{
	return record(arg, B_FLUSH, 0, 0, false, NULL);
}

static int b_discard(void *arg, uint64_t off, uint64_t len)
{
	return record(arg, B_DISCARD, off, len, false, NULL);
}

static int b_zeroes(void *arg, uint64_t off, uint64_t len, bool may_unmap)
{
	struct rec *b = arg;
	int err = record(b, B_ZEROES, off, len, may_unmap, NULL);

	if (!err)
		memset(b->data + off, 0, len);
	return err;
}

static int b_erase(void *arg, uint64_t off, uint64_t len)
{
	struct rec *b = arg;
	int err = record(b, B_ERASE, off, len, false, NULL);

	if (!err)
		memset(b->data + off, 0, len);
	return err;
}

static const struct dmu_ops rec_ops = {
	.sz = sizeof(rec_ops),
	.read = b_read, .write = b_write, .flush = b_flush, .discard = b_discard,
	.write_zeroes = b_zeroes, .secure_erase = b_erase,
};

/* A device, one channel on the fake kernel's socket k, served on a thread. */
struct p {
	struct dmu_device *dev;
	struct dmu_channel *ch;
	struct rec *b;
	int k;
	pthread_t thread;
	int result;
};

struct p_cfg {
	bool batch;		/* the fake kernel grants batching */
	int ioctl_result;	/* what it answers instead (with batch) */
	size_t mem_align;
	int sock_type;		/* 0: SOCK_SEQPACKET */
};

static void *p_main(void *arg)
{
	struct p *p = arg;

	p->result = dmu_channel_run(p->ch, &rec_ops, p->b);
	return NULL;
}

static void p_open(struct p *p, const struct p_cfg *cfg)
{
	DMU_OPTS(dmu_channel_opts, o, .buffer_size = CAP, .mem_align = cfg->mem_align,
		 .no_io_flusher = true);
	int sv[2];

	memset(p, 0, sizeof(*p));
	p->b = calloc(1, sizeof(*p->b));
	REQUIRE(p->b);
	for (size_t i = 0; i < DEV_SIZE; i++)
		p->b->data[i] = (unsigned char)(i * 7 + i / 512);
	REQUIRE(dmu_device_new("proto0", DEV_SIZE, NULL, &p->dev) == 0);
	REQUIRE(socketpair(AF_UNIX, cfg->sock_type ? cfg->sock_type : SOCK_SEQPACKET, 0, sv) == 0);
	fake_ioctl = cfg->batch;
	fake_ioctl_result = cfg->ioctl_result;
	fake_ioctl_calls = 0;
	REQUIRE(dmu_channel_open_fd(p->dev, sv[1], &o, &p->ch) == 0);
	p->k = sv[0];
	REQUIRE(pthread_create(&p->thread, NULL, p_main, p) == 0);
}

/* The loop's result once it ended by itself (the stream broke, the target went). */
static int p_ended(struct p *p)
{
	pthread_join(p->thread, NULL);
	p->thread = 0;
	return p->result;
}

static bool p_running(struct p *p)
{
	return p->thread != 0;
}

/* Stop the loop (it must still run) and wait for it. */
static void p_stop(struct p *p)
{
	dmu_channel_stop(p->ch);
	CHECK_EQ(p_ended(p), 0);
}

static void p_close(struct p *p)
{
	if (p_running(p))
		p_stop(p);
	CHECK_EQ(dmu_channel_close(p->ch), 0);
	CHECK_EQ(dmu_device_free(p->dev), 0);
	close(p->k);
	free(p->b);
	fake_ioctl = false;
	fake_ioctl_result = 0;
}

static unsigned char rbuf[8 * CAP];

/* Exactly len bytes of replies, in however many records; the record count. */
static unsigned recv_replies(struct p *p, unsigned char *buf, size_t len)
{
	size_t got = 0;
	unsigned records = 0;

	while (got < len) {
		got += recv_record(p->k, buf + got, len - got);
		records++;
	}
	REQUIRE_EQ(got, len);
	return records;
}

/* One request as one record, its reply (header, then data_len bytes) as one record. */
static struct dm_user_message rt(struct p *p, uint64_t seq, uint64_t type, uint64_t flags,
				 uint64_t sector, uint64_t len, const void *payload,
				 size_t data_len)
{
	size_t off = 0;

	send_req(p->k, seq, type, flags, sector, len, payload);
	REQUIRE_EQ(recv_record(p->k, rbuf, sizeof(rbuf)), MSG + data_len);
	struct dm_user_message m = reply_at(rbuf, &off, data_len);
	CHECK_EQ(m.seq, seq);
	return m;
}

static void send_raw(int k, const void *buf, size_t len)
{
	REQUIRE(send(k, buf, len, 0) == (ssize_t)len);
}

/*
 * The device's metrics, once the loop has stopped: a request is counted
 * after its reply is written, so only then are the counts final.
 */
static json_t *metrics(struct p *p)
{
	char *text = NULL;
	json_t *doc;

	REQUIRE(dmu_metrics_render(p->dev, DMU_METRICS_JSON, NULL, &text, NULL) == 0);
	doc = json_loads(text, 0, NULL);
	REQUIRE(doc);
	free(text);
	return doc;
}

/* While it runs: only for what opening the channel set. */
static json_t *metrics_now(struct p *p)
{
	return metrics(p);
}

#define CHECK_REPLY(m, seq_, status_)				\
	do {							\
		struct dm_user_message m_ = (m);		\
								\
		CHECK_EQ(m_.seq, (seq_));			\
		CHECK_EQ(m_.type, (status_));			\
	} while (0)

/* ---- one request per read() ------------------------------------------- */

/* The header is echoed whole, status in type; header and data leave in one write. */
TEST(protocol_read_echoes_the_header_in_one_write)
{
	struct p p;
	struct p_cfg cfg = { 0 };

	p_open(&p, &cfg);
	struct dm_user_message m = rt(&p, 0xdeadbeefcafe0001ull, DM_USER_REQ_MAP_READ,
				      DM_USER_REQ_MAP_FLAG_SYNC, 8, 4096, NULL, 4096);
	CHECK_EQ(m.type, DM_USER_RESP_SUCCESS);
	CHECK_EQ(m.flags, DM_USER_REQ_MAP_FLAG_SYNC);
	CHECK_EQ(m.sector, 8);
	CHECK_EQ(m.len, 4096);
	CHECK(memcmp(rbuf + MSG, p.b->data + 8 * 512, 4096) == 0);
	REQUIRE_EQ(p.b->nlog, 1);
	CHECK_EQ(p.b->log[0].op, B_READ);
	CHECK_EQ(p.b->log[0].off, 4096);
	CHECK_EQ(p.b->log[0].len, 4096);
	p_close(&p);
}

/* A header, and a WRITE's payload, may come in pieces: each piece one read(). */
TEST(protocol_header_and_payload_in_pieces)
{
	struct p p;
	struct p_cfg cfg = { 0 };
	struct dm_user_message h = { 77, DM_USER_REQ_MAP_FLUSH, 0, 0, 0 };
	unsigned char *w = pattern(8192, 2), first[MSG + 512];

	p_open(&p, &cfg);
	send_raw(p.k, &h, 8);
	send_raw(p.k, (unsigned char *)&h + 8, 30);
	send_raw(p.k, (unsigned char *)&h + 38, 2);
	size_t off = 0;
	REQUIRE_EQ(recv_record(p.k, rbuf, sizeof(rbuf)), MSG);
	CHECK_REPLY(reply_at(rbuf, &off, 0), 77, DM_USER_RESP_SUCCESS);

	struct dm_user_message wh = { 43, DM_USER_REQ_MAP_WRITE, 0, 3, 8192 };
	memcpy(first, &wh, MSG);
	memcpy(first + MSG, w, 512);
	send_raw(p.k, first, sizeof(first));
	send_raw(p.k, w + 512, 8192 - 512);
	off = 0;
	REQUIRE_EQ(recv_record(p.k, rbuf, sizeof(rbuf)), MSG);
	CHECK_REPLY(reply_at(rbuf, &off, 0), 43, DM_USER_RESP_SUCCESS);
	CHECK(memcmp(p.b->data + 3 * 512, w, 8192) == 0);
	CHECK_EQ(p.b->calls[B_WRITE], 1);
	CHECK_EQ(p.b->calls[B_FLUSH], 1);
	p_close(&p);
	free(w);
}

/* dm sends an empty flush as a zero-length WRITE with PREFLUSH: a flush only. */
TEST(protocol_empty_preflush_write_only_flushes)
{
	struct p p;
	struct p_cfg cfg = { 0 };

	p_open(&p, &cfg);
	CHECK_EQ(rt(&p, 10, DM_USER_REQ_MAP_WRITE, DM_USER_REQ_MAP_FLAG_PREFLUSH, 0, 0, NULL,
		    0).type, DM_USER_RESP_SUCCESS);
	CHECK_EQ(p.b->calls[B_FLUSH], 1);
	CHECK_EQ(p.b->calls[B_WRITE], 0);
	p_close(&p);
}

/* Each op gets its range; WRITE_ZEROES tells NOUNMAP apart; the bytes are counted. */
TEST(protocol_ranges_and_nounmap_reach_the_backend)
{
	struct p p;
	struct p_cfg cfg = { 0 };
	static const unsigned char zeroes[1024];

	p_open(&p, &cfg);
	CHECK_EQ(rt(&p, 11, DM_USER_REQ_MAP_DISCARD, 0, 64, 65536, NULL, 0).type,
		 DM_USER_RESP_SUCCESS);
	CHECK_EQ(rt(&p, 12, DM_USER_REQ_MAP_WRITE_ZEROES, 0, 0, 4096, NULL, 0).type,
		 DM_USER_RESP_SUCCESS);
	CHECK_EQ(rt(&p, 13, DM_USER_REQ_MAP_WRITE_ZEROES, DM_USER_REQ_MAP_FLAG_NOUNMAP, 8, 4096,
		    NULL, 0).type, DM_USER_RESP_SUCCESS);
	CHECK_EQ(rt(&p, 14, DM_USER_REQ_MAP_SECURE_ERASE, 0, 2, 1024, NULL, 0).type,
		 DM_USER_RESP_SUCCESS);
	REQUIRE_EQ(p.b->nlog, 4);
	CHECK_EQ(p.b->log[0].off, 64 * 512);
	CHECK_EQ(p.b->log[0].len, 65536);
	CHECK(p.b->log[1].may_unmap);
	CHECK(!p.b->log[2].may_unmap);
	CHECK_EQ(p.b->log[2].off, 8 * 512);
	CHECK_EQ(p.b->log[3].op, B_ERASE);
	CHECK(memcmp(p.b->data + 1024, zeroes, 1024) == 0);

	p_stop(&p);
	json_t *doc = metrics(&p);
	CHECK_EQ(jget(doc, "ops.discard.bytes"), 65536);
	CHECK_EQ(jget(doc, "ops.write_zeroes.requests"), 2);
	CHECK_EQ(jget(doc, "ops.secure_erase.bytes"), 1024);
	json_decref(doc);
	p_close(&p);
}

/* Every other type is UNSUPPORTED without a callback, counted as "other", not an error. */
TEST(protocol_unknown_ops_are_unsupported)
{
	static const uint64_t types[] = {
		DM_USER_REQ_MAP_WRITE_SAME, DM_USER_REQ_MAP_ZONE_OPEN,
		DM_USER_REQ_MAP_ZONE_CLOSE, DM_USER_REQ_MAP_ZONE_FINISH,
		DM_USER_REQ_MAP_ZONE_APPEND, DM_USER_REQ_MAP_ZONE_RESET,
		DM_USER_REQ_MAP_ZONE_RESET_ALL, 99, UINT64_MAX,
	};
	struct p p;
	struct p_cfg cfg = { 0 };

	p_open(&p, &cfg);
	for (unsigned i = 0; i < sizeof(types) / sizeof(types[0]); i++)
		CHECK_EQ(rt(&p, 100 + i, types[i], 0, 0, 4096, NULL, 0).type,
			 DM_USER_RESP_UNSUPPORTED);
	CHECK_EQ(p.b->nlog, 0);
	p_stop(&p);
	json_t *doc = metrics(&p);
	CHECK_EQ(jget(doc, "ops.other.requests"), 9);
	CHECK_EQ(jget(doc, "ops.other.errors"), 0);
	CHECK_EQ(jget(doc, "replies.unsupported"), 9);
	json_decref(doc);
	p_close(&p);
}

/*
 * ENOSPC part way through a WRITE larger than the buffer: NOSPC, no more
 * writes, no FUA flush, and the rest of the payload is still consumed, so
 * the next request is read from the right place.
 */
TEST(protocol_enospc_mid_write_drains_the_payload)
{
	struct p p;
	struct p_cfg cfg = { 0 };
	size_t len = 3 * CAP;
	unsigned char *w = pattern(len, 7);

	p_open(&p, &cfg);
	p.b->fail_op = B_WRITE;
	p.b->fail_err = -ENOSPC;
	send_req(p.k, 30, DM_USER_REQ_MAP_WRITE, DM_USER_REQ_MAP_FLAG_FUA, 0, len, NULL);
	for (size_t o = 0; o < len; o += CAP)
		send_raw(p.k, w + o, CAP);
	size_t off = 0;
	REQUIRE_EQ(recv_record(p.k, rbuf, sizeof(rbuf)), MSG);
	CHECK_REPLY(reply_at(rbuf, &off, 0), 30, DM_USER_RESP_NOSPC);
	CHECK_EQ(p.b->calls[B_WRITE], 1);
	CHECK_EQ(p.b->calls[B_FLUSH], 0);
	CHECK_EQ(rt(&p, 31, DM_USER_REQ_MAP_FLUSH, 0, 0, 0, NULL, 0).type, DM_USER_RESP_SUCCESS);
	p_stop(&p);
	json_t *doc = metrics(&p);
	CHECK_EQ(jget(doc, "replies.nospc"), 1);
	CHECK_EQ(jget(doc, "ops.write.errors"), 1);
	CHECK_EQ(jget(doc, "ops.write.bytes"), 0);
	json_decref(doc);
	p_close(&p);
	free(w);
}

/* A failed READ is a bare ERROR header: no data follow it. */
TEST(protocol_read_error_sends_no_data)
{
	struct p p;
	struct p_cfg cfg = { 0 };

	p_open(&p, &cfg);
	p.b->fail_op = B_READ;
	p.b->fail_err = -EIO;
	CHECK_EQ(rt(&p, 40, DM_USER_REQ_MAP_READ, 0, 0, 4096, NULL, 0).type, DM_USER_RESP_ERROR);
	p_stop(&p);
	json_t *doc = metrics(&p);
	CHECK_EQ(jget(doc, "ops.read.errors"), 1);
	json_decref(doc);
	p_close(&p);
}

/*
 * Outside the device: ERROR without a callback, whatever the type (a
 * sector so large that sector * 512 overflows included); a refused
 * WRITE's payload is consumed; FLUSH has no range.
 */
TEST(protocol_out_of_range_requests)
{
	struct p p;
	struct p_cfg cfg = { 0 };
	unsigned char *w = pattern(8192, 8), first[MSG + 1024];

	p_open(&p, &cfg);
	CHECK_EQ(rt(&p, 50, DM_USER_REQ_MAP_READ, 0, DEV_SIZE / 512 - 1, 1024, NULL, 0).type,
		 DM_USER_RESP_ERROR);
	CHECK_EQ(rt(&p, 51, DM_USER_REQ_MAP_DISCARD, 0, UINT64_MAX / 256, 512, NULL, 0).type,
		 DM_USER_RESP_ERROR);
	CHECK_EQ(rt(&p, 52, DM_USER_REQ_MAP_WRITE_ZEROES, 0, DEV_SIZE / 512, 512, NULL, 0).type,
		 DM_USER_RESP_ERROR);
	CHECK_EQ(rt(&p, 53, DM_USER_REQ_MAP_SECURE_ERASE, 0, DEV_SIZE / 512 - 1, 1024, NULL,
		    0).type, DM_USER_RESP_ERROR);
	struct dm_user_message h = { 54, DM_USER_REQ_MAP_WRITE, 0, DEV_SIZE / 512 - 8, 8192 };
	memcpy(first, &h, MSG);
	memcpy(first + MSG, w, 1024);
	send_raw(p.k, first, sizeof(first));
	send_raw(p.k, w + 1024, 8192 - 1024);
	size_t off = 0;
	REQUIRE_EQ(recv_record(p.k, rbuf, sizeof(rbuf)), MSG);
	CHECK_REPLY(reply_at(rbuf, &off, 0), 54, DM_USER_RESP_ERROR);
	CHECK_EQ(rt(&p, 55, DM_USER_REQ_MAP_FLUSH, 0, 0, 0, NULL, 0).type, DM_USER_RESP_SUCCESS);
	CHECK_EQ(p.b->calls[B_READ] + p.b->calls[B_WRITE] + p.b->calls[B_DISCARD] +
		 p.b->calls[B_ZEROES] + p.b->calls[B_ERASE], 0);
	CHECK_EQ(rt(&p, 56, DM_USER_REQ_MAP_READ, 0, DEV_SIZE / 512 - 2, 1024, NULL, 1024).type,
		 DM_USER_RESP_SUCCESS);
	p_close(&p);
	free(w);
}

/* Payload after a READ: the stream is out of step, the loop ends with EPROTO. */
TEST(protocol_payload_after_a_read_breaks_the_stream)
{
	struct p p;
	struct p_cfg cfg = { 0 };
	unsigned char junk[512] = { 0 };

	p_open(&p, &cfg);
	send_req(p.k, 70, DM_USER_REQ_MAP_READ, 0, 0, 512, junk);
	CHECK_EQ(p_ended(&p), -EPROTO);
	CHECK_EQ(p.b->nlog, 0);
	p_close(&p);
}

/* The kernel's end closes in the middle of a request: a broken stream (EPIPE), not a gone target. */
TEST(protocol_closed_mid_request_is_broken)
{
	struct p p;
	struct p_cfg cfg = { 0 };
	struct dm_user_message h = { 1, DM_USER_REQ_MAP_WRITE, 0, 0, 4096 };

	p_open(&p, &cfg);
	send_raw(p.k, &h, MSG);		/* its payload never comes */
	shutdown(p.k, SHUT_WR);
	CHECK_EQ(p_ended(&p), -EPIPE);
	p_close(&p);
}

/* ---- batching --------------------------------------------------------- */

/*
 * Requests of every kind in one read(): carried out in order (the READ
 * after the WRITE sees its data), answered in that order with one
 * writev(), an out-of-range READ without data; the counters agree.
 */
TEST(protocol_batch_of_every_kind_in_one_writev)
{
	struct p p;
	struct p_cfg cfg = { .batch = true };
	unsigned char *w = pattern(8192, 11), before[4096];

	p_open(&p, &cfg);
	CHECK_EQ(fake_ioctl_calls, 1);
	REQUIRE(dmu_channel_batching(p.ch));
	memcpy(before, p.b->data + 8 * 512, sizeof(before));
	struct req q[] = {
		{ 1, DM_USER_REQ_MAP_READ, DM_USER_REQ_MAP_FLAG_SYNC, 8, 4096, NULL },
		{ 2, DM_USER_REQ_MAP_WRITE, 0, 64, 8192, w },
		{ 3, DM_USER_REQ_MAP_FLUSH, 0, 0, 0, NULL },
		{ 4, DM_USER_REQ_MAP_READ, 0, 64, 8192, NULL },
		{ 5, DM_USER_REQ_MAP_DISCARD, 0, 128, 4096, NULL },
		{ 6, DM_USER_REQ_MAP_ZONE_OPEN, 0, 0, 4096, NULL },
		{ 7, DM_USER_REQ_MAP_READ, 0, DEV_SIZE / 512, 512, NULL },
	};
	send_batch(p.k, q, 7);

	size_t want = 7 * MSG + 4096 + 8192, off = 0;
	CHECK_EQ(recv_replies(&p, rbuf, want), 1);
	CHECK(no_record(p.k, 50));
	struct dm_user_message m = reply_at(rbuf, &off, 4096);
	CHECK_REPLY(m, 1, DM_USER_RESP_SUCCESS);
	CHECK_EQ(m.flags, DM_USER_REQ_MAP_FLAG_SYNC);
	CHECK_EQ(m.sector, 8);
	CHECK(memcmp(rbuf + MSG, before, 4096) == 0);
	CHECK_REPLY(reply_at(rbuf, &off, 0), 2, DM_USER_RESP_SUCCESS);
	CHECK_REPLY(reply_at(rbuf, &off, 0), 3, DM_USER_RESP_SUCCESS);
	CHECK_REPLY(reply_at(rbuf, &off, 8192), 4, DM_USER_RESP_SUCCESS);
	CHECK(memcmp(rbuf + off - 8192, w, 8192) == 0);	/* what request 2 wrote */
	CHECK_REPLY(reply_at(rbuf, &off, 0), 5, DM_USER_RESP_SUCCESS);
	CHECK_REPLY(reply_at(rbuf, &off, 0), 6, DM_USER_RESP_UNSUPPORTED);
	CHECK_REPLY(reply_at(rbuf, &off, 0), 7, DM_USER_RESP_ERROR);
	CHECK_EQ(off, want);

	static const int order[] = { B_READ, B_WRITE, B_FLUSH, B_READ, B_DISCARD };
	REQUIRE_EQ(p.b->nlog, 5);
	for (unsigned i = 0; i < 5; i++)
		CHECK_EQ(p.b->log[i].op, order[i]);

	p_stop(&p);
	json_t *doc = metrics(&p);
	CHECK_EQ(jget(doc, "channels_batched"), 1);
	CHECK_EQ(jget(doc, "channel_reads"), 1);
	CHECK_EQ(jget(doc, "channel_requests_read"), 7);
	CHECK_EQ(jget(doc, "channel_writes"), 1);
	CHECK_EQ(jget(doc, "in_flight"), 0);
	CHECK_EQ(jget(doc, "ops.read.requests"), 3);
	CHECK_EQ(jget(doc, "ops.read.bytes"), 4096 + 8192);
	CHECK_EQ(jget(doc, "ops.read.errors"), 1);
	CHECK_EQ(jget(doc, "ops.read.latency_ns.count"), 3);
	CHECK_EQ(jget(doc, "ops.write.bytes"), 8192);
	CHECK_EQ(jget(doc, "ops.flush.requests"), 1);
	CHECK_EQ(jget(doc, "ops.other.requests"), 1);
	CHECK_EQ(jget(doc, "replies.success"), 5);
	CHECK_EQ(jget(doc, "backend_flushes"), 1);
	json_decref(doc);
	p_close(&p);
	free(w);
}

/* A FUA write in a batch is flushed before the batch's replies leave. */
TEST(protocol_batch_fua_flushes_before_the_replies)
{
	struct p p;
	struct p_cfg cfg = { .batch = true };
	unsigned char *w = pattern(4096, 12);

	p_open(&p, &cfg);
	struct req q[] = {
		{ 1, DM_USER_REQ_MAP_WRITE, 0, 0, 4096, w },
		{ 2, DM_USER_REQ_MAP_WRITE, DM_USER_REQ_MAP_FLAG_FUA, 8, 4096, w },
		{ 3, DM_USER_REQ_MAP_WRITE, DM_USER_REQ_MAP_FLAG_PREFLUSH, 16, 0, NULL },
	};
	send_batch(p.k, q, 3);
	size_t off = 0;
	CHECK_EQ(recv_replies(&p, rbuf, 3 * MSG), 1);
	for (uint64_t seq = 1; seq <= 3; seq++)
		CHECK_REPLY(reply_at(rbuf, &off, 0), seq, DM_USER_RESP_SUCCESS);
	static const int order[] = { B_WRITE, B_WRITE, B_FLUSH, B_FLUSH };
	REQUIRE_EQ(p.b->nlog, 4);
	for (unsigned i = 0; i < 4; i++)
		CHECK_EQ(p.b->log[i].op, order[i]);
	p_close(&p);
	free(w);
}

/*
 * The replies of a batch exceed the socket's send buffer: writev() sends
 * part, the loop waits for room and goes on where it stopped; every reply
 * arrives whole, in order.
 */
TEST(protocol_batch_short_writev_is_completed)
{
	struct p p;
	struct p_cfg cfg = { .batch = true, .sock_type = SOCK_STREAM };
	unsigned char *w = pattern(4096, 13);
	int small = 4096;

	p_open(&p, &cfg);
	REQUIRE(setsockopt(dmu_channel_fd(p.ch), SOL_SOCKET, SO_SNDBUF, &small,
			   sizeof(small)) == 0);
	struct req q[6] = {
		{ 1, DM_USER_REQ_MAP_WRITE, 0, 0, 4096, w },
		{ 2, DM_USER_REQ_MAP_FLUSH, 0, 0, 0, NULL },
	};
	for (uint64_t i = 0; i < 4; i++)	/* 4 x 4096: the whole reply buffer */
		q[2 + i] = (struct req){ 3 + i, DM_USER_REQ_MAP_READ, 0, 100 + 8 * i, 4096, NULL };
	send_batch(p.k, q, 6);

	size_t want = 6 * MSG + 4 * 4096, off = 0;
	recv_replies(&p, rbuf, want);
	CHECK_REPLY(reply_at(rbuf, &off, 0), 1, DM_USER_RESP_SUCCESS);
	CHECK_REPLY(reply_at(rbuf, &off, 0), 2, DM_USER_RESP_SUCCESS);
	for (uint64_t i = 0; i < 4; i++) {
		struct dm_user_message m = reply_at(rbuf, &off, 4096);

		CHECK_REPLY(m, 3 + i, DM_USER_RESP_SUCCESS);
		CHECK_EQ(m.sector, 100 + 8 * i);
		CHECK(memcmp(rbuf + off - 4096, p.b->data + m.sector * 512, 4096) == 0);
	}
	CHECK(no_record(p.k, 50));
	p_stop(&p);
	json_t *doc = metrics(&p);
	CHECK(jget(doc, "channel_writes") >= 2);	/* cut short, then the rest */
	CHECK_EQ(jget(doc, "replies.success"), 6);
	CHECK_EQ(jget(doc, "replies.error"), 0);
	json_decref(doc);
	p_close(&p);
	free(w);
}

/* More READ data than the reply buffer holds: as many writev()s as needed. */
TEST(protocol_batch_reads_beyond_the_reply_buffer)
{
	struct p p;
	struct p_cfg cfg = { .batch = true };
	struct req q[6];

	p_open(&p, &cfg);
	for (uint64_t i = 0; i < 6; i++)	/* 6 x 4096 > CAP */
		q[i] = (struct req){ 10 + i, DM_USER_REQ_MAP_READ, 0, 8 * i, 4096, NULL };
	send_batch(p.k, q, 6);
	size_t off = 0;
	CHECK_EQ(recv_replies(&p, rbuf, 6 * (MSG + 4096)), 2);	/* 4 replies, then 2 */
	for (uint64_t i = 0; i < 6; i++) {
		CHECK_REPLY(reply_at(rbuf, &off, 4096), 10 + i, DM_USER_RESP_SUCCESS);
		CHECK(memcmp(rbuf + off - 4096, p.b->data + i * 4096, 4096) == 0);
	}
	p_stop(&p);
	json_t *doc = metrics(&p);
	CHECK_EQ(jget(doc, "channel_writes"), 2);
	json_decref(doc);
	p_close(&p);
}

/* More requests than one writev() takes (256 replies). */
TEST(protocol_batch_more_replies_than_one_writev_takes)
{
	enum { N = 300 };
	struct p p;
	struct p_cfg cfg = { .batch = true };
	static struct req q[N];

	REQUIRE(N * MSG <= MSG + CAP);
	p_open(&p, &cfg);
	for (uint64_t i = 0; i < N; i++)
		q[i] = (struct req){ 1000 + i, DM_USER_REQ_MAP_FLUSH, 0, 0, 0, NULL };
	send_batch(p.k, q, N);
	size_t off = 0;
	CHECK_EQ(recv_replies(&p, rbuf, N * MSG), 2);
	for (uint64_t i = 0; i < N; i++)
		CHECK_REPLY(reply_at(rbuf, &off, 0), 1000 + i, DM_USER_RESP_SUCCESS);
	CHECK_EQ(p.b->calls[B_FLUSH], N);
	p_stop(&p);
	json_t *doc = metrics(&p);
	CHECK_EQ(jget(doc, "channel_requests_read"), N);
	CHECK_EQ(jget(doc, "in_flight"), 0);
	json_decref(doc);
	p_close(&p);
}

/* A READ larger than the buffer streams after the replies gathered before it. */
TEST(protocol_batch_large_read_streams_after_earlier_replies)
{
	struct p p;
	struct p_cfg cfg = { .batch = true };
	size_t len = 2 * CAP + 8192;

	p_open(&p, &cfg);
	struct req q[] = {
		{ 1, DM_USER_REQ_MAP_FLUSH, 0, 0, 0, NULL },
		{ 2, DM_USER_REQ_MAP_READ, 0, 16, len, NULL },
		{ 3, DM_USER_REQ_MAP_READ, 0, 0, 4096, NULL },
	};
	send_batch(p.k, q, 3);
	size_t off = 0;
	recv_replies(&p, rbuf, 3 * MSG + 4096 + len);
	CHECK_REPLY(reply_at(rbuf, &off, 0), 1, DM_USER_RESP_SUCCESS);
	struct dm_user_message m = reply_at(rbuf, &off, len);
	CHECK_REPLY(m, 2, DM_USER_RESP_SUCCESS);
	CHECK_EQ(m.len, len);
	CHECK(memcmp(rbuf + off - len, p.b->data + 16 * 512, len) == 0);
	CHECK_REPLY(reply_at(rbuf, &off, 4096), 3, DM_USER_RESP_SUCCESS);
	CHECK(memcmp(rbuf + off - 4096, p.b->data, 4096) == 0);
	p_stop(&p);
	json_t *doc = metrics(&p);
	CHECK_EQ(jget(doc, "ops.read.bytes"), 4096 + len);
	json_decref(doc);
	p_close(&p);
}

/*
 * A WRITE larger than the buffer comes alone and incomplete, as the kernel
 * fills the buffer; the next reads bring the rest, then the next batch.
 */
TEST(protocol_batch_write_larger_than_the_buffer)
{
	struct p p;
	struct p_cfg cfg = { .batch = true };
	size_t len = 2 * CAP + 4096;
	unsigned char *w = pattern(len, 14), *first = malloc(MSG + CAP);
	struct dm_user_message h = { 1, DM_USER_REQ_MAP_WRITE, 0, 0, len };

	p_open(&p, &cfg);
	memcpy(first, &h, MSG);
	memcpy(first + MSG, w, CAP);
	send_raw(p.k, first, MSG + CAP);
	send_raw(p.k, w + CAP, CAP);
	send_raw(p.k, w + 2 * CAP, 4096);
	size_t off = 0;
	REQUIRE_EQ(recv_record(p.k, rbuf, sizeof(rbuf)), MSG);
	CHECK_REPLY(reply_at(rbuf, &off, 0), 1, DM_USER_RESP_SUCCESS);
	CHECK(memcmp(p.b->data, w, len) == 0);
	CHECK_EQ(p.b->calls[B_WRITE], 3);

	struct req q[] = {
		{ 2, DM_USER_REQ_MAP_FLUSH, 0, 0, 0, NULL },
		{ 3, DM_USER_REQ_MAP_FLUSH, 0, 0, 0, NULL },
	};
	send_batch(p.k, q, 2);
	off = 0;
	CHECK_EQ(recv_replies(&p, rbuf, 2 * MSG), 1);
	CHECK_REPLY(reply_at(rbuf, &off, 0), 2, DM_USER_RESP_SUCCESS);
	CHECK_REPLY(reply_at(rbuf, &off, 0), 3, DM_USER_RESP_SUCCESS);
	p_close(&p);
	free(first);
	free(w);
}

/*
 * With mem_align (O_DIRECT) every payload reaches the backend page
 * aligned, not only the first of a read(); without it none is copied.
 */
TEST(protocol_batch_aligns_payloads_for_direct_io)
{
	for (int direct = 0; direct < 2; direct++) {
		struct p p;
		struct p_cfg cfg = { .batch = true, .mem_align = direct ? 4096 : 0 };
		unsigned char *w = pattern(8192, 15);

		p_open(&p, &cfg);
		struct req q[] = {
			{ 1, DM_USER_REQ_MAP_WRITE, 0, 0, 4096, w },
			{ 2, DM_USER_REQ_MAP_WRITE, 0, 8, 4096, w + 4096 },
			{ 3, DM_USER_REQ_MAP_READ, 0, 0, 8192, NULL },
		};
		send_batch(p.k, q, 3);
		size_t off = 0;
		recv_replies(&p, rbuf, 3 * MSG + 8192);
		CHECK_REPLY(reply_at(rbuf, &off, 0), 1, DM_USER_RESP_SUCCESS);
		CHECK_REPLY(reply_at(rbuf, &off, 0), 2, DM_USER_RESP_SUCCESS);
		CHECK_REPLY(reply_at(rbuf, &off, 8192), 3, DM_USER_RESP_SUCCESS);
		CHECK(memcmp(rbuf + off - 8192, w, 8192) == 0);
		REQUIRE_EQ(p.b->nlog, 3);
		CHECK(p.b->log[0].aligned);
		CHECK_EQ(p.b->log[1].aligned, direct);
		CHECK(p.b->log[2].aligned);
		p_close(&p);
		free(w);
	}
}

/* Only the first request of a read() may be incomplete; half a header is an error too. */
TEST(protocol_batch_incomplete_later_request_breaks_the_stream)
{
	struct p p;
	struct p_cfg cfg = { .batch = true };
	unsigned char buf[2 * MSG + 100] = { 0 };
	struct dm_user_message a = { 1, DM_USER_REQ_MAP_FLUSH, 0, 0, 0 };
	struct dm_user_message b = { 2, DM_USER_REQ_MAP_WRITE, 0, 0, 4096 };

	memcpy(buf, &a, MSG);
	memcpy(buf + MSG, &b, MSG);
	p_open(&p, &cfg);
	send_raw(p.k, buf, 2 * MSG + 100);	/* 100 of its 4096 payload bytes */
	CHECK_EQ(p_ended(&p), -EPROTO);
	CHECK_EQ(p.b->nlog, 0);			/* nothing carried out */
	p_close(&p);

	p_open(&p, &cfg);
	send_raw(p.k, buf, MSG + 20);		/* half a header after a request */
	CHECK_EQ(p_ended(&p), -EPROTO);
	CHECK_EQ(p.b->nlog, 0);
	p_close(&p);
}

/*
 * A module that refuses batching with another error than ENOTTY: one
 * request per read(), as before, and two in one read() are a protocol
 * error.  (ENOTTY: batching_falls_back_on_enotty.)
 */
TEST(protocol_batch_refused_falls_back)
{
	static const int answers[] = { -EINVAL, -EPERM };

	for (unsigned i = 0; i < sizeof(answers) / sizeof(answers[0]); i++) {
		struct p p;
		struct p_cfg cfg = { .batch = true, .ioctl_result = answers[i] };

		p_open(&p, &cfg);
		CHECK_EQ(fake_ioctl_calls, 1);
		CHECK(!dmu_channel_batching(p.ch));
		json_t *doc = metrics_now(&p);	/* set at open */
		CHECK_EQ(jget(doc, "channels_batched"), 0);
		json_decref(doc);
		CHECK_EQ(rt(&p, 1, DM_USER_REQ_MAP_READ, 0, 0, 4096, NULL, 4096).type,
			 DM_USER_RESP_SUCCESS);
		CHECK(memcmp(rbuf + MSG, p.b->data, 4096) == 0);
		struct req q[] = {
			{ 2, DM_USER_REQ_MAP_FLUSH, 0, 0, 0, NULL },
			{ 3, DM_USER_REQ_MAP_FLUSH, 0, 0, 0, NULL },
		};
		send_batch(p.k, q, 2);
		CHECK_EQ(p_ended(&p), -EPROTO);
		CHECK_EQ(p.b->calls[B_FLUSH], 0);
		p_close(&p);
	}
}
