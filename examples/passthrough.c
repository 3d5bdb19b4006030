// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * dmu-passthrough: serve a file (or a block device) through libdmuser's
 * asynchronous API and io_uring, with O_DIRECT.
 *
 *   dmu-passthrough [options] NAME FILE
 *     -a              attach to an existing device NAME (after a restart)
 *                     instead of creating it; SIGTERM then leaves it in place
 *     -q DEPTH        requests in flight at once (default 64)
 *     -r MS           recovery_ms of a new device: its requests wait this
 *                     long for the next daemon when this one dies
 *     -T MS           timeout_ms of a new device
 *     -x KIB          max_io_len of a new device, KiB (default 256)
 *     -s BYTES        size of a new device (default: the file's)
 *     -m ADDR:PORT    serve the metrics over HTTP
 *
 * One thread runs the event loop: an epoll set holds the channel's
 * pollable descriptor and the ring's eventfd.  Each request becomes one
 * SQE (two for a PREFLUSH write: a linked fdatasync first; FUA is
 * RWF_DSYNC), submitted together once per read of the control device
 * (the commit callback), and completed from the CQE in whatever order the
 * file system finishes them.  A second thread waits for SIGINT/SIGTERM:
 * it removes the device it created (the loop keeps serving while
 * device-mapper drains it) or, with -a, stops the channel.  SIGHUP makes
 * it read the table again (dmu_device_refresh), after a resize by
 * another program, and print the size.
 */
#include <dmuser.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <liburing.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#define LINKED_FSYNC ((void *)1)	/* user_data of a PREFLUSH's fdatasync */

struct server {
	atomic_bool signalled;	/* on_signal is acting on a signal */
	struct io_uring ring;
	int fd;			/* the file, O_DIRECT */
	struct dmu_device *dev;
	bool attach;
};

static struct io_uring_sqe *get_sqe(struct server *s)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&s->ring);

	if (!sqe) {		/* full: start what is queued to make room */
		io_uring_submit(&s->ring);
		sqe = io_uring_get_sqe(&s->ring);
	}
	return sqe;
}

/* The library's submit callback: one request, one SQE (or two). */
static int submit(void *arg, struct dmu_req *req)
{
	struct server *s = arg;
	uint64_t off = dmu_req_offset(req), len = dmu_req_len(req);
	struct io_uring_sqe *sqe;

	if (dmu_req_type(req) == DMU_REQ_SECURE_ERASE)
		return -EOPNOTSUPP;	/* the one type left; a file cannot promise it */
	/* 2 * depth SQEs and at most depth requests: get_sqe() cannot fail */
	if (dmu_req_type(req) == DMU_REQ_WRITE && (dmu_req_flags(req) & DMU_REQ_FLAG_PREFLUSH)) {
		sqe = get_sqe(s);
		io_uring_prep_fsync(sqe, s->fd, IORING_FSYNC_DATASYNC);
		io_uring_sqe_set_data(sqe, LINKED_FSYNC);
		sqe->flags |= IOSQE_IO_LINK;	/* the write waits for it */
	}
	sqe = get_sqe(s);
	switch (dmu_req_type(req)) {
	case DMU_REQ_READ:
		io_uring_prep_read(sqe, s->fd, dmu_req_buf(req), (unsigned)len, off);
		break;
	case DMU_REQ_WRITE:
		io_uring_prep_write(sqe, s->fd, dmu_req_buf(req), (unsigned)len, off);
		if (dmu_req_flags(req) & DMU_REQ_FLAG_FUA)
			sqe->rw_flags = RWF_DSYNC;
		break;
	case DMU_REQ_FLUSH:
		io_uring_prep_fsync(sqe, s->fd, IORING_FSYNC_DATASYNC);
		break;
	case DMU_REQ_DISCARD:
		io_uring_prep_fallocate(sqe, s->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
					off, len);
		break;
	default:	/* DMU_REQ_WRITE_ZEROES */
		io_uring_prep_fallocate(sqe, s->fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE,
					off, len);
		break;
	}
	io_uring_sqe_set_data(sqe, req);
	return 0;
}

/* Called once the requests of one read were submitted: start them all. */
static void commit(void *arg)
{
	io_uring_submit(&((struct server *)arg)->ring);
}

static const struct dmu_async_ops ops = {
	.sz = sizeof(ops), .submit = submit, .commit = commit,
};

/* Complete every finished request, in the order the file system finished them. */
static void reap(struct server *s)
{
	struct io_uring_cqe *cqe;
	unsigned head, n = 0;

	io_uring_for_each_cqe(&s->ring, head, cqe) {
		struct dmu_req *req = io_uring_cqe_get_data(cqe);

		n++;
		if (req == LINKED_FSYNC)
			continue;	/* its write reports for both */
		int err = cqe->res < 0 ? cqe->res : 0;
		unsigned type = dmu_req_type(req);

		if (!err && (type == DMU_REQ_READ || type == DMU_REQ_WRITE) &&
		    (uint64_t)cqe->res != dmu_req_len(req))
			err = -EIO;	/* short: past the end of the file */
		dmu_req_complete(req, err);
	}
	io_uring_cq_advance(&s->ring, n);
}

static uint64_t file_size(int fd)
{
	struct stat st;
	uint64_t size = 0;

	if (fstat(fd, &st))
		return 0;
	if (S_ISBLK(st.st_mode))
		return ioctl(fd, BLKGETSIZE64, &size) ? 0 : size;
	return (uint64_t)st.st_size;
}

