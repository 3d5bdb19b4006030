// SPDX-License-Identifier: GPL-2.0+
/*
 * dmu-client: a protocol-level test client for the dm-user control device.
 *
 *   dmu-client serve CTL SIZE [options]   serve a RAM disk of SIZE bytes
 *     --piecewise        read the header alone, then the payload 4 KiB at a
 *                        time; write replies the same way (the original
 *                        daemon's pattern)
 *     --batch N          read up to N requests before answering any, and
 *                        answer them in reverse order
 *     --nonblock         O_NONBLOCK + poll() instead of blocking reads
 *     --exit-after N     exit (without answering) after reading N requests
 *     --stall            read requests and never answer them
 *     --delay-ms N       wait N ms before answering each batch
 *     --ready FILE       create FILE once the control device is open
 *
 * It exits 0 when the target goes away (read() fails with ENOTBLK).
 * This is a test tool: it is small, strict, and dies on anything unexpected.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <linux/dm-user.h>

#define HDR sizeof(struct dm_user_message)
#define MAX_BATCH 256

static const char *prog = "dmu-client";

static void die(const char *what)
{
	fprintf(stderr, "%s: %s: %s\n", prog, what, strerror(errno));
	exit(1);
}

static void fail(const char *what)
{
	fprintf(stderr, "%s: %s\n", prog, what);
	exit(1);
}

struct opts {
	int piecewise;
	int batch;
	int nonblock;
	long exit_after;
	int stall;
	long delay_ms;
	const char *ready;
};

struct req {
	struct dm_user_message h;
	uint8_t *data;		/* WRITE payload, or READ reply buffer */
};

#define MAX_REQ (8u << 20)

static uint8_t *disk;
static uint64_t disk_size;
static size_t bufsize;		/* per request: min(disk size, MAX_REQ) */

static void wait_readable(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };

	for (;;) {
		int r = poll(&p, 1, -1);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			die("poll");
		if (p.revents & POLLERR)
			fail("poll: POLLERR on control device");
		return;
	}
}

/* Reads exactly n bytes of one request (a short read ends it early). */
static ssize_t read_some(int fd, void *buf, size_t n, const struct opts *o)
{
	for (;;) {
		ssize_t r = read(fd, buf, n);

		if (r >= 0)
			return r;
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN && o->nonblock) {
			wait_readable(fd);
			continue;
		}
		return -1;
	}
}

/* Returns 0 on a request, 1 when the target is gone. */
static int read_request(int fd, struct req *q, const struct opts *o)
{
	size_t got = 0, want;
	ssize_t r;

	if (o->piecewise) {
		r = read_some(fd, &q->h, HDR, o);
		if (r < 0 && errno == ENOTBLK)
			return 1;
		if (r != (ssize_t)HDR)
			die("read header");
	} else {
		/* Header and payload in one call when the buffer holds both. */
		struct iovec iov[2] = {
			{ &q->h, HDR },
			{ q->data, bufsize },
		};

		r = readv(fd, iov, 2);
		while (r < 0 && (errno == EINTR || (errno == EAGAIN && o->nonblock))) {
			if (errno == EAGAIN)
				wait_readable(fd);
			r = readv(fd, iov, 2);
		}
		if (r < 0 && errno == ENOTBLK)
			return 1;
		if (r < (ssize_t)HDR)
			die("read request");
		got = r - HDR;
	}
	if (q->h.sector * 512 + q->h.len > disk_size)
		fail("request beyond the end of the disk");
	if (q->h.len > bufsize && (q->h.type == DM_USER_REQ_MAP_READ ||
				   q->h.type == DM_USER_REQ_MAP_WRITE))
		fail("request larger than the buffer");
	want = q->h.type == DM_USER_REQ_MAP_WRITE ? q->h.len : 0;
	if (got > want)
		fail("read returned more than one request");
	while (got < want) {
		size_t n = want - got;

		if (n > 4096)
			n = 4096;
		r = read_some(fd, q->data + got, n, o);
		if (r <= 0)
			die("read payload");
		got += r;
	}
	return 0;
}

static void write_all(int fd, const void *buf, size_t n)
{
	const uint8_t *p = buf;

	while (n) {
		ssize_t r = write(fd, p, n);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			die("write reply");
		p += r;
		n -= r;
	}
}

