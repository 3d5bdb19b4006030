// SPDX-License-Identifier: LGPL-2.1-or-later
/* dmu-ramdisk NAME SIZE_MIB: a RAM disk on libdmuser's blocking loop.  /dev/mapper/NAME
 * appears when it is ready; SIGINT or SIGTERM removes it and exits 0. */
#include <dmuser.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static unsigned char *ram;

static int ram_read(void *arg, void *buf, size_t len, uint64_t off)
{
	(void)arg;
	memcpy(buf, ram + off, len);
	return 0;
}

static int ram_write(void *arg, const void *buf, size_t len, uint64_t off)
{
	(void)arg;
	memcpy(ram + off, buf, len);
	return 0;
}

static int ram_discard(void *arg, uint64_t off, uint64_t len)
{
	(void)arg;
	memset(ram + off, 0, len);	/* a discarded range reads back as zeroes */
	return 0;
}
/* No flush: nothing is cached.  No write_zeroes: the library writes zeroes. */
static const struct dmu_ops ops = {
	.sz = sizeof(ops), .read = ram_read, .write = ram_write, .discard = ram_discard,
};

/* Removal waits for the requests in flight: not on the serving thread. */
static void *remove_on_signal(void *arg)
{
	struct dmu_device *dev = arg;
	sigset_t set;
	int sig, err;

	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	do {
		sigwait(&set, &sig);
		err = dmu_device_remove(dev);
		if (err)
			fprintf(stderr, "dmu-ramdisk: cannot remove: %s\n", strerror(-err));
	} while (err);
	return NULL;
}

int main(int argc, char **argv)
{
	struct dmu_device *dev;
	struct dmu_channel *ch;
	sigset_t set;
	pthread_t t;
	int err;

	if (argc != 3 || atoi(argv[2]) <= 0) {
		fprintf(stderr, "usage: dmu-ramdisk NAME SIZE_MIB\n");
		return 2;
	}
	uint64_t size = (uint64_t)atoi(argv[2]) << 20;

	if (!(ram = calloc(1, size)))
		return 1;
	memset(ram, 0, size);	/* touch it now, not on the request path */
	sigemptyset(&set);	/* signals go to remove_on_signal only */
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &set, NULL);

	if (dmu_device_create(argv[1], size, NULL, &dev))
		return 1;	/* libdmuser said why on stderr */
	err = dmu_channel_open(dev, NULL, &ch);	/* on the thread that serves it */
	if (!err)
		err = pthread_create(&t, NULL, remove_on_signal, dev) ? -EAGAIN : 0;
	if (!err)
		err = dmu_device_resume(dev);
	if (err) {
		dmu_device_remove(dev);
		return 1;
	}
	err = dmu_channel_run(ch, &ops, NULL);	/* until the device is removed */
	if (err != -ENOTBLK)
		return 1;	/* the channel broke: the kernel fails or requeues its requests */
	dmu_channel_close(ch);	/* remove_on_signal may still wait: keep dev */
	return 0;
}
