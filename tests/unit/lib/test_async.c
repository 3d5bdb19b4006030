// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The asynchronous API against the fake kernel: the test is the event
 * loop (dmu_channel_process), the backend (it records what was submitted
 * and completes it when and where it likes) and the kernel.
 */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "rig.h"
#include "test.h"

#define MAXQ 64

/* The backend: it keeps what was submitted, in order. */
struct held {
	struct mem *mem;
	struct dmu_req *req[MAXQ];
	unsigned n;
	unsigned commits;
	int submit_err;		/* returned by submit */
	bool complete_now;	/* complete within submit */
};

static int hold_submit(void *arg, struct dmu_req *req)
{
	struct held *h = arg;

	if (h->submit_err)
		return h->submit_err;
	REQUIRE(h->n < MAXQ);
	h->req[h->n++] = req;
	if (h->complete_now)
		dmu_req_complete(req, 0);
	return 0;
}

static void hold_commit(void *arg)
{
	((struct held *)arg)->commits++;
}

static const struct dmu_async_ops hold_ops = {
	.sz = sizeof(hold_ops), .submit = hold_submit, .commit = hold_commit,
};

/* Carry out req against the memory backend, as a real backend would. */
static int carry_out(struct mem *m, struct dmu_req *req)
{
	uint64_t off = dmu_req_offset(req), len = dmu_req_len(req);

	switch (dmu_req_type(req)) {
	case DMU_REQ_READ:
		memcpy(dmu_req_buf(req), m->data + off, len);
		return 0;
	case DMU_REQ_WRITE:
		memcpy(m->data + off, dmu_req_buf(req), len);
		return 0;
	case DMU_REQ_FLUSH:
		return 0;
	default:
		memset(m->data + off, 0, len);
		return 0;
	}
}

static int process(struct rig *r, struct held *h)
{
	return dmu_channel_process(r->ch, &hold_ops, h);
}

static bool readable(int fd, int ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };

	return poll(&p, 1, ms) == 1;
}

static unsigned char rec[64 * 1024];

/*
 * Requests completed out of order are answered in completion order, each
 * with its own data, and several completions leave in one writev().
 */
TEST(async_out_of_order_completion)
{
	struct rig r;
	struct rig_cfg cfg = { .batch = true, .depth = 16, .buffer = 64 * 1024 };
	struct held h = { 0 };
	unsigned char *p[8];
	struct req q[8];

	rig_open(&r, &cfg);
	h.mem = r.mem;
	for (unsigned i = 0; i < 8; i++) {
		p[i] = pattern(4096, 10 + i);
		memcpy(r.mem->data + i * 8192, p[i], 4096);	/* what the reads fetch */
		q[i] = (struct req){ 100 + i, i % 2 ? DM_USER_REQ_MAP_WRITE : DM_USER_REQ_MAP_READ,
				     0, i * 16 + 8, 4096, i % 2 ? p[i] : NULL };
		if (i % 2 == 0)
			q[i].sector = i * 16;
	}
	send_batch(r.k, q, 8);
	REQUIRE(readable(dmu_channel_pollfd(r.ch), 2000));
	CHECK_EQ(process(&r, &h), 0);
	REQUIRE_EQ(h.n, 8);
	CHECK_EQ(h.commits, 1);
	CHECK_EQ(dmu_channel_inflight(r.ch), 8);
	for (unsigned i = 0; i < 8; i++) {
		CHECK_EQ(dmu_req_seq(h.req[i]), 100 + i);
		CHECK_EQ(dmu_req_len(h.req[i]), 4096);
		CHECK_EQ((uintptr_t)dmu_req_buf(h.req[i]) % 4096, 0);
	}
	CHECK(no_record(r.k, 50));	/* nothing answered before it is complete */

	/* complete 7, 5, 3, 1 (the writes), then the reads 6, 4, 2, 0 */
	for (int i = 7; i >= 0; i -= 2)
		dmu_req_complete(h.req[i], carry_out(r.mem, h.req[i]));
	CHECK_EQ(process(&r, &h), 0);
	size_t n = recv_record(r.k, rec, sizeof(rec)), off = 0;
	CHECK_EQ(n, 4 * MSG);	/* four replies, one writev() */
	for (int i = 7; i >= 0; i -= 2) {
		struct dm_user_message m = reply_at(rec, &off, 0);

		CHECK_EQ(m.seq, 100 + (unsigned)i);
		CHECK_EQ(m.type, DM_USER_RESP_SUCCESS);
		CHECK(memcmp(r.mem->data + (i * 16 + 8) * 512, p[i], 4096) == 0);
	}
	for (int i = 6; i >= 0; i -= 2)
		dmu_req_complete(h.req[i], carry_out(r.mem, h.req[i]));
	CHECK_EQ(process(&r, &h), 0);
	n = recv_record(r.k, rec, sizeof(rec));
	off = 0;
	CHECK_EQ(n, 4 * (MSG + 4096));
	for (int i = 6; i >= 0; i -= 2) {
		size_t at = off + MSG;
		struct dm_user_message m = reply_at(rec, &off, 4096);

		CHECK_EQ(m.seq, 100 + (unsigned)i);
		CHECK_EQ(m.type, DM_USER_RESP_SUCCESS);
		CHECK(memcmp(rec + at, p[i], 4096) == 0);
	}
	CHECK_EQ(dmu_channel_inflight(r.ch), 0);
	rig_close(&r);
	for (unsigned i = 0; i < 8; i++)
		free(p[i]);
}

