/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The worker pool: one worker thread per channel (worker.c), how main
 * waits for them and how it stops them.
 *
 * Stopping.  dmu_pool_wait(..., interrupt) sets the stop flag and keeps
 * waking the workers; each finishes the requests in hand first.  A worker
 * stuck in its backend (a hung NFS server, a dying disk) cannot be woken:
 * dmu_pool_join() waits for it however long it takes, saying so every
 * stop_wait_ms, because the worker still uses the backend and its
 * channel, which main frees once dmu_pool_join() has returned.
 */
#ifndef DMUSERD_SERVE_H
#define DMUSERD_SERVE_H

#include <stdatomic.h>
#include <stdbool.h>

#include "worker.h"

struct dmu_pool {
	struct dmu_worker *workers;
	unsigned n;
	atomic_bool stop;
	int exit_fd;			/* eventfd: +1 per worker that ended */
	unsigned exited;
	unsigned stop_wait_ms;		/* how long a stop waits before it says so */
	/* Tests: called each time dmu_pool_join() goes on waiting after stop_wait_ms. */
	void (*on_still_waiting)(struct dmu_pool *pool, unsigned running);
};

/* n workers, none opened; 0 or -1 (message printed). */
int dmu_pool_init(struct dmu_pool *pool, unsigned n);
/* Workers whose thread was started and not joined. */
unsigned dmu_pool_started(const struct dmu_pool *pool);
/* Workers that have not ended (of those started). */
unsigned dmu_pool_running(const struct dmu_pool *pool);
/* Count the workers that ended since the last call (exit_fd was readable). */
void dmu_pool_collect(struct dmu_pool *pool);
/* Start every opened worker; 0 or -1. */
int dmu_pool_start(struct dmu_pool *pool);
/*
 * Wait up to timeout_ms for every started worker to end; with interrupt,
 * ask them to stop and keep waking them.  0 if all ended in time.
 */
int dmu_pool_wait(struct dmu_pool *pool, unsigned timeout_ms, bool interrupt);
/*
 * Stop the workers that still run, wait for every one of them (see
 * above), join the threads and close the channels.  Afterwards nothing
 * runs that uses what the workers used.
 */
void dmu_pool_join(struct dmu_pool *pool);
/* Free the pool (after dmu_pool_join). */
void dmu_pool_free(struct dmu_pool *pool);

#endif
