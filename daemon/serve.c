// SPDX-License-Identifier: GPL-2.0
#include "serve.h"

#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

#define DEFAULT_STOP_WAIT_MS 30000
#define INTERRUPT_EVERY_MS 100

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int dmu_pool_init(struct dmu_pool *pool, unsigned n)
{
	memset(pool, 0, sizeof(*pool));
	pool->n = n;
	pool->stop_wait_ms = DEFAULT_STOP_WAIT_MS;
	pool->workers = calloc(n, sizeof(*pool->workers));
	pool->exit_fd = eventfd(0, EFD_CLOEXEC);
	if (!pool->workers || pool->exit_fd < 0) {
		dmu_error("cannot set up %u workers: %s", n, strerror(errno ? errno : ENOMEM));
		return -1;
	}
	for (unsigned i = 0; i < n; i++) {
		pool->workers[i].index = i;
		pool->workers[i].stop = &pool->stop;
		pool->workers[i].exit_fd = pool->exit_fd;
	}
	return 0;
}

unsigned dmu_pool_started(const struct dmu_pool *pool)
{
	unsigned n = 0;

	for (unsigned i = 0; i < pool->n; i++)
		n += pool->workers[i].started;
	return n;
}

unsigned dmu_pool_running(const struct dmu_pool *pool)
{
	unsigned n = 0;

	for (unsigned i = 0; i < pool->n; i++)
		n += pool->workers[i].started &&
		     atomic_load(&pool->workers[i].exit) == DMU_WORKER_RUNNING;
	return n;
}

void dmu_pool_collect(struct dmu_pool *pool)
{
	uint64_t n;

	if (read(pool->exit_fd, &n, sizeof(n)) == sizeof(n))
		pool->exited += (unsigned)n;
}

int dmu_pool_start(struct dmu_pool *pool)
{
	for (unsigned i = 0; i < pool->n; i++)
		if (pool->workers[i].opened && dmu_worker_start(&pool->workers[i]))
			return -1;
	return 0;
}

/*
 * With interrupt, set the stop flag and stop every channel (again at each
 * round: cheap, and a worker between two loops of its channel sees it).
 */
int dmu_pool_wait(struct dmu_pool *pool, unsigned timeout_ms, bool interrupt)
{
	uint64_t deadline = now_ns() + (uint64_t)timeout_ms * 1000000u;
	unsigned expected = dmu_pool_started(pool);

	if (interrupt)
		atomic_store(&pool->stop, true);
	while (pool->exited < expected) {
		struct pollfd p = { .fd = pool->exit_fd, .events = POLLIN };
		uint64_t now = now_ns();
		unsigned wait_ms = INTERRUPT_EVERY_MS;

		if (now >= deadline)
			return -1;
		if ((deadline - now) / 1000000u < wait_ms)
			wait_ms = (unsigned)((deadline - now) / 1000000u) + 1;
		for (unsigned i = 0; interrupt && i < pool->n; i++)
			dmu_worker_interrupt(&pool->workers[i]);
		if (poll(&p, 1, (int)wait_ms) > 0)
			dmu_pool_collect(pool);
	}
	return 0;
}

/*
 * Every started worker ends before this returns: the stop flag is set and
 * the threads are woken until they have, and one stuck in its backend is
 * waited for however long that takes (a stuck pread() cannot be woken), so
 * nothing it uses is freed under it.
 */
void dmu_pool_join(struct dmu_pool *pool)
{
	unsigned waited_ms = 0;

	while (dmu_pool_started(pool) &&
	       dmu_pool_wait(pool, pool->stop_wait_ms, true)) {
		unsigned running = dmu_pool_running(pool);

		waited_ms += pool->stop_wait_ms;
		dmu_error("%u worker%s still in a request after %u ms (the backend does not return); waiting for %s",
			  running, running == 1 ? " is" : "s are", waited_ms,
			  running == 1 ? "it" : "them");
		if (pool->on_still_waiting)
			pool->on_still_waiting(pool, running);
	}
	for (unsigned i = 0; i < pool->n; i++) {
		dmu_worker_join(&pool->workers[i]);
		dmu_worker_close(&pool->workers[i]);
	}
}

void dmu_pool_free(struct dmu_pool *pool)
{
	if (pool->exit_fd >= 0)
		close(pool->exit_fd);
	free(pool->workers);
	pool->workers = NULL;
}