static void *on_signal(void *arg)
{
	struct server *s = arg;
	sigset_t set;
	int sig, err;

	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	for (;;) {
		sigwait(&set, &sig);
		if (sig == SIGHUP) {
			err = dmu_device_refresh(s->dev);
			if (err)
				fprintf(stderr, "dmu-passthrough: refresh: %s\n", strerror(-err));
			else if (dmu_device_size(s->dev) > file_size(s->fd))
				fprintf(stderr, "dmu-passthrough: the device outgrew the file\n");
			printf("size=%llu\n", (unsigned long long)dmu_device_size(s->dev));
			fflush(stdout);
			continue;
		}
		atomic_store(&s->signalled, true);
		if (s->attach) {
			dmu_device_stop(s->dev);	/* leave the device to the next daemon */
			return NULL;
		}
		err = dmu_device_remove(s->dev);
		if (!err)
			return NULL;
		fprintf(stderr, "dmu-passthrough: cannot remove: %s\n", strerror(-err));
	}
}

static int usage(void)
{
	fprintf(stderr, "usage: dmu-passthrough [-a] [-q DEPTH] [-r MS] [-T MS] [-x KIB] [-s BYTES] [-m ADDR:PORT] NAME FILE\n");
	return 2;
}

int main(int argc, char **argv)
{
	DMU_OPTS(dmu_device_opts, dopts, .max_io_len = 512);
	struct server s = { .fd = -1 };
	struct dmu_http *http = NULL;
	struct dmu_channel *ch = NULL;
	const char *metrics = NULL;
	unsigned depth = 64;
	uint64_t size = 0;
	int opt, err, ep, ring_fd;
	struct epoll_event ev = { .events = EPOLLIN };
	sigset_t set;
	pthread_t t;

	while ((opt = getopt(argc, argv, "aq:r:T:x:m:s:")) != -1) {
		switch (opt) {
		case 'a': s.attach = true; break;
		case 'q': depth = (unsigned)atoi(optarg); break;
		case 'r': dopts.recovery_ms = (uint32_t)atoi(optarg); break;
		case 'T': dopts.timeout_ms = (uint32_t)atoi(optarg); break;
		case 'x': dopts.max_io_len = (uint32_t)atoi(optarg) * 2; break;
		case 'm': metrics = optarg; break;
		case 's': size = strtoull(optarg, NULL, 0); break;
		default: return usage();
		}
	}
	if (argc - optind != 2 || !depth || depth > 4096)
		return usage();
	s.fd = open(argv[optind + 1], O_RDWR | O_DIRECT | O_CLOEXEC);
	if (s.fd < 0) {
		fprintf(stderr, "dmu-passthrough: %s: %s%s\n", argv[optind + 1], strerror(errno),
			errno == EINVAL ? " (no O_DIRECT on this file system?)" : "");
		return 1;
	}
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &set, NULL);

	if (s.attach)
		err = dmu_device_attach(argv[optind], &s.dev);
	else
		err = dmu_device_create(argv[optind], size ? size : file_size(s.fd) & ~511ull,
					&dopts, &s.dev);
	if (err)
		return 1;
	if (dmu_device_size(s.dev) > file_size(s.fd)) {
		fprintf(stderr, "dmu-passthrough: %s is larger than %s\n", argv[optind], argv[optind + 1]);
		return 1;
	}

	/* Two SQEs per request at most; buffers come from the library's slots. */
	DMU_OPTS(dmu_channel_opts, copts, .async_depth = depth, .mem_align = 4096);
	ring_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	ep = epoll_create1(EPOLL_CLOEXEC);
	err = io_uring_queue_init(2 * depth, &s.ring, 0);
	if (!err)
		err = io_uring_register_eventfd(&s.ring, ring_fd);
	if (!err)
		err = dmu_channel_open(s.dev, &copts, &ch);
	if (!err) {
		ev.data.fd = dmu_channel_pollfd(ch);
		if (epoll_ctl(ep, EPOLL_CTL_ADD, ev.data.fd, &ev))
			err = -errno;
	}
	ev.data.fd = ring_fd;
	if (!err && epoll_ctl(ep, EPOLL_CTL_ADD, ring_fd, &ev))
		err = -errno;
	if (!err && metrics)
		err = dmu_http_start(s.dev, metrics, NULL, &http);
	if (!err && !s.attach)
		err = dmu_device_resume(s.dev);
	if (!err)
		err = pthread_create(&t, NULL, on_signal, &s) ? -EAGAIN : 0;
	if (err) {
		fprintf(stderr, "dmu-passthrough: cannot start: %s\n", strerror(-err));
		if (!s.attach)
			dmu_device_remove(s.dev);
		return 1;
	}
	if (http)
		printf("metrics=%s\n", dmu_http_address(http));
	printf("serving %s from %s\n", dmu_device_name(s.dev), argv[optind + 1]);
	fflush(stdout);

	/* The event loop: requests in, completions out, until stopped or removed. */
	for (;;) {
		struct epoll_event got[2];
		uint64_t v;

		err = dmu_channel_process(ch, &ops, &s);
		if (err)
			break;
		if (epoll_wait(ep, got, 2, -1) < 0 && errno != EINTR) {
			err = -errno;
			break;
		}
		if (read(ring_fd, &v, sizeof(v)) > 0)
			reap(&s);
	}
	if (err != DMU_STOPPED && err != -ENOTBLK) {
		fprintf(stderr, "dmu-passthrough: %s\n", strerror(-err));
		return 1;
	}
	if (!atomic_load(&s.signalled))	/* removed by someone else: it still waits */
		pthread_cancel(t);
	pthread_join(t, NULL);
	dmu_http_stop(http);
	dmu_channel_close(ch);
	io_uring_queue_exit(&s.ring);
	dmu_device_free(s.dev);
	return 0;
}
