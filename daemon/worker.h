/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Worker threads.  Each owns one channel (its own open of the control
 * device) and serves it until the target is destroyed (ENOTBLK) or main
 * asks it to stop.  Workers share nothing on the request path.
 *
 * Stopping: main sets *stop and calls dmu_worker_interrupt(), which sends
 * SIGUSR1 to the thread so a read() blocked on an idle channel returns
 * EINTR.  A worker checks *stop between reads only, so the requests it
 * is serving (several, where the kernel batches them) are always answered
 * first.
 */
#ifndef DMUSERD_WORKER_H
#define DMUSERD_WORKER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "channel.h"

enum dmu_worker_exit {
	DMU_WORKER_RUNNING,
	DMU_WORKER_TARGET_GONE,	/* read() said ENOTBLK: the normal end */
	DMU_WORKER_STOPPED,	/* *stop was set */
	DMU_WORKER_FAILED,	/* the channel broke and could not be reopened */
};

struct dmu_worker {
	unsigned index;
	const char *control_path;
	const atomic_bool *stop;
	int exit_fd;			/* eventfd: +1 when the thread ends */
	struct dmu_channel channel;
	pthread_t thread;
	bool opened;			/* channel set up */
	bool started;			/* thread running or not yet joined */
	atomic_int exit;		/* enum dmu_worker_exit */
};

/* Install the SIGUSR1 handler that dmu_worker_interrupt() relies on. */
int dmu_workers_init_signals(void);

/* Open the control device (waiting briefly for its node) and set up the channel. */
int dmu_worker_open(struct dmu_worker *w, const struct dmu_channel_config *cfg);
/* The same on a descriptor already open (a test's fake kernel); closes it on failure. */
int dmu_worker_open_fd(struct dmu_worker *w, int fd, const struct dmu_channel_config *cfg);
int dmu_worker_start(struct dmu_worker *w);
void dmu_worker_interrupt(struct dmu_worker *w);
void dmu_worker_join(struct dmu_worker *w);
/* Close the channel and free its buffer (after join, or if never started). */
void dmu_worker_close(struct dmu_worker *w);

#endif