struct completer {
	struct held *h;
	unsigned first, step;
};

static void *complete_some(void *arg)
{
	struct completer *c = arg;

	for (unsigned i = c->first; i < c->h->n; i += c->step)
		dmu_req_complete(c->h->req[i], carry_out(c->h->mem, c->h->req[i]));
	return NULL;
}

/*
 * Completions from four threads at once, while the serving thread keeps
 * processing: every request is answered exactly once.
 */
TEST(async_completion_from_many_threads)
{
	struct rig r;
	struct rig_cfg cfg = { .batch = true, .depth = MAXQ };
	struct held h = { 0 };
	struct req q[MAXQ];
	pthread_t t[4];
	struct completer c[4];
	unsigned seen[MAXQ] = { 0 }, replies = 0;

	rig_open(&r, &cfg);
	h.mem = r.mem;
	for (unsigned i = 0; i < MAXQ; i++)
		/* small reads: all 64 replies may leave in one record */
		q[i] = (struct req){ 1000 + i, DM_USER_REQ_MAP_READ, 0, i * 8, 512, NULL };
	send_batch(r.k, q, MAXQ);
	CHECK_EQ(process(&r, &h), 0);
	REQUIRE_EQ(h.n, MAXQ);
	for (unsigned i = 0; i < 4; i++) {
		c[i] = (struct completer){ &h, i, 4 };
		REQUIRE(pthread_create(&t[i], NULL, complete_some, &c[i]) == 0);
	}
	while (replies < MAXQ) {
		CHECK_EQ(process(&r, &h), 0);
		while (replies < MAXQ && readable(r.k, 0)) {
			size_t n = recv_record(r.k, rec, sizeof(rec)), off = 0;

			while (off < n) {
				struct dm_user_message m = reply_at(rec, &off, 512);

				REQUIRE(m.seq >= 1000 && m.seq < 1000 + MAXQ);
				seen[m.seq - 1000]++;
				replies++;
			}
		}
		if (replies < MAXQ)
			REQUIRE(readable(dmu_channel_pollfd(r.ch), 2000) || readable(r.k, 0));
	}
	for (unsigned i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	for (unsigned i = 0; i < MAXQ; i++)
		CHECK_EQ(seen[i], 1);
	CHECK_EQ(process(&r, &h), 0);
	CHECK_EQ(dmu_channel_inflight(r.ch), 0);
	rig_close(&r);
}

/*
 * The pollable descriptor: readable when a request waits in the kernel,
 * not while every request is with the backend, readable again once one
 * completes (from another thread), and after a stop.
 */
TEST(async_pollfd_readiness)
{
	struct rig r;
	struct rig_cfg cfg = { .depth = 1 };
	struct held h = { 0 };
	int pfd;

	rig_open(&r, &cfg);
	pfd = dmu_channel_pollfd(r.ch);
	CHECK(!readable(pfd, 50));
	send_req(r.k, 1, DM_USER_REQ_MAP_FLUSH, 0, 0, 0, NULL);
	CHECK(readable(pfd, 2000));
	CHECK_EQ(process(&r, &h), 0);
	REQUIRE_EQ(h.n, 1);
	/* the only slot is busy: a queued request must not make it readable */
	send_req(r.k, 2, DM_USER_REQ_MAP_FLUSH, 0, 0, 0, NULL);
	CHECK(!readable(pfd, 100));

	struct completer c = { &h, 0, 1 };
	pthread_t t;
	REQUIRE(pthread_create(&t, NULL, complete_some, &c) == 0);
	pthread_join(t, NULL);
	CHECK(readable(pfd, 2000));
	CHECK_EQ(process(&r, &h), 0);	/* answers 1, then reads and submits 2 */
	CHECK_EQ(h.n, 2);
	size_t off = 0;
	recv_record(r.k, rec, sizeof(rec));
	CHECK_EQ(reply_at(rec, &off, 0).seq, 1);
	CHECK(!readable(pfd, 50));

	dmu_channel_stop(r.ch);
	CHECK(readable(pfd, 2000));
	CHECK_EQ(process(&r, &h), 0);	/* request 2 is still with the backend */
	CHECK(!readable(pfd, 50));	/* and waiting for it does not spin */
	dmu_req_complete(h.req[1], 0);
	CHECK(readable(pfd, 2000));
	CHECK_EQ(process(&r, &h), DMU_STOPPED);
	rig_close(&r);
}

/* Each op's backend error reaches the kernel with its status; so does a submit refusal. */
TEST(async_backend_error_on_each_op)
{
	static const uint64_t types[] = {
		DM_USER_REQ_MAP_READ, DM_USER_REQ_MAP_WRITE, DM_USER_REQ_MAP_FLUSH,
		DM_USER_REQ_MAP_DISCARD, DM_USER_REQ_MAP_WRITE_ZEROES,
		DM_USER_REQ_MAP_SECURE_ERASE,
	};
	static const struct { int err; unsigned status; } errs[] = {
		{ -EIO, DM_USER_RESP_ERROR },
		{ -ENOSPC, DM_USER_RESP_NOSPC },
		{ -EOPNOTSUPP, DM_USER_RESP_UNSUPPORTED },
	};
	struct rig r;
	struct rig_cfg cfg = { .depth = 4 };
	struct held h = { 0 };
	unsigned char *p = pattern(4096, 20);
	uint64_t seq = 1;

	rig_open(&r, &cfg);
	for (unsigned i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		for (unsigned e = 0; e < sizeof(errs) / sizeof(errs[0]); e++) {
			for (unsigned how = 0; how < 2; how++) {	/* complete, submit */
				uint64_t len = types[i] == DM_USER_REQ_MAP_FLUSH ? 0 : 4096;
				size_t off = 0;

				h.n = 0;
				h.submit_err = how ? errs[e].err : 0;
				send_req(r.k, seq, types[i], 0, 0, len,
					 types[i] == DM_USER_REQ_MAP_WRITE ? p : NULL);
				CHECK_EQ(process(&r, &h), 0);
				if (!how) {
					REQUIRE_EQ(h.n, 1);
					dmu_req_complete(h.req[0], errs[e].err);
					CHECK_EQ(process(&r, &h), 0);
				}
				CHECK_EQ(recv_record(r.k, rec, sizeof(rec)), MSG);
				struct dm_user_message m = reply_at(rec, &off, 0);
				CHECK_EQ(m.seq, seq);
				CHECK_EQ(m.type, errs[e].status);
				seq++;
			}
		}
	}
	/* a zone operation never reaches the backend */
	h.n = 0;
	h.submit_err = 0;
	send_req(r.k, seq, DM_USER_REQ_MAP_ZONE_RESET, 0, 0, 4096, NULL);
	CHECK_EQ(process(&r, &h), 0);
	CHECK_EQ(h.n, 0);
	size_t off = 0;
	recv_record(r.k, rec, sizeof(rec));
	CHECK_EQ(reply_at(rec, &off, 0).type, DM_USER_RESP_UNSUPPORTED);
	CHECK_EQ(dmu_channel_inflight(r.ch), 0);
	rig_close(&r);
	free(p);
}

/*
 * A request larger than a slot's buffer: the READ is answered ERROR
 * without reaching the backend; the WRITE's payload (sent in pieces) is
 * consumed and answered ERROR; the request after them is served.
 */
TEST(async_reply_larger_than_buffer)
{
	struct rig r;
	struct rig_cfg cfg = { .depth = 2 };
	struct held h = { .complete_now = true };
	size_t big = 2 * CAP + 4096, off = 0;
	unsigned char *p = pattern(big, 21);

	rig_open(&r, &cfg);
	h.mem = r.mem;
	send_req(r.k, 1, DM_USER_REQ_MAP_READ, 0, 0, big, NULL);
	CHECK_EQ(process(&r, &h), 0);
	CHECK_EQ(recv_record(r.k, rec, sizeof(rec)), MSG);
	CHECK_EQ(reply_at(rec, &off, 0).type, DM_USER_RESP_ERROR);

	send_req(r.k, 2, DM_USER_REQ_MAP_WRITE, 0, 0, big, NULL);
	for (size_t o = 0; o < big; o += CAP)
		REQUIRE(send(r.k, p + o, big - o < CAP ? big - o : CAP, 0) > 0);
	send_req(r.k, 3, DM_USER_REQ_MAP_FLUSH, 0, 0, 0, NULL);
	CHECK_EQ(process(&r, &h), 0);
	CHECK_EQ(process(&r, &h), 0);
	off = 0;
	size_t n = recv_record(r.k, rec, sizeof(rec));
	if (n == MSG) {		/* the two replies may leave together or apart */
		n += recv_record(r.k, rec + MSG, sizeof(rec) - MSG);
	}
	CHECK_EQ(n, 2 * MSG);
	struct dm_user_message m = reply_at(rec, &off, 0);
	CHECK_EQ(m.seq, 2);
	CHECK_EQ(m.type, DM_USER_RESP_ERROR);
	m = reply_at(rec, &off, 0);
	CHECK_EQ(m.seq, 3);
	CHECK_EQ(m.type, DM_USER_RESP_SUCCESS);
	CHECK_EQ(h.n, 1);	/* only the flush reached the backend */
	rig_close(&r);
	free(p);
}

/*
 * More requests in one batched read() than free slots: the rest wait,
 * staged, until completions free slots; nothing is read meanwhile.
 */
TEST(async_batch_larger_than_slots)
{
	struct rig r;
	struct rig_cfg cfg = { .batch = true, .depth = 2 };
	struct held h = { 0 };
	struct req q[5];
	unsigned answered = 0;

	rig_open(&r, &cfg);
	h.mem = r.mem;
	for (unsigned i = 0; i < 5; i++)
		q[i] = (struct req){ 10 + i, DM_USER_REQ_MAP_FLUSH, 0, 0, 0, NULL };
	send_batch(r.k, q, 5);
	send_req(r.k, 99, DM_USER_REQ_MAP_FLUSH, 0, 0, 0, NULL);	/* a later read() */
	CHECK_EQ(process(&r, &h), 0);
	CHECK_EQ(h.n, 2);
	CHECK_EQ(dmu_channel_inflight(r.ch), 5);
	while (answered < 6) {
		unsigned done = h.n;

		for (unsigned i = answered; i < done; i++)
			dmu_req_complete(h.req[i], 0);
		CHECK_EQ(process(&r, &h), 0);
		size_t n = recv_record(r.k, rec, sizeof(rec)), off = 0;
		while (off < n) {
			struct dm_user_message m = reply_at(rec, &off, 0);

			CHECK_EQ(m.seq, answered < 5 ? 10 + answered : 99);
			answered++;
		}
		REQUIRE(h.n <= answered + 2);	/* never more than two with the backend */
	}
	CHECK_EQ(h.n, 6);
	CHECK_EQ(dmu_channel_inflight(r.ch), 0);
	rig_close(&r);
}

/*
 * A stop lets the backend finish: process() goes on returning 0 while a
 * request is with it, the channel refuses to close, and DMU_STOPPED comes
 * once it completed.  No request is read after the stop.
 */
TEST(async_stop_waits_for_the_backend)
{
	struct rig r;
	struct rig_cfg cfg = { .depth = 4 };
	struct held h = { 0 };

	rig_open(&r, &cfg);
	send_req(r.k, 1, DM_USER_REQ_MAP_FLUSH, 0, 0, 0, NULL);
	CHECK_EQ(process(&r, &h), 0);
	REQUIRE_EQ(h.n, 1);
	dmu_device_stop(r.dev);
	send_req(r.k, 2, DM_USER_REQ_MAP_FLUSH, 0, 0, 0, NULL);
	CHECK_EQ(process(&r, &h), 0);
	CHECK_EQ(h.n, 1);
	CHECK_EQ(dmu_channel_close(r.ch), -EBUSY);
	dmu_req_complete(h.req[0], 0);
	CHECK_EQ(process(&r, &h), DMU_STOPPED);
	size_t off = 0;
	CHECK_EQ(recv_record(r.k, rec, sizeof(rec)), MSG);
	CHECK_EQ(reply_at(rec, &off, 0).seq, 1);
	rig_close(&r);
}

/* The target goes with a request at the backend: -ENOTBLK once it is back. */
TEST(async_target_gone)
{
	struct rig r;
	struct rig_cfg cfg = { .depth = 4 };
	struct held h = { 0 };

	rig_open(&r, &cfg);
	send_req(r.k, 1, DM_USER_REQ_MAP_READ, 0, 0, 4096, NULL);
	CHECK_EQ(process(&r, &h), 0);
	REQUIRE_EQ(h.n, 1);
	shutdown(r.k, SHUT_RDWR);
	CHECK(readable(dmu_channel_pollfd(r.ch), 2000));
	CHECK_EQ(process(&r, &h), 0);
	CHECK(!readable(dmu_channel_pollfd(r.ch), 50));
	dmu_req_complete(h.req[0], 0);
	CHECK_EQ(process(&r, &h), -ENOTBLK);
	rig_close(&r);
}

struct loop {
	struct rig *r;
	struct held *h;
	int result;
};

static int complete_at_once(void *arg, struct dmu_req *req)
{
	struct held *h = arg;

	dmu_req_complete(req, carry_out(h->mem, req));
	return 0;
}

static void *run_loop(void *arg)
{
	static const struct dmu_async_ops ops = { .sz = sizeof(ops), .submit = complete_at_once };
	struct loop *l = arg;

	l->result = dmu_channel_run_async(l->r->ch, &ops, l->h);
	return NULL;
}

/* The ready-made loop serves until stopped. */
TEST(async_run_loop)
{
	struct rig r;
	struct rig_cfg cfg = { .batch = true, .depth = 8 };
	struct held h = { 0 };
	struct loop l = { &r, &h, -1 };
	unsigned char *p = pattern(4096, 22);
	pthread_t t;
	size_t off = 0;

	rig_open(&r, &cfg);
	h.mem = r.mem;
	REQUIRE(pthread_create(&t, NULL, run_loop, &l) == 0);
	send_req(r.k, 1, DM_USER_REQ_MAP_WRITE, 0, 8, 4096, p);
	CHECK_EQ(recv_record(r.k, rec, sizeof(rec)), MSG);
	CHECK_EQ(reply_at(rec, &off, 0).type, DM_USER_RESP_SUCCESS);
	send_req(r.k, 2, DM_USER_REQ_MAP_READ, 0, 8, 4096, NULL);
	CHECK_EQ(recv_record(r.k, rec, sizeof(rec)), MSG + 4096);
	CHECK(memcmp(rec + MSG, p, 4096) == 0);
	dmu_channel_stop(r.ch);
	pthread_join(t, NULL);
	CHECK_EQ(l.result, 0);
	rig_close(&r);
	free(p);
}
