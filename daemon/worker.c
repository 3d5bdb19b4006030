// SPDX-License-Identifier: GPL-2.0
#include "worker.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

#define STACK_SIZE (256 * 1024)
#define OPEN_WAIT_MS 5000		/* for the control node to appear */
#define OPEN_POLL_MS 10
#define MAX_BROKEN_IN_A_ROW 16

static void on_sigusr1(int sig)
{
	(void)sig;	/* only here to make a blocked read() return EINTR */
}

int dmu_workers_init_signals(void)
{
	struct sigaction sa = { .sa_handler = on_sigusr1 };

	sigemptyset(&sa.sa_mask);
	sa.sa_flags = 0;	/* no SA_RESTART: interrupt the read() */
	return sigaction(SIGUSR1, &sa, NULL);
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000 };

	while (clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, &ts) == EINTR)
		;
}

/*
 * devtmpfs creates /dev/dm-user/<name> before the table load returns; with
 * udev managing /dev the node may lag a little, so wait a bounded time.
 */
static int open_control(const char *path, bool wait)
{
	for (unsigned waited = 0;; waited += OPEN_POLL_MS) {
		int fd = open(path, O_RDWR | O_CLOEXEC);

		if (fd >= 0 || errno != ENOENT || !wait || waited >= OPEN_WAIT_MS)
			return fd;
		sleep_ms(OPEN_POLL_MS);
	}
}

int dmu_worker_open(struct dmu_worker *w, const struct dmu_channel_config *cfg)
{
	int fd = open_control(w->control_path, true);

	if (fd < 0) {
		dmu_error("cannot open %s: %s", w->control_path, strerror(errno));
		return -1;
	}
	return dmu_worker_open_fd(w, fd, cfg);
}

int dmu_worker_open_fd(struct dmu_worker *w, int fd, const struct dmu_channel_config *cfg)
{
	int err = dmu_channel_init(&w->channel, fd, cfg);
	if (err) {
		dmu_error("cannot set up channel %u: %s", w->index, strerror(-err));
		close(fd);
		return -1;
	}
	atomic_store(&w->exit, DMU_WORKER_RUNNING);
	w->opened = true;
	return 0;
}

/* After a broken stream: a new open is a new channel, with a clean state. */
static enum dmu_worker_exit reopen(struct dmu_worker *w)
{
	struct dmu_channel *c = &w->channel;

	dmu_warn("channel %u: %s; reopening %s", w->index,
		 c->last_errno ? strerror(c->last_errno) : "stream broken",
		 w->control_path);
	close(c->fd);
	c->fd = open_control(w->control_path, false);
	if (c->fd >= 0) {
		dmu_channel_attach(c, c->fd);
		if (c->cfg.metrics)
			dmu_metrics_reopened(c->cfg.metrics);
		return DMU_WORKER_RUNNING;
	}
	if (errno == ENOENT)
		return DMU_WORKER_TARGET_GONE;
	dmu_error("channel %u: cannot reopen %s: %s", w->index, w->control_path,
		  strerror(errno));
	return DMU_WORKER_FAILED;
}

static enum dmu_worker_exit serve(struct dmu_worker *w)
{
	unsigned broken = 0;

	while (!atomic_load_explicit(w->stop, memory_order_relaxed)) {
		enum dmu_worker_exit e;

		switch (dmu_channel_serve(&w->channel)) {
		case DMU_CH_OK:
			broken = 0;
			break;
		case DMU_CH_INTERRUPTED:
			break;		/* look at *stop again */
		case DMU_CH_GONE:
			return DMU_WORKER_TARGET_GONE;
		case DMU_CH_BROKEN:
			if (++broken > MAX_BROKEN_IN_A_ROW) {
				dmu_error("channel %u: giving up after %u broken streams in a row",
					  w->index, broken - 1);
				return DMU_WORKER_FAILED;
			}
			e = reopen(w);
			if (e != DMU_WORKER_RUNNING)
				return e;
			break;
		}
	}
	return DMU_WORKER_STOPPED;
}

static void *worker_main(void *arg)
{
	struct dmu_worker *w = arg;
	char name[16];
	sigset_t usr1;

	snprintf(name, sizeof(name), "dmuserd-w%u", w->index);
	pthread_setname_np(pthread_self(), name);
	sigemptyset(&usr1);
	sigaddset(&usr1, SIGUSR1);
	pthread_sigmask(SIG_UNBLOCK, &usr1, NULL);

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
		pthread_kill(w->thread, SIGUSR1);
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
	if (w->channel.fd >= 0)
		close(w->channel.fd);
	w->channel.fd = -1;
	dmu_channel_destroy(&w->channel);
	w->opened = false;
}
