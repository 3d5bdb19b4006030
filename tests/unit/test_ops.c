// SPDX-License-Identifier: GPL-2.0
/*
 * dmuserd's callbacks (daemon/ops.c) under libdmuser's blocking loop,
 * against a fake kernel (a SOCK_SEQPACKET socketpair: each record is what
 * one read() of the control device returns) and the fake backend.  The
 * protocol itself (framing, batching, PREFLUSH/FUA order, streaming) is
 * the library's and is tested in tests/unit/lib; here what dmuserd adds:
 * each op reaches the backend, --inject-delay-us, --read-only on a
 * read-write table, and a device that grew (probe_size).
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <linux/dm-user.h>

#include "fake_backend.h"
#include "ops.h"
#include "test.h"

#define DEV_SIZE (1024 * 1024)
#define CAP (16 * 1024)
#define MSG sizeof(struct dm_user_message)

struct rig {
	int kernel;
	struct fake_backend fb;
	struct dmu_serve_ctx ctx;
	struct dmu_device *dev;
	struct dmu_channel *ch;
	pthread_t thread;
	int result;
};

static void *serve_thread(void *arg)
{
	struct rig *r = arg;

	r->result = dmu_channel_run(r->ch, &dmu_serve_ops, &r->ctx);
	return NULL;
}

/* A device of dev_size bytes on a backend of DEV_SIZE, served on a thread. */
static void rig_start(struct rig *r, uint64_t dev_size, bool read_only, unsigned delay_us)
{
	DMU_OPTS(dmu_channel_opts, o, .buffer_size = CAP, .no_io_flusher = true);
	int sv[2];

	memset(r, 0, sizeof(*r));
	fake_backend_init(&r->fb, DEV_SIZE);
	r->fb.base.size = dev_size;
	r->ctx = (struct dmu_serve_ctx){
		.backend = &r->fb.base, .inject_delay_us = delay_us, .read_only = read_only,
	};
	REQUIRE(dmu_device_new("ops0", dev_size, NULL, &r->dev) == 0);
	REQUIRE(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv) == 0);
	REQUIRE(dmu_channel_open_fd(r->dev, sv[1], &o, &r->ch) == 0);
	r->kernel = sv[0];
	REQUIRE(pthread_create(&r->thread, NULL, serve_thread, r) == 0);
}

static void rig_stop(struct rig *r)
{
	dmu_channel_stop(r->ch);
	pthread_join(r->thread, NULL);
	CHECK_EQ(r->result, 0);
	CHECK_EQ(dmu_channel_close(r->ch), 0);
	CHECK_EQ(dmu_device_free(r->dev), 0);
	close(r->kernel);
	fake_backend_free(&r->fb);
}

