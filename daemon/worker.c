// SPDX-License-Identifier: GPL-2.0
#include "worker.h"

#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

#define STACK_SIZE (256 * 1024)
#define MAX_BROKEN_IN_A_ROW 16

static int opened(struct dmu_worker *w, int err, const struct dmu_serve_ctx *ctx)
{
	if (err) {
		dmu_error("cannot set up channel %u: %s", w->index, strerror(-err));
		return -1;
	}
	w->ctx = *ctx;
	w->ctx.calls = 0;
	atomic_store(&w->exit, DMU_WORKER_RUNNING);
	w->opened = true;
	return 0;
}

int dmu_worker_open(struct dmu_worker *w, struct dmu_device *dev,
		    const struct dmu_channel_opts *opts, const struct dmu_serve_ctx *ctx)
{
	return opened(w, dmu_channel_open(dev, opts, &w->channel), ctx);
}

int dmu_worker_open_fd(struct dmu_worker *w, struct dmu_device *dev, int fd,
		       const struct dmu_channel_opts *opts, const struct dmu_serve_ctx *ctx)
{
	return opened(w, dmu_channel_open_fd(dev, fd, opts, &w->channel), ctx);
}

/*
 * After a broken stream (the library said why): a new open is a new
 * channel, with a clean state.  -ENOENT: the control device is gone.
 */
static enum dmu_worker_exit reopen(struct dmu_worker *w)
{
	int err = dmu_channel_reopen(w->channel);

	if (!err)
		return DMU_WORKER_RUNNING;
	if (err == -ENOENT)
		return DMU_WORKER_TARGET_GONE;
	dmu_error("channel %u: cannot reopen the control device: %s", w->index, strerror(-err));
	return DMU_WORKER_FAILED;
}

/*
 * An asynchronous backend's loop: dmu_channel_process() when the channel
 * has work, the backend's notify when its descriptor is ready; the
 * backend's completions (dmu_req_complete) make the channel's pollfd
 * readable.  Returns as dmu_channel_run() does.
 */
static int run_async(struct dmu_worker *w)
{
	struct dmu_backend *b = w->ctx.backend;
	const struct dmu_backend_async_ops *a = b->ops->async;

	for (;;) {
		int r = dmu_channel_process(w->channel, &dmu_serve_async_ops, &w->ctx);
		struct pollfd p[2] = {
			{ .fd = dmu_channel_pollfd(w->channel), .events = POLLIN },
			{ .fd = -1 },
		};

		if (r == DMU_STOPPED)
			return 0;
		if (r)
			return r;
		p[1].fd = a->poll_fd(b, &p[1].events);
		int timeout = a->timeout_ms ? a->timeout_ms(b) : -1;
		int n = poll(p, 2, timeout);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (p[1].fd >= 0 && p[1].revents)
			a->notify(b, p[1].revents);
		else if (n == 0 && timeout >= 0)
			a->notify(b, 0);	/* the backend's timer */
	}
}

static enum dmu_worker_exit serve(struct dmu_worker *w)
{
	unsigned broken = 0;

	while (!atomic_load_explicit(w->stop, memory_order_relaxed)) {
		unsigned long calls = w->ctx.calls;
		const struct dmu_ops *ops = w->ctx.splice && w->ctx.backend->ops->locate ?
					    &dmu_serve_splice_ops : &dmu_serve_ops;
		int err = w->ctx.backend->ops->async ? run_async(w) :
			  dmu_channel_run(w->channel, ops, &w->ctx);
		enum dmu_worker_exit e;

		if (err == 0)
			return DMU_WORKER_STOPPED;
		if (err == -ENOTBLK)
			return DMU_WORKER_TARGET_GONE;
		if (w->ctx.calls != calls)
			broken = 0;	/* it served in between: not in a row */
		if (++broken > MAX_BROKEN_IN_A_ROW) {
			dmu_error("channel %u: giving up after %u broken streams in a row",
				  w->index, broken - 1);
			return DMU_WORKER_FAILED;
		}
		e = reopen(w);
		if (e != DMU_WORKER_RUNNING)
			return e;
	}
	return DMU_WORKER_STOPPED;
}

static void *worker_main(void *arg)
{
	struct dmu_worker *w = arg;
	char name[16];

	snprintf(name, sizeof(name), "dmuserd-w%u", w->index);
	pthread_setname_np(pthread_self(), name);

	atomic_store(&w->exit, serve(w));

	uint64_t one = 1;
	ssize_t ignored = write(w->exit_fd, &one, sizeof(one));
	(void)ignored;
	return NULL;
}

int dmu_worker_start(struct dmu_worker *w)
{
	pthread_attr_t attr;
	int err;

	pthread_attr_init(&attr);
	/* mlockall(MCL_FUTURE) pins whole stacks: keep them small. */
	pthread_attr_setstacksize(&attr, STACK_SIZE);
	err = pthread_create(&w->thread, &attr, worker_main, w);
	pthread_attr_destroy(&attr);
	if (err) {
		dmu_error("cannot start worker %u: %s", w->index, strerror(err));
		return -1;
	}
	w->started = true;
	return 0;
}

void dmu_worker_interrupt(struct dmu_worker *w)
{
	if (w->started && atomic_load(&w->exit) == DMU_WORKER_RUNNING)
		dmu_channel_stop(w->channel);
}

void dmu_worker_join(struct dmu_worker *w)
{
	if (!w->started)
		return;
	pthread_join(w->thread, NULL);
	w->started = false;
}

void dmu_worker_close(struct dmu_worker *w)
{
	if (!w->opened)
		return;
	dmu_channel_close(w->channel);
	w->channel = NULL;
	w->opened = false;
}