static void answer(int fd, struct req *q, const struct opts *o)
{
	uint64_t off = q->h.sector * 512;
	struct dm_user_message rep = q->h;
	size_t len = 0;

	rep.type = DM_USER_RESP_SUCCESS;
	switch (q->h.type) {
	case DM_USER_REQ_MAP_READ:
		memcpy(q->data, disk + off, q->h.len);
		len = q->h.len;
		break;
	case DM_USER_REQ_MAP_WRITE:
		memcpy(disk + off, q->data, q->h.len);
		break;
	case DM_USER_REQ_MAP_FLUSH:
		break;
	case DM_USER_REQ_MAP_DISCARD:
	case DM_USER_REQ_MAP_WRITE_ZEROES:
		memset(disk + off, 0, q->h.len);
		break;
	default:
		rep.type = DM_USER_RESP_UNSUPPORTED;
	}

	if (o->piecewise) {
		size_t done = 0;

		write_all(fd, &rep, HDR);
		while (done < len) {
			size_t n = len - done > 4096 ? 4096 : len - done;

			write_all(fd, q->data + done, n);
			done += n;
		}
	} else {
		struct iovec iov[2] = { { &rep, HDR }, { q->data, len } };
		ssize_t r = writev(fd, iov, 2);

		if (r != (ssize_t)(HDR + len))
			die("writev reply");
	}
}

static int serve(const char *ctl, const struct opts *o)
{
	static struct req reqs[MAX_BATCH];
	long nread = 0;
	int fd, i, n;

	fd = open(ctl, O_RDWR | O_CLOEXEC | (o->nonblock ? O_NONBLOCK : 0));
	if (fd < 0)
		die(ctl);
	if (o->ready) {
		int r = open(o->ready, O_WRONLY | O_CREAT | O_TRUNC, 0644);

		if (r < 0)
			die(o->ready);
		close(r);
	}
	for (i = 0; i < o->batch; i++) {
		reqs[i].data = malloc(bufsize);
		if (!reqs[i].data)
			die("malloc");
	}

	for (;;) {
		for (n = 0; n < o->batch; n++) {
			if (n > 0) {
				/* Take more only if more are waiting now. */
				struct pollfd p = { .fd = fd, .events = POLLIN };

				if (poll(&p, 1, 0) != 1 || !(p.revents & POLLIN))
					break;
			}
			if (read_request(fd, &reqs[n], o))
				goto gone;
			if (o->exit_after && ++nread >= o->exit_after)
				return 0;
		}
		if (o->stall)
			continue;
		if (o->delay_ms) {
			struct timespec ts = {
				.tv_sec = o->delay_ms / 1000,
				.tv_nsec = (o->delay_ms % 1000) * 1000000L,
			};

			while (nanosleep(&ts, &ts) && errno == EINTR)
				;
		}
		for (i = n - 1; i >= 0; i--)
			answer(fd, &reqs[i], o);
	}
gone:
	/* The target is gone only once every request was answered. */
	close(fd);
	return 0;
}

static void usage(void)
{
	fprintf(stderr,
		"usage: %s serve CTL SIZE [--piecewise] [--batch N] [--nonblock]\n"
		"       [--exit-after N] [--stall] [--delay-ms N] [--ready FILE]\n", prog);
	exit(2);
}

int main(int argc, char **argv)
{
	struct opts o = { .batch = 1 };
	int i;

	if (argc < 4 || strcmp(argv[1], "serve"))
		usage();
	disk_size = strtoull(argv[3], NULL, 0);
	if (!disk_size || disk_size % 512)
		fail("SIZE must be a non-zero multiple of 512");
	for (i = 4; i < argc; i++) {
		if (!strcmp(argv[i], "--piecewise"))
			o.piecewise = 1;
		else if (!strcmp(argv[i], "--nonblock"))
			o.nonblock = 1;
		else if (!strcmp(argv[i], "--stall"))
			o.stall = 1;
		else if (!strcmp(argv[i], "--batch") && i + 1 < argc)
			o.batch = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--delay-ms") && i + 1 < argc)
			o.delay_ms = atol(argv[++i]);
		else if (!strcmp(argv[i], "--exit-after") && i + 1 < argc)
			o.exit_after = atol(argv[++i]);
		else if (!strcmp(argv[i], "--ready") && i + 1 < argc)
			o.ready = argv[++i];
		else
			usage();
	}
	if (o.batch < 1 || o.batch > MAX_BATCH)
		fail("--batch must be 1..256");
	bufsize = disk_size < MAX_REQ ? disk_size : MAX_REQ;
	disk = calloc(1, disk_size);
	if (!disk)
		die("calloc");
	return serve(argv[2], &o);
}