/* One request (and a WRITE's payload) as one record; its reply, data into data. */
static struct dm_user_message round_trip(struct rig *r, uint64_t seq, uint64_t type,
					 uint64_t flags, uint64_t sector, uint64_t len,
					 const void *payload, void *data)
{
	static unsigned char rec[MSG + CAP];
	struct dm_user_message m = { seq, type, flags, sector, len };
	size_t plen = payload ? (size_t)len : 0;

	memcpy(rec, &m, MSG);
	if (plen)
		memcpy(rec + MSG, payload, plen);
	REQUIRE(send(r->kernel, rec, MSG + plen, 0) == (ssize_t)(MSG + plen));
	ssize_t n = recv(r->kernel, rec, sizeof(rec), 0);
	REQUIRE(n >= (ssize_t)MSG);
	memcpy(&m, rec, MSG);
	CHECK_EQ(m.seq, seq);
	if (data && m.type == DM_USER_RESP_SUCCESS) {
		REQUIRE_EQ((size_t)n, MSG + len);
		memcpy(data, rec + MSG, (size_t)len);
	}
	return m;
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Each request type reaches its backend op, with its range and NOUNMAP. */
TEST(ops_each_request_reaches_the_backend)
{
	struct rig r;
	unsigned char p[4096], back[4096];

	for (unsigned i = 0; i < sizeof(p); i++)
		p[i] = (unsigned char)(i * 13 + 5);
	rig_start(&r, DEV_SIZE, false, 0);
	CHECK_EQ(round_trip(&r, 1, DM_USER_REQ_MAP_WRITE, 0, 8, 4096, p, NULL).type,
		 DM_USER_RESP_SUCCESS);
	CHECK(memcmp(r.fb.mem + 8 * 512, p, sizeof(p)) == 0);
	CHECK_EQ(round_trip(&r, 2, DM_USER_REQ_MAP_READ, 0, 8, 4096, NULL, back).type,
		 DM_USER_RESP_SUCCESS);
	CHECK(memcmp(back, p, sizeof(p)) == 0);
	CHECK_EQ(round_trip(&r, 3, DM_USER_REQ_MAP_FLUSH, 0, 0, 0, NULL, NULL).type,
		 DM_USER_RESP_SUCCESS);
	CHECK_EQ(round_trip(&r, 4, DM_USER_REQ_MAP_DISCARD, 0, 16, 8192, NULL, NULL).type,
		 DM_USER_RESP_SUCCESS);
	CHECK_EQ(round_trip(&r, 5, DM_USER_REQ_MAP_WRITE_ZEROES, DM_USER_REQ_MAP_FLAG_NOUNMAP,
			    32, 4096, NULL, NULL).type, DM_USER_RESP_SUCCESS);
	CHECK_EQ(round_trip(&r, 6, DM_USER_REQ_MAP_SECURE_ERASE, 0, 40, 512, NULL, NULL).type,
		 DM_USER_RESP_SUCCESS);
	CHECK_EQ(r.fb.calls[F_WRITE], 1);
	CHECK_EQ(r.fb.calls[F_READ], 1);
	CHECK_EQ(r.fb.calls[F_FLUSH], 1);
	CHECK_EQ(r.fb.calls[F_DISCARD], 1);
	CHECK_EQ(r.fb.calls[F_WRITE_ZEROES], 1);
	CHECK_EQ(r.fb.calls[F_SECURE_ERASE], 1);
	REQUIRE_EQ(r.fb.nlog, 6);
	CHECK_EQ(r.fb.log[3].off, 16 * 512);
	CHECK_EQ(r.fb.log[3].len, 8192);
	CHECK_EQ(r.fb.log[4].op, F_WRITE_ZEROES);
	CHECK(!r.fb.log[4].may_unmap);
	CHECK_EQ(r.ctx.calls, 6);

	/* A backend error fails that request only; ENOSPC reaches the writer. */
	fake_backend_fail_next(&r.fb, F_WRITE, -EIO);
	CHECK_EQ(round_trip(&r, 7, DM_USER_REQ_MAP_WRITE, 0, 8, 4096, p, NULL).type,
		 DM_USER_RESP_ERROR);
	fake_backend_fail_next(&r.fb, F_WRITE, -ENOSPC);
	CHECK_EQ(round_trip(&r, 8, DM_USER_REQ_MAP_WRITE, 0, 8, 4096, p, NULL).type,
		 DM_USER_RESP_NOSPC);
	CHECK_EQ(round_trip(&r, 9, DM_USER_REQ_MAP_WRITE, 0, 8, 4096, p, NULL).type,
		 DM_USER_RESP_SUCCESS);
	rig_stop(&r);
}

/* --inject-delay-us: every answer waits at least that long. */
TEST(ops_inject_delay_delays_each_answer)
{
	struct rig r;
	unsigned char back[512];

	rig_start(&r, DEV_SIZE, false, 20000);
	uint64_t t0 = now_ns();
	CHECK_EQ(round_trip(&r, 1, DM_USER_REQ_MAP_FLUSH, 0, 0, 0, NULL, NULL).type,
		 DM_USER_RESP_SUCCESS);
	uint64_t t1 = now_ns();
	CHECK_EQ(round_trip(&r, 2, DM_USER_REQ_MAP_READ, 0, 0, 512, NULL, back).type,
		 DM_USER_RESP_SUCCESS);
	uint64_t t2 = now_ns();
	CHECK(t1 - t0 >= 20000000u);
	CHECK(t2 - t1 >= 20000000u);
	rig_stop(&r);
}

/* --read-only on a device whose table is not: changes are refused, reads served. */
TEST(ops_read_only_refuses_changes)
{
	struct rig r;
	unsigned char p[4096] = { 1 }, back[4096];

	rig_start(&r, DEV_SIZE, true, 0);
	CHECK_EQ(round_trip(&r, 1, DM_USER_REQ_MAP_WRITE, 0, 0, 4096, p, NULL).type,
		 DM_USER_RESP_ERROR);
	CHECK_EQ(round_trip(&r, 2, DM_USER_REQ_MAP_DISCARD, 0, 0, 4096, NULL, NULL).type,
		 DM_USER_RESP_ERROR);
	CHECK_EQ(round_trip(&r, 3, DM_USER_REQ_MAP_WRITE_ZEROES, 0, 0, 4096, NULL, NULL).type,
		 DM_USER_RESP_ERROR);
	CHECK_EQ(round_trip(&r, 4, DM_USER_REQ_MAP_SECURE_ERASE, 0, 0, 4096, NULL, NULL).type,
		 DM_USER_RESP_ERROR);
	CHECK_EQ(r.fb.calls[F_WRITE] + r.fb.calls[F_DISCARD] + r.fb.calls[F_WRITE_ZEROES] +
		 r.fb.calls[F_SECURE_ERASE], 0);
	CHECK_EQ(round_trip(&r, 5, DM_USER_REQ_MAP_READ, 0, 0, 4096, NULL, back).type,
		 DM_USER_RESP_SUCCESS);
	CHECK(memcmp(back, r.fb.mem, sizeof(back)) == 0);
	rig_stop(&r);
}

/*
 * The splice ops: locate is the backend's, but --read-only refuses a
 * WRITE's before the backend is asked, as it refuses write.
 */
static int fake_locate(struct dmu_backend *b, bool write, uint64_t off, uint64_t len,
		       int *fd, uint64_t *fd_off)
{
	(void)b;
	(void)len;
	*fd = write ? 7 : 8;
	*fd_off = off + 1;
	return 0;
}

TEST(ops_locate_is_the_backends_and_refused_when_read_only)
{
	struct dmu_backend_ops bo = { 0 };
	struct dmu_backend b = { .ops = &bo };
	struct dmu_serve_ctx ctx = { .backend = &b };
	uint64_t off = 0;
	int fd = -1;

	bo.locate = fake_locate;
	REQUIRE(dmu_serve_splice_ops.locate && !dmu_serve_ops.locate);
	CHECK_EQ(dmu_serve_splice_ops.locate(&ctx, true, 4096, 512, &fd, &off), 0);
	CHECK_EQ(fd, 7);
	CHECK_EQ(off, 4097);
	ctx.read_only = true;
	CHECK_EQ(dmu_serve_splice_ops.locate(&ctx, true, 4096, 512, &fd, &off), -EROFS);
	CHECK_EQ(dmu_serve_splice_ops.locate(&ctx, false, 0, 512, &fd, &off), 0);
	CHECK_EQ(fd, 8);
	CHECK_EQ(ctx.calls, 3);
}

/*
 * dmuserd --resize grew the storage, then the table, after start-up: a
 * request past the size known asks the backend once, and is served.
 */
TEST(ops_serve_a_device_that_grew)
{
	struct rig r;
	unsigned char p[4096], back[4096];

	for (unsigned i = 0; i < sizeof(p); i++)
		p[i] = (unsigned char)(i * 3 + 1);
	rig_start(&r, DEV_SIZE / 2, false, 0);
	/* In range: nobody asks. */
	CHECK_EQ(round_trip(&r, 1, DM_USER_REQ_MAP_READ, 0, 0, 512, NULL, back).type,
		 DM_USER_RESP_SUCCESS);
	CHECK_EQ(r.fb.probes, 0);

	CHECK_EQ(round_trip(&r, 2, DM_USER_REQ_MAP_WRITE, 0, DEV_SIZE / 512 - 8, 4096, p,
			    NULL).type, DM_USER_RESP_SUCCESS);
	CHECK_EQ(r.fb.probes, 1);
	CHECK_EQ(dmu_device_size(r.dev), DEV_SIZE);	/* raised, for every channel */
	CHECK(memcmp(r.fb.mem + DEV_SIZE - 4096, p, sizeof(p)) == 0);
	CHECK_EQ(round_trip(&r, 3, DM_USER_REQ_MAP_READ, 0, DEV_SIZE / 512 - 8, 4096, NULL,
			    back).type, DM_USER_RESP_SUCCESS);
	CHECK(memcmp(back, p, sizeof(p)) == 0);
	CHECK_EQ(r.fb.probes, 1);			/* in range now */

	/* Beyond the storage too: an error, asked once more, the size stays. */
	CHECK_EQ(round_trip(&r, 4, DM_USER_REQ_MAP_READ, 0, DEV_SIZE / 512, 512, NULL,
			    NULL).type, DM_USER_RESP_ERROR);
	CHECK_EQ(r.fb.probes, 2);
	r.fb.storage_size = DEV_SIZE / 4;		/* storage that shrank */
	CHECK_EQ(round_trip(&r, 5, DM_USER_REQ_MAP_READ, 0, DEV_SIZE / 512, 512, NULL,
			    NULL).type, DM_USER_RESP_ERROR);
	CHECK_EQ(dmu_device_size(r.dev), DEV_SIZE);
	rig_stop(&r);
}
