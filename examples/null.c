// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * dmu-null [-t THREADS] [-m ADDR:PORT] NAME SIZE_MIB: a null device.
 * Reads return zeroes, writes and discards are dropped.  One channel per
 * thread, and the library's metrics over HTTP: the observability comes
 * with the library.  Prints "metrics=ADDR:PORT" once it serves; SIGINT or
 * SIGTERM removes the device and exits 0.
 */
#include <dmuser.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_THREADS 64

static atomic_uint running;	/* serving threads */

static int null_read(void *arg, void *buf, size_t len, uint64_t off)
{
	(void)arg;
	(void)off;
	memset(buf, 0, len);
	return 0;
}

static int null_write(void *arg, const void *buf, size_t len, uint64_t off)
{
	(void)arg;
	(void)buf;
	(void)len;
	(void)off;
	return 0;
}

static int null_range(void *arg, uint64_t off, uint64_t len)
{
	(void)arg;
	(void)off;
	(void)len;
	return 0;
}

static int null_zeroes(void *arg, uint64_t off, uint64_t len, bool may_unmap)
{
	(void)may_unmap;
	return null_range(arg, off, len);
}

static const struct dmu_ops ops = {
	.sz = sizeof(ops),
	.read = null_read,
	.write = null_write,
	.discard = null_range,
	.write_zeroes = null_zeroes,
	.secure_erase = null_range,
};

struct worker {
	struct dmu_device *dev;
	pthread_t thread;
	pthread_barrier_t *opened;
	int err;
};

/* Each thread opens its own channel (PR_SET_IO_FLUSHER is per thread) and serves it. */
static void *serve(void *arg)
{
	struct worker *w = arg;
	struct dmu_channel *ch;

	w->err = dmu_channel_open(w->dev, NULL, &ch);
	pthread_barrier_wait(w->opened);
	if (w->err)
		return NULL;
	w->err = dmu_channel_run(ch, &ops, NULL);
	dmu_channel_close(ch);
	atomic_fetch_sub(&running, 1);
	return NULL;
}

int main(int argc, char **argv)
{
	struct worker w[MAX_THREADS];
	struct dmu_http *http = NULL;
	pthread_barrier_t opened;
	const char *metrics = NULL;
	unsigned threads = 1, i;
	struct dmu_device *dev;
	sigset_t set;
	int opt, err = 0;

	while ((opt = getopt(argc, argv, "t:m:")) != -1) {
		if (opt == 't')
			threads = (unsigned)atoi(optarg);
		else if (opt == 'm')
			metrics = optarg;
		else
			return 2;
	}
	if (argc - optind != 2 || atoi(argv[optind + 1]) <= 0 || !threads ||
	    threads > MAX_THREADS) {
		fprintf(stderr, "usage: dmu-null [-t THREADS] [-m ADDR:PORT] NAME SIZE_MIB\n");
		return 2;
	}
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &set, NULL);	/* main takes them with sigwait */

	if (dmu_device_create(argv[optind], (uint64_t)atoi(argv[optind + 1]) << 20, NULL, &dev))
		return 1;
	pthread_barrier_init(&opened, NULL, threads + 1);
	atomic_store(&running, threads);
	for (i = 0; i < threads; i++) {
		w[i] = (struct worker){ .dev = dev, .opened = &opened };
		if (pthread_create(&w[i].thread, NULL, serve, &w[i]))
			return 1;
	}
	pthread_barrier_wait(&opened);
	for (i = 0; i < threads; i++)
		err = err ? err : w[i].err;
	if (!err && metrics)
		err = dmu_http_start(dev, metrics, NULL, &http);
	if (!err)
		err = dmu_device_resume(dev);
	if (err) {
		fprintf(stderr, "dmu-null: %s\n", strerror(-err));
		dmu_device_remove(dev);	/* the threads see the target go */
	} else if (http) {
		printf("metrics=%s\n", dmu_http_address(http));
		fflush(stdout);
	}
	/*
	 * Removal waits for the requests in flight, which the threads serve.
	 * Check every second whether someone else removed the device.
	 */
	while (!err && atomic_load(&running) == threads) {
		struct timespec second = { .tv_sec = 1 };

		if (sigtimedwait(&set, NULL, &second) < 0)
			continue;
		int r = dmu_device_remove(dev);

		if (!r)
			break;
		fprintf(stderr, "dmu-null: cannot remove: %s\n", strerror(-r));
		if (r != -EBUSY)
			err = r;	/* busy: keep serving, try again on the next signal */
	}
	for (i = 0; i < threads; i++) {
		pthread_join(w[i].thread, NULL);
		if (w[i].err && w[i].err != -ENOTBLK)
			err = w[i].err;
	}
	dmu_http_stop(http);
	dmu_device_free(dev);
	return err ? 1 : 0;
}
