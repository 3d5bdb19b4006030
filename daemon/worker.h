/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Worker threads.  Each owns one libdmuser channel (its own open of the
 * control device) and serves it with dmu_channel_run() and dmuserd's
 * callbacks (ops.h), or, for an asynchronous backend (backend.h), with
 * dmu_channel_process() and the backend's own descriptor in one poll(),
 * until the target is destroyed (-ENOTBLK) or main asks it to stop.
 * Workers share nothing on the request path: each serves its own backend
 * instance (dmu_backend_for_worker), given in its ctx.
 *
 * Stopping: main sets *stop and calls dmu_worker_interrupt(), which is
 * dmu_channel_stop(): the library's loop, idle or not, returns once the
 * requests in hand (several, where the kernel batches them) are answered.
 * No signal is involved.
 */
#ifndef DMUSERD_WORKER_H
#define DMUSERD_WORKER_H

#include <dmuser.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "ops.h"

enum dmu_worker_exit {
	DMU_WORKER_RUNNING,
	DMU_WORKER_TARGET_GONE,	/* the loop said ENOTBLK: the normal end */
	DMU_WORKER_STOPPED,	/* *stop was set */
	DMU_WORKER_FAILED,	/* the channel broke and could not be reopened */
};

struct dmu_worker {
	unsigned index;
	const atomic_bool *stop;
	int exit_fd;			/* eventfd: +1 when the thread ends */
	struct dmu_channel *channel;
	struct dmu_serve_ctx ctx;	/* the callbacks' argument */
	pthread_t thread;
	bool opened;			/* channel open */
	bool started;			/* thread running or not yet joined */
	atomic_int exit;		/* enum dmu_worker_exit */
};

/*
 * Open the device's control device (the library waits briefly for its
 * node) as this worker's channel; ctx is copied.
 */
int dmu_worker_open(struct dmu_worker *w, struct dmu_device *dev,
		    const struct dmu_channel_opts *opts, const struct dmu_serve_ctx *ctx);
/* The same on a descriptor already open (a test's fake kernel); it is closed on failure. */
int dmu_worker_open_fd(struct dmu_worker *w, struct dmu_device *dev, int fd,
		       const struct dmu_channel_opts *opts, const struct dmu_serve_ctx *ctx);
int dmu_worker_start(struct dmu_worker *w);
void dmu_worker_interrupt(struct dmu_worker *w);
void dmu_worker_join(struct dmu_worker *w);
/* Close the channel (after join, or if never started). */
void dmu_worker_close(struct dmu_worker *w);

#endif
