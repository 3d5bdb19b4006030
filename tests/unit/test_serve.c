// SPDX-License-Identifier: GPL-2.0
/*
 * The worker pool's stop (daemon/serve.c) against a fake kernel (a
 * SOCK_SEQPACKET socketpair, as in test_ops.c) and a backend whose
 * read blocks until the test releases it: a worker stuck in I/O.  A stop
 * must not return while that worker still runs, since main frees the
 * backend, the channel and the device right after it.
 */
#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <linux/dm-user.h>

#include "serve.h"
#include "test.h"

#define DEV_SIZE (1024 * 1024)
#define CAP (16 * 1024)

struct stuck_backend {
	struct dmu_backend base;
	sem_t entered;		/* posted when read() starts */
	sem_t release;		/* read() returns once this is posted */
	atomic_bool in_read;
};

static int stuck_read(struct dmu_backend *b, void *buf, size_t len, uint64_t off)
{
	struct stuck_backend *s = (struct stuck_backend *)b;

	(void)off;
	atomic_store(&s->in_read, true);
	sem_post(&s->entered);
	while (sem_wait(&s->release) && errno == EINTR)
		;
	memset(buf, 0xab, len);
	atomic_store(&s->in_read, false);
	return 0;
}

static int ok_write(struct dmu_backend *b, const void *buf, size_t len, uint64_t off)
{
	(void)b, (void)buf, (void)len, (void)off;
	return 0;
}

static int ok_flush(struct dmu_backend *b)
{
	(void)b;
	return 0;
}

static int ok_range(struct dmu_backend *b, uint64_t off, uint64_t len)
{
	(void)b, (void)off, (void)len;
	return 0;
}

static int ok_zeroes(struct dmu_backend *b, uint64_t off, uint64_t len, bool may_unmap)
{
	(void)b, (void)off, (void)len, (void)may_unmap;
	return 0;
}

static const struct dmu_backend_ops stuck_ops = {
	.read = stuck_read,
	.write = ok_write,
	.flush = ok_flush,
	.discard = ok_range,
	.write_zeroes = ok_zeroes,
	.secure_erase = ok_range,
};

static struct {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool returned;			/* dmu_pool_join() returned */
	bool returned_while_stuck;	/* ... with the backend still in read() */
	bool still_waiting;		/* dmu_pool_join() said it goes on waiting */
} st = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, false, false };

static struct stuck_backend sb;

static void on_still_waiting(struct dmu_pool *pool, unsigned running)
{
	(void)pool;
	(void)running;
	pthread_mutex_lock(&st.lock);
	st.still_waiting = true;
	pthread_cond_broadcast(&st.cond);
	pthread_mutex_unlock(&st.lock);
}

static void *stopper(void *arg)
{
	dmu_pool_join(arg);
	pthread_mutex_lock(&st.lock);
	st.returned = true;
	st.returned_while_stuck = atomic_load(&sb.in_read);
	pthread_cond_broadcast(&st.cond);
	pthread_mutex_unlock(&st.lock);
	return NULL;
}

/* The stuck backend, of DEV_SIZE bytes, behind a device with no dm device. */
static struct dmu_device *serve_setup(void)
{
	struct dmu_device *dev;

	sb.base.ops = &stuck_ops;
	sb.base.size = DEV_SIZE;
	REQUIRE(dmu_device_new("serve0", DEV_SIZE, NULL, &dev) == 0);
	return dev;
}

static int open_worker(struct dmu_pool *pool, unsigned i, struct dmu_device *dev, int fd)
{
	DMU_OPTS(dmu_channel_opts, o, .buffer_size = CAP, .no_io_flusher = true);
	struct dmu_serve_ctx ctx = { .backend = &sb.base };

	return dmu_worker_open_fd(&pool->workers[i], dev, fd, &o, &ctx);
}

TEST(serve_stop_waits_for_a_worker_stuck_in_its_backend)
{
	struct dmu_device *dev = serve_setup();
	struct dmu_pool pool;
	pthread_t stop_thread;
	int sv[2];

	REQUIRE(sem_init(&sb.entered, 0, 0) == 0);
	REQUIRE(sem_init(&sb.release, 0, 0) == 0);
	REQUIRE(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv) == 0);
	REQUIRE(dmu_pool_init(&pool, 1) == 0);
	pool.stop_wait_ms = 20;
	pool.on_still_waiting = on_still_waiting;
	REQUIRE(open_worker(&pool, 0, dev, sv[1]) == 0);
	REQUIRE(dmu_pool_start(&pool) == 0);

	struct dm_user_message rq = {
		.seq = 7, .type = DM_USER_REQ_MAP_READ, .sector = 8, .len = 4096,
	};
	REQUIRE(send(sv[0], &rq, sizeof(rq), 0) == (ssize_t)sizeof(rq));
	while (sem_wait(&sb.entered) && errno == EINTR)
		;

	/* Stop while the worker is inside read(), for longer than stop_wait_ms. */
	REQUIRE(pthread_create(&stop_thread, NULL, stopper, &pool) == 0);
	pthread_mutex_lock(&st.lock);
	while (!st.returned && !st.still_waiting)
		pthread_cond_wait(&st.cond, &st.lock);
	bool early = st.returned && st.returned_while_stuck;
	pthread_mutex_unlock(&st.lock);
	if (early)
		t_fail(__FILE__, __LINE__,
		       "the stop returned while a worker was still in its backend");
	CHECK(!st.returned);

	/* The backend returns: the request is answered, then the stop completes. */
	sem_post(&sb.release);
	REQUIRE(pthread_join(stop_thread, NULL) == 0);
	CHECK(st.returned);
	CHECK(!atomic_load(&sb.in_read));
	CHECK_EQ(dmu_pool_started(&pool), 0);	/* every thread joined */
	CHECK(!pool.workers[0].opened);		/* and its channel closed */

	unsigned char reply[sizeof(struct dm_user_message) + 4096];
	ssize_t n = recv(sv[0], reply, sizeof(reply), MSG_DONTWAIT);
	REQUIRE_EQ(n, sizeof(reply));
	struct dm_user_message hdr;
	memcpy(&hdr, reply, sizeof(hdr));
	CHECK_EQ(hdr.seq, 7);
	CHECK_EQ(hdr.type, DM_USER_RESP_SUCCESS);
	CHECK_EQ(reply[sizeof(hdr)], 0xab);

	dmu_pool_free(&pool);
	CHECK_EQ(dmu_device_free(dev), 0);
	close(sv[0]);
}

/* Workers that are idle end at once: no stop_wait_ms, no message. */
TEST(serve_stop_of_idle_workers)
{
	struct dmu_device *dev = serve_setup();
	struct dmu_pool pool;
	int kernels[3];

	REQUIRE(dmu_pool_init(&pool, 3) == 0);
	pool.stop_wait_ms = 60000;
	pool.on_still_waiting = on_still_waiting;
	for (unsigned i = 0; i < 3; i++) {
		int sv[2];

		REQUIRE(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv) == 0);
		kernels[i] = sv[0];
		REQUIRE(open_worker(&pool, i, dev, sv[1]) == 0);
	}
	REQUIRE(dmu_pool_start(&pool) == 0);
	dmu_pool_join(&pool);
	CHECK(!st.still_waiting);
	CHECK_EQ(dmu_pool_started(&pool), 0);
	for (unsigned i = 0; i < 3; i++) {
		CHECK_EQ(atomic_load(&pool.workers[i].exit), DMU_WORKER_STOPPED);
		close(kernels[i]);
	}
	dmu_pool_free(&pool);
	CHECK_EQ(dmu_device_free(dev), 0);
}
